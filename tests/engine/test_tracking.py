"""Metrics go to metrics.jsonl and the console always, and to wandb (offline without a key) or
tensorboard, writing their files locally with no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beaver.config.sections import LoggingCfg
from beaver.engine.tracking import MetricsLogger


def _log_two_steps(logger: MetricsLogger) -> None:
    logger.log(1, {"loss": 2.5, "lr": 1e-3})
    logger.log(2, {"loss": 2.0, "lr": 1e-3, "tokens_per_s": 12345.6})
    logger.log(2, {"eval/loss": 1.9})
    logger.close()


def test_jsonl_and_plain_console_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _log_two_steps(MetricsLogger(tmp_path, LoggingCfg(backend="none"), {}))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 2] and rows[1]["loss"] == 2.0
    assert rows[2]["eval/loss"] == 1.9
    out = capsys.readouterr().out  # not a TTY: plain lines, no live display
    assert "step 1  loss=2.5" in out and "tokens_per_s=12346" in out


def test_other_ranks_write_nothing(tmp_path: Path) -> None:
    _log_two_steps(
        MetricsLogger(tmp_path / "r1", LoggingCfg(backend="tensorboard"), {}, enabled=False)
    )
    assert not (tmp_path / "r1").exists()


def test_wandb_offline_without_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    logger = MetricsLogger(
        tmp_path, LoggingCfg(backend="wandb", project="p", run_name="r"), {"optim": {"lr": 1e-3}}
    )
    _log_two_steps(logger)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")) and (runs[0] / "files").is_dir()


def test_tensorboard_writes_events(tmp_path: Path) -> None:
    _log_two_steps(MetricsLogger(tmp_path, LoggingCfg(backend="tensorboard"), {}))
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    data = events[0].read_bytes()
    assert b"loss" in data and b"eval/loss" in data
