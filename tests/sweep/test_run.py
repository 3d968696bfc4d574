"""`beaver sweep` end to end through the real CLI on a tiny toy world (SFT points: seconds each).

- a failing point is reported with its error and the other points finish (two at once), the
  table and the frontier picture are written, and each point's numbers are its own run's;
- SIGTERM mid-sweep stops it cleanly (the running point saves a checkpoint), and a rerun finishes
  without running the finished points again, resuming the interrupted one from its checkpoint;
- an `eval arena` evaluation puts the point's side of the arena's summary in the table;
- a mistake in any point's stage config stops the sweep before anything runs.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import pytest
import yaml

from childenv import child_env

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate

    out = tmp_path_factory.mktemp("sweep-world")
    generate(
        ToyWorldConfig(
            output_dir=str(out),
            num_sft=64,
            num_preference=8,
            num_preference_test=4,
            num_rl_prompts=8,
            num_eval_prompts=12,
            model=ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4),
        )
    )
    return out


def sft(world: Path | str, **overrides: Any) -> dict[str, Any]:
    """A one-step SFT method on the tiny world."""
    return {
        "command": "sft",
        "config": "configs/toy/sft.yaml",
        "overrides": {
            "model.name_or_path": f"{world}/model",
            "data.train": [f"toyworld-sft:1.0:{world}"],
            "train.per_device_batch_size": 8,
            **overrides,
        },
    }


def evaluation(world: Path | str) -> dict[str, Any]:
    return {
        "kind": "toyworld",
        "overrides": {"prompts": f"{world}/prompts_eval.jsonl", "generation.max_new_tokens": 8},
    }


def write(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def sweep_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "beaver", "sweep", "--config", str(config)]


ENV = child_env()


def run_sweep(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*sweep_cmd(config), *extra], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


def test_failing_point_is_reported_and_the_others_finish(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    cfg = {
        "output_dir": str(out),
        "parallel": 2,
        # a shared stage: the points train on a copy of the world made by the sweep
        "shared": {
            "world": {
                "command": "toyworld",
                "overrides": {
                    "num_sft": 64,
                    "num_preference": 8,
                    "num_preference_test": 4,
                    "num_rl_prompts": 8,
                    "num_eval_prompts": 12,
                    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 4},
                },
            }
        },
        "methods": {
            "sft": {**sft("{world}"), "grid": {"train.max_steps": [2, 24]}},
            "broken": sft("{world}", **{"model.name_or_path": "{world}/nowhere"}),
        },
        "evaluation": evaluation("{world}"),
    }
    done = run_sweep(write(tmp_path / "sweep.yaml", cfg))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "failed: broken: run: exit code 2" in done.stdout
    assert "model folder not found" in done.stdout

    rows = {r["id"]: r for r in json.loads((out / "results.json").read_text())["points"]}
    assert [r["status"] for r in rows.values()] == ["finished", "finished", "failed"]
    assert "model folder not found" in rows["broken"]["error"]
    short, long = rows["sft-max_steps=2"], rows["sft-max_steps=24"]
    # each row holds its own run's numbers: the longer SFT reached a lower held-out loss
    assert long["final_eval.eval/loss"] < short["final_eval.eval/loss"] - 0.1
    for row in (short, long):
        assert 0.0 <= row["helpfulness_risky"] <= 1.0 and 0.0 <= row["harmful_rate_risky"] <= 1.0
    assert short["peak_rss_mb"] > 100 and short["wall_seconds"] > 0
    with open(out / "results.csv") as f:
        assert [r["id"] for r in csv.DictReader(f)] == list(rows)
    assert mpimg.imread(out / "frontier.png").shape[0] > 300
    shared = json.loads((out / "results.json").read_text())["shared"]
    assert shared == [
        {
            "id": "world",
            "status": "finished",
            "sweep_seconds": shared[0]["sweep_seconds"],
            "error": None,
        }
    ]


def _wait_for_training(metrics: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Until the run has logged a training step (before that, a signal only kills it)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if metrics.is_file() and '"step"' in metrics.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"no training step in {metrics} (sweep exit code {proc.poll()})")


def test_sigterm_then_rerun_resumes_without_rerunning_finished_points(
    world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    cfg = {
        "output_dir": str(out),
        "methods": {
            # a chain: the second SFT starts from the first's model
            "chain": {
                "steps": {
                    "first": sft(world, **{"train.max_steps": 3}),
                    "second": sft(
                        world, **{"model.name_or_path": "{first}/model", "train.max_steps": 3}
                    ),
                }
            },
            "long": sft(
                world,
                **{
                    "train.max_steps": 300,
                    "train.per_device_batch_size": 4,
                    "train.eval_strategy": "no",
                },
            ),
        },
        "evaluation": {"kind": "none"},  # evaluations are other runs; this test is about resuming
    }
    config = write(tmp_path / "sweep.yaml", cfg)
    points = out / "points"
    proc = subprocess.Popen(
        sweep_cmd(config),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for_training(points / "long" / "run" / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, output[-3000:]
    assert "points/long: run interrupted" in output
    record = json.loads((points / "long" / "run.json").read_text())
    assert record["status"] == "interrupted" and record["returncode"] == 143
    assert (points / "long" / "run" / "checkpoints" / "latest").is_file()
    chain_files = sorted(points.glob("chain/*.json")) + sorted(points.glob("chain/*.log"))
    assert [p.name for p in chain_files] == ["first.json", "second.json", "first.log", "second.log"]
    before = {p: p.stat().st_mtime_ns for p in chain_files}
    second = yaml.safe_load((points / "chain" / "second" / "config.yaml").read_text())
    assert second["model"]["name_or_path"] == str(points / "chain" / "first" / "model")

    done = run_sweep(config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "(2 finished before, 1 to run)" in done.stdout
    assert "points/long: run started" in done.stdout and "points/chain: " not in done.stdout
    assert {p: p.stat().st_mtime_ns for p in chain_files} == before  # not run again
    log = (points / "long" / "run.log").read_text()
    assert "resumed from" in log and "at step 0" not in log
    steps = [
        json.loads(line)["step"]
        for line in (points / "long" / "run" / "metrics.jsonl").read_text().splitlines()
        if '"step"' in line
    ]
    assert sorted(set(steps)) == list(range(1, 301))  # every step once: an exact resume
    assert json.loads((points / "long" / "run.json").read_text())["attempts"] == 2
    rows = json.loads((out / "results.json").read_text())["points"]
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert all(r["wall_seconds"] > 0 and r["peak_rss_mb"] > 100 for r in rows)


def test_a_bad_key_in_any_point_stops_the_sweep_before_it_runs(world: Path, tmp_path: Path) -> None:
    cfg = {
        "output_dir": str(tmp_path / "s"),
        "methods": {"sft": {**sft(world), "grid": {"optim.lr": [1e-3, "fast"]}}},
        "evaluation": evaluation(world),
    }
    done = run_sweep(write(tmp_path / "sweep.yaml", cfg), "--dry-run")
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join((done.stdout + done.stderr).split())
    assert "points/sft-lr=fast, step run" in text and "`optim.lr` = 'fast'" in text
    assert "Traceback" not in text and not (tmp_path / "s" / "points").exists()


def test_arena_evaluation_scores_each_point_with_reward_and_cost_models(
    world: Path, tmp_path: Path
) -> None:
    """Two baselines (the random world model and a second random model) judged by `eval arena`
    with untrained reward and cost models: the table carries blue's (the point's) numbers."""
    from transformers import AutoModel, AutoTokenizer

    from beaver.config.toyworld import ToyModelConfig
    from beaver.models.score import save_score_model, score_model_from_backbone
    from beaver.toyworld.assets import build_model

    tok = AutoTokenizer.from_pretrained(world / "model")
    other = tmp_path / "other"
    model = build_model(ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4), tok, seed=1)
    model.save_pretrained(other)
    tok.save_pretrained(other)
    for kind in ("reward", "cost"):
        backbone = AutoModel.from_pretrained(world / "model")
        score = score_model_from_backbone(backbone, world / "model", score_type=kind)
        save_score_model(score, tmp_path / kind, tok)
    out = tmp_path / "sweep"
    cfg = {
        "output_dir": str(out),
        "methods": {"a": {"policy": f"{world}/model"}, "b": {"policy": str(other)}},
        "evaluation": {"kind": "arena", "overrides": {
            "red_model": f"{world}/model", "reward_model": str(tmp_path / "reward"),
            "cost_model": str(tmp_path / "cost"), "prompts": f"{world}/prompts_eval.jsonl",
            "generation.max_new_tokens": 8}},
    }  # fmt: skip
    done = run_sweep(write(tmp_path / "sweep.yaml", cfg))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["points"]
    for row in rows:
        summary = json.loads((out / "points" / row["id"] / "eval" / "summary.json").read_text())
        assert row["reward"] == summary["reward"]["policy_mean"]
        assert row["cost"] == summary["cost"]["policy_mean"]
        assert row["helpfulness_risky"] == summary["toyworld"]["policy"]["mean_helpfulness_risky"]
    # "a" is the red model itself, answering greedily: it ties red on every prompt
    a = json.loads((out / "points" / "a" / "eval" / "summary.json").read_text())
    assert a["reward"]["policy_vs_red"]["tie_rate"] == 1.0
