"""DeepSpeed engines from the validated config: DeepSpeed config, AdamW, schedule, `initialize`.

`make_ds_config` builds a `DeepSpeedSpec` once per engine: the DeepSpeed config dict (exactly
what `deepspeed.initialize` gets, and what the run folder's `ds_config*.json` shows), whether
parameters are partitioned (ZeRO-3: models load under `zero.Init`, `generate` syncs ranks) and
who clips gradients. Everything downstream reads these fields, never `deepspeed.zero_stage`.

Optimiser: AdamW without weight decay on biases and norm weights (every 1-D parameter).
`torch.optim.AdamW` on CPU (no JIT build), DeepSpeed's FusedAdam on GPU, DeepSpeedCPUAdam when the
optimiser state is offloaded.

[beaver] Non-finite gradients skip the step under every ZeRO stage and precision. DeepSpeed's
ZeRO 1-3, bf16 and fp16 optimisers already detect them (`engine.was_step_applied()` is False);
plain ZeRO 0 in fp32 calls the client optimiser directly, so there the optimiser is wrapped
(`_SkipNonFinite`) and also does the clipping, to report the pre-clipping gradient norm
(`DeepSpeedSpec.client_clip_norm`; the DeepSpeed config then says `gradient_clipping: 0`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from beaver.config.sections import DeepSpeedCfg, LoopCfg, OptimCfg
from beaver.engine import dist
from beaver.errors import UserError
from beaver.files import write_json

_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class DeepSpeedSpec:
    """How one engine is set up, decided once from the validated config."""

    config: dict[str, Any]
    """The DeepSpeed config, as `deepspeed.initialize` takes it."""
    zero3: bool
    """Parameters are partitioned over ranks (ZeRO-3)."""
    client_clip_norm: float | None = None
    """Plain ZeRO 0 fp32 only: the client optimiser clips the gradient norm to this (0: no
    clipping) and skips non-finite steps, as DeepSpeed does under every other set-up."""


def make_ds_config(
    ds: DeepSpeedCfg, train: LoopCfg, optim: OptimCfg | None, world_size: int | None = None
) -> DeepSpeedSpec:
    """The set-up of one engine; `optim=None` gives a frozen (inference) engine, which keeps
    ZeRO-3 partitioning but no other ZeRO stage.

    `train_batch_size` = per-device micro-batch x accumulation x world size, as DeepSpeed checks.
    """
    if ds.precision == "fp16" and not torch.cuda.is_available():
        raise UserError("deepspeed.precision=fp16 needs a GPU; use bf16 or fp32 on CPU.")
    world = world_size or dist.world_size()
    micro, accum = train.per_device_batch_size, train.gradient_accumulation_steps
    stage = ds.zero_stage if optim is not None or ds.zero_stage == 3 else 0
    zero: dict[str, Any] = {"stage": stage}
    pin = torch.cuda.is_available()
    if optim is not None and ds.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if stage == 3 and ds.offload in ("parameter", "all"):
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    clip = optim.clip_grad_norm if optim is not None else 0.0
    # Plain ZeRO 0 fp32: DeepSpeed calls the client optimiser directly (see module docstring).
    client_clips = stage == 0 and ds.precision == "fp32"
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world,
        "gradient_clipping": 0.0 if client_clips else clip,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # beaver logs; DeepSpeed's own progress lines stay off
        "wall_clock_breakdown": False,
    }
    return DeepSpeedSpec(config, zero3=stage == 3, client_clip_norm=clip if client_clips else None)


def write_ds_config(spec: DeepSpeedSpec, path: str | Path) -> None:
    """The DeepSpeed config of one engine as JSON (rank 0)."""
    if dist.is_main():
        write_json(path, spec.config)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: decayed (matrices, embeddings) and not (biases, norms)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "decay": True},
        {"params": no_decay, "weight_decay": 0.0, "decay": False},
    ]
    return [g for g in groups if g["params"]]


class _SkipNonFinite:
    """Mixin for a client optimiser under plain ZeRO 0 fp32: clip, and skip non-finite steps.

    DeepSpeed reads `overflow` (step skipped, scheduler not stepped) and `_global_grad_norm`.
    """

    param_groups: list[dict[str, Any]]
    max_norm: float = 0.0
    overflow: bool = False
    _global_grad_norm: float | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return super().step(closure)  # type: ignore[misc]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        self._global_grad_norm = float(norm)
        self.overflow = not math.isfinite(self._global_grad_norm)
        if self.overflow:
            for g in grads:
                g.zero_()
            return None
        if self.max_norm > 0:
            scale = (self.max_norm / (norm + 1e-6)).clamp(max=1.0)
            torch._foreach_mul_(grads, scale)
        return super().step(closure)  # type: ignore[misc]


def make_optimizer(groups: list[dict[str, Any]], optim: OptimCfg, spec: DeepSpeedSpec) -> Optimizer:
    kwargs: dict[str, Any] = {"lr": optim.lr, "betas": tuple(optim.betas), "eps": optim.eps}
    if "offload_optimizer" in spec.config["zero_optimization"]:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **kwargs)
    cls: type[Optimizer] = torch.optim.AdamW
    if torch.cuda.is_available():
        from deepspeed.ops.adam import FusedAdam

        cls, kwargs = FusedAdam, {**kwargs, "adam_w_mode": True}
    if spec.client_clip_norm is None:
        return cls(groups, **kwargs)
    wrapped = type(f"SkipNonFinite{cls.__name__}", (_SkipNonFinite, cls), {})
    opt = wrapped(groups, **kwargs)
    opt.max_norm = spec.client_clip_norm
    return opt


def make_scheduler(optimizer: Optimizer, optim: OptimCfg, total_steps: int) -> Any:
    """Warm-up over `warmup_ratio` of the steps, then cosine / linear decay to 0, or constant."""
    from transformers import get_scheduler

    warmup = math.ceil(optim.warmup_ratio * total_steps)
    return get_scheduler(
        _SCHEDULERS[optim.scheduler],
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=max(total_steps, 1),
    )


def apply_optim_settings(engine: Any, optim: OptimCfg) -> None:
    """Make a resumed engine train with `optim`, keeping the optimiser's moments and the
    schedule's position from its checkpoint.

    Loading a checkpoint restores the old lr, betas, eps and weight decay into the param groups
    and the old peak lr into the schedule (`base_lrs`), while the schedule's shape (its lambda:
    kind, warm-up, length) is the one this run built; left so, a changed `optim.lr` trains at
    neither the requested nor the saved schedule. This sets every value from `optim` and the
    lr of the current step from the new peak and shape. (Clipping comes from the DeepSpeed
    config of this run already.) Groups carry `decay` (`param_groups`): which one decays.
    """
    scheduler = engine.lr_scheduler
    groups = scheduler.optimizer.param_groups  # the client optimiser's: what ZeRO steps with
    for index, group in enumerate(groups):
        group["initial_lr"] = optim.lr
        group["betas"] = tuple(optim.betas)
        group["eps"] = optim.eps
        decays = group.get("decay", index == 0)  # untagged (older) checkpoints: decay first
        group["weight_decay"] = optim.weight_decay if decays else 0.0
    scheduler.base_lrs = [optim.lr for _ in groups]
    lrs = [optim.lr * fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas]
    for group, lr in zip(groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs


def init_engine(
    model: nn.Module,
    spec: DeepSpeedSpec,
    optim: OptimCfg | None = None,
    total_steps: int = 0,
    activation_checkpointing: bool = False,
) -> Any:
    """A DeepSpeedEngine around `model`: trainable with `optim` (a schedule of `total_steps`
    optimiser steps), frozen (eval mode) without."""
    import deepspeed

    if activation_checkpointing:
        enable_activation_checkpointing(model)
    if optim is None:
        engine, *_ = deepspeed.initialize(model=model, config=spec.config)
        engine.eval()
        return engine
    optimizer = make_optimizer(param_groups(model, optim.weight_decay), optim, spec)
    scheduler = make_scheduler(optimizer, optim, total_steps)
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=spec.config
    )
    return engine


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute activations in backward (transformers 5 name; 4.x called it gradient_...)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise UserError(
            f"{type(model).__name__} does not support activation checkpointing; "
            "set deepspeed.activation_checkpointing=false."
        )
    if getattr(model, "config", None) is not None:
        # a KV cache is pointless (and warned about) when recomputing activations
        model.config.use_cache = False
