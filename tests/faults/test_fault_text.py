"""Text from data rows, paths and names is printed verbatim, never read as Rich markup (where
`[/INST]` raised MarkupError, `[draft]` vanished and `:smile:` became an emoji)."""

from __future__ import annotations

import json
from pathlib import Path

from faulthelpers import beaver
from judge_fake import FakeJudge

MARKUP = "[/INST] a [draft] b :smile:"


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_data_rows_and_paths_with_markup_are_shown_verbatim(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "[/data]" / "rows.jsonl", [{"prompt": MARKUP, "completion": "ok"}])
    out = beaver("data", "inspect", f"jsonl:1:{data}", code=0, env={"COLUMNS": "300"})
    assert MARKUP in out.output
    assert "[/data]" in out.output


def test_a_bad_row_quoting_markup_is_printed_verbatim(tmp_path: Path) -> None:
    row = {"input": "hi", "answer": "a", "other_answer": "b", "better": MARKUP}
    data = _jsonl(tmp_path / "rows.jsonl", [row])
    out = beaver("data", "inspect", f"jsonl:1:{data}")
    assert MARKUP in out.output


def test_judge_tables_print_names_verbatim(tmp_path: Path) -> None:
    judge = FakeJudge()
    try:
        red = _jsonl(tmp_path / "red.jsonl", [{"prompt": "q", "answer": "here is how"}])
        blue = _jsonl(tmp_path / "blue.jsonl", [{"prompt": "q", "answer": "I cannot"}])
        out = beaver(
            "eval", "gpt4", f"red_answers={red}", f"blue_answers={blue}", "red_name='[/INST]'",
            "blue_name=':smile:'", f"judge.base_url={judge.url}", f"output_dir={tmp_path / 'o'}",
            code=0, env={"OPENAI_API_KEY": "k", "COLUMNS": "200"},
        )  # fmt: skip
    finally:
        judge.close()
    assert ":smile: vs [/INST]" in out.output
