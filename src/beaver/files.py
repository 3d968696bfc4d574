"""Local files: telling a path from a hub name, and beaver's JSON, JSONL and CSV in one place.

- `looks_local`: a model, tokenizer or dataset source that is a path rather than a hub name.
- Reading: `read_json` (one document), `read_json_rows` (the objects of a JSONL file or of a
  JSON list: prompt and answer files). Every malformed file is a `UserError` naming the file and
  line. (Dataset files have their own reader, `beaver.data.readers`, which turns a damaged line
  into a bad row instead.)
- Writing: `write_json`, `write_jsonl`, `write_csv` create parent folders and write strict JSON
  (NaN and inf become null), UTF-8.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from beaver.errors import UserError

FILE_FORMATS = ("json", "jsonl", "csv", "parquet")


def file_format(path: Path) -> str | None:
    """`json`, `jsonl`, `csv` or `parquet` from the file name (`.gz` stripped), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    return {"ndjson": "jsonl"}.get(ext, ext) if ext in (*FILE_FORMATS, "ndjson") else None


def looks_local(name: str) -> bool:
    """A path rather than a hub name (`org/name` has one slash and no leading dot, tilde or
    slash): it starts like a path, has two slashes or a backslash, names a data file, or
    exists on disk."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or file_format(Path(name)) is not None
        or Path(name).expanduser().exists()
    )


def parse_json(text: str, where: str) -> Any:
    """One JSON document; `where` names it in the error (`data/x.json`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None


def parse_jsonl(text: str, where: str) -> list[Any]:
    """One JSON value per non-blank line."""
    values = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(
                f"{where} line {lineno} is not valid JSON ({err.msg}, column {err.colno})"
            ) from None
    return values


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None


def read_json(path: str | Path) -> Any:
    """The JSON document in `path`."""
    return parse_json(_read_text(Path(path)), str(path))


def read_json_rows(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file, or of a JSON list (a file whose text starts with `[`)."""
    p = Path(path)
    text = _read_text(p)
    rows = parse_json(text, str(p)) if text.lstrip().startswith("[") else parse_jsonl(text, str(p))
    if not isinstance(rows, list):
        raise UserError(f"{p} must hold a JSON list of objects or JSON lines")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise UserError(f"{p}, row {number}: expected an object, got {type(row).__name__}")
    return rows


def clean_json(value: Any) -> Any:
    """NaN and inf become null, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON text of `value` (non-ASCII kept as is)."""
    return json.dumps(
        clean_json(value), indent=indent, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False
    )


def write_json(path: str | Path, value: Any, *, indent: int = 2, sort_keys: bool = False) -> Path:
    """`value` as an indented JSON document with a final newline."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(value, indent=indent, sort_keys=sort_keys) + "\n", encoding="utf-8")
    return p


def write_jsonl(path: str | Path, rows: Iterable[Any], *, sort_keys: bool = False) -> Path:
    """One JSON value per line (`\\n` line ends on every platform)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(dumps(row, sort_keys=sort_keys) + "\n" for row in rows)
    return p


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """A CSV with the union of the rows' keys as columns, in first-seen order."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with open(p, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return p
