"""SFT: non-pad tokens/s of `beaver sft` vs TRL's `SFTTrainer`, same tokens, same settings.

Both sides train the toy world's randomly initialised tiny Llama on the same tokenized samples
(beaver's supervised dataset: prompt masked with -100, answer + EOS trained) in the same order,
so every step sees the same tokens; the losses differ only in weighting (beaver: mean over
samples of each answer's mean NLL; TRL: mean over all answer tokens). fp32, batch 32,
AdamW (lr 3e-3 constant, betas 0.9/0.95, no weight decay, clip 1.0), through their own training
loops (beaver's `train_loop` via `beaver.stages.sft.run`, TRL's `Trainer.train`), logging every
step. TRL keeps its defaults otherwise (its `chunked_nll` loss), except gradient checkpointing
and bf16, which it turns on by default and beaver's toy config does not.

Four sides: beaver padded and packed (`train.padding_free=true`), TRL at its default and TRL
with `padding_free=True` (the batch flattened into one row, position ids restarting per
sample; no flash attention on CPU, so transformers builds the block-diagonal mask for sdpa).
A fifth, TRL's `packing=True` (bfd), turns padding-free on too and regroups the samples into
new rows of `max_length`, so its steps no longer see beaver's batches (left out of the
same-tokens check; its tokens/s still counts real tokens only); `--no-trl-packing` skips it.

    python benchmarks/bench_sft.py [--blocks 30] [--block-steps 4] [--replicas 2] [--threads 1]
"""

from __future__ import annotations

import statistics
from typing import Any

import machine
import prepare
import report
from harness import Side, interleave
from trl_common import in_beaver_order, trl_args, trl_callback

BATCH, LR, MAX_LEN, BETA2 = 32, 3e-3, 96, 0.95


def beaver_side(pacer: Any, steps: int, padding_free: bool = False) -> None:
    import beaver.stages.sft as sft
    from beaver.config import SFTConfig, load_config

    out = prepare.run_dir("sft-beaver")
    cfg = load_config(
        SFTConfig,
        prepare.ROOT / "configs/toy/sft.yaml",
        [
            f"output_dir={out}",
            f"model.name_or_path={prepare.WORLD / 'model'}",
            f"data.train=[toyworld-sft:1.0:{prepare.WORLD}]",
            "data.eval_split=0.0",
            f"data.max_length={MAX_LEN}",
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
    step = sft.sft_step

    def timed(engine: Any, batches: Any, *args: Any) -> Any:
        out = step(engine, batches, *args)
        pacer.step(units=out.tokens, loss=out.loss)
        return out

    sft.sft_step = timed  # run() calls the module-level name
    sft.run(cfg)


def sft_dataset() -> Any:
    """beaver's tokenized SFT samples as the HF dataset TRL takes (`input_ids`, `labels`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from beaver.config import DataCfg
    from beaver.data import make_datasets

    tok = AutoTokenizer.from_pretrained(prepare.WORLD / "tokenizer")
    spec = DataCfg(train=[f"toyworld-sft:1.0:{prepare.WORLD}"], max_length=MAX_LEN)
    ds, _ = make_datasets("supervised", spec, tok)
    items = [ds[i] for i in range(len(ds))]
    return Dataset.from_dict(
        {
            "input_ids": [list(map(int, x["input_ids"])) for x in items],
            "labels": [list(map(int, x["labels"])) for x in items],
        }
    ), tok


def trl_side(pacer: Any, steps: int, padding_free: bool = False, packing: bool = False) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    data, tok = sft_dataset()
    data = in_beaver_order(data)  # beaver's train.seed is 42 too
    model = AutoModelForCausalLM.from_pretrained(prepare.WORLD / "model", dtype=torch.float32)
    # padding-free without packing refuses a max_length (it would not enforce it); beaver's
    # samples are already cut to MAX_LEN
    max_length = None if padding_free and not packing else MAX_LEN
    args = trl_args(
        SFTConfig, steps, "sft-trl", BATCH, learning_rate=LR, adam_beta2=BETA2,
        max_length=max_length, padding_free=padding_free, packing=packing,
    )  # fmt: skip
    ref: list[Any] = []
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[trl_callback(pacer, ref, "tokens")],
    )
    ref.append(trainer)
    trainer.train()


def workload() -> dict[str, Any]:
    data, _ = sft_dataset()
    lengths = [len(x) for x in data["input_ids"]]
    trained = [sum(1 for t in x if t != -100) for x in data["labels"]]
    return {
        "model": "toy world Llama, hidden 128, 4 layers, vocab 287 (0.69M parameters)",
        "samples": len(lengths),
        "mean_tokens": round(statistics.fmean(lengths), 1),
        "mean_answer_tokens": round(statistics.fmean(trained), 1),
        "batch": BATCH,
        "max_length": MAX_LEN,
        "precision": "fp32",
        "optimizer": f"AdamW lr {LR} constant, betas (0.9, {BETA2}), wd 0, clip 1.0",
    }


def main() -> dict[str, Any]:
    a = report.bench_args(
        __doc__, blocks=30, block_steps=4, warmup_steps=10, replicas=2,
        flags={"--no-trl-packing": "leave out TRL with packing=True (bfd, its own rows)"},
    )  # fmt: skip
    prepare.world()
    steps = a.steps
    prepare.clean_runs()
    peak = machine.gemm_peak_flops()
    trl_fast = {"steps": steps, "padding_free": True}
    sides_to_run = [
        Side("beaver", beaver_side, {"steps": steps}),
        Side("beaver-packed", beaver_side, {"steps": steps, "padding_free": True}),
        Side("trl", trl_side, {"steps": steps}),
        Side("trl-padding-free", trl_side, trl_fast),
    ]
    if not a.no_trl_packing:
        sides_to_run.append(Side("trl-packing", trl_side, {"steps": steps, "packing": True}))
    sides = interleave(
        sides_to_run,
        warmup_steps=a.warmup_steps,
        block_steps=a.block_steps,
        blocks=a.blocks,
        log_dir=prepare.WORK / "logs",
        replicas=a.replicas,
        prefix="sft",
    )
    from transformers import AutoConfig

    shape = machine.Shape.of(AutoConfig.from_pretrained(prepare.WORLD / "model"))
    work = workload()
    per_token = machine.train_flops(shape, 1, work["mean_tokens"])
    result = report.assemble(
        "sft",
        sides,
        flops_per_unit={s.name: per_token for s in sides},
        unit="tok/s",
        peer="trl",
        peak=peak,
        workload=work,
        cross_ratios=report.cross_ratios(sides, "beaver", "trl"),
        model_flops_per_token=per_token,
        trend=report.check_trends(sides, "down"),
        same_tokens=report.same_work([s for s in sides if s.name != "trl-packing"]),
    )
    report.write("sft", result)
    report.print_result(result)
    return result


if __name__ == "__main__":
    main()
