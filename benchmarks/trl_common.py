"""The TRL side's shared pieces: trainer arguments that match beaver's run, and the callback
that reports each optimiser step to the pacer."""

from __future__ import annotations

from typing import Any

import prepare


def in_beaver_order(dataset: Any, seed: int = 42) -> Any:
    """`dataset` in the order beaver's loader visits it in epoch 0 (its seeded permutation).

    With `trl_args`' sequential sampling, both sides then train on the same batches in the same
    order: the same tokens per step, and loss curves comparable step by step.
    """
    from beaver.engine.data import ResumableSampler

    order = list(ResumableSampler(len(dataset), shuffle=True, seed=seed, rank=0, world_size=1))
    return dataset.select(order)


def trl_args(cls: Any, steps: int, name: str, batch: int, **extra: Any) -> Any:
    """`cls` (SFTConfig, RewardConfig) for a CPU fp32 run of `steps` steps, logging every step,
    reading the training set in order (see `in_beaver_order`).

    bf16 and gradient checkpointing are TRL defaults that beaver's toy configs do not use.
    """
    out = prepare.run_dir(name)
    return cls(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_steps=steps,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        seed=42,
        train_sampling_strategy="sequential",
        **extra,
    )


def trl_callback(pacer: Any, trainer_ref: list[Any], units: str) -> Any:
    """A TrainerCallback that reports each step to the pacer when its loss is logged.

    `units` "tokens": non-pad tokens of the step (the trainer counts them from the attention
    mask, as beaver does); "samples": the batch size (pairs for a reward model).
    """
    from transformers import TrainerCallback

    class PacerCallback(TrainerCallback):
        seen = 0

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary
            total = trainer_ref[0]._total_train_tokens
            tokens, self.seen = total - self.seen, total
            done = tokens if units == "tokens" else args.per_device_train_batch_size
            pacer.step(units=done, loss=logs["loss"], tokens=tokens)

    return PacerCallback()
