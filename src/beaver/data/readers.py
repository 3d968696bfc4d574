"""Read the rows of a dataset source: a local file, a local folder, or a hub dataset.

- A file is read directly by its extension: `.json` (a list of rows, `{"data": [...]}`, or JSON
  lines), `.jsonl`, `.csv`, `.parquet`, each optionally `.gz`-compressed.
- A folder is a dataset cloned from the hub (or laid out like one): `datasets.load_dataset(folder,
  data_dir=..., split=...)` reads it, honouring the `configs` of its README. When the dataset
  names a `FILE` (the toy world), that file inside the folder is read instead.
- Anything else is a hub name, loaded with `datasets.load_dataset` (pinned `revision` if any);
  offline, that fails with a message saying how to pass a local path.

A JSON-lines line that cannot be read (cut short by a kill, invalid JSON or UTF-8) becomes an
`UnreadableRow` in its place: the loader reports it as a bad row (an error naming the line, or
skipped and counted with `on_bad_row: skip`). A damaged JSON or CSV file is an error naming its
line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from beaver.errors import UserError
from beaver.files import file_format, looks_local

Rows = Sequence[Mapping[str, Any]]


class UnreadableRow:
    """Stands in for a JSON-lines line that could not be read; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"UnreadableRow({self.reason!r})"


def read_rows(
    source: str,
    *,
    what: str,
    split: str = "train",
    data_dir: str | None = None,
    config: str | None = None,
    revision: str | None = None,
    file: str | None = None,
    hint: str = "",
) -> Rows:
    """The rows of `source` (see the module docstring); `what` names the dataset in messages."""
    path = Path(source).expanduser()
    if path.is_dir() and file is not None:
        path = path / file
        if not path.is_file():
            raise UserError(f"Dataset {what!r}: {path} not found." + (f" {hint}" if hint else ""))
    if path.is_file():
        return read_file(path, what=what)
    if path.is_dir():
        return _load_hub(
            str(path), what=what, split=split, data_dir=data_dir, config=config, revision=None
        )
    if looks_local(source) or file is not None:
        raise UserError(
            f"Dataset {what!r}: path {source} not found." + (f" {hint}" if hint else "")
        )
    return _load_hub(
        source, what=what, split=split, data_dir=data_dir, config=config, revision=revision
    )


def read_file(path: Path, *, what: str, fmt: str | None = None) -> list[dict[str, Any]]:
    """Rows of one local file, by `fmt` or by its extension."""
    fmt = fmt or file_format(path)
    if fmt is None:
        raise UserError(
            f"Dataset {what!r}: cannot tell the format of {path} from its name "
            f"(expected one of .json, .jsonl, .csv, .parquet, optionally .gz)"
        )
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_table(path).to_pylist())
        except Exception as err:  # pyarrow raises several types for a broken file
            raise UserError(
                f"Dataset {what!r}: {path} is not a readable Parquet file: {err}"
            ) from None
    raw = _read_bytes(path, what)
    if fmt == "jsonl":
        return _jsonl_rows(raw)
    text = _decode(raw, path, what)
    if fmt == "csv":
        return [dict(r) for r in csv.DictReader(io.StringIO(text))]
    return _json_rows(text, raw, path, what)


def read_files(path: Path, *, what: str, fmt: str) -> list[dict[str, Any]]:
    """Rows of a file, or of every `fmt` file in a folder (sorted by name, recursively)."""
    if path.is_file():
        return read_file(path, what=what, fmt=fmt)
    if not path.is_dir():
        raise UserError(f"Dataset {what!r}: path {path} not found")
    files = sorted(p for p in path.rglob("*") if p.is_file() and file_format(p) == fmt)
    if not files:
        raise UserError(f"Dataset {what!r}: no .{fmt} files in folder {path}")
    return [row for f in files for row in read_file(f, what=what, fmt=fmt)]


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix.lower() == ".gz" else raw
    except (OSError, EOFError) as err:
        raise UserError(f"Dataset {what!r}: cannot read {path}: {err}") from None


def _decode(raw: bytes, path: Path, what: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(
            f"Dataset {what!r}: {path} line {line} is not valid UTF-8 ({err.reason})"
        ) from None


def _json_rows(text: str, raw: bytes, path: Path, what: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # JSON lines in a .json file
            return _jsonl_rows(raw)
        raise UserError(
            f"Dataset {what!r}: {path} is not valid JSON (line {err.lineno}, "
            f"column {err.colno}: {err.msg})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise UserError(
            f"Dataset {what!r}: {path} must hold a JSON list of rows "
            f'(or {{"data": [...]}}), found {type(data).__name__}'
        )
    return data


def _jsonl_rows(raw: bytes) -> list[Any]:
    """One row per non-blank line; an `UnreadableRow` for a line that does not read."""
    rows: list[Any] = []
    for lineno, data in enumerate(raw.removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as err:
            rows.append(UnreadableRow(f"line {lineno} is not valid UTF-8 ({err.reason})"))
            continue
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            rows.append(
                UnreadableRow(f"line {lineno} is not valid JSON ({err.msg}, column {err.colno})")
            )
    return rows


def _load_hub(
    source: str,
    *,
    what: str,
    split: str,
    data_dir: str | None,
    config: str | None,
    revision: str | None,
) -> Rows:
    """`datasets.load_dataset`, with failures (offline, missing split) as a clear UserError."""
    import datasets

    try:
        loaded = datasets.load_dataset(
            source, name=config, data_dir=data_dir, split=split, revision=revision
        )
    except Exception as err:  # datasets raises many types (network, missing split, bad files)
        local = Path(source).exists()
        where = f"folder {source}" if local else f"hub dataset {source!r}"
        detail = f" (data_dir={data_dir!r}, split={split!r})" if data_dir else f" (split={split!r})"
        advice = (
            ""
            if local
            else (
                f" Without hub access, download it elsewhere and pass the local clone: "
                f"`{what}:1.0:/path/to/clone`."
            )
        )
        raise UserError(
            f"Dataset {what!r}: cannot load {where}{detail}: {type(err).__name__}: {err}.{advice}"
        ) from None
    if not isinstance(loaded, datasets.Dataset):
        raise UserError(
            f"Dataset {what!r}: {source} did not load as one split (got "
            f"{type(loaded).__name__}); name a split"
        )
    return cast(Rows, loaded)
