"""Masking helpers: masked means, positions, end-token lookup and the response mask.

Conventions (ALGORITHMS.md):
- `masked_mean(x, mask)` is the per-sequence token mean, then the mean over the batch, so long and
  short responses weigh the same and the value does not depend on how a batch is split into
  micro-batches of equal sequence counts.
- The last real token of a sequence is found from the attention mask, never from token ids:
  pad == eos is common (Llama-3, Qwen), and an id search would stop at the first padding token.
- [beaver] `position_ids = cumsum(attention_mask) - 1` clamped at 0, so left padding does not
  shift positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of `x` where `mask` is 1 (over `dim`, or over everything)."""
    xm = x * mask.to(x.dtype)
    return xm.sum() if dim is None else xm.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Masked mean of `x` (B, ...) under `mask` (same shape as x).

    dim=None: per-sequence mean over all non-batch dims, then the mean over the sequences whose
    mask is not empty (an empty sequence is left out rather than giving NaN; an all-empty batch
    gives 0). With `dim` given: the masked mean along that dim only, 0 where the mask is empty.
    For 1-D inputs (B,) the dim=None result is sum(x * mask) / sum(mask).
    """
    m = mask.to(x.dtype)
    if dim is not None:
        return (x * m).sum(dim=dim) / m.sum(dim=dim).clamp(min=1.0)
    xs = (x * m).reshape(x.shape[0], -1)  # (B, N)
    counts = m.reshape(m.shape[0], -1).sum(dim=1)  # (B,)
    per_seq = xs.sum(dim=1) / counts.clamp(min=1.0)  # (B,)
    valid = (counts > 0).to(x.dtype)  # (B,)
    return (per_seq * valid).sum() / valid.sum().clamp(min=1.0)


def position_ids_from_attention_mask(attention_mask: Tensor) -> Tensor:
    """(B, L) position ids that ignore left padding: cumsum(mask) - 1, clamped at 0."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def last_token_index(attention_mask: Tensor) -> Tensor:
    """(B,) long index of the last position whose mask is 1, for left or right padding.

    A row with an empty mask gives 0.
    """
    length = attention_mask.shape[-1]
    positions = torch.arange(length, device=attention_mask.device)  # (L,)
    return (positions * (attention_mask != 0).long()).max(dim=-1).values


def gather_end_scores(scores: Tensor, attention_mask: Tensor) -> Tensor:
    """(B,) the per-token `scores` (B, L) read at each row's last real token."""
    index = last_token_index(attention_mask).unsqueeze(-1)  # (B, 1)
    return scores.gather(dim=-1, index=index).squeeze(-1)


def _eos_ids(eos_token_id: int | Sequence[int]) -> list[int]:
    return [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(i) for i in eos_token_id]


def _is_eos(response_ids: Tensor, eos_token_id: int | Sequence[int]) -> Tensor:
    """(B, T) bool: token is (one of) the EOS id(s)."""
    ids = _eos_ids(eos_token_id)
    if len(ids) == 1:
        return response_ids == ids[0]
    return torch.isin(response_ids, torch.tensor(ids, device=response_ids.device))


def has_eos(response_ids: Tensor, eos_token_id: int | Sequence[int]) -> Tensor:
    """(B,) bool: the response (B, T) contains an EOS (else it ran to the token limit)."""
    return _is_eos(response_ids, eos_token_id).any(dim=-1)


def response_mask(
    response_ids: Tensor,
    eos_token_id: int | Sequence[int],
    pad_token_id: int | None = None,
) -> Tensor:
    """(B, T) long mask of the generated tokens that count: 1 up to and including the first EOS.

    - Tokens after the first EOS are 0 whatever they are, so pad == eos is safe.
    - A response without EOS counts all its tokens (it ran to the limit; see `has_eos`).
    - An empty response (EOS first) keeps its EOS token: it is scored, not dropped.
    - `eos_token_id` may be a list (e.g. Llama-3's `<|end_of_text|>` and `<|eot_id|>`).
    - `pad_token_id`, when given and not an EOS id, also ends the response, exclusive: a pad
      before any EOS means generation stopped for another reason and nothing after it is real.
    """
    is_eos = _is_eos(response_ids, eos_token_id).long()  # (B, T)
    # number of EOS strictly before t; the mask is 1 while it is 0
    eos_before = is_eos.cumsum(dim=-1) - is_eos
    mask = eos_before == 0
    if pad_token_id is not None and pad_token_id not in _eos_ids(eos_token_id):
        is_pad = (response_ids == pad_token_id).long()
        mask = mask & (is_pad.cumsum(dim=-1) == 0)
    return mask.long()
