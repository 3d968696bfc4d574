"""Generic local files: `json`, `jsonl`, `parquet`, `csv` (a file, or a folder of such files).

Each row is read in the first shape that fits the file's columns (taken from its first row):

| columns | becomes |
| --- | --- |
| `data.columns` mapping (RawSample field -> column) | those fields (other fields by their own name) |
| `messages` or `conversations` (+ `chosen`, `rejected`) | a dialogue; a prompt if it ends with the user (or a pair after it) |
| `chosen`, `rejected` (+ `prompt`) | a pair, `answer` = chosen; TRL strings or messages, implicit prompt, or Anthropic transcripts |
| `prompt`, `completion` | `input` + `answer` |
| `instruction`, `output` | Alpaca |
| `response_0`, `response_1` | PKU-SafeRLHF |
| RawSample field names (`input`, `answer`, ...) or just `prompt` | those fields |

Other scalar columns are kept in `RawSample.meta` (e.g. the toy world's `risky`, `category`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any

from beaver.data import fields as f
from beaver.data.conversations import (
    assistant_text,
    parse_messages,
    parse_transcript,
    split_pair,
)
from beaver.data.raw import BadRow, RawDataset, RawSample
from beaver.data.readers import read_files
from beaver.data.sources.alpaca import alpaca_sample
from beaver.data.sources.safe_rlhf import safe_rlhf_sample
from beaver.errors import UserError

_INTERNAL = {"meta", "dataset", "row"}
FIELDS = tuple(fl.name for fl in dc_fields(RawSample) if fl.name not in _INTERNAL)
_TURN_FIELDS = {"input", "dialogue"}
_BOOL_FIELDS = {"better", "safer", "is_safe", "is_other_safe"}
_INT_FIELDS = {"severity", "other_severity"}
_LIST_FIELDS = {"category", "other_category"}


class GenericDataset(RawDataset):
    """Rows of local files in one of the shapes of the module docstring."""

    FORMAT: str = "jsonl"
    USES_COLUMNS: bool = True
    """Apply `data.columns` (off for datasets whose schema is fixed, like the toy world's)."""

    def __init__(self, path: str | None = None, columns: Mapping[str, str] | None = None) -> None:
        source = path or self.PATH
        if not source:
            raise UserError(
                f"Dataset {self.NAME!r} needs a path: `{self.NAME}:1.0:/path/to/"
                f"data.{self.FORMAT}` (a file, or a folder of .{self.FORMAT} files)"
            )
        local = Path(source).expanduser()
        if local.is_dir() and self.FILE:
            local = local / self.FILE
        if not local.exists():
            raise UserError(
                f"Dataset {self.NAME!r}: path {local} not found."
                + (f" {self.HINT}" if self.HINT else "")
            )
        self.path = str(local)
        self.rows = read_files(local, what=self.NAME, fmt=self.FORMAT)
        self.columns = _check_columns(dict(columns or {})) if self.USES_COLUMNS else {}
        first = next((r for r in self.rows if isinstance(r, Mapping)), {})  # a readable row
        self.shape = detect_shape(first, self.columns)

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        if not isinstance(row, Mapping):
            raise BadRow("<row>", f"must be an object of columns, got {type(row).__name__}")
        return CONVERTERS[self.shape](self, row)


def _check_columns(columns: dict[str, str]) -> dict[str, str]:
    for key, value in columns.items():
        if key not in FIELDS:
            raise UserError(
                f"data.columns: {key!r} is not a RawSample field; use one of "
                f"{', '.join(FIELDS)} (mapped to your file's column names)"
            )
        if not isinstance(value, str) or not value:
            raise UserError(f"data.columns.{key} must name a column, got {value!r}")
    return columns


def detect_shape(first: Mapping[str, Any], columns: Mapping[str, str]) -> str:
    """Which converter fits the columns of the first row (see the module docstring)."""
    keys = set(first) if isinstance(first, Mapping) else set()
    if columns:
        return "mapped"
    if keys & {"messages", "conversations"}:
        return "messages"
    if {"chosen", "rejected"} <= keys:
        return "pair"
    if {"prompt", "completion"} <= keys:
        return "completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"response_0", "response_1"} <= keys:
        return "safe_rlhf"
    return "mapped"


def _messages(ds: GenericDataset, row: Mapping[str, Any]) -> RawSample:
    key = "messages" if "messages" in row else "conversations"
    system, turns, last = parse_messages(key, f.get(row, key))
    used = {key, "chosen", "rejected"}
    if "chosen" in row and "rejected" in row:  # a prompt conversation and two answers
        if last != "user":
            raise BadRow(key, "must end with a user message when `chosen`/`rejected` follow")
        return RawSample(
            input=turns,
            system=system,
            better=True,
            answer=assistant_text("chosen", f.get(row, "chosen")),
            other_answer=assistant_text("rejected", f.get(row, "rejected")),
            meta=f.scalar_meta(row, used),
        )
    if last == "user":  # a conversation waiting for its answer: a prompt
        return RawSample(input=turns, system=system, meta=f.scalar_meta(row, used))
    return RawSample(dialogue=turns, system=system, meta=f.scalar_meta(row, used))


def _pair(ds: GenericDataset, row: Mapping[str, Any]) -> RawSample:
    chosen, rejected = f.get(row, "chosen"), f.get(row, "rejected")
    meta = f.scalar_meta(row, {"prompt", "chosen", "rejected"})
    system: str | None = None
    if row.get("prompt") is not None:  # explicit prompt (TRL standard or conversational)
        prompt = row["prompt"]
        turns: str | list[str] = prompt
        if not isinstance(prompt, str):
            system, turns, last = parse_messages("prompt", prompt)
            if last != "user":
                raise BadRow("prompt", "must end with a user message")
        return RawSample(
            input=turns,
            system=system,
            better=True,
            meta=meta,
            answer=assistant_text("chosen", chosen),
            other_answer=assistant_text("rejected", rejected),
        )
    if isinstance(chosen, str):  # Anthropic transcripts
        a, b = parse_transcript("chosen", chosen), parse_transcript("rejected", rejected)
    else:  # TRL implicit prompt: two whole conversations
        system, a, _ = parse_messages("chosen", chosen)
        _, b, _ = parse_messages("rejected", rejected)
    turns, answer, other = split_pair("chosen", a, "rejected", b)
    return RawSample(
        input=turns, system=system, answer=answer, other_answer=other, better=True, meta=meta
    )


def _completion(ds: GenericDataset, row: Mapping[str, Any]) -> RawSample:
    prompt = f.get(row, "prompt")
    system: str | None = None
    turns: str | list[str] = prompt
    if not isinstance(prompt, str):
        system, turns, _ = parse_messages("prompt", prompt)
    return RawSample(
        input=turns,
        system=system,
        answer=assistant_text("completion", f.get(row, "completion")),
        meta=f.scalar_meta(row, {"prompt", "completion"}),
    )


def _mapped(ds: GenericDataset, row: Mapping[str, Any]) -> RawSample:
    """RawSample fields read from `data.columns` (field -> column) or their own names."""
    mapping = {name: ds.columns.get(name, name) for name in FIELDS}
    if "input" not in ds.columns and "input" not in row and "prompt" in row:
        mapping["input"] = "prompt"  # prompt-only rows ({prompt, ...metadata})
    values: dict[str, Any] = {}
    used: set[str] = set()
    for name, column in mapping.items():
        value = row.get(column)
        explicit = name in ds.columns
        if not explicit and (value is None or (name in _LIST_FIELDS and isinstance(value, str))):
            continue  # absent, or a prompt-level label such as the toy world's `category`
        values[name] = _field(name, column, row)
        used.add(column)
    if not values:
        raise BadRow(
            "input",
            f"is missing: no RawSample field among the columns {sorted(row)} "
            f"(name them with data.columns)",
        )
    return RawSample(**values, meta=f.scalar_meta(row, used))


def _field(name: str, column: str, row: Mapping[str, Any]) -> Any:
    if name in _TURN_FIELDS:
        value = f.get(row, column)
        return value if isinstance(value, str) and name == "input" else f.get_str_list(row, column)
    if name in _BOOL_FIELDS:
        return f.get_bool(row, column)
    if name in _INT_FIELDS:
        return f.get_int(row, column)
    if name in _LIST_FIELDS:
        return f.harm_categories(row, column)
    return f.get_str(row, column)


CONVERTERS = {
    "messages": _messages,
    "pair": _pair,
    "completion": _completion,
    "alpaca": lambda ds, row: alpaca_sample(row),
    "safe_rlhf": lambda ds, row: safe_rlhf_sample(row),
    "mapped": _mapped,
}


class JsonDataset(GenericDataset):
    """A `.json` file (a list of rows), or a folder of them."""

    NAME = "json"
    FORMAT = "json"


class JsonlDataset(GenericDataset):
    """A `.jsonl` file (one row per line), or a folder of them."""

    NAME = "jsonl"
    FORMAT = "jsonl"


class ParquetDataset(GenericDataset):
    """A `.parquet` file, or a folder of them (e.g. a hub clone's `data/`)."""

    NAME = "parquet"
    FORMAT = "parquet"


class CsvDataset(GenericDataset):
    """A `.csv` file with a header row, or a folder of them. Booleans as true/false or 1/0,
    lists of turns as JSON text."""

    NAME = "csv"
    FORMAT = "csv"
