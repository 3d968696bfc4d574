"""The base of the four dataset kinds: tokenised items and their statistics."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from beaver.data.loading import DataWarning, OnBadRow, bad_row_message
from beaver.data.raw import BadRow, RawSample
from beaver.data.templates import Resolved, eos_token_id, pad_token_id, resolve_template
from beaver.errors import UserError

IGNORE_INDEX = -100
"""Label of tokens that are not trained (prompt, user turns, padding)."""


@dataclass
class DataStats:
    """What happened to the data on its way to the model; stages report it at start."""

    num_raw: int = 0
    """Raw samples after proportions and mixing (what tokenisation started from)."""
    num_samples: int = 0
    """Samples (pairs, prompts) in the dataset."""
    num_rows: int = 0
    """Rows read from the sources, before proportions."""
    truncated: int = 0
    """Samples (pairs: either side) longer than `max_length`, cut at the end and kept."""
    truncated_eos: int = 0
    """Preference pairs whose EOS was cut off: their score is read at a non-EOS token."""
    dropped_no_target: int = 0
    """Supervised samples with no trained token left (after truncation), dropped."""
    dropped_too_long: int = 0
    """Prompts longer than `max_length`, dropped (prompt-only)."""
    skipped_bad_rows: int = 0
    """Rows skipped under `on_bad_row: skip` (missing field, wrong type, contradictory labels)."""
    skipped_identical_pairs: int = 0
    """Pairs whose two sequences tokenise identically, skipped (they carry no preference)."""
    duplicate_prompts: int = 0
    """Repeated prompts removed (prompt-only)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        """One line: the sizes, then every non-zero count."""
        extra = [
            f"{k.replace('_', ' ')} {v}"
            for k, v in asdict(self).items()
            if v and k not in ("num_raw", "num_samples", "num_rows")
        ]
        return f"{self.num_samples} samples from {self.num_raw} raw ({self.num_rows} rows read)" + (
            f"; {', '.join(extra)}" if extra else ""
        )


class TokenizedDataset(Dataset[dict[str, Any]]):
    """Tokenised samples of one kind; `collate` builds batches (`DataLoader(collate_fn=...)`).

    Subclasses define `check` (raw fields the kind needs; raises `BadRow`), `encode` (one raw
    sample -> one item, or None to drop it, counting why in `self.stats`) and `collate`.
    """

    kind: ClassVar[str]
    dedupe: ClassVar[bool] = False
    """Drop repeated prompts while loading (prompt-only)."""

    def __init__(
        self,
        samples: Sequence[RawSample],
        tokenizer: Any,
        *,
        max_length: int = 512,
        template: str = "auto",
        on_bad_row: OnBadRow = "error",
        stats: DataStats | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.template: Resolved = resolve_template(tokenizer, template)
        self.eos_token_id = eos_token_id(tokenizer)
        self.pad_token_id = pad_token_id(tokenizer)
        self.stats = stats if stats is not None else DataStats()
        self.stats.num_raw = len(samples)
        self._skipped_here = 0
        self.items: list[dict[str, Any]] = []
        self.samples: list[RawSample] = []
        """The raw sample behind each item (for inspection and evaluation outputs)."""
        self.lengths: list[int] = []
        """Token length of every sequence tokenised, before truncation (for length statistics)."""
        for sample in samples:
            try:
                self.check(sample)
                item = self.encode(sample)
            except BadRow as err:
                message = bad_row_message(sample.dataset or "?", None, sample.row, err)
                if on_bad_row == "error":
                    raise UserError(message) from None
                self.stats.skipped_bad_rows += 1
                self._skipped_here += 1
                continue
            if item is not None:
                self.items.append(item)
                self.samples.append(sample)
        self.stats.num_samples = len(self.items)
        self._warn()

    @classmethod
    def check(cls, sample: RawSample) -> None:
        """Raise `BadRow` when `sample` lacks what this kind needs."""

    def encode(self, sample: RawSample) -> dict[str, Any] | None:
        raise NotImplementedError

    def collate(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def highlight(self, index: int) -> list[tuple[str, list[int], list[bool]]]:
        """For inspection: (label, token ids, trained/response flags) per sequence of item `index`."""
        raise NotImplementedError

    def truncate(
        self, ids: list[int], flags: list[bool], record: bool = True
    ) -> tuple[list[int], list[bool], bool]:
        """Cut to `max_length` (`record`: note the full length); returns whether it cut."""
        if record:
            self.lengths.append(len(ids))
        if len(ids) <= self.max_length:
            return ids, flags, False
        return ids[: self.max_length], flags[: self.max_length], True

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def _warn(self) -> None:
        s = self.stats
        notes = []
        if s.truncated:
            notes.append(f"{s.truncated} truncated to max_length={self.max_length}")
        if s.truncated_eos:
            notes.append(
                f"{s.truncated_eos} pairs lost their EOS to truncation (their score is "
                f"read at a non-EOS token; raise max_length)"
            )
        if s.dropped_no_target:
            notes.append(f"{s.dropped_no_target} dropped with no trained token left")
        if s.dropped_too_long:
            notes.append(f"{s.dropped_too_long} prompts longer than max_length dropped")
        if s.skipped_identical_pairs:
            notes.append(f"{s.skipped_identical_pairs} pairs with identical answers skipped")
        if self._skipped_here:  # rows skipped while loading were reported there
            notes.append(f"{self._skipped_here} bad rows skipped")
        if notes:
            # (the counts of `s.summary()` are printed by the stage: not repeated here)
            warnings.warn(f"{self.kind} data: {'; '.join(notes)}", DataWarning, stacklevel=3)


def as_tensor(ids: list[int]) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long)
