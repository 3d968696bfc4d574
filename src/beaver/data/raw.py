"""`RawSample` (one row of any dataset, in one typed shape) and the `RawDataset` registry.

A raw dataset turns the rows of one source (a hub dataset, a local file or folder) into
`RawSample`s. Subclasses register under `NAME` and `ALIASES` when they are defined (or with
`register`); `RawDataset.load(name, path)` finds and builds one. Two styles work:

- beaver's: set `PATH` (hub name or local path), `SPLIT`, ... and write `convert(row)`; rows are
  read for you (`beaver.data.readers.read_rows`) and field helpers (`beaver.data.fields`) raise
  `BadRow` naming the field, which the loader turns into a message naming dataset, row and field.
- the reference's (safe-rlhf): override `__init__(path)`, `__len__` and `__getitem__(index)`; a
  `KeyError` raised there names the missing field the same way.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from beaver.errors import UserError


@dataclass(kw_only=True)
class RawSample:
    """One dataset row in beaver's shape. Which fields a row needs depends on the dataset kind.

    Turns alternate user / assistant and start with the user.
    """

    input: str | list[str] | None = None
    """The prompt: one user message, or a conversation so far (odd number of turns, ending with
    the user)."""
    answer: str | None = None
    """An assistant answer to `input`."""
    other_answer: str | None = None
    """A second answer to `input` (preference pairs)."""
    dialogue: list[str] | None = None
    """A whole conversation, ending with an assistant turn (supervised data without `input`)."""
    better: bool | None = None
    """`answer` is more helpful than `other_answer`."""
    safer: bool | None = None
    """`answer` is safer than `other_answer`."""
    is_safe: bool | None = None
    """`answer` is safe."""
    is_other_safe: bool | None = None
    """`other_answer` is safe."""
    category: list[str] | None = None
    """Harm categories of `answer` (PKU-SafeRLHF v1.0), empty when harmless."""
    other_category: list[str] | None = None
    """Harm categories of `other_answer`."""
    severity: int | None = None
    """Harm severity level of `answer` (PKU-SafeRLHF v1.0: 0 none, 1 minor, 2 moderate, 3 severe)."""
    other_severity: int | None = None
    """Harm severity level of `other_answer`."""
    system: str | None = None
    """A system prompt (rendered by chat templates; the reference template has no slot for it)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Anything else the row carries (e.g. the toy world's `risky`, `topic`, `category`)."""
    dataset: str | None = field(default=None, compare=False, repr=False)
    """The dataset name it came from (set by the loader, for messages)."""
    row: int | None = field(default=None, compare=False, repr=False)
    """Its 0-based row index in that dataset (set by the loader; messages count from 1)."""

    def where(self) -> str:
        """'dataset X, row N' for messages (N counted from 1, as lines are)."""
        return (
            f"dataset {self.dataset or '?'!r}, row {self.row + 1 if self.row is not None else '?'}"
        )

    def conversation(self) -> list[str]:
        """The turns of a supervised sample: `dialogue`, or `input` turns followed by `answer`."""
        if self.dialogue is not None:
            return list(self.dialogue)
        turns = [self.input] if isinstance(self.input, str) else list(self.input or [])
        return [*turns, self.answer or ""]

    def prompt_turns(self) -> list[str]:
        """`input` as a list of turns (odd length, ending with the user)."""
        return [self.input] if isinstance(self.input, str) else list(self.input or [])


class BadRow(UserError):
    """A row with a missing field or a value of the wrong type; the loader adds where it is."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"field `{field_name}` {problem}")
        self.field = field_name
        self.problem = problem


_STR_FIELDS = ("answer", "other_answer", "system")
_BOOL_FIELDS = ("better", "safer", "is_safe", "is_other_safe")
_INT_FIELDS = ("severity", "other_severity")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def validate_sample(sample: Any) -> RawSample:
    """Check the types of a converted sample; raises `BadRow` naming the RawSample field."""
    if not isinstance(sample, RawSample):
        raise BadRow("<row>", f"converted to {type(sample).__name__}, expected a RawSample")
    if (
        sample.input is not None
        and not isinstance(sample.input, str)
        and (not _is_str_list(sample.input) or not sample.input)
    ):
        raise BadRow(
            "input", f"must be a string or a non-empty list of strings, got {_show(sample.input)}"
        )
    if sample.dialogue is not None and (not _is_str_list(sample.dialogue) or not sample.dialogue):
        raise BadRow(
            "dialogue", f"must be a non-empty list of strings, got {_show(sample.dialogue)}"
        )
    for name in _STR_FIELDS:
        value = getattr(sample, name)
        if value is not None and not isinstance(value, str):
            raise BadRow(name, f"must be a string, got {_show(value)}")
    for name in _BOOL_FIELDS:
        value = getattr(sample, name)
        if value is not None and not isinstance(value, bool):
            raise BadRow(name, f"must be true or false, got {_show(value)}")
    for name in _INT_FIELDS:
        value = getattr(sample, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRow(name, f"must be an integer, got {_show(value)}")
    for name in ("category", "other_category"):
        value = getattr(sample, name)
        if value is not None and not _is_str_list(value):
            raise BadRow(name, f"must be a list of strings, got {_show(value)}")
    if not isinstance(sample.meta, dict):
        raise BadRow("meta", f"must be a dict, got {_show(sample.meta)}")
    return sample


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[RawDataset]] = {}
"""Lower-cased name or alias -> class."""
_LOAD_FAILURES: list[str] = []
"""Entry points that failed to load (named in 'unknown dataset' messages)."""


def _key(name: str) -> str:
    return name.strip().lower()


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


D = TypeVar("D", bound="type[RawDataset]")


def register(cls: D, *, name: str | None = None, aliases: Sequence[str] = ()) -> D:
    """Register `cls` under `name` (default `cls.NAME`) and `aliases` (default `cls.ALIASES`).

    Usable as a decorator. A name taken by another class is refused; re-registering the same
    class (same module and qualified name, e.g. a module imported twice) replaces it.
    """
    main = name or cls.__dict__.get("NAME")
    if not main:
        raise TypeError(f"{_origin(cls)} has no NAME to register under")
    names = [main, *(aliases or cls.__dict__.get("ALIASES", ()))]
    for n in names:
        taken = _REGISTRY.get(_key(n))
        if taken is not None and _origin(taken) != _origin(cls):
            raise UserError(
                f"Dataset name {n!r} of {_origin(cls)} is already registered by "
                f"{_origin(taken)}; choose another NAME or alias."
            )
    for n in names:
        _REGISTRY[_key(n)] = cls
    return cls


def dataset_names() -> list[str]:
    """Every registered main name (aliases left out), sorted."""
    _ensure_builtins()
    return sorted({c.NAME for c in _REGISTRY.values()}, key=str.lower)


def get_dataset_class(name: str) -> type[RawDataset]:
    """The class registered as `name` (case-insensitive); unknown names get close suggestions."""
    _ensure_builtins()
    cls = _REGISTRY.get(_key(name))
    if cls is not None:
        return cls
    close = difflib.get_close_matches(_key(name), list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(_REGISTRY[c].NAME) for c in close)}?" if close else ""
    failed = (
        f" (plugins that failed to load: {'; '.join(_LOAD_FAILURES)})" if _LOAD_FAILURES else ""
    )
    raise UserError(
        f"Unknown dataset {name!r}.{hint} Known datasets: {', '.join(dataset_names())}. A custom "
        f"dataset registers when its module is named in `data.imports`{failed}."
    )


def _ensure_builtins() -> None:
    from beaver.data import plugins, sources  # noqa: F401  (registers the built-in datasets)

    plugins.load_entry_points()


class RawDataset:
    """Base of every raw dataset: rows of one source converted to `RawSample`s.

    Class attributes describe where the data lives; subclasses with a `NAME` register
    themselves when defined.
    """

    NAME: ClassVar[str]
    """The name used in specs (`NAME[:PROPORTION[:PATH]]`)."""
    ALIASES: ClassVar[tuple[str, ...]] = ()
    """Other names for the same dataset (e.g. the reference's names)."""
    PATH: ClassVar[str | None] = None
    """Default source when the spec gives no path: a hub name or a local path."""
    SPLIT: ClassVar[str] = "train"
    """Split to read from a hub dataset or a folder cloned from the hub."""
    DATA_DIR: ClassVar[str | None] = None
    """Sub-folder of the hub dataset (e.g. hh-rlhf's `harmless-base`)."""
    CONFIG: ClassVar[str | None] = None
    """Hub configuration name, if the dataset has several."""
    REVISION: ClassVar[str | None] = None
    """Hub revision (tag, branch or commit) to pin, for datasets re-released under one name."""
    FILE: ClassVar[str | None] = None
    """File to read when the path is a folder (else the folder is read as a hub clone)."""
    HINT: ClassVar[str] = ""
    """Added to the 'not found' message (e.g. how to create or download the data)."""

    def __init__(self, path: str | None = None) -> None:
        from beaver.data.readers import read_rows

        source = path or self.PATH
        if not source:
            raise UserError(
                f"Dataset {self.NAME!r} needs a path: `{self.NAME}:1.0:/path/to/data`."
                + (f" {self.HINT}" if self.HINT else "")
            )
        self.path: str = source
        self.rows: Sequence[Mapping[str, Any]] = read_rows(
            source,
            what=self.NAME,
            split=self.SPLIT,
            data_dir=self.DATA_DIR,
            config=self.CONFIG,
            revision=self.REVISION,
            file=self.FILE,
            hint=self.HINT,
        )

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        """Turn one row into a RawSample; raise `BadRow` (or use `beaver.data.fields`) on bad data."""
        raise NotImplementedError(f"{_origin(type(self))} must implement convert(row)")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> RawSample:
        return self.convert(self.rows[index])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "NAME" in cls.__dict__ and not inspect.isabstract(cls):
            register(cls)

    @classmethod
    def load(cls, name: str, path: str | None = None, **options: Any) -> RawDataset:
        """Build the dataset registered as `name`, reading `path` (or its default source)."""
        target = get_dataset_class(name)
        accepted = inspect.signature(target.__init__).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted}
        return target(path, **kwargs)
