"""Generalised advantage estimation, whitening and the PPO-Lagrangian combined advantage.

GAE per stream (ALGORITHMS.md): delta_t = r_t + gamma * V_{t+1} - V_t with V = 0 after the last
response token; A_t = delta_t + gamma * lam * A_{t+1}; G_t = A_t + V_t; only over the response.
[beaver] gamma and lam are arguments (the reference hard-coded 1.0 and 0.95, still the defaults).

`mask` may mark the response anywhere in the row (response-only tensors, or prompt + response),
but must be contiguous: the recursion stops where the mask stops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from beaver.algo.types import GAEOut


@torch.no_grad()
def gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> GAEOut:
    """Advantages and returns (B, T) from per-token `rewards`, critic `values` and `mask` (B, T).

    Computed in fp32 without gradient. Advantages and returns are 0 outside the mask.
    """
    maskf = mask.float()
    r = rewards.float() * maskf
    v = values.float() * maskf
    length = r.shape[-1]
    advantages = torch.zeros_like(r)
    next_value = torch.zeros_like(r[:, 0])  # (B,) V_{t+1}, 0 past the end
    next_adv = torch.zeros_like(r[:, 0])  # (B,) A_{t+1}
    for t in reversed(range(length)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv_t = (delta + gamma * lam * next_adv) * maskf[:, t]
        advantages[:, t] = adv_t
        next_value, next_adv = v[:, t], adv_t
    returns = (advantages + v) * maskf
    return GAEOut(advantages=advantages, returns=returns)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(B, T) `x` standardised with the mean and (unbiased) variance of all masked tokens.

    Token-level statistics over the whole batch (not per sequence). With shift_mean=False the mean
    is added back (only the scale changes). 0 outside the mask.
    """
    maskf = mask.to(x.dtype)
    count = maskf.sum()
    mean = (x * maskf).sum() / count.clamp(min=1.0)
    var = ((x - mean).square() * maskf).sum() / (count - 1.0).clamp(min=1.0)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * maskf


def combined_advantage(adv_r: Tensor, adv_c: Tensor, lam: float | Tensor) -> Tensor:
    """(B, T) PPO-Lagrangian advantage (A_r - lambda * A_c) / (1 + lambda), lambda a constant.

    lambda = 0 gives A_r exactly (PPO-Lag with lambda 0 is PPO).
    """
    if isinstance(lam, Tensor):
        lam = lam.detach()
    return (adv_r - lam * adv_c) / (1.0 + lam)


def combined_advantage_multi(
    adv_r: Tensor, adv_cs: Sequence[Tensor], lams: Sequence[float | Tensor]
) -> Tensor:
    """(B, T) advantage under several constraints: (A_r - sum_k lambda_k A_ck) / (1 + sum_k lambda_k).

    The PPO-Lag rule generalised (ALGORITHMS.md, "Several constraints"): each cost stream k is
    weighed by its own multiplier, and the division by 1 + sum_k lambda_k keeps the advantage's
    scale (and the reward stream's KL weight) bounded however many multipliers grow. All
    lambda_k = 0 gives A_r (PPO); one constraint gives `combined_advantage`.
    """
    if len(adv_cs) != len(lams):
        raise ValueError(f"{len(adv_cs)} cost advantages but {len(lams)} multipliers")
    weights = [lam.detach() if isinstance(lam, Tensor) else lam for lam in lams]
    total = adv_r
    for adv_c, lam in zip(adv_cs, weights, strict=True):
        total = total - lam * adv_c
    return total / (1.0 + sum(weights))
