"""Padding-free (packed) batches: the real tokens of a padded batch in fewer, fuller rows.

A padded (B, L) batch spends compute on its padding. Packed, each row holds several sequences
back to back, and each sequence's `position_ids` restart at 0. Passed with those position ids
and WITHOUT an attention mask (and without a cache), transformers builds the block-diagonal
causal mask from the position ids (masking_utils `find_packed_sequence_indices`), so no token
attends across a sequence boundary and every real token sees exactly what it saw padded.

Rows are bounded: first-fit-decreasing into rows no longer than `capacity` (by default twice
the padded width). One row of everything makes attention quadratic in the batch's total tokens,
and on CPU (the sdpa math kernel materialises the mask) that costs more than the padding saved.
Measured on the toy world's SFT batches (32 samples, padded width 53, 78% real tokens; one
thread, forward + backward): rows of 1x the width fill 78% (no two samples fit) and train at
1.04x padded, 2x: 83% full, 1.09x; 3x: 93% full but 1.00x (attention grows with the width);
one row of everything: 0.47x.

Varlen attention: the bound above is there because sdpa's mask makes every token of a row
attend over the whole row. For models on sdpa (transformers' default), `pack_for` switches
the attention to `beaver_varlen` (registered with transformers' `AttentionInterface`): on a
packed call it runs sdpa once per sequence, causal, on that sequence's slice of the row (the CPU
counterpart of flash-attention's varlen kernel), so attention costs sum(L_i^2), not W^2, and
the whole batch goes into ONE row with no padding at all. Every other call (generation,
padded evaluation) is passed to transformers' sdpa unchanged. Measured on the same batches
(76% real tokens, forward + backward of the SFT loss, one thread, loaded machine): rows of 2x
the width 1.09x padded, one varlen row 1.28x. Models on flash-attention get one row too (its
kernel reads the sequences from the position ids); eager attention, sliding windows and
attention soft-capping keep the bounded rows and the block-diagonal mask.

`unpack` puts outputs back into the padded (B, L) layout, zeros at the padding, so losses,
masks and advantages downstream read them exactly as before. Padding may be on either side:
a sequence's tokens are the ones its attention mask marks.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ROW_WIDTH_FACTOR = 2
"""Default packed row width in padded widths, without varlen attention (the measurement above)."""
VARLEN = "beaver_varlen"
"""The attention implementation name of `varlen_attention`."""


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of total length <= `capacity`: longest first, each
    into the first bin it fits (a new bin when none). Ties keep the input order, so the plan
    is deterministic."""
    if any(n > capacity for n in lengths):
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit rows of {capacity}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


@dataclass(frozen=True)
class Packed:
    """A packed batch. input_ids, position_ids: (R, W); `src` and `dst` index the real tokens
    in the flattened padded (B * L) and packed (R * W) layouts, in the same order."""

    input_ids: Tensor
    position_ids: Tensor
    src: Tensor
    dst: Tensor
    batch_shape: tuple[int, int]
    seq_lens: tuple[int, ...] = ()  # one row: each sequence's length, in row order

    @property
    def real_tokens(self) -> int:
        return int(self.src.numel())


def pack(
    input_ids: Tensor, attention_mask: Tensor, capacity: int | None = None, pad_value: int = 0
) -> Packed:
    """The real tokens of `input_ids` (B, L) (those where `attention_mask` is 1, padding on
    either side) packed into rows of at most `capacity` tokens (default: 2L, see above).

    The tail of a row past its last sequence is `pad_value` with positions restarting at 0: it
    comes after every real token of its row, so causal attention never lets it reach them."""
    batch, width = input_ids.shape
    cap = ROW_WIDTH_FACTOR * width if capacity is None else capacity
    lengths = attention_mask.sum(dim=1).tolist()
    rows = first_fit_decreasing(lengths, cap)
    row_width = max((sum(lengths[i] for i in row) for row in rows), default=0)
    device = input_ids.device
    position_ids = torch.zeros(len(rows), row_width, dtype=torch.long)
    src_parts, dst_parts = [], []
    real = attention_mask.bool().cpu()
    cols = torch.arange(width)
    for r, row in enumerate(rows):
        offset = 0
        for i in row:
            n = lengths[i]
            src_parts.append(i * width + cols[real[i]])
            dst_parts.append(r * row_width + offset + torch.arange(n))
            position_ids[r, offset : offset + n] = torch.arange(n)
            offset += n
        position_ids[r, offset:] = torch.arange(row_width - offset)
    src = torch.cat(src_parts) if src_parts else torch.empty(0, dtype=torch.long)
    dst = torch.cat(dst_parts) if dst_parts else torch.empty(0, dtype=torch.long)
    src, dst = src.to(device), dst.to(device)
    ids = torch.full((len(rows) * row_width,), pad_value, dtype=input_ids.dtype, device=device)
    ids[dst] = input_ids.reshape(-1)[src]
    return Packed(
        input_ids=ids.view(len(rows), row_width),
        position_ids=position_ids.to(device),
        src=src,
        dst=dst,
        batch_shape=(batch, width),
        seq_lens=tuple(lengths[i] for i in rows[0]) if len(rows) == 1 else (),
    )


