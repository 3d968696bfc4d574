"""DPO: preference pairs/s of `beaver dpo` vs TRL's `DPOTrainer` (trl 1.12, the `bench` extra).

Both sides train the same SFT model against a frozen copy of itself (a reference forward per
batch on both sides) on the same tokenized pairs (beaver's preference dataset: prompt + answer +
EOS, better answer chosen) in the same order, so their loss curves coincide. TRL's trainer
tokenizes text itself; here it is handed beaver's token ids (`prompt_ids`, `chosen_ids`,
`rejected_ids`, the columns its collator reads) and its dataset preparation is skipped, so both
sides see identical tokens. fp32, 32 pairs per step, chosen and rejected in one forward pass,
sigmoid loss with beta 0.1, AdamW lr 5e-4 constant, betas 0.9/0.95, no weight decay, clip 1.0,
through their own training loops, logging every step. TRL's gradient checkpointing and bf16
defaults are off, as beaver's toy config has neither. Sides: beaver padded and packed
(`train.padding_free=true`), and TRL at its default.

    python benchmarks/bench_dpo.py [--blocks 30] [--block-steps 3] [--replicas 2] [--threads 1]
"""

from __future__ import annotations

import statistics
from typing import Any

import machine
import prepare
import report
from harness import Side, interleave
from trl_common import in_beaver_order, trl_args, trl_callback

BATCH, LR, MAX_LEN, BETA, BETA2 = 32, 5e-4, 96, 0.1, 0.95


def beaver_side(pacer: Any, steps: int, padding_free: bool = False) -> None:
    import beaver.stages.dpo as dpo
    from beaver.config import DPOConfig, load_config

    out = prepare.run_dir("dpo-beaver")
    cfg = load_config(
        DPOConfig,
        prepare.ROOT / "configs/toy/dpo.yaml",
        [
            f"output_dir={out}",
            f"model.name_or_path={prepare.SFT_MODEL}",
            f"data.train=[toyworld-preference:1.0:{prepare.WORLD}]",
            "data.eval=[]",
            f"data.max_length={MAX_LEN}",
            f"dpo.beta={BETA}",
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
    step = dpo.dpo_step

    def timed(*args: Any) -> Any:
        out = step(*args)
        pacer.step(units=out.samples, loss=out.loss, tokens=out.tokens)
        return out

    dpo.dpo_step = timed  # run() calls the module-level name
    dpo.run(cfg)


def pair_dataset() -> Any:
    """beaver's tokenized pairs as the columns TRL's DPO collator reads: the shared prompt's ids
    and each answer's ids (EOS included)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from beaver.config import DataCfg
    from beaver.data import make_datasets

    tok = AutoTokenizer.from_pretrained(prepare.SFT_MODEL)
    spec = DataCfg(train=[f"toyworld-preference:1.0:{prepare.WORLD}"], max_length=MAX_LEN)
    ds, _ = make_datasets("preference", spec, tok)
    columns: dict[str, list[list[int]]] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for i in range(len(ds)):
        x = ds[i]
        sides = []
        for key in ("better", "worse"):
            ids = list(map(int, x[f"{key}_input_ids"]))
            start = list(map(int, x[f"{key}_response_mask"])).index(1)
            sides.append((ids[:start], ids[start:]))
        assert sides[0][0] == sides[1][0], "both answers of a pair share one prompt"
        columns["prompt_ids"].append(sides[0][0])
        columns["chosen_ids"].append(sides[0][1])
        columns["rejected_ids"].append(sides[1][1])
    return Dataset.from_dict(columns), tok


def trl_side(pacer: Any, steps: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    class PreTokenized(DPOTrainer):
        """DPOTrainer on already tokenized pairs (its collator's own input columns)."""

        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    data, tok = pair_dataset()
    data = in_beaver_order(data)  # beaver's train.seed is 42 too
    model = AutoModelForCausalLM.from_pretrained(prepare.SFT_MODEL, dtype=torch.float32)
    args = trl_args(
        DPOConfig,
        steps,
        "dpo-trl",
        BATCH,
        learning_rate=LR,
        adam_beta2=BETA2,
        max_length=MAX_LEN,
        beta=BETA,
        loss_type=["sigmoid"],
    )
    ref: list[Any] = []
    trainer = PreTokenized(
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
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(
            data["prompt_ids"], data["chosen_ids"], data["rejected_ids"], strict=True
        )
    ]
    return {
        "model": "SFT'd toy world Llama (hidden 128, 4 layers) and a frozen copy as reference",
        "pairs": len(tokens),
        "mean_tokens_per_pair": round(statistics.fmean(tokens), 1),
        "pairs_per_step": BATCH,
        "max_length": MAX_LEN,
        "precision": "fp32",
        "loss": f"sigmoid DPO, beta {BETA}, reference forward per batch",
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
        prefix="dpo",
    )
    from transformers import AutoConfig

    shape = machine.Shape.of(AutoConfig.from_pretrained(prepare.SFT_MODEL))
    work = workload()
    seq = work["mean_tokens_per_pair"]
    # policy forward + backward and a reference forward over both sequences of a pair
    per_pair = machine.train_flops(shape, seq, seq / 2) + machine.forward_flops(shape, seq, seq / 2)
    result = report.assemble(
        "DPO",
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
    report.write("dpo", result)
    report.print_result(result)
    return result


if __name__ == "__main__":
    main()
