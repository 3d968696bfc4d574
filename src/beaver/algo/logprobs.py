"""Token log-probabilities and entropies from logits, always in fp32.

fp16/bf16 log-softmax over a large vocabulary loses precision and can give NaN (ALGORITHMS.md,
pitfalls), so logits are cast to fp32 first. To avoid holding a second full (B, L, V) fp32 copy
next to half-precision logits, low-precision inputs are processed one sequence at a time: the
extra memory is one (L, V) fp32 row. fp32 inputs use `gather - logsumexp` directly, which never
materialises the full log-softmax.

Alignment: log-probs of token t+1 come from the logits at t. `logprobs_from_logits` does no
shifting; `shifted_logprobs` does it for a whole sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FULL_PRECISION = (torch.float32, torch.float64)


def _label_logprobs_fp32(logits: Tensor, labels: Tensor) -> Tensor:
    """(..., L) log p(label) for fp32 logits (..., L, V)."""
    picked = logits.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)  # (..., L)
    return picked - torch.logsumexp(logits, dim=-1)


def logprobs_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """(B, L) fp32 log-probabilities of `labels` (B, L) under `logits` (B, L, V).

    No shift is applied: row b, column t scores labels[b, t] with logits[b, t].
    """
    labels = labels.long()
    if logits.dtype in _FULL_PRECISION:
        return _label_logprobs_fp32(logits.float(), labels)
    # one sequence at a time: at most one (L, V) fp32 copy alive
    rows = [_label_logprobs_fp32(row.float(), lab) for row, lab in zip(logits, labels, strict=True)]
    return torch.stack(rows, dim=0)


def shifted_logprobs(logits: Tensor, input_ids: Tensor) -> Tensor:
    """(B, L - 1) log p(input_ids[:, t+1] | prefix) from causal-LM `logits` (B, L, V)."""
    return logprobs_from_logits(logits[:, :-1], input_ids[:, 1:])


def _entropy_fp32(logits: Tensor) -> Tensor:
    """(..., L) entropy of softmax(logits) for fp32 logits: logsumexp(z) - sum(p * z)."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """(B, L) fp32 entropy (nats) of the token distribution at each position of `logits` (B, L, V)."""
    if logits.dtype in _FULL_PRECISION:
        return _entropy_fp32(logits.float())
    return torch.stack([_entropy_fp32(row.float()) for row in logits], dim=0)
