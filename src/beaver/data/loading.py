"""Load specs into raw samples: convert and check every row, apply proportions, mix, split.

Per source (one spec), in order: read and convert each row (a bad row, or a line of the file
that cannot be read, stops with a message naming dataset, row (counted from 1) and field, or is
skipped and counted with `on_bad_row: skip`); drop duplicate
prompts (prompt-only data); hold out `eval_split` of the rows (seeded); take `proportion` of the
rest (below 1 a seeded subsample, above 1 whole copies plus a seeded remainder). Then the
sources are concatenated, and shuffled with the seed when there are several. Holding out before
repeating keeps repeated rows out of the evaluation set.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from beaver.data.raw import BadRow, RawDataset, RawSample, validate_sample
from beaver.data.readers import UnreadableRow
from beaver.data.spec import DatasetSpec, parse_specs
from beaver.errors import UserError

OnBadRow = Literal["error", "skip"]
Check = Callable[[RawSample], None]
"""Raises `BadRow` for a sample the dataset kind cannot use."""


class DataWarning(UserWarning):
    """Rows skipped, samples truncated or dropped: the data is usable but not all of it was used."""


@dataclass
class Source:
    """The samples of one spec, before proportion and split."""

    spec: DatasetSpec
    samples: list[RawSample]
    num_rows: int
    skipped_bad_rows: int = 0
    duplicate_prompts: int = 0
    path: str | None = None


@dataclass
class Mixed:
    """Mixed samples of several specs, with the evaluation share held out."""

    train: list[RawSample] = field(default_factory=list)
    eval: list[RawSample] = field(default_factory=list)
    num_rows: int = 0
    skipped_bad_rows: int = 0
    duplicate_prompts: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    """Per spec: `spec`, `path`, `rows` read, `skipped` bad rows, `train` and `eval` samples taken."""


def bad_row_message(
    name: str, path: str | None, index: int | None, err: BadRow | str, advice: bool = True
) -> str:
    """Where a bad row is (`index` is 0-based; rows are counted from 1, as lines are) and why."""
    where = f"Dataset {name!r}" + (f" ({path})" if path else "")
    tail = (
        ". Fix the row, or set `data.on_bad_row: skip` to skip bad rows (they are counted)."
        if advice
        else ""
    )
    return f"{where}, row {index + 1 if index is not None else '?'}: {err}{tail}"


class _Unreadable(Exception):
    """A line of the file that could not be read at all (its reason as the message)."""


def _as_is(row: Any) -> Any:
    return row


def _converted(ds: RawDataset) -> Iterator[tuple[int, Callable[[], Any]]]:
    """(index, thunk converting that row); iterates stored rows directly when it can (fast)."""
    rows = getattr(ds, "rows", None)
    if type(ds).__getitem__ is RawDataset.__getitem__ and rows is not None:
        for i, row in enumerate(rows):
            # a line that could not be read is handed over as is, to be reported as a bad row
            convert: Callable[[Any], Any] = _as_is if isinstance(row, UnreadableRow) else ds.convert
            yield i, partial(convert, row)
    else:  # a reference-style dataset with its own __getitem__
        for i in range(len(ds)):
            yield i, partial(ds.__getitem__, i)


def load_source(
    spec: DatasetSpec | str,
    *,
    columns: dict[str, str] | None = None,
    on_bad_row: OnBadRow = "error",
    check: Check | None = None,
    dedupe: bool = False,
) -> Source:
    """Convert and check every row of one spec's dataset (proportion is not applied here)."""
    spec = parse_specs(spec)[0]
    ds = RawDataset.load(spec.name, spec.path, columns=columns or {})
    name, path = spec.name, getattr(ds, "path", spec.path)
    samples: list[RawSample] = []
    skipped: list[BadRow | str] = []
    first = -1
    for index, thunk in _converted(ds):
        try:
            converted = thunk()
            if isinstance(converted, UnreadableRow):
                raise _Unreadable(converted.reason)
            sample = validate_sample(converted)
            if check is not None:
                check(sample)
        except _Unreadable as err:
            problem: BadRow | str = str(err)
        except BadRow as err:
            problem = err
        except KeyError as err:  # reference-style __getitem__: data['missing']
            problem = f"field `{err.args[0]}` is missing"
        else:
            sample.dataset, sample.row = name, index
            samples.append(sample)
            continue
        if on_bad_row == "error":
            raise UserError(bad_row_message(name, path, index, problem))
        first = index if not skipped else first
        skipped.append(problem)
    if skipped:
        warnings.warn(
            f"Dataset {name!r}: skipped {len(skipped)} bad row(s) of {len(ds)}; the first: "
            + bad_row_message(name, path, first, skipped[0], advice=False),
            DataWarning,
            stacklevel=2,
        )
    duplicates = 0
    if dedupe:
        samples, duplicates = dedupe_prompts(samples)
    source = Source(spec, samples, len(ds), len(skipped), duplicates)
    source.path = path
    return source


