"""PPO losses: clipped surrogate for the actor, clipped value loss for the critics.

ratio = exp(logp - logp_old);
L_actor = -masked_mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A));
V_clip = clip(V, V_old - c_v, V_old + c_v); L_critic = 0.5 * masked_mean(max((V - G)^2, (V_clip - G)^2)).
`masked_mean` is the per-sequence token mean, then the batch mean (see masks.py).

Monitoring: `clip_fraction` is the share of masked tokens where the clipped term was the active
(smaller) one; `approx_kl` is the k3 estimate mean((ratio - 1) - log ratio) of KL(old || new),
token-averaged like the loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from beaver.algo.masks import masked_mean
from beaver.algo.types import ActorLossOut


def ppo_actor_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
) -> ActorLossOut:
    """Clipped PPO policy loss from new/old log-probs, advantages and mask, all (B, T)."""
    log_ratio = logp - old_logp.detach()  # (B, T)
    return _clipped_surrogate(
        log_ratio, advantages.detach(), clip_eps, lambda x: masked_mean(x, mask)
    )


def _clipped_surrogate(
    log_ratio: Tensor, advantages: Tensor, clip_eps: float, mean: Callable[[Tensor], Tensor]
) -> ActorLossOut:
    """PPO's clipped objective on log-ratios and advantages of one shape, averaged by `mean`
    (over masked tokens, or over sequences): the loss, the clipped share and the k3 KL."""
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -mean(torch.minimum(unclipped, clipped))
    with torch.no_grad():
        clip_fraction = mean((clipped < unclipped).float())
        approx_kl = mean((ratio - 1.0) - log_ratio)
    return ActorLossOut(loss=loss, clip_fraction=clip_fraction, approx_kl=approx_kl)


def critic_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_value: float = 5.0,
) -> Tensor:
    """() clipped value loss 0.5 * masked_mean(max((V - G)^2, (V_clip - G)^2)); inputs (B, T)."""
    old_values = old_values.detach()
    returns = returns.detach()
    values_clipped = torch.clamp(values, old_values - clip_value, old_values + clip_value)
    per_token = torch.maximum((values - returns).square(), (values_clipped - returns).square())
    return 0.5 * masked_mean(per_token, mask)


def sequence_actor_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
) -> ActorLossOut:
    """Clipped policy loss with one ratio per sequence, as RLOO treats a response as one action
    (and TRL's RLOOTrainer computes it): ratio_i = exp(sum_t (logp - logp_old) over the mask),
    L = -mean_i min(ratio_i A_i, clip(ratio_i, 1 - eps, 1 + eps) A_i).

    Inputs (B, T); `advantages` holds one value per row on its mask (the sequence's advantage,
    broadcast), read back as the row's masked mean. With ratio 1 the gradient is A_i times the
    gradient of the sequence's log-probability (REINFORCE), not of its per-token mean.
    """
    maskf = mask.to(logp.dtype)
    log_ratio = ((logp - old_logp.detach()) * maskf).sum(dim=-1)  # (B,)
    adv = (advantages.detach() * maskf).sum(dim=-1) / maskf.sum(dim=-1).clamp(min=1.0)  # (B,)
    return _clipped_surrogate(log_ratio, adv, clip_eps, Tensor.mean)
