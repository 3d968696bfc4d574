"""Score normalizers: running statistics of end scores, applied per score type.

Applied as (ALGORITHMS.md): reward (x - mu) / (sigma + 1e-8); cost x / (sigma + 1e-8) (no shift:
the sign of a cost carries meaning); critic: identity.

These are `nn.Module`s with buffers `mean`, `var` (shape `shape`, fp32) and `count` (long), so they
travel in the score model's state_dict / safetensors and `from_pretrained` restores them. `update(x)`
takes values already gathered over ranks (the caller gathers), so every rank stays identical.

Choices beyond the reference:
- RunningMeanStd merges with the population variance of the batch, so the statistics after any
  sequence of updates equal mean/var(unbiased=False) of everything seen (the reference mixed in
  the unbiased batch variance).
- ExponentialMovingAverage takes the first batch's statistics as they are, instead of blending
  them with the initial mean 0 / var 1 (which biased early statistics).
- [beaver] The buffers stay fp32 when the module is cast (`.bfloat16()`, as DeepSpeed does to the
  whole model), so mixed precision does not erode the statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

ScoreKind = Literal["reward", "cost", "critic"]
NORMALIZE_EPS = 1e-8


class Normalizer(nn.Module):
    """Base class: buffers and `normalize`; subclasses define how `update` merges a batch."""

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float32))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float32))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Normalizer:
        super()._apply(fn, recurse)
        for name in ("mean", "var"):  # keep statistics fp32 whatever dtype the model is cast to
            self._buffers[name] = self._buffers[name].float()  # type: ignore[union-attr]
        return self

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    def _batch_stats(self, x: Tensor) -> tuple[Tensor, Tensor, int] | None:
        """Mean, population variance and count of `x` (..., *shape) over its leading dims."""
        x = x.detach().float().to(self.mean.device).reshape(-1, *self.shape)  # (N, *shape)
        if x.shape[0] == 0:
            return None
        return x.mean(dim=0), x.var(dim=0, unbiased=False), int(x.shape[0])

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold the values `x` (..., *shape) into the statistics (nothing for an empty `x`)."""
        stats = self._batch_stats(x)
        if stats is not None:
            self._merge(*stats)

    def _merge(self, batch_mean: Tensor, batch_var: Tensor, n: int) -> None:
        """Fold a batch's mean, population variance and count into the statistics."""
        raise NotImplementedError

    def normalize(self, x: Tensor, kind: ScoreKind) -> Tensor:
        """`x` normalized for a score of type `kind` (reward, cost or critic)."""
        if kind == "critic":
            return x
        denom = (self.std + NORMALIZE_EPS).to(x.dtype)
        if kind == "reward":
            return (x - self.mean.to(x.dtype)) / denom
        if kind == "cost":
            return x / denom
        raise ValueError(f"unknown score kind {kind!r}; expected reward, cost or critic")


class RunningMeanStd(Normalizer):
    """Exact running mean and variance of all values seen (Chan et al. parallel merge)."""

    def _merge(self, batch_mean: Tensor, batch_var: Tensor, n: int) -> None:
        old_count = float(self.count)
        total = old_count + n
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * (n / total)
        m2 = self.var * old_count + batch_var * n + delta.square() * (old_count * n / total)
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count += n


class ExponentialMovingAverage(Normalizer):
    """mean <- m * mean + (1 - m) * batch_mean, same for var; the first batch sets both."""

    def __init__(self, shape: tuple[int, ...] = (), momentum: float = 0.9) -> None:
        super().__init__(shape)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum

    def _merge(self, batch_mean: Tensor, batch_var: Tensor, n: int) -> None:
        m = 0.0 if int(self.count) == 0 else self.momentum
        self.mean.mul_(m).add_((1.0 - m) * batch_mean)
        self.var.mul_(m).add_((1.0 - m) * batch_var)
        self.count += n


def build_normalizer(
    normalizer_type: str | None, shape: tuple[int, ...] = (), momentum: float = 0.9
) -> Normalizer | None:
    """A normalizer by name ("RunningMeanStd", "ExponentialMovingAverage"), or None for None."""
    if normalizer_type is None or normalizer_type.lower() in ("", "none"):
        return None
    if normalizer_type == "RunningMeanStd":
        return RunningMeanStd(shape)
    if normalizer_type == "ExponentialMovingAverage":
        return ExponentialMovingAverage(shape, momentum=momentum)
    raise ValueError(
        f"unknown normalizer_type {normalizer_type!r}; expected RunningMeanStd, "
        "ExponentialMovingAverage or None"
    )
