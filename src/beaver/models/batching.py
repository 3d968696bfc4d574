"""Token sequences into model batches: the one padding routine, and batches of a long list.

Every batch beaver builds (dataset collators, generation prompts, score and log-prob passes) is
padded by `pad_batch`, on the right or on the left, with an attention mask from the lengths.
Downstream, padding is found from that mask, never from token ids (pad == eos is common).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

Side = Literal["left", "right"]
TokenIds = Sequence[int] | Tensor
"""One sequence: a list of token ids or a 1-D long tensor."""


def pad_batch(
    seqs: Sequence[TokenIds], pad_value: int, side: Side = "right"
) -> tuple[Tensor, Tensor]:
    """`seqs` as `(ids, mask)`, both (B, L_max) long: ids padded with `pad_value` on `side`,
    mask 1 on the real tokens."""
    rows = [torch.as_tensor(s, dtype=torch.long) for s in seqs]
    ids = pad_sequence(rows, batch_first=True, padding_value=pad_value, padding_side=side)
    ones = [torch.ones_like(r) for r in rows]
    mask = pad_sequence(ones, batch_first=True, padding_value=0, padding_side=side)
    return ids, mask


def padded_batches(
    seqs: Sequence[TokenIds], batch_size: int, pad_value: int, side: Side = "right"
) -> Iterator[tuple[Tensor, Tensor]]:
    """`pad_batch` of each run of `batch_size` sequences, in order (each as long as its own
    longest sequence)."""
    for start in range(0, len(seqs), batch_size):
        yield pad_batch(seqs[start : start + batch_size], pad_value, side)
