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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from beaver.algo.masks import gather_end_scores, masked_mean
from beaver.algo.types import CostLossOut, RewardLossOut


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
