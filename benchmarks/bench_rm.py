"""Reward model: preference pairs/s of `beaver rm` vs TRL's `RewardTrainer`.

Both sides put the same fresh scalar head (a Linear with bias, initialised as beaver does) on
the same SFT backbone and train on the same tokenized pairs (beaver's preference dataset:
prompt + answer + EOS, better first) in the same order: their loss curves coincide. fp32, 32
pairs per step, both halves in one forward pass, loss -log sigmoid(r_better - r_worse)
(beaver's score regulariser off, as TRL has none), AdamW lr 1e-3 constant, betas 0.9/0.95, no
weight decay, clip 1.0, through their own training loops, logging every step. TRL's gradient
checkpointing and bf16 defaults are turned off, as beaver's toy config has neither.

Three sides: beaver padded and packed (`train.padding_free=true`), and TRL's RewardTrainer,
which in trl 1.12 has no padding-free or packing setting (its RewardConfig has neither), so
its default is its best. Same pairs in the same order: pairs/s is proportional to real
(non-pad) tokens/s, whose totals are checked equal.

    python benchmarks/bench_rm.py [--blocks 30] [--block-steps 3] [--replicas 2] [--threads 1]
"""

from __future__ import annotations

import statistics
from typing import Any

import machine
import prepare
import report
from harness import Side, interleave
from trl_common import in_beaver_order, trl_args, trl_callback

BATCH, LR, MAX_LEN, BETA2 = 32, 1e-3, 96, 0.95


def beaver_side(pacer: Any, steps: int, padding_free: bool = False) -> None:
    import beaver.stages.score as score
    from beaver.config import ScoreConfig, load_config

    out = prepare.run_dir("rm-beaver")
    cfg = load_config(
        ScoreConfig,
        prepare.ROOT / "configs/toy/rm.yaml",
        [
            "objective=reward",
            f"output_dir={out}",
            f"model.name_or_path={prepare.SFT_MODEL}",
            f"data.train=[toyworld-preference:1.0:{prepare.WORLD}]",
            "data.eval=[]",
            f"data.max_length={MAX_LEN}",
            "score.regularization=0.0",
            f"optim.lr={LR}",
            "optim.scheduler=constant",
            "optim.warmup_ratio=0.0",
            f"optim.betas=[0.9,{BETA2}]",
            f"train.per_device_batch_size={BATCH}",
            f"train.max_steps={steps}",
            "train.seed=42",
            "train.eval_strategy='no'",
            f"train.padding_free={str(padding_free).lower()}",
            *prepare.COMMON,
        ],
    )
    step = score.score_step

    def timed(*args: Any) -> Any:
        out = step(*args)
        pacer.step(units=out.samples, loss=out.loss, tokens=out.tokens)
        return out

    score.score_step = timed  # run() calls the module-level name
    score.run(cfg)


def pair_dataset() -> Any:
    """beaver's tokenized pairs as the HF dataset TRL takes (`chosen_ids`, `rejected_ids`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from beaver.config import DataCfg
    from beaver.data import make_datasets

    tok = AutoTokenizer.from_pretrained(prepare.SFT_MODEL)
    spec = DataCfg(train=[f"toyworld-preference:1.0:{prepare.WORLD}"], max_length=MAX_LEN)
    ds, _ = make_datasets("preference", spec, tok)
    items = [ds[i] for i in range(len(ds))]
    columns = {
        "chosen_ids": [list(map(int, x["better_input_ids"])) for x in items],
        "rejected_ids": [list(map(int, x["worse_input_ids"])) for x in items],
    }
    return Dataset.from_dict(columns), tok


def trl_side(pacer: Any, steps: int) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    data, tok = pair_dataset()
    data = in_beaver_order(data)  # beaver's train.seed is 42 too
    model = AutoModelForSequenceClassification.from_pretrained(
        prepare.SFT_MODEL, num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = tok.pad_token_id
    torch.manual_seed(42)  # beaver's head: nn.Linear(hidden, 1) right after seeding with train.seed
    model.score = torch.nn.Linear(model.config.hidden_size, 1, bias=True)
    args = trl_args(
        RewardConfig, steps, "rm-trl", BATCH, learning_rate=LR, adam_beta2=BETA2, max_length=MAX_LEN
    )
    ref: list[Any] = []
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[trl_callback(pacer, ref, "samples")],
    )
    ref.append(trainer)
    trainer.train()


def workload() -> dict[str, Any]:
    data, _ = pair_dataset()
    tokens = [
        len(a) + len(b) for a, b in zip(data["chosen_ids"], data["rejected_ids"], strict=True)
    ]
    return {
        "model": "SFT'd toy world Llama (hidden 128, 4 layers) + scalar head",
        "pairs": len(tokens),
        "mean_tokens_per_pair": round(statistics.fmean(tokens), 1),
        "pairs_per_step": BATCH,
        "max_length": MAX_LEN,
        "precision": "fp32",
        "optimizer": f"AdamW lr {LR} constant, betas (0.9, {BETA2}), wd 0, clip 1.0",
    }


def main() -> dict[str, Any]:
    a = report.bench_args(__doc__, blocks=30, block_steps=3, warmup_steps=8, replicas=2)
    prepare.sft_model()
    steps = a.steps
    prepare.clean_runs()
    peak = machine.gemm_peak_flops()
    sides = interleave(
        [
            Side("beaver", beaver_side, {"steps": steps}),
            Side("beaver-packed", beaver_side, {"steps": steps, "padding_free": True}),
            Side("trl", trl_side, {"steps": steps}),
        ],
        warmup_steps=a.warmup_steps,
        block_steps=a.block_steps,
        blocks=a.blocks,
        log_dir=prepare.WORK / "logs",
        replicas=a.replicas,
        prefix="rm",
    )
    from transformers import AutoConfig

    shape = machine.Shape.of(AutoConfig.from_pretrained(prepare.SFT_MODEL))
    work = workload()
    per_pair = machine.train_flops(
        shape, work["mean_tokens_per_pair"], work["mean_tokens_per_pair"] / 2, head="score"
    )
    result = report.assemble(
        "reward model",
        sides,
        flops_per_unit={s.name: per_pair for s in sides},
        unit="pairs/s",
        peer="trl",
        peak=peak,
        workload=work,
        model_flops_per_pair=per_pair,
        trend=report.check_trends(sides, "down"),
        same_tokens=report.same_work(sides),
    )
    report.write("rm", result)
    report.print_result(result)
    return result


if __name__ == "__main__":
    main()
