"""The engine trains under each ZeRO stage, precision, activation checkpointing and offload."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from engine_helpers import CountingDataset, tiny_llama

from beaver.config.sections import DeepSpeedCfg, OptimCfg, TrainCfg
from beaver.engine.build import init_engine, make_ds_config
from beaver.engine.data import make_loader
from beaver.stages.sft import sft_step


def _train_steps(ds: DeepSpeedCfg, steps: int = 3) -> tuple[Any, list[float]]:
    train = TrainCfg(per_device_batch_size=4, gradient_accumulation_steps=2)
    optim = OptimCfg(lr=1e-2, warmup_ratio=0.0)
    ds_config = make_ds_config(ds, train, optim)
    model = tiny_llama(0)
    engine = init_engine(model, ds_config, optim, steps, ds.activation_checkpointing)
    loader = make_loader(CountingDataset(48), 4, shuffle=True, seed=0)
    batches = iter(loader)
    losses = [sft_step(engine, [next(batches), next(batches)]).loss for _ in range(steps)]
    return engine, losses


@pytest.mark.parametrize(
    "ds",
    [
        DeepSpeedCfg(zero_stage=1, precision="fp32"),
        DeepSpeedCfg(zero_stage=0, precision="bf16"),
        DeepSpeedCfg(zero_stage=2, precision="bf16", activation_checkpointing=True),
        DeepSpeedCfg(zero_stage=3, precision="fp32", activation_checkpointing=True),
    ],
    ids=["z1-fp32", "z0-bf16", "z2-bf16-ckpt", "z3-fp32-ckpt"],
)
def test_modes_train(ds: DeepSpeedCfg) -> None:
    engine, losses = _train_steps(ds, steps=4)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert engine.was_step_applied()
    assert engine.module.is_gradient_checkpointing == ds.activation_checkpointing
    expected = torch.bfloat16 if ds.precision == "bf16" else torch.float32
    assert next(engine.module.parameters()).dtype == expected


@pytest.mark.slow
def test_zero3_offload_all_uses_cpu_adam() -> None:
    """Offloading builds DeepSpeedCPUAdam (a one-time JIT build of about 30 s per machine)."""
    engine, losses = _train_steps(DeepSpeedCfg(zero_stage=3, offload="all", precision="fp32"))
    assert type(engine.optimizer.optimizer).__name__ == "DeepSpeedCPUAdam"
    assert losses[-1] < losses[0]
