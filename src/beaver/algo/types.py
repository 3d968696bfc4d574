"""Typed containers for the algorithm layer: rollouts and the outputs of the loss functions.

Every tensor field states its shape. B = batch (number of sequences), P = prompt length (left
padded), T = response length (right padded after the first EOS), K = number of constraints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
from torch import Tensor


class RewardLossOut(NamedTuple):
    """Output of the reward-model (preference) losses."""

    loss: Tensor  # () scalar, differentiable
    accuracy: Tensor  # () float in [0, 1]: mean 1[r_w > r_l] on end scores, detached


class CostLossOut(NamedTuple):
    """Output of the cost-model loss."""

    loss: Tensor  # () scalar, differentiable
    accuracy: Tensor  # () mean 1[c_u > c_s], detached
    sign_accuracy: Tensor  # () mean over all 2B answers of 1[(c > 0) == unsafe], detached


class CategoryLossOut(NamedTuple):
    """Output of the per-category cost-head loss (H heads)."""

    loss: Tensor  # () scalar, differentiable
    sign_accuracy: Tensor  # (H,) per head, mean over all 2B answers of 1[(c > 0) == flagged]
    ranked_right: Tensor  # (H,) pairs with differing labels whose flagged answer costs more
    ranked_pairs: Tensor  # (H,) pairs whose two labels for the head differ


class GAEOut(NamedTuple):
    """Output of generalised advantage estimation for one stream (reward or cost)."""

    advantages: Tensor  # (B, T) fp32, 0 outside the mask
    returns: Tensor  # (B, T) fp32 = advantages + values on the mask, 0 outside


class ActorLossOut(NamedTuple):
    """Output of the clipped PPO policy loss."""

    loss: Tensor  # () scalar, differentiable
    clip_fraction: Tensor  # () share of masked tokens where the clipped term was active, detached
    approx_kl: Tensor  # () k3 estimate of KL(old || new) over masked tokens, detached


@dataclass
class Rollout:
    """One batch of experience collected by the actor, everything the PPO update needs.

    Prompts are left-padded and responses right-padded, so `input_ids` = prompt ++ response has
    every prompt ending at column P. Log-probs and values are aligned with `response_ids`: column t
    holds the quantity for response token t (computed from the logits/hidden state at position
    P + t - 1 of `input_ids`).
    """

    prompt_ids: Tensor  # (B, P) long, left-padded
    prompt_mask: Tensor  # (B, P) attention mask of the prompt (0 on left padding)
    response_ids: Tensor  # (B, T) long, generated tokens, padded after EOS
    response_mask: Tensor  # (B, T) 1 up to and including the first EOS, 0 after
    has_eos: Tensor  # (B,) bool, response contains an EOS (else it hit max_new_tokens)
    logp: Tensor  # (B, T) fp32 actor log-probs at sampling time ("old" log-probs)
    ref_logp: Tensor  # (B, T) fp32 reference-model log-probs
    reward: Tensor  # (B,) fp32 reward-model end score R (after any missing-EOS penalty)
    values: Tensor | None = None  # (B, T) fp32 reward-critic values V_r (None: critic-free)
    costs: Tensor | None = None  # (B, K) fp32 end cost C_k of each of K constraints (PPO-Lag)
    cost_values: Tensor | None = None  # (B, K, T) fp32 values V_ck of the K cost critics

    @property
    def batch_size(self) -> int:
        return int(self.response_ids.shape[0])

    @property
    def input_ids(self) -> Tensor:
        """(B, P + T) prompt followed by response."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> Tensor:
        """(B, P + T) 1 on real prompt tokens and on response tokens up to the first EOS."""
        return torch.cat([self.prompt_mask.to(self.response_mask.dtype), self.response_mask], dim=1)

    @property
    def response_length(self) -> Tensor:
        """(B,) number of counted response tokens (EOS included)."""
        return self.response_mask.sum(dim=-1)

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Rollout:
        """A copy with `fn` applied to every tensor field (None fields stay None)."""
        changed = {}
        for f in fields(self):
            value = getattr(self, f.name)
            changed[f.name] = fn(value) if isinstance(value, Tensor) else value
        return replace(self, **changed)

    def to(self, device: torch.device | str) -> Rollout:
        """A copy with every tensor moved to `device`."""
        return self._map(lambda t: t.to(device))

    def select(self, index: Tensor | slice) -> Rollout:
        """A sub-batch (rows `index`), e.g. one micro-batch of the PPO update."""
        return self._map(lambda t: t[index])
