"""Specs `NAME[:PROPORTION[:PATH]]`, proportions and seeded mixing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from datahelpers import write_jsonl

from beaver.data import DatasetSpec, RawSample, load_raw, parse_spec
from beaver.data.loading import mix, split_eval, take_proportion
from beaver.errors import UserError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpaca", DatasetSpec("alpaca", 1.0, None)),
        ("PKU-SafeRLHF/train:0.25", DatasetSpec("PKU-SafeRLHF/train", 0.25, None)),
        ("jsonl:2:data/x.jsonl", DatasetSpec("jsonl", 2.0, "data/x.jsonl")),
        ("jsonl::data/x.jsonl", DatasetSpec("jsonl", 1.0, "data/x.jsonl")),
        (
            "csv:1e-1:C:/data/a.csv",
            DatasetSpec("csv", 0.1, "C:/data/a.csv"),
        ),  # path keeps its colons
        ("  toyworld-sft : 1.5 : out/tw ", DatasetSpec("toyworld-sft", 1.5, "out/tw")),
    ],
)
def test_parse_good_specs(text: str, expected: DatasetSpec) -> None:
    assert parse_spec(text) == expected


def test_spec_round_trips_through_str() -> None:
    for text in ("alpaca", "alpaca:0.5", "jsonl:2:data/x.jsonl"):
        assert parse_spec(str(parse_spec(text))) == parse_spec(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no dataset name"),
        (":0.5", "no dataset name"),
        ("alpaca:abc", "'abc' is not a number"),
        ("jsonl:data/x.jsonl", "write `NAME::PATH`"),
        ("alpaca:0", "must be a positive number"),
        ("alpaca:-1", "must be a positive number"),
        ("alpaca:nan", "must be a positive number"),
        ("alpaca:inf", "must be a positive number"),
        ("alpaca:1:", "gives no path"),
    ],
)
def test_malformed_specs_are_clear_errors(text: str, says: str) -> None:
    with pytest.raises(UserError, match=r"NAME\[:PROPORTION\[:PATH\]\]|positive") as info:
        parse_spec(text)
    assert says in str(info.value)
    assert repr(text) in str(info.value)


def _samples(n: int) -> list[RawSample]:
    return [RawSample(input=f"q{i}", answer=f"a{i}") for i in range(n)]


def test_proportion_below_one_subsamples_without_repeats() -> None:
    samples = _samples(10)
    taken = take_proportion(samples, 0.3, random.Random(0))
    assert len(taken) == 3
    assert len({s.input for s in taken}) == 3
    assert [s.input for s in taken] == sorted((s.input for s in taken), key=lambda q: int(q[1:]))


def test_proportion_above_one_repeats() -> None:
    samples = _samples(10)
    taken = take_proportion(samples, 2.5, random.Random(0))
    assert len(taken) == 25
    counts = {s.input: sum(t.input == s.input for t in taken) for s in samples}
    assert sorted(counts.values()) == [2] * 5 + [3] * 5  # two copies of all, a third of half


def test_tiny_proportion_keeps_at_least_one_row() -> None:
    assert len(take_proportion(_samples(10), 0.001, random.Random(0))) == 1


def test_eval_split_holds_out_a_share() -> None:
    train, held = split_eval(_samples(10), 0.2, random.Random(0))
    assert (len(train), len(held)) == (8, 2)
    assert not {s.input for s in train} & {s.input for s in held}


def _files(tmp_path: Path) -> tuple[str, str]:
    a = write_jsonl(tmp_path / "a.jsonl", [{"input": f"a{i}", "answer": "x"} for i in range(20)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"input": f"b{i}", "answer": "y"} for i in range(10)])
    return f"jsonl:0.5:{a}", f"jsonl:2:{b}"


def test_mixing_is_seeded_and_proportioned(tmp_path: Path) -> None:
    specs = _files(tmp_path)
    first = [s.input for s in load_raw(list(specs), seed=1)]
    again = [s.input for s in load_raw(list(specs), seed=1)]
    other = [s.input for s in load_raw(list(specs), seed=2)]
    assert first == again
    assert first != other
    assert len(first) == 10 + 20
    assert sum(str(q).startswith("a") for q in first) == 10
    # mixed, not concatenated: the b rows do not all come after the a rows
    positions = [i for i, q in enumerate(first) if str(q).startswith("b")]
    assert positions != list(range(10, 30))


def test_eval_split_never_sees_repeated_train_rows(tmp_path: Path) -> None:
    _, b = _files(tmp_path)
    mixed = mix([b], seed=0, eval_split=0.2)
    assert len(mixed.eval) == 2
    assert len(mixed.train) == 16  # 8 rows repeated twice
    assert not {s.input for s in mixed.train} & {s.input for s in mixed.eval}
    assert mixed.sources[0]["rows"] == 10
