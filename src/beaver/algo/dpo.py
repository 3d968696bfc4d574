"""Offline preference losses: DPO (sigmoid, optional label smoothing), SafeDPO's pair rule and
margin, and SACPO's effective beta. Tensors in, tensors out.

Notation (ALGORITHMS.md, "Beyond PPO-Lag"): x prompt, y_w / y_l chosen / rejected answer,
log pi(y|x) the sum of the answer's token log-probs (EOS included, fp32), pi_ref the frozen
reference, h(y) = beta * (log pi(y|x) - log pi_ref(y|x)) the implicit reward.

- **DPO** (Rafailov et al. 2023): z = h(y_w) - h(y_l), L = -log sigma(z). With label smoothing
  eps (conservative DPO; TRL's `label_smoothing` with `loss_type="sigmoid"`):
  L = -(1 - eps) log sigma(z) - eps log sigma(-z).
- **SafeDPO** (Kim et al., ICLR 2026, arXiv 2505.20065, section 3 and Eq. 12). Data: helpfulness
  pairs (y_w better than y_l) with one safety label per answer, h = 1 unsafe, 0 safe. The
  transformation T of the data, from the cost-augmented reward r_c = r if safe, -inf if unsafe:
    * y_w safe (h_w = 0): keep the pair as it is (whatever y_l is);
    * y_w unsafe, y_l safe: swap, so the safe answer is chosen;
    * both unsafe: drop the pair (r_c is -inf on both sides: it carries no preference).
  Then L = -log sigma(h(~y_w) - h(~y_l) - (~h_l - ~h_w) * Delta) on T(D), with Delta >= 0 the
  safety margin: after T, ~h_w is always 0, so the margin Delta is subtracted from the logit of
  every safe-vs-unsafe pair (the swapped ones and those already ordered safe first), which asks
  for a gap of at least Delta there; safe-vs-safe pairs are plain DPO. Delta does not move the
  global optimum (the paper's Proposition 4.4); it strengthens the safe-over-unsafe gradient.
  [beaver] Deviation from the first sketch in ALGORITHMS.md, which added the margin (+Delta):
  the paper subtracts it, as written above. Label smoothing, when set, applies to the margined
  logit.
- **SACPO** (Wachi et al., NeurIPS 2024, arXiv 2404.11049): the safety step is DPO on safety
  pairs (safer answer chosen) with beta / lambda, the reference being the helpfulness-aligned
  model (`sacpo_beta`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class DPOLossOut(NamedTuple):
    """Output of `dpo_loss`. B = pairs."""

    loss: Tensor  # () scalar, differentiable: mean over the pairs
    chosen_rewards: Tensor  # (B,) h(y_w) = beta * (logp_w - ref_logp_w), detached
    rejected_rewards: Tensor  # (B,) h(y_l), detached
    accuracy: Tensor  # () mean 1[h(y_w) > h(y_l)], detached (the margin does not count)


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    margin: Tensor | None = None,
) -> DPOLossOut:
    """Sigmoid DPO loss on sequence log-probs (B,) of the policy and the reference.

    z = beta * ((logp_w - ref_w) - (logp_l - ref_l)) - margin;
    L = mean(-(1 - eps) log sigma(z) - eps log sigma(-z)). `margin` (B,) defaults to 0.
    """
    chosen = chosen_logps - ref_chosen_logps  # (B,) log pi/pi_ref of y_w
    rejected = rejected_logps - ref_rejected_logps  # (B,)
    logits = beta * (chosen - rejected)  # (B,)
    if margin is not None:
        logits = logits - margin.to(logits.dtype)
    losses = -F.logsigmoid(logits)
    if label_smoothing > 0.0:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    chosen_rewards = (beta * chosen).detach()
    rejected_rewards = (beta * rejected).detach()
    accuracy = (chosen_rewards > rejected_rewards).float().mean()
    return DPOLossOut(losses.mean(), chosen_rewards, rejected_rewards, accuracy)


class SafeDPOPairs(NamedTuple):
    """SafeDPO's transformation T of helpfulness pairs, per pair. All (B,) bool."""

    swap: Tensor  # better answer unsafe, worse safe: the worse (safe) answer becomes y_w
    keep: Tensor  # False when both answers are unsafe (the pair is dropped)
    chosen_unsafe: Tensor  # ~h_w after T (always False on kept pairs)
    rejected_unsafe: Tensor  # ~h_l after T


def safedpo_pairs(better_is_safe: Tensor, worse_is_safe: Tensor) -> SafeDPOPairs:
    """T of SafeDPO (module docstring) from each pair's safety labels (B,) bool."""
    better_safe, worse_safe = better_is_safe.bool(), worse_is_safe.bool()
    swap = ~better_safe & worse_safe
    keep = better_safe | worse_safe
    chosen_safe = torch.where(swap, worse_safe, better_safe)
    rejected_safe = torch.where(swap, better_safe, worse_safe)
    return SafeDPOPairs(swap, keep, ~chosen_safe, ~rejected_safe)


def safety_margin(chosen_unsafe: Tensor, rejected_unsafe: Tensor, delta: float) -> Tensor:
    """(B,) SafeDPO's margin (~h_l - ~h_w) * Delta, subtracted from the DPO logit."""
    return (rejected_unsafe.float() - chosen_unsafe.float()) * delta


def sacpo_beta(beta: float, lam: float) -> float:
    """The safety step's KL weight beta / lambda (SACPO: pi*_{r,g} ∝ pi*_r exp(lambda g / beta))."""
    if lam <= 0:
        raise ValueError(f"SACPO's lambda must be > 0, got {lam}")
    return beta / lam
