"""Data faults: rows counted from 1 (as lines are), a line cut short or not UTF-8 is a bad row
that `on_bad_row: skip` skips, an empty answer is a bad row, and data warnings print once, as
one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from beaver.config import DataCfg
from beaver.data import DataWarning, load_raw, make_datasets
from beaver.errors import UserError
from childenv import child_env

GOOD = {"prompt": "tell me about the garden", "completion": "the garden grows"}
TESTS = Path(__file__).parents[1]


def _write(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(lines))
    return f"jsonl:1:{path}"


def _line(row: dict[str, object]) -> bytes:
    return (json.dumps(row) + "\n").encode()


def test_rows_are_counted_from_one_like_lines(tmp_path: Path) -> None:
    spec = _write(tmp_path / "d.jsonl", [_line(GOOD), _line({"prompt": "no completion"})])
    with pytest.raises(UserError, match=r"row 2: field `completion` is missing"):
        load_raw(spec)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (b'{"prompt": "tell me", "compl', "line 3 is not valid JSON"),  # a kill mid-write
        (b'{"prompt": "caf\xe9", "completion": "x"}\n', "line 3 is not valid UTF-8"),
    ],
)
def test_a_damaged_line_is_a_bad_row(tmp_path: Path, damage: bytes, reason: str) -> None:
    spec = _write(tmp_path / "d.jsonl", [_line(GOOD), _line(GOOD), damage])
    with pytest.raises(UserError, match=f"row 3: {reason}.*on_bad_row: skip"):
        load_raw(spec)
    with pytest.warns(DataWarning, match=f"skipped 1 bad row.*row 3: {reason}") as seen:
        assert len(load_raw(spec, on_bad_row="skip")) == 2
    assert "Fix the row, or set" not in str(seen[0].message)  # skip is already set


def test_invalid_utf8_in_a_json_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(b'[\n{"prompt": "a", "completion": "b"},\n{"prompt": "caf\xe9"}\n]\n')
    with pytest.raises(UserError, match=r"d.json line 3 is not valid UTF-8"):
        load_raw(f"json:1:{path}")


def test_an_empty_answer_is_a_bad_row(tmp_path: Path, tok_chat: object) -> None:
    spec = _write(tmp_path / "d.jsonl", [_line(GOOD), _line({**GOOD, "completion": "  "})])
    with pytest.raises(UserError, match=r"row 2: field `answer` is empty"):
        make_datasets("supervised", DataCfg(train=[spec]), tok_chat)
    with pytest.warns(DataWarning, match="skipped 1 bad row.*row 2: field `answer` is empty"):
        train, _ = make_datasets("supervised", DataCfg(train=[spec], on_bad_row="skip"), tok_chat)
    assert len(train) == 1


@pytest.fixture
def tok_chat() -> object:
    sys.path.insert(0, str(TESTS / "data"))
    from datahelpers import CHAT_TEMPLATE, make_tokenizer

    return make_tokenizer(CHAT_TEMPLATE)


def test_data_warnings_print_once_as_one_line(tmp_path: Path) -> None:
    spec = _write(tmp_path / "d.jsonl", [_line(GOOD), _line({"prompt": "x"}), _line(GOOD)])
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS / "data")!r})
        from datahelpers import CHAT_TEMPLATE, make_tokenizer
        from beaver.config import DataCfg
        from beaver.console import plain_warnings
        from beaver.data import make_datasets
        plain_warnings()
        cfg = DataCfg(train=[{spec!r}], on_bad_row="skip", max_length=9)
        train, _ = make_datasets("supervised", cfg, make_tokenizer(CHAT_TEMPLATE))
        print(train.stats.summary())
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and all(x.startswith("warning: ") for x in lines), lines
    assert "skipped 1 bad row(s) of 3" in lines[0] and "truncated" in lines[1]
    assert done.stdout.strip() not in done.stderr  # the counts the stage prints: not repeated