def dedupe_prompts(samples: Sequence[RawSample]) -> tuple[list[RawSample], int]:
    """Samples with a repeated prompt (same input and system) removed; (kept, removed count)."""
    seen: set[tuple[str | None, str]] = set()
    kept = []
    for sample in samples:
        key = (sample.system, repr(sample.input))
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept, len(samples) - len(kept)


def take_proportion(
    samples: Sequence[RawSample], proportion: float, rng: random.Random
) -> list[RawSample]:
    """`proportion` of `samples`: whole copies, then a seeded subsample (order kept) of the rest."""
    whole, frac = divmod(proportion, 1.0)
    out = list(samples) * int(whole)
    if frac > 0 and samples:
        k = max(1, round(frac * len(samples)))
        out += [samples[i] for i in sorted(rng.sample(range(len(samples)), k))]
    return out


def split_eval(
    samples: list[RawSample], share: float, rng: random.Random
) -> tuple[list[RawSample], list[RawSample]]:
    """(train, eval) with a seeded `share` held out (at least one row when there are two)."""
    if share <= 0 or len(samples) < 2:
        return samples, []
    k = min(len(samples) - 1, max(1, round(share * len(samples))))
    held = set(rng.sample(range(len(samples)), k))
    return (
        [s for i, s in enumerate(samples) if i not in held],
        [s for i, s in enumerate(samples) if i in held],
    )


def mix(
    specs: Sequence[DatasetSpec | str],
    *,
    seed: int = 42,
    columns: dict[str, str] | None = None,
    on_bad_row: OnBadRow = "error",
    check: Check | None = None,
    eval_split: float = 0.0,
    dedupe: bool = False,
) -> Mixed:
    """Load every spec and mix them (see the module docstring)."""
    mixed = Mixed()
    parsed = parse_specs(list(specs))
    for i, spec in enumerate(parsed):
        source = load_source(
            spec, columns=columns, on_bad_row=on_bad_row, check=check, dedupe=dedupe
        )
        rng = random.Random(f"{seed}:{i}:{spec.name}")
        train, held = split_eval(source.samples, eval_split, rng)
        train = take_proportion(train, spec.proportion, rng)
        held = take_proportion(held, min(spec.proportion, 1.0), rng)
        mixed.train += train
        mixed.eval += held
        mixed.sources.append(
            {
                "spec": str(spec),
                "path": source.path,
                "rows": source.num_rows,
                "skipped": source.skipped_bad_rows,
                "train": len(train),
                "eval": len(held),
            }
        )
        mixed.num_rows += source.num_rows
        mixed.skipped_bad_rows += source.skipped_bad_rows
        mixed.duplicate_prompts += source.duplicate_prompts
    if len(parsed) > 1:
        random.Random(f"{seed}:mix").shuffle(mixed.train)
    return mixed


def load_raw(
    specs: str | DatasetSpec | Sequence[str | DatasetSpec],
    *,
    seed: int = 42,
    columns: dict[str, str] | None = None,
    on_bad_row: OnBadRow = "error",
    imports: Sequence[str] = (),
) -> list[RawSample]:
    """The mixed raw samples of one spec or several (no kind checks, no evaluation split)."""
    from beaver.data.plugins import import_modules

    import_modules(imports)
    items = [specs] if isinstance(specs, str | DatasetSpec) else list(specs)
    return mix(items, seed=seed, columns=columns, on_bad_row=on_bad_row).train
