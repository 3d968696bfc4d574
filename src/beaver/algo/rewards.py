"""Per-token reward and cost streams with KL shaping, and end-score adjustments.

kl_t = logp_t - logp_ref_t (k1). Reward stream r_t = -beta * kl_t, cost stream c_t = +beta * kl_t,
with the end score (R or C) added at the last response token, then clipped to [-clip, clip].

Deviations from the reference implementation:
- The reference PPO-Lag puts 0.5 * beta on each stream; beaver uses beta on both, as
  ALGORITHMS.md states, so with A = (A_r - lambda A_c) / (1 + lambda) the effective KL weight is
  (beta + lambda * beta) / (1 + lambda) = beta whatever lambda is.
- [beaver] The k3 estimator exp(ref - logp) - (ref - logp) - 1 (>= 0, lower variance) is
  provided for monitoring; the streams use k1.
- [beaver] `apply_missing_eos_penalty` (TRL's `missing_eos_penalty`): without it reward-only PPO
  learns to ramble to the token limit (TOYWORLD.md).
"""

from __future__ import annotations

from torch import Tensor

from beaver.algo.masks import last_token_index


def kl_k1(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """(B, T) per-token k1 KL estimate logp - logp_ref (unbiased, can be negative)."""
    return logp - logp_ref


def kl_k3(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """(B, T) per-token k3 KL estimate exp(r) - r - 1 with r = logp_ref - logp (always >= 0)."""
    log_ratio = logp_ref - logp
    return log_ratio.exp() - log_ratio - 1.0


def _kl_shaped_stream(
    end_score: Tensor, logp: Tensor, logp_ref: Tensor, mask: Tensor, kl_weight: float, clip: float
) -> Tensor:
    """(B, T) kl_weight * kl_t on response tokens, end_score added at the last one, clipped."""
    maskf = mask.to(logp.dtype)
    stream = kl_weight * kl_k1(logp, logp_ref) * maskf  # (B, T)
    end = last_token_index(mask).unsqueeze(-1)  # (B, 1)
    stream = stream.scatter_add(-1, end, end_score.to(stream.dtype).unsqueeze(-1))
    return stream.clamp(min=-clip, max=clip) * maskf


def token_rewards(
    end_score: Tensor,
    logp: Tensor,
    logp_ref: Tensor,
    mask: Tensor,
    beta: float,
    clip: float = 50.0,
) -> Tensor:
    """(B, T) reward stream r_t = -beta * kl_t, + R (B,) at the last response token, clipped.

    `logp`, `logp_ref` and `mask` (B, T) are aligned with the response tokens; 0 outside the mask.
    """
    return _kl_shaped_stream(end_score, logp, logp_ref, mask, -beta, clip)


def token_costs(
    end_cost: Tensor,
    logp: Tensor,
    logp_ref: Tensor,
    mask: Tensor,
    beta: float,
    clip: float = 50.0,
) -> Tensor:
    """(B, T) cost stream c_t = +beta * kl_t, + C (B,) at the last response token, clipped."""
    return _kl_shaped_stream(end_cost, logp, logp_ref, mask, beta, clip)


def apply_missing_eos_penalty(scores: Tensor, has_eos: Tensor, penalty: float) -> Tensor:
    """(B,) `scores` minus `penalty` for each response that has no EOS (ran to the limit)."""
    return scores - penalty * (~has_eos.bool()).to(scores.dtype)


def shaped_reward(reward: Tensor, cost: Tensor, lambda_fixed: float) -> Tensor:
    """(B,) R' = R - lambda_fixed * C: the reward-shaping baseline (one critic, fixed lambda)."""
    return reward - lambda_fixed * cost
