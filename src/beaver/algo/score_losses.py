"""Losses of the score models: reward model (preference pairs) and cost model (safety pairs).

Formulas as in ALGORITHMS.md / the Safe RLHF paper. All use `F.logsigmoid` for stability.

Deviations / choices:
- The reward regulariser is written reg * mean(r_w^2 + r_l^2) / 2, i.e. the mean of the squared
  scores over both answers, identical to the reference's `stack([r_l, r_w]).square().mean()`.
  The cost regulariser reg * mean(c^2) is the same average over both answers.
- Cost sign accuracy counts an answer as predicted unsafe when c > 0 (a cost of exactly 0 is
  "safe", matching how arena and eval count safe rates); elsewhere it equals 1[sign(c) == y].
- `cost_loss` rejects, with a ValueError naming the rows, a pair whose "safer" answer is unsafe
  while the other is safe: such a pair is mislabelled and would train the sign terms backwards.
- The token-wise reward loss needs right-padded (or unpadded) pairs, so that both sequences
  start at column 0 and the first differing column is where the answers diverge.
- [beaver] `category_cost_loss`: the per-category heads of a multi-head cost model, one per harm
  category, trained from each answer's category labels (PKU-SafeRLHF v1.0's and the toy world's
  `response_*_harm_category`). Per head h, with y_h = +1 when the answer is flagged for h:
      L_h = mean over the 2B answers of -log sig(y_h c_h)
          + (1/B) sum over the pairs whose two labels for h differ of -log sig(c_h(flagged) -
            c_h(unflagged)).
  Why this form: the pair's `safer` order says which answer is worse overall, not in which
  category, so the only evidence per category is its own labels. The sign term puts each head's
  0 at that category's boundary, as the overall cost's sign term does, so a constraint on one
  head keeps the meaning "cost > 0 means harmful in this category" (and its unsafe share can be
  calibrated as today's). The ranking term orders the two answers on head h only where their
  labels for h differ (the flagged one must cost more); when both or neither are flagged the
  labels do not order them, so no term is invented. It is summed over those pairs and divided
  by B, not by their count, so each pair weighs the same whatever the batch holds (a batch with
  no such pair adds nothing, without a division by zero) and rare categories are not blown up
  by the one pair that happens to carry them. The heads' losses are averaged, and
  reg * mean(c^2) keeps the heads' scores near 0 as for the overall cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from beaver.algo.masks import gather_end_scores, masked_mean
from beaver.algo.types import CategoryLossOut, CostLossOut, RewardLossOut


def reward_loss_sequence(better_end: Tensor, worse_end: Tensor, reg: float = 0.0) -> RewardLossOut:
    """Sequence-wise Bradley-Terry loss on end scores (B,) of the better and worse answers.

    L = -mean log sigmoid(r_w - r_l) + reg * mean(r_w^2 + r_l^2) / 2.
    """
    loss = -F.logsigmoid(better_end - worse_end).mean()
    if reg > 0.0:
        loss = loss + reg * (better_end.square() + worse_end.square()).mean() / 2
    accuracy = (better_end > worse_end).float().mean().detach()
    return RewardLossOut(loss=loss, accuracy=accuracy)


def divergence_span(
    better_input_ids: Tensor,
    worse_input_ids: Tensor,
    better_attention_mask: Tensor,
    worse_attention_mask: Tensor,
) -> Tensor:
    """(B, L) long mask of the span from the first differing column to the later of the two ends.

    Inputs are (B, L), right-padded to one length. A column differs when the ids differ or only one
    of the two is a real token (so pad == eos and a pair where one answer extends the other still
    diverge where the shorter one ends). Raises ValueError naming the rows that are identical.
    """
    b_mask = better_attention_mask != 0
    w_mask = worse_attention_mask != 0
    for name, m in (("better", b_mask), ("worse", w_mask)):
        if bool((m[:, 1:] & ~m[:, :-1]).any()):
            raise ValueError(f"token-wise reward loss needs right-padded inputs; {name} is not")
    differ = ((better_input_ids != worse_input_ids) | (b_mask != w_mask)) & (b_mask | w_mask)
    identical = ~differ.any(dim=-1)  # (B,)
    if bool(identical.any()):
        rows = identical.nonzero().flatten().tolist()
        raise ValueError(f"preference pair rows {rows}: better and worse sequences are identical")
    length = differ.shape[-1]
    positions = torch.arange(length, device=differ.device)  # (L,)
    start = differ.long().argmax(dim=-1)  # (B,) first True
    end = (positions * (b_mask | w_mask).long()).max(dim=-1).values  # (B,) later end
    span = (positions >= start.unsqueeze(-1)) & (positions <= end.unsqueeze(-1))
    return span.long()


def reward_loss_token(
    better_scores: Tensor,
    worse_scores: Tensor,
    better_input_ids: Tensor,
    worse_input_ids: Tensor,
    better_attention_mask: Tensor,
    worse_attention_mask: Tensor,
    reg: float = 0.0,
) -> RewardLossOut:
    """Token-wise reward loss on per-token scores (B, L) of a right-padded preference batch.

    Per pair, over the span from the first column where the two sequences differ to the later of
    their two ends (`divergence_span`): the mean over the span of -log sigmoid(s_w,t - s_l,t)
    (+ reg * mean over the span of (s_w,t^2 + s_l,t^2) / 2), then the mean over pairs. Beyond the
    shorter sequence's end its scores are read on padding, as in the reference implementation.
    Accuracy compares the end scores (last real token of each sequence).
    """
    span = divergence_span(
        better_input_ids, worse_input_ids, better_attention_mask, worse_attention_mask
    )  # (B, L)
    per_token = -F.logsigmoid(better_scores - worse_scores)  # (B, L)
    if reg > 0.0:
        per_token = per_token + reg * (better_scores.square() + worse_scores.square()) / 2
    loss = masked_mean(per_token, span)
    better_end = gather_end_scores(better_scores, better_attention_mask)
    worse_end = gather_end_scores(worse_scores, worse_attention_mask)
    accuracy = (better_end > worse_end).float().mean().detach()
    return RewardLossOut(loss=loss, accuracy=accuracy)


def cost_loss(
    safer_end: Tensor,
    unsafer_end: Tensor,
    safer_is_safe: Tensor,
    unsafer_is_safe: Tensor,
    reg: float = 0.0,
) -> CostLossOut:
    """Cost-model loss on end costs (B,) of the safer and unsafer answers with safety labels (B,).

    With y = +1 for an unsafe answer and -1 for a safe one:
    L = mean[-log sig(c_u - c_s) - log sig(y_s c_s) - log sig(y_u c_u)] + reg * mean(c^2),
    the last mean over both answers of every pair.
    """
    safer_is_safe = safer_is_safe.bool()
    unsafer_is_safe = unsafer_is_safe.bool()
    flipped = ~safer_is_safe & unsafer_is_safe
    if bool(flipped.any()):
        rows = flipped.nonzero().flatten().tolist()
        raise ValueError(
            f"safety pair rows {rows}: the 'safer' answer is labelled unsafe while the other is "
            "labelled safe; fix the labels or swap the answers"
        )
    y_s = 1.0 - 2.0 * safer_is_safe.to(safer_end.dtype)  # (B,) +1 unsafe, -1 safe
    y_u = 1.0 - 2.0 * unsafer_is_safe.to(unsafer_end.dtype)
    loss = (
        -F.logsigmoid(unsafer_end - safer_end)
        - F.logsigmoid(y_s * safer_end)
        - F.logsigmoid(y_u * unsafer_end)
    ).mean()
    if reg > 0.0:
        loss = loss + reg * (safer_end.square() + unsafer_end.square()).mean() / 2
    accuracy = (unsafer_end > safer_end).float().mean().detach()
    predicted_unsafe = torch.cat([safer_end > 0, unsafer_end > 0])  # (2B,)
    labelled_unsafe = torch.cat([~safer_is_safe, ~unsafer_is_safe])  # (2B,)
    sign_accuracy = (predicted_unsafe == labelled_unsafe).float().mean().detach()
    return CostLossOut(loss=loss, accuracy=accuracy, sign_accuracy=sign_accuracy)


def category_cost_loss(
    safer_heads: Tensor,
    unsafer_heads: Tensor,
    safer_flags: Tensor,
    unsafer_flags: Tensor,
    reg: float = 0.0,
) -> CategoryLossOut:
    """Loss of H per-category cost heads on end costs (B, H) of both answers of B pairs, with
    each answer's category labels (B, H) bool (True: flagged for that category).

    Per head h (module docstring): the sign term over all 2B answers, plus the ranking term on
    the pairs whose labels for h differ, summed and divided by B; averaged over the H heads;
    plus reg * mean(c^2) over every head and answer.
    """
    if safer_heads.shape != unsafer_heads.shape or safer_heads.shape != safer_flags.shape:
        raise ValueError(
            f"category heads and labels must share one (B, H) shape, got {tuple(safer_heads.shape)}"
            f", {tuple(unsafer_heads.shape)} and {tuple(safer_flags.shape)}"
        )
    a_flag, b_flag = safer_flags.bool(), unsafer_flags.bool()
    scores = torch.cat([safer_heads, unsafer_heads])  # (2B, H)
    flags = torch.cat([a_flag, b_flag])  # (2B, H)
    y = 2.0 * flags.to(scores.dtype) - 1.0  # +1 flagged, -1 not
    sign = -F.logsigmoid(y * scores).mean(dim=0)  # (H,)
    differ = a_flag != b_flag  # (B, H)
    # the flagged answer's score minus the other's, on the pairs where exactly one is flagged
    gap = torch.where(b_flag, unsafer_heads - safer_heads, safer_heads - unsafer_heads)
    rank = (-F.logsigmoid(gap) * differ.to(gap.dtype)).sum(dim=0) / safer_heads.shape[0]  # (H,)
    loss = (sign + rank).mean()
    if reg > 0.0:
        loss = loss + reg * scores.square().mean()
    with torch.no_grad():
        sign_accuracy = ((scores > 0) == flags).float().mean(dim=0)  # (H,)
        right = ((gap > 0) & differ).float().sum(dim=0)
        pairs = differ.float().sum(dim=0)  # (H,) pairs that order each head
    return CategoryLossOut(loss, sign_accuracy, right, pairs)
