"""Reading the prompts and answers an evaluation compares.

Prompts come from a JSONL file (one object per line) or a JSON list with a `prompt` field per
row, other fields (`category`, the toy world's `risky`) kept; or from anything else `beaver.data`
reads: a dataset spec (`PKU-SafeRLHF/test`, `toyworld-prompts-eval:1.0:output/toyworld`,
`csv::harmbench.csv`) or a CSV / Parquet file named by its path, whose single-turn prompts are
taken once each, their other columns kept. `prompt_column` names the column holding the prompt
(HarmBench's `Behavior`), `category_column` the one to report and filter by as `category`.
Answer files add the answer under `answer`, `response` or `output`. Every malformed row is a
`UserError` naming file and line. Files are read and result tables written with `beaver.files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from beaver.errors import UserError
from beaver.files import file_format, read_json_rows

ANSWER_FIELDS = ("answer", "response", "output")


def _text_field(path: str | Path, number: int, row: dict[str, Any], names: Sequence[str]) -> str:
    for name in names:
        value = row.get(name)
        if isinstance(value, str):
            return value
    raise UserError(
        f"{path}, row {number}: needs a text field {' or '.join(f'`{n}`' for n in names)} "
        f"(has {sorted(row)})"
    )


def load_prompt_rows(
    path: str | Path, max_rows: int | None = None, prompt_column: str | None = None
) -> list[dict[str, Any]]:
    """Rows with a non-empty `prompt` (read from `prompt_column` when set), in file order; the
    first `max_rows` when set."""
    rows = read_json_rows(path)
    column = prompt_column or "prompt"
    for number, row in enumerate(rows, start=1):
        row["prompt"] = _text_field(path, number, row, (column,))
        if not row["prompt"].strip():
            raise UserError(f"{path}, row {number}: the prompt is empty")
    if not rows:
        raise UserError(f"{path} holds no prompts")
    return rows[:max_rows] if max_rows else rows


def load_prompts(
    source: str,
    max_rows: int | None = None,
    prompt_column: str | None = None,
    category_column: str | None = None,
) -> list[dict[str, Any]]:
    """Prompt rows (`prompt`, `category` when `category_column` names one, the other columns)
    from a JSONL/JSON file, or from anything `beaver.data` reads (a dataset spec, a CSV or
    Parquet file)."""
    fmt = file_format(Path(source))
    if fmt in ("json", "jsonl") and (Path(source).is_file() or ":" not in source):
        rows = load_prompt_rows(source, None, prompt_column)
    else:
        spec = f"{fmt}::{source}" if fmt is not None and Path(source).is_file() else source
        rows = _dataset_prompts(spec, prompt_column)
    if category_column is not None:
        rows = [_with_category(source, n, row, category_column) for n, row in enumerate(rows, 1)]
    return rows[:max_rows] if max_rows else rows


def _dataset_prompts(spec: str, prompt_column: str | None) -> list[dict[str, Any]]:
    """The single-turn prompts of a dataset spec, once each, with their other columns."""
    from beaver.data import load_raw

    rows: dict[str, dict[str, Any]] = {}
    for sample in load_raw(spec, columns={"input": prompt_column} if prompt_column else None):
        turns = sample.prompt_turns()
        if len(turns) == 1 and turns[0].strip():  # multi-turn prompts: not for a pairwise table
            rows.setdefault(turns[0], {"prompt": turns[0], **sample.meta})
    if not rows:
        raise UserError(f"dataset {spec!r} holds no single-turn prompts")
    return list(rows.values())


def _with_category(source: str, number: int, row: dict[str, Any], column: str) -> dict[str, Any]:
    """The row with its `category_column` value as `category`."""
    value = row.get(column)
    if value is None or isinstance(value, dict | list):
        raise UserError(
            f"{source}, prompt {number}: category_column {column!r} is not a column of it "
            f"(has {sorted(row)})"
        )
    return {**row, "category": str(value)}


def world_folder(source: str) -> Path | None:
    """The folder of a toy-world prompt source (a file in it, or a spec naming it)."""
    if Path(source).is_file():
        return Path(source).parent
    from beaver.data.spec import parse_spec

    path = parse_spec(source).path
    if path is None:
        return Path("output/toyworld") if source.startswith("toyworld") else None
    return Path(path) if Path(path).is_dir() else Path(path).parent


def load_answers(path: str | Path) -> dict[str, str]:
    """prompt -> answer from an answer file (the first answer wins on duplicates)."""
    answers: dict[str, str] = {}
    for number, row in enumerate(read_json_rows(path), start=1):
        prompt = _text_field(path, number, row, ("prompt",))
        answers.setdefault(prompt, _text_field(path, number, row, ANSWER_FIELDS))
    if not answers:
        raise UserError(f"{path} holds no answers")
    return answers
