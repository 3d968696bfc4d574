"""`beaver data inspect`, through Typer's CliRunner and through `beaver.data.inspect.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datahelpers import pku_row, write_jsonl
from rich.console import Console
from typer.testing import CliRunner

from beaver.cli import app
from beaver.data import inspect
from beaver.data.inspect import TRAINED, render_tokens

runner = CliRunner()


def test_inspect_supervised_with_tokenizer(toy_dir: Path, tokenizer_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "data",
            "inspect",
            f"toyworld-sft:1:{toy_dir}",
            "--tokenizer",
            str(tokenizer_dir),
            "--max-length",
            "13",
            "-n",
            "2",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "supervised data" in out and "template: chat" in out
    # "<s> <|user|> tell me a story <|assistant|> the cat sat on the mat </s>": 14 > 13 tokens
    assert "truncated 1" in out
    assert "token lengths" in out and "over_max_length" in out
    assert "sample 0 · sample" in out and "water plant grow" in out
    assert "sample 2" not in out


def test_inspect_pairs_and_prompts(tmp_path: Path, toy_dir: Path, tokenizer_dir: Path) -> None:
    pref = runner.invoke(
        app,
        [
            "data",
            "inspect",
            f"toyworld-preference:1:{toy_dir}",
            "--model",
            str(tokenizer_dir),
            "--kind",
            "preference",
        ],
        env={"COLUMNS": "200"},
    )
    assert pref.exit_code == 0, pref.output
    assert "preference data" in pref.output and "· better ·" in pref.output
    auto = runner.invoke(
        app,
        ["data", "inspect", f"toyworld-preference:1:{toy_dir}", "--tokenizer", str(tokenizer_dir)],
        env={"COLUMNS": "200"},
    )
    assert "safety_preference data" in auto.output and "safer (safe)" in auto.output
    prompts = runner.invoke(
        app,
        ["data", "inspect", f"toyworld-prompts:1:{toy_dir}", "--tokenizer", str(tokenizer_dir)],
        env={"COLUMNS": "200"},
    )
    assert prompts.exit_code == 0, prompts.output
    assert "prompt_only data" in prompts.output and "duplicate prompts 1" in prompts.output


def test_inspect_without_tokenizer_shows_raw_samples(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [pku_row(v1=True)])
    result = runner.invoke(
        app, ["data", "inspect", f"PKU-SafeRLHF/train:1:{path}"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "1 raw samples" in result.output
    assert "other_category" in result.output and "Violence" in result.output


def test_inspect_user_errors_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", "alpaca:zero"])
    assert result.exit_code == 2
    assert "proportion 'zero' is not a number" in result.output
    result = runner.invoke(app, ["data", "inspect", "alpaca", "--kind", "dpo"])
    assert result.exit_code == 2 and "Unknown dataset kind" in result.output
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"input": "a", "answer": 1}])
    result = runner.invoke(app, ["data", "inspect", f"jsonl:1:{bad}"])
    assert result.exit_code == 2 and "row 1: field `answer`" in result.output
    result = runner.invoke(app, ["data", "inspect", f"jsonl:1:{bad}", "--on-bad-row", "skip"])
    assert result.exit_code == 2 and "No samples" in result.output


def test_inspect_column_mapping_option(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"q": "hello", "a": "fine"}])
    result = runner.invoke(
        app,
        ["data", "inspect", f"jsonl:1:{path}", "--column", "input=q", "--column", "answer=a"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "supervised data" in result.output and "fine" in result.output


def test_trained_spans_are_highlighted(tok_chat: Any) -> None:
    ids = tok_chat("<|user|> hello <|assistant|> i am fine </s>", add_special_tokens=False)[
        "input_ids"
    ]
    flags = [False, False, False, True, True, True, True]
    text = render_tokens(tok_chat, ids, flags)
    trained = "".join(text.plain[s.start : s.end] for s in text.spans if s.style == TRAINED)
    assert trained.split() == ["i", "am", "fine", "</s>"]
    assert text.plain.split() == ["<|user|>", "hello", "<|assistant|>", "i", "am", "fine", "</s>"]


def test_run_returns_statistics(toy_dir: Path, tok_chat: Any) -> None:
    console = Console(record=True, width=200)
    result = inspect.run(
        [f"toyworld-sft:1:{toy_dir}"], tokenizer=tok_chat, max_length=64, console=console
    )
    assert result.kind == "supervised" and result.num_samples == 3
    assert result.stats is not None and result.stats.truncated == 0
    assert result.lengths["count"] == 3 and result.lengths["over_max_length"] == 0
    assert result.lengths["min"] <= result.lengths["p50"] <= result.lengths["max"]