def unpack(packed: Packed, output: Tensor) -> Tensor:
    """`output` (R, W, *rest) of the packed rows back in the padded layout (B, L, *rest), zeros
    at the padding; differentiable (gradients reach only the real tokens' outputs)."""
    rows, row_width = output.shape[:2]
    rest = output.shape[2:]
    flat = output.reshape(rows * row_width, *rest)[packed.dst]
    batch, width = packed.batch_shape
    out = flat.new_zeros(batch * width, *rest)
    out = out.index_copy(0, packed.src, flat)
    return out.view(batch, width, *rest)


# Set while a packed forward runs with varlen attention: its mask is not built (the attention
# reads the sequences from `cu_seq_lens_q`). A context variable, so that any other caller that
# packs rows itself still gets transformers' block-diagonal mask.
_VARLEN_CALL = contextvars.ContextVar("beaver_varlen_call", default=False)


def varlen_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: Tensor | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention function: on a packed row (`cu_seq_lens_q` given, one row) sdpa per
    sequence, causal, on its own slice; otherwise transformers' sdpa. q (1, H, N, D), k / v
    (1, H_kv, N, D) -> (1, N, H, D)."""
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    lengths = cu_seq_lens_q.diff().tolist()
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    # split, not slicing: its backward is one concatenation, not a zero-filled row per sequence
    outs = [
        nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=getattr(module, "is_causal", True)
        )
        for q, k, v in zip(
            query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2), strict=True
        )
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def _varlen_mask(*args: Any, **kwargs: Any) -> Tensor | None:
    """transformers mask function for `beaver_varlen`: sdpa's, except in a varlen packed call."""
    return None if _VARLEN_CALL.get() else sdpa_mask(*args, **kwargs)


AttentionInterface.register(VARLEN, varlen_attention)
AttentionMaskInterface.register(VARLEN, _varlen_mask)


def _model_config(model: nn.Module) -> Any:
    """The HF config of a causal LM, a score model's backbone, a peft model or an engine."""
    from beaver.models.saving import unwrap

    module = unwrap(model)
    return getattr(module, "backbone", module).config


def one_row_attention(model: nn.Module) -> str | None:
    """How `model` runs a batch packed into one row: `varlen` (sdpa, switched to
    `beaver_varlen`, which behaves as sdpa on every unpacked call), `flash` (flash-attention
    reads the sequences from the position ids), or None: bounded rows with the block-diagonal
    mask (eager attention, sliding windows, soft-capped attention scores)."""
    config = _model_config(model)
    windowed = getattr(config, "sliding_window", None) is not None and getattr(
        config, "use_sliding_window", True
    )
    capped = getattr(config, "attn_logit_softcapping", None) is not None
    impl = config._attn_implementation
    if windowed or capped:
        return None
    if impl in ("sdpa", VARLEN):
        config._attn_implementation = VARLEN
        return "varlen"
    return "flash" if impl is not None and impl.startswith("flash_attention") else None


def pack_for(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Packed:
    """`pack` in the rows `model` runs best: one row when its attention can (see above)."""
    if one_row_attention(model) is None:
        return pack(input_ids, attention_mask)
    return pack(input_ids, attention_mask, capacity=max(int(attention_mask.sum()), 1))


@contextlib.contextmanager
def packed_call(model: nn.Module, packed: Packed) -> Iterator[dict[str, Any]]:
    """The keyword arguments of a forward over `packed` (ids, position ids, and for varlen
    attention the sequence bounds), with the varlen mask skipped while it runs."""
    kwargs: dict[str, Any] = {"input_ids": packed.input_ids, "position_ids": packed.position_ids}
    # `pack_for` switched the model to varlen when it could (and then packed one row)
    varlen = bool(packed.seq_lens) and _model_config(model)._attn_implementation == VARLEN
    if varlen:
        lengths = torch.tensor((0, *packed.seq_lens), device=packed.input_ids.device)
        kwargs["cu_seq_lens_q"] = kwargs["cu_seq_lens_k"] = lengths.cumsum(0)
        kwargs["max_length_q"] = kwargs["max_length_k"] = max(packed.seq_lens)
    token = _VARLEN_CALL.set(varlen)
    try:
        yield kwargs
    finally:
        _VARLEN_CALL.reset(token)


def causal_lm_logits(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, *, padding_free: bool
) -> Tensor:
    """(B, L, V) logits of a causal LM (or DeepSpeed engine) over a padded batch, computed on
    packed rows when `padding_free` (zeros at the padding then) and padded otherwise."""
    if not padding_free:
        return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    packed = pack_for(model, input_ids, attention_mask)
    with packed_call(model, packed) as kwargs:
        logits = model(**kwargs, use_cache=False).logits
    return unpack(packed, logits)
