"""Dataset specs: `NAME[:PROPORTION[:PATH]]`, as written in configs and on the command line.

- `alpaca` - the whole dataset from its default source;
- `alpaca:0.1` - a seeded random 10% of it; `PKU-SafeRLHF/train:2.5` - two full copies plus a
  random half;
- `toyworld-sft:1:output/toyworld` or `jsonl::data/mine.jsonl` - from a local file or a folder
  (an empty proportion means 1). The path is everything after the second colon, so it may hold
  colons itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from beaver.errors import UserError

_FORM = "NAME[:PROPORTION[:PATH]] (e.g. `alpaca`, `alpaca:0.5`, `jsonl:1.0:data/train.jsonl`)"


@dataclass(frozen=True)
class DatasetSpec:
    """One parsed spec: which dataset, how much of it, and where from."""

    name: str
    """Registered dataset name or alias."""
    proportion: float = 1.0
    """Share of the dataset to use: below 1 subsamples, above 1 repeats (seeded)."""
    path: str | None = None
    """Local file or folder (or hub name) to read instead of the dataset's default source."""

    def __str__(self) -> str:
        text = (
            self.name
            if self.proportion == 1.0 and self.path is None
            else (f"{self.name}:{self.proportion:g}")
        )
        return f"{text}:{self.path}" if self.path is not None else text


def parse_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse `NAME[:PROPORTION[:PATH]]`; a malformed spec is a `UserError` saying what is wrong."""
    if isinstance(spec, DatasetSpec):
        return spec
    if not isinstance(spec, str):
        raise UserError(f"Dataset spec {spec!r} must be a string of the form {_FORM}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise UserError(f"Dataset spec {spec!r} has no dataset name; expected {_FORM}")
    proportion_text, has_path, path = rest.partition(":")
    proportion = _proportion(spec, proportion_text.strip())
    if has_path and not path.strip():
        raise UserError(f"Dataset spec {spec!r} ends with ':' but gives no path; expected {_FORM}")
    return DatasetSpec(name, proportion, path.strip() if has_path else None)


def _proportion(spec: str, text: str) -> float:
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise UserError(
            f"Dataset spec {spec!r}: proportion {text!r} is not a number (to give "
            f"a path without a proportion write `NAME::PATH`); expected {_FORM}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(
            f"Dataset spec {spec!r}: proportion must be a positive number "
            f"(below 1 subsamples, above 1 repeats), got {text}"
        )
    return value


def parse_specs(specs: str | DatasetSpec | Sequence[str | DatasetSpec]) -> list[DatasetSpec]:
    """Parse one spec or a list of them."""
    items: list[str | DatasetSpec] = (
        [specs] if isinstance(specs, str | DatasetSpec) else list(specs)
    )
    return [parse_spec(s) for s in items]
