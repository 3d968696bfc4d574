"""Bad rows: a clear error naming dataset, row and field, or skipped and counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datahelpers import pku_row, write_json, write_jsonl

from beaver.config import DataCfg
from beaver.data import DataWarning, load_raw, make_datasets
from beaver.errors import UserError


def _error(spec: str, kind: str | None = None, tokenizer: Any = None) -> str:
    with pytest.raises(UserError) as info:
        if kind is None:
            load_raw(spec)
        else:
            make_datasets(kind, DataCfg(train=[spec]), tokenizer)
    return str(info.value)


# (dataset name, file name, rows with the second bad, field the message must name)
CASES = [
    (
        "alpaca",
        "a.json",
        [{"instruction": "hi", "output": "hello"}, {"instruction": "hi"}],
        "output",
        "is missing",
    ),
    (
        "alpaca",
        "a.json",
        [{"instruction": "hi", "output": "x"}, {"instruction": 3, "output": "x"}],
        "instruction",
        "must be a string",
    ),
    (
        "firefly",
        "f.jsonl",
        [{"input": "a", "target": "b"}, {"input": "a", "target": None}],
        "target",
        "is null",
    ),
    (
        "PKU-SafeRLHF/train",
        "p.jsonl",
        [pku_row(), {**pku_row(), "better_response_id": 2}],
        "better_response_id",
        "must be one of [0, 1]",
    ),
    (
        "PKU-SafeRLHF/train",
        "p.jsonl",
        [pku_row(), {**pku_row(), "is_response_1_safe": "maybe"}],
        "is_response_1_safe",
        "must be true or false",
    ),
    (
        "PKU-SafeRLHF/train",
        "p.jsonl",
        [pku_row(), {k: v for k, v in pku_row().items() if k != "response_1"}],
        "response_1",
        "is missing",
    ),
    (
        "hh-rlhf-preference/train",
        "h.jsonl",
        [
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: c"},
        ],
        "rejected",
        "does not share the conversation",
    ),
    (
        "hh-rlhf-preference/train",
        "h.jsonl",
        [
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
            {"chosen": "no transcript here", "rejected": "\n\nHuman: a\n\nAssistant: c"},
        ],
        "chosen",
        "transcript",
    ),
    (
        "moss-002-sft",
        "m.json",
        [{"plain_text": "[Human]: a<eoh> [MOSS]: b<eom>"}, {"plain_text": "[Human]: a<eoh>"}],
        "plain_text",
        "conversation",
    ),
    (
        "jsonl",
        "g.jsonl",
        [
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            {"messages": [{"role": "robot", "content": "a"}]},
        ],
        "messages[0].role",
        "'robot'",
    ),
    (
        "jsonl",
        "g.jsonl",
        [{"input": "a", "answer": "b"}, {"input": "a", "answer": ["b"]}],
        "answer",
        "must be a string",
    ),
]


@pytest.mark.parametrize(
    ("name", "file", "rows", "field", "problem"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_bad_row_error_names_dataset_row_and_field(
    tmp_path: Path, name: str, file: str, rows: list, field: str, problem: str
) -> None:
    path = (write_json if file.endswith(".json") else write_jsonl)(tmp_path / file, rows)
    message = _error(f"{name}:1:{path}")
    assert f"Dataset {name!r}" in message
    assert "row 2:" in message  # counted from 1, as lines are
    assert f"field `{field}`" in message
    assert problem in message
    assert "on_bad_row: skip" in message


@pytest.mark.parametrize(
    ("name", "file", "rows", "field", "problem"),
    CASES[:4],
    ids=[f"{c[0]}-{c[3]}" for c in CASES[:4]],
)
def test_skip_counts_bad_rows(
    tmp_path: Path, name: str, file: str, rows: list, field: str, problem: str
) -> None:
    path = (write_json if file.endswith(".json") else write_jsonl)(tmp_path / file, rows)
    with pytest.warns(DataWarning, match="skipped 1 bad row"):
        samples = load_raw(f"{name}:1:{path}", on_bad_row="skip")
    assert len(samples) == 1


def test_kind_requirements_name_the_row(tmp_path: Path, tok_ref: Any) -> None:
    # A supervised row is fine raw data, but not a preference pair.
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {"input": "hello", "answer": "hi", "other_answer": "go", "better": True},
            {"input": "hello", "answer": "hi"},
        ],
    )
    message = _error(f"jsonl:1:{path}", "preference", tok_ref)
    assert "Dataset 'jsonl'" in message and "row 2:" in message
    assert "field `other_answer` is missing" in message


def test_dialogue_must_end_with_the_assistant(tmp_path: Path, tok_ref: Any) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"dialogue": ["hello", "hi", "bye"]}])
    message = _error(f"jsonl:1:{path}", "supervised", tok_ref)
    assert "row 1:" in message and "field `dialogue`" in message and "3 turns" in message


def test_unsafe_safer_pair_is_refused_naming_the_row(tmp_path: Path, tok_ref: Any) -> None:
    rows = [pku_row(), pku_row(safer=0, safe0=False, safe1=True)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    message = _error(f"PKU-SafeRLHF/train:1:{path}", "safety_preference", tok_ref)
    assert "Dataset 'PKU-SafeRLHF/train'" in message and "row 2:" in message
    assert "field `safer`" in message and "contradictory" in message
    # the same pair is fine for the reward model (helpfulness only)
    train, _ = make_datasets("preference", DataCfg(train=[f"PKU-SafeRLHF/train:1:{path}"]), tok_ref)
    assert len(train) == 2
    # and skipped (counted) under on_bad_row: skip
    cfg = DataCfg(train=[f"PKU-SafeRLHF/train:1:{path}"], on_bad_row="skip")
    with pytest.warns(DataWarning):
        train, _ = make_datasets("safety_preference", cfg, tok_ref)
    assert (len(train), train.stats.skipped_bad_rows) == (1, 1)


def test_identical_pairs_are_skipped_and_counted(tmp_path: Path, tok_ref: Any) -> None:
    rows = [pku_row(), pku_row(r0="the cat", r1="the cat"), pku_row(r0="cat", r1="dog")]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.warns(DataWarning, match="1 pairs with identical answers"):
        train, _ = make_datasets(
            "safety_preference", DataCfg(train=[f"PKU-SafeRLHF/train:1:{path}"]), tok_ref
        )
    assert len(train) == 2
    assert train.stats.skipped_identical_pairs == 1
