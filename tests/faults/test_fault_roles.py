"""Swapped models: every config key that loads a model checks it is of the kind the key needs
(reward_model a reward model, cost_model a cost model, the actor / SFT base / chat / arena
models causal LMs) before anything loads or samples, and says what it found."""

from __future__ import annotations

from pathlib import Path

import pytest
from faulthelpers import beaver


def _ppo_lag(
    world: Path, out: Path, reward: Path, cost: Path, actor: Path | None = None
) -> list[str]:
    return [
        "ppo-lag", "--config", "configs/toy/ppo-lag.yaml", f"output_dir={out}",
        f"actor.name_or_path={actor or world / 'model'}", f"reward_model.name_or_path={reward}",
        f"cost_model.name_or_path={cost}", f"data.train=[toyworld-prompts:1.0:{world}]",
        "train.max_steps=1", "ppo.rollout_batch_size=4", "train.per_device_batch_size=4",
        "generation.max_new_tokens=4",
    ]  # fmt: skip


def _said(out: object) -> str:
    return " ".join(str(getattr(out, "output", "")).split())


def test_a_cost_model_as_the_reward_model_is_refused_before_any_rollout(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    out = beaver(*_ppo_lag(toy_world, run, score_models["cost"], score_models["reward"]))
    said = _said(out)
    assert f"reward_model: {score_models['cost']} is a cost model" in said
    assert "reward_model must be a reward model" in said and "beaver rm" in said
    assert not run.exists()  # refused before the run folder, let alone a rollout


def test_a_reward_model_as_the_cost_model_is_refused(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    reward = score_models["reward"]
    out = beaver(*_ppo_lag(toy_world, tmp_path / "run", reward, reward))
    said = _said(out)
    assert f"cost_model: {reward} is a reward model" in said
    assert "cost_model must be a cost model" in said and "beaver cm" in said


def test_an_sft_model_as_the_reward_model_is_refused(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    model = toy_world / "model"
    out = beaver(*_ppo_lag(toy_world, tmp_path / "run", model, score_models["cost"]))
    said = _said(out)
    assert f"reward_model: {model} is a causal LM (it has no score_config.json)" in said
    assert "must be a reward model" in said


def test_a_score_model_as_the_actor_is_refused(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    r, c = score_models["reward"], score_models["cost"]
    out = beaver(*_ppo_lag(toy_world, tmp_path / "run", r, c, actor=r))
    assert f"actor: {r} is a reward model" in _said(out)
    assert "actor must be a causal LM" in _said(out)


def test_a_score_model_as_the_sft_base_is_refused(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    out = beaver(
        "sft", "--config", "configs/toy/sft.yaml", f"output_dir={tmp_path / 'run'}",
        f"model.name_or_path={score_models['cost']}", f"data.train=[toyworld-sft:1.0:{toy_world}]",
    )  # fmt: skip
    assert "model: " in _said(out) and "is a cost model" in _said(out)
    assert "model must be a causal LM" in _said(out)


def test_a_score_model_is_not_a_chat_model(score_models: dict[str, Path]) -> None:
    out = beaver("chat", "-m", str(score_models["reward"]))
    assert f"models[0]: {score_models['reward']} is a reward model" in _said(out)


def test_chat_scores_with_the_right_kinds_only(
    toy_world: Path, score_models: dict[str, Path]
) -> None:
    model = toy_world / "model"
    out = beaver("chat", "-m", str(model), f"cost_model={score_models['reward']}")
    assert "cost_model: " in _said(out) and "must be a cost model" in _said(out)
    out = beaver("chat", "-m", str(model), f"reward_model={model}")
    assert f"reward_model: {model} is a causal LM" in _said(out)


@pytest.mark.parametrize("key", ["blue_model", "reward_model"])
def test_eval_arena_checks_every_role(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path], key: str
) -> None:
    good = {
        "red_model": toy_world / "model",
        "blue_model": toy_world / "model",
        "reward_model": score_models["reward"],
        "cost_model": score_models["cost"],
    }
    bad = {"blue_model": score_models["reward"], "reward_model": score_models["cost"]}
    models = {**good, key: bad[key]}
    out = beaver(
        "eval", "arena", f"prompts={toy_world / 'prompts_eval.jsonl'}",
        f"output_dir={tmp_path / 'run'}", *(f"{k}={v}" for k, v in models.items()),
    )  # fmt: skip
    assert f"{key}: {bad[key]} is a " in _said(out)
    assert not (tmp_path / "run").exists()


def test_eval_toyworld_checks_its_score_models_and_policies(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    # the sweep's evaluation is this command
    common = (f"prompts={toy_world / 'prompts_eval.jsonl'}", f"output_dir={tmp_path}")
    out = beaver(
        "eval", "toyworld", *common, f"policies.sft={toy_world / 'model'}",
        f"reward_model={score_models['cost']}",
    )  # fmt: skip
    assert f"reward_model: {score_models['cost']} is a cost model" in _said(out)
    out = beaver("eval", "toyworld", *common, f"policies.sft={score_models['cost']}")
    assert "policies.sft: " in _said(out) and "must be a causal LM" in _said(out)


def test_dpo_refuses_a_score_model(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path]
) -> None:
    out = beaver(
        "dpo", "--config", "configs/toy/dpo.yaml", f"output_dir={tmp_path / 'run'}",
        f"model.name_or_path={score_models['reward']}",
        f"data.train=[toyworld-preference:1.0:{toy_world}]", "data.eval=[]",
    )  # fmt: skip
    assert "model: " in _said(out) and "must be a causal LM" in _said(out)


@pytest.mark.parametrize(("command", "start"), [("rm", "cost"), ("cm", "reward"), ("rm", "reward")])
def test_rm_and_cm_start_from_a_causal_lm_only(
    tmp_path: Path, toy_world: Path, score_models: dict[str, Path], command: str, start: str
) -> None:
    # A score model as the start would keep its own head (a cost head trained on as a reward
    # head), so `beaver rm` / `beaver cm` refuse one, whatever its kind, before the run folder.
    run = tmp_path / "run"
    out = beaver(
        command, "--config", f"configs/toy/{command}.yaml", f"output_dir={run}",
        f"model.name_or_path={score_models[start]}",
        f"data.train=[toyworld-preference:1.0:{toy_world}]", "data.eval=[]",
    )  # fmt: skip
    assert f"model: {score_models[start]} is a {start} model" in _said(out)
    assert "model must be a causal LM" in _said(out)
    assert not run.exists()
