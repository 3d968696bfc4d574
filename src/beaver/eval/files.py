"""Reading the prompts and answers an evaluation compares.

Prompts come from a JSONL file (one object per line) or a JSON list with a `prompt` field per
row, other fields (`category`, the toy world's `risky`) kept; or from a dataset spec that
`beaver.data` reads (`PKU-SafeRLHF/test`, `toyworld-prompts-eval:1.0:output/toyworld`), whose
single-turn prompts are taken once each. Answer files add the answer under `answer`, `response`
or `output`. Every malformed row is a `UserError` naming file and line. Files are read and
result tables written with `beaver.files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from beaver.errors import UserError
from beaver.files import read_json_rows

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


def load_prompt_rows(path: str | Path, max_rows: int | None = None) -> list[dict[str, Any]]:
    """Rows with a non-empty `prompt`, in file order; the first `max_rows` when set."""
    rows = read_json_rows(path)
    for number, row in enumerate(rows, start=1):
        if not _text_field(path, number, row, ("prompt",)).strip():
            raise UserError(f"{path}, row {number}: the prompt is empty")
    if not rows:
        raise UserError(f"{path} holds no prompts")
    return rows[:max_rows] if max_rows else rows


def load_prompts(source: str, max_rows: int | None = None) -> list[dict[str, Any]]:
    """Prompt rows from a JSONL/JSON file, or from a `beaver.data` dataset spec."""
    if Path(source).is_file() or Path(source).suffix in (".json", ".jsonl"):
        return load_prompt_rows(source, max_rows)
    from beaver.data import load_raw

    rows: dict[str, dict[str, Any]] = {}
    for sample in load_raw(source):
        turns = sample.prompt_turns()
        if len(turns) == 1 and turns[0].strip():  # multi-turn prompts: not for a pairwise table
            rows.setdefault(turns[0], {"prompt": turns[0], **sample.meta})
    if not rows:
        raise UserError(f"dataset {source!r} holds no single-turn prompts")
    return list(rows.values())[:max_rows] if max_rows else list(rows.values())


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
