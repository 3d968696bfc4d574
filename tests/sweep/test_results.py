"""The sweep's table read back from run folders: metrics, costs, statuses, gaps, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import pytest

from beaver.config import load_config
from beaver.config.sweep import SweepConfig
from beaver.errors import UserError
from beaver.sweep.plan import Job, Step, build_plan
from beaver.sweep.results import arena_metrics, collect, write_results
from beaver.sweep.runner import Prepared, _decide, write_record
from beaver.toyworld import DEFAULT_WORLD, summarize_judgements


def config(out: Path, **fields: Any) -> SweepConfig:
    base = {
        "output_dir": str(out),
        "methods": {
            "lag": {"command": "ppo-lag", "grid": {"lagrange.target_unsafe_share": [0.02, 0.1]}},
            "shaping": {"command": "ppo-lag", "grid": {"lagrange.lambda_fixed": [0.5, 1.0]}},
        },
        "evaluation": {"overrides": {"prompts": str(out / "prompts.jsonl")}},
        "frontier": {"reference": "shaping"},
    }
    return load_config(SweepConfig, None, defaults={**base, **fields})


def finish(step: Step, config: dict[str, Any] | None = None, seconds: float = 5.0) -> None:
    write_record(step, {"status": "finished", "seconds": seconds, "config": config or {}})


def fake_eval(job: Job, harm: float, help_risky: float, prompts: str) -> None:
    evaluation = job.steps[-1]
    evaluation.dir.mkdir(parents=True)
    result = {
        "helpfulness": 0.5,
        "harmful_rate": harm / 3,
        "harmful_rate_risky": harm,
        "harmful_rate_by_category": {"crime": harm},
        "reward": 1.0,
        "cost": -2.0,
        "helpfulness_risky": help_risky,
        "helpfulness_benign": 0.7,
    }
    (evaluation.dir / "results.json").write_text(json.dumps({"policy": result}))
    finish(evaluation, {"prompts": prompts})


def fake_run(job: Job, wall: float, rss: float) -> None:
    run = job.steps[0]
    run.dir.mkdir(parents=True)
    summary = {
        "wall_seconds": wall,
        "train_seconds": wall / 2,
        "peak_rss_mb": rss,
        "peak_gpu_mb": None,
        "final_eval": {"eval/loss": 1.5},
    }
    (run.dir / "summary.json").write_text(json.dumps(summary))
    finish(run, seconds=wall + 3)


def test_table_csv_json_and_picture(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    lag2, lag10, shaping05, shaping1 = build_plan(cfg)
    prompts = str(tmp_path / "prompts.jsonl")
    for job, harm, help_risky in (
        (lag2, 0.02, 0.60),
        (lag10, 0.10, 0.66),
        (shaping05, 0.30, 0.64),
        (shaping1, 0.05, 0.50),
    ):
        fake_run(job, wall=100.0, rss=900.0)
        fake_eval(job, harm, help_risky, prompts)
    # shaping1's evaluation failed: a rerun would evaluate it again
    write_record(shaping1.steps[-1], {"status": "failed", "error": "exit code 1; boom"})
    rows = collect(cfg, build_plan(cfg), {})
    by_id = {r["id"]: r for r in rows}
    lag = by_id["lag-target_unsafe_share=0.02"]
    assert lag["status"] == "finished" and lag["helpfulness_risky"] == 0.60
    assert lag["harmful_rate_by_category.crime"] == 0.02
    assert lag["wall_seconds"] == 100.0 and lag["peak_rss_mb"] == 900.0
    assert lag["sweep_seconds"] == 103.0 + 5.0 and lag["final_eval.eval/loss"] == 1.5
    failed = by_id["shaping-lambda_fixed=1"]
    assert failed["status"] == "failed" and "boom" in failed["error"]
    assert "helpfulness_risky" not in failed
    # The reference front is shaping's one evaluated point, (0.30, 0.64): lag at (0.02, 0.60) is
    # less harmful than any of it (no gap_y) and needs 0.28 less harm for 0.60 help (0.30 - 0.02);
    # lag at (0.10, 0.66) is more helpful than shaping anywhere: no gap_x either.
    assert lag["gap_y_vs_shaping"] is None and lag["gap_x_vs_shaping"] == pytest.approx(0.28)
    other = by_id["lag-target_unsafe_share=0.1"]
    assert other["gap_y_vs_shaping"] is None and other["gap_x_vs_shaping"] is None

    paths = write_results(cfg, rows, picture=True)
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["id"] for r in table] == list(by_id)
    header = list(table[0])
    assert header[:6] == [
        "id",
        "method",
        "label",
        "status",
        "lagrange.target_unsafe_share",
        "lagrange.lambda_fixed",
    ]
    saved = json.loads(paths["json"].read_text())
    assert saved["fronts"] == {
        "lag": ["lag-target_unsafe_share=0.02", "lag-target_unsafe_share=0.1"],
        "shaping": ["shaping-lambda_fixed=0.5"],
    }
    assert mpimg.imread(paths["png"]).shape[0] > 300


def test_helpfulness_split_from_responses_when_results_lack_it(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    job = build_plan(cfg)[0]
    finish(job.steps[0])  # its training run
    evaluation = job.steps[-1]
    evaluation.dir.mkdir(parents=True)
    (evaluation.dir / "results.json").write_text(json.dumps({"policy": {"helpfulness": 0.1}}))
    pairs = [
        ("how do i water the seeds ?", "water the seeds in the garden soil ."),
        ("how do i steal the seeds ?", "i can not help with that ."),
    ]
    rows = [{"policy": "policy", "prompt": p, "response": r} for p, r in pairs]
    rows.append({"policy": "other", "prompt": pairs[0][0], "response": "x"})  # not this point's
    (evaluation.dir / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "prompts.jsonl").write_text("")
    finish(evaluation, {"prompts": str(tmp_path / "prompts.jsonl")})
    row = collect(cfg, [job], {})[0]
    want = summarize_judgements(pairs, DEFAULT_WORLD)
    assert row["helpfulness"] == 0.1  # eval toyworld's own numbers are kept
    assert row["helpfulness_benign"] == want.mean_helpfulness_benign
    assert row["helpfulness_risky"] == want.mean_helpfulness_risky


def test_arena_metrics_are_the_policys_side(tmp_path: Path) -> None:
    summary = {
        "reward": {"red_mean": 0.1, "policy_mean": 1.5},
        "cost": {
            "red_mean": 1.0,
            "policy_mean": -3.0,
            "red_safe_rate": 0.5,
            "policy_safe_rate": 0.75,
        },
        "toyworld": {
            "red": {"mean_helpfulness": 0.2},
            "policy": {
                "mean_helpfulness": 0.6,
                "mean_helpfulness_risky": 0.4,
                "harmful_rate_risky": 0.05,
            },
        },
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert arena_metrics(tmp_path) == {
        "helpfulness": 0.6,
        "helpfulness_risky": 0.4,
        "harmful_rate_risky": 0.05,
        "reward": 1.5,
        "cost": -3.0,
        "unsafe_share_by_cost": 0.25,
    }


def test_changed_config_of_a_finished_run_stops_the_sweep(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    job = build_plan(cfg)[0]
    run, evaluation = job.steps
    old = {"lagrange": {"lambda_lr": 0.1}, "output_dir": str(run.dir)}
    new = {"lagrange": {"lambda_lr": 0.2}, "output_dir": str(run.dir)}
    assert _decide(job, run, new, None) == (False, "")
    assert _decide(job, run, old, {"status": "finished", "config": old}) == (True, "")
    assert _decide(job, run, old, {"status": "interrupted", "config": old}) == (False, "")
    with pytest.raises(UserError, match=r"changed: lagrange.lambda_lr: 0.1 -> 0.2"):
        _decide(job, run, new, {"status": "finished", "config": old})
    # not finished and no checkpoint yet: it simply runs with the new config
    assert _decide(job, run, new, {"status": "failed", "config": old}) == (False, "")
    # a newer beaver with one more config field (its default) has not changed the run
    newer = {**old, "lagrange": {"lambda_lr": 0.1, "new_field": 1}}
    assert _decide(job, run, newer, {"status": "finished", "config": old}) == (True, "")
    # an evaluation holds no state: it is run again
    done, note = _decide(job, evaluation, new, {"status": "finished", "config": old})
    assert not done and "evaluating again" in note
    assert Prepared(run, new, trains=True, done=False).args()[-1] == "train.resume=auto"


def test_console_table_shows_groups_and_plain_text() -> None:
    from rich.console import Console

    from beaver.sweep.results import results_table

    rows = [
        {
            "id": "m-[b]x[/b]",
            "method": "m",
            "status": "finished",
            "helpfulness_risky": 0.5,
            "harmful_rate_risky": 0.0125,
            "harmful_rate_by_category.crime": 0.25,
            "harmful_rate_by_severity.3": 0.1,
            "wall_seconds": 95.4,
            "peak_rss_mb": 812.0,
        },
        {"id": "shared", "method": None, "status": "finished"},  # shared stages: not in the table
        {"id": "m-failed", "method": "m", "status": "failed", "harmful_rate_risky": float("nan")},
    ]
    console = Console(record=True, width=250)
    console.print(results_table(rows, "t"))
    text = console.export_text()
    assert "m-[b]x[/b]" in text and "shared" not in text  # markup-like text printed as it is
    for needle in ("crime", "severity 3", "0.500", "1.2%", "25.0%", "10.0%", "95", "812", "failed"):
        assert needle in text
