"""Resume faults: changed optimiser settings apply from the resumed step (with a notice), the
logged lr is the one the step used, and the advice after a diverged run names keys that exist."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import make_trainer
from faulthelpers import beaver
from transformers import AutoModel

from beaver.config import PPOConfig
from beaver.config.loader import all_paths
from beaver.config.sections import LoggingCfg
from beaver.engine.loop import StepResult
from beaver.engine.tracking import MetricsLogger
from beaver.models.score import ScoreModel, save_score_model
from beaver.stages.sft import sft_step

pytestmark = pytest.mark.usefixtures("process_group")


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("zero", [0, 2])
def test_resume_applies_changed_optimiser_settings(
    tmp_path: Path, zero: int, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ckpt"
    first = make_trainer(tmp_path / "a", zero=zero, total=8)  # lr 0.01, cosine, 2 warm-up steps
    saved = first.run(4, root).checkpoint
    new = {"lr": 1e-3, "scheduler": "constant", "betas": (0.8, 0.9), "eps": 1e-6}
    second = make_trainer(tmp_path / "b", zero=zero, total=8, optim={**new, "weight_decay": 0.05})
    second.logger = MetricsLogger(tmp_path / "b", LoggingCfg(backend="none", log_every=1), {})
    second.run(8, root, resume_from=saved)
    out = capsys.readouterr().out
    assert "changed optimiser settings, applied from step 4" in out
    assert "optim.lr 0.01 -> 0.001" in out and "optim.scheduler cosine -> constant" in out
    assert "schedule length 4 -> 8 steps" in out
    # constant after the warm-up: every remaining step trained at the new lr
    assert [r["lr"] for r in _rows(tmp_path / "b") if "lr" in r] == [1e-3] * 4
    groups = second.engine.optimizer.param_groups
    assert all(tuple(g["betas"]) == (0.8, 0.9) and g["eps"] == 1e-6 for g in groups)
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.05]  # biases and norms: none


def test_an_unchanged_resume_says_nothing_about_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = make_trainer(tmp_path / "a", total=4).run(2, tmp_path / "ckpt").checkpoint
    make_trainer(tmp_path / "b", total=4).run(2, tmp_path / "ckpt", resume_from=saved)
    assert "changed optimiser settings" not in capsys.readouterr().out


def test_logged_lr_is_the_lr_the_step_trained_with(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, total=4)  # warm-up: 1 step, from lr 0
    t.logger = MetricsLogger(tmp_path, LoggingCfg(backend="none", log_every=1), {})
    used = []

    def step(engine: Any, batches: list[Any]) -> StepResult:
        used.append(engine.get_lr()[0])  # before this step's optimiser step
        return sft_step(engine, batches)

    t.run(4, tmp_path / "ckpt", step_fn=step)
    assert [r["lr"] for r in _rows(tmp_path)] == used and used[0] == 0.0


@pytest.fixture(scope="module")
def world(toy_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy world with untrained reward and cost models on its backbone."""
    out = tmp_path_factory.mktemp("ppo-faults")
    for name, kind in (("rm", "reward"), ("cm", "cost")):
        backbone = AutoModel.from_pretrained(toy_world / "model")
        save_score_model(ScoreModel(backbone, kind), out / name)  # type: ignore[arg-type]
        for f in (toy_world / "model").glob("*"):
            if "token" in f.name or "template" in f.name:
                shutil.copy(f, out / name / f.name)
    return out


def test_ppo_lag_divergence_advice_names_keys_that_exist(
    toy_world: Path, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import beaver.stages.ppo as ppo

    real = ppo.ppo_step

    def nan_step(*args: Any) -> StepResult:
        out = real(*args)
        return StepResult(loss=math.nan, metrics=out.metrics)

    monkeypatch.setattr(ppo, "ppo_step", nan_step)
    out = beaver(
        "ppo-lag", "--config", "configs/toy/ppo-lag.yaml", f"output_dir={tmp_path / 'run'}",
        f"actor.name_or_path={toy_world / 'model'}", f"reward_model.name_or_path={world / 'rm'}",
        f"cost_model.name_or_path={world / 'cm'}", f"data.train=[toyworld-prompts:1.0:{toy_world}]",
        "lagrange.target_unsafe_share=null", "generation.max_new_tokens=4",
        "ppo.rollout_batch_size=4", "train.per_device_batch_size=4", "train.max_steps=3",
        "train.max_bad_steps=1", "logging.backend=none",
    )  # fmt: skip
    message = " ".join(out.output.split())
    assert "Lower actor_optim.lr and/or critic_optim.lr" in message
    assert {"actor_optim.lr", "critic_optim.lr"} <= set(all_paths(PPOConfig))
    assert "train.resume=auto" in message
