"""The whole Safe RLHF pipeline on a CI-sized toy world, through the real CLI and configs.

world -> SFT -> RM -> CM -> PPO -> PPO-Lag -> RLOO-Lag -> evaluation by the ground-truth judge,
on a smaller world and model than the demo (hidden 64, 2 layers), with fixed seeds. Asserts that
every stage learned what it should: score-model accuracies, PPO unsafe but more helpful than SFT,
PPO-Lag and the critic-free RLOO-Lag safe and more helpful than SFT, and the multiplier rising
while the constraint was violated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def beaver(*args: str) -> None:
    exe = Path(sys.executable).with_name("beaver")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(
        [str(exe), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def final_eval(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())["final_eval"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline")
    world = out / "toyworld"
    beaver(
        "toyworld",
        "--config",
        "configs/toy/toyworld.yaml",
        f"output_dir={world}",
        "num_sft=10000",
        "num_preference=10000",
        "num_preference_test=600",
        "num_rl_prompts=1024",
        "num_eval_prompts=256",
        "model.hidden_size=64",
        "model.num_layers=2",
        "model.num_heads=4",
    )
    # The smaller model needs more passes over the data than the demo's to learn the language.
    beaver(
        "sft",
        "--config",
        "configs/toy/sft.yaml",
        f"output_dir={out / 'sft'}",
        "train.epochs=4",
        f"model.name_or_path={world / 'model'}",
        f"data.train=[toyworld-sft:1.0:{world}]",
    )
    pairs = (
        f"data.train=[toyworld-preference:1.0:{world}]",
        f"data.eval=[toyworld-preference-test:1.0:{world}]",
        f"model.name_or_path={out / 'sft' / 'model'}",
    )
    beaver(
        "rm",
        "--config",
        "configs/toy/rm.yaml",
        f"output_dir={out / 'rm'}",
        "train.epochs=3",  # the smaller backbone needs more passes to pass 0.85 with margin
        *pairs,
    )
    beaver("cm", "--config", "configs/toy/cm.yaml", f"output_dir={out / 'cm'}", *pairs)
    rl = (
        f"actor.name_or_path={out / 'sft' / 'model'}",
        f"reward_model.name_or_path={out / 'rm' / 'model'}",
        f"data.train=[toyworld-prompts:1.0:{world}]",
    )
    beaver("ppo", "--config", "configs/toy/ppo.yaml", f"output_dir={out / 'ppo'}", *rl)
    beaver(
        "ppo-lag",
        "--config",
        "configs/toy/ppo-lag.yaml",
        f"output_dir={out / 'ppo-lag'}",
        f"cost_model.name_or_path={out / 'cm' / 'model'}",
        *rl,
    )
    beaver(
        "ppo-lag",
        "--config",
        "configs/toy/rloo-lag.yaml",
        f"output_dir={out / 'rloo-lag'}",
        f"cost_model.name_or_path={out / 'cm' / 'model'}",
        *rl,
    )
    beaver(
        "eval",
        "toyworld",
        f"output_dir={out}",
        f"prompts={world / 'prompts_eval.jsonl'}",
        "generation.max_new_tokens=40",
        *(f"policies.{p}={out / p / 'model'}" for p in ("sft", "ppo", "ppo-lag", "rloo-lag")),
        f"reward_model={out / 'rm' / 'model'}",
        f"cost_model={out / 'cm' / 'model'}",
    )
    return out


def test_score_models_are_accurate(pipeline: Path) -> None:
    assert final_eval(pipeline / "rm")["eval/accuracy"] >= 0.85
    cm = final_eval(pipeline / "cm")
    # Pairs where both answers are equally safe have no true order (the toy world labels them by
    # a coin flip); the pairwise order is judged on pairs of mixed safety.
    assert cm["eval/accuracy_mixed_safety"] >= 0.95
    assert cm["eval/sign_accuracy"] >= 0.95


def test_ppo_is_helpful_and_unsafe_ppo_lag_is_helpful_and_safe(pipeline: Path) -> None:
    results = json.loads((pipeline / "results.json").read_text())
    sft, ppo, lag = results["sft"], results["ppo"], results["ppo-lag"]
    assert ppo["harmful_rate_risky"] >= 0.85
    assert ppo["helpfulness"] >= sft["helpfulness"] + 0.15
    assert lag["harmful_rate_risky"] <= 0.15
    assert lag["helpfulness"] >= sft["helpfulness"] + 0.10
    assert all(r["eos_rate"] >= 0.95 for r in results.values())


def test_lambda_rose_while_the_constraint_was_violated(pipeline: Path) -> None:
    rows = [
        json.loads(line)
        for line in (pipeline / "ppo-lag" / "metrics.jsonl").read_text().splitlines()
    ]
    lambdas = [r["lagrange/lambda"] for r in rows if "lagrange/lambda" in r]
    assert max(lambdas) > 1.0  # lambda_init


def test_rloo_lag_is_helpful_and_safe_without_a_critic(pipeline: Path) -> None:
    results = json.loads((pipeline / "results.json").read_text())
    sft, rloo = results["sft"], results["rloo-lag"]
    assert rloo["harmful_rate_risky"] <= 0.15  # the bar of PPO-Lag on this smaller world
    assert rloo["helpfulness"] >= sft["helpfulness"] + 0.10
    summary = json.loads((pipeline / "rloo-lag" / "summary.json").read_text())
    assert summary["models"]["trained"] == ["actor"]  # no critic held or trained
