"""`beaver ppo` / `beaver ppo-lag` / reward shaping on a tiny toy world, through the CLI.

Mechanics, not learning (the slow pipeline test asserts learning): every algorithm runs and saves
a model; PPO-Lag's multiplier moves the right way; a resumed PPO-Lag run reproduces the
uninterrupted run's losses and lambda exactly.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM
from typer.testing import CliRunner

from beaver.cli import app
from beaver.models.score import ScoreModel, save_score_model
from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate
from childenv import child_env, free_port

runner = CliRunner()
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny toy world, its random model as the actor, and untrained reward / cost models."""
    out = tmp_path_factory.mktemp("ppo-world")
    model = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4)
    generate(
        ToyWorldConfig(
            output_dir=str(out),
            num_sft=16,
            num_preference=8,
            num_preference_test=8,
            num_rl_prompts=64,
            num_eval_prompts=8,
            model=model,
        )
    )
    for name, kind in (("rm", "reward"), ("cm", "cost")):
        backbone = AutoModel.from_pretrained(out / "model")
        save_score_model(ScoreModel(backbone, kind), out / name)  # type: ignore[arg-type]
        shutil.copy(out / "model" / "tokenizer.json", out / name / "tokenizer.json")
        for f in (out / "model").glob("tokenizer*"):
            shutil.copy(f, out / name / f.name)
        for f in (out / "model").glob("*template*"):
            shutil.copy(f, out / name / f.name)
    return out


def ppo_args(world: Path, out: Path, command: str, *extra: str) -> list[str]:
    config = {"ppo": "ppo.yaml", "ppo-lag": "ppo-lag.yaml"}[command]
    return [
        command,
        "--config",
        f"configs/toy/{config}",
        f"output_dir={out}",
        f"actor.name_or_path={world / 'model'}",
        f"reward_model.name_or_path={world / 'rm'}",
        f"data.train=[toyworld-prompts:1.0:{world}]",
        "generation.max_new_tokens=6",
        "ppo.rollout_batch_size=8",
        "train.per_device_batch_size=4",
        "train.max_steps=4",
        *(
            ()
            if command == "ppo"
            else (f"cost_model.name_or_path={world / 'cm'}", "lagrange.target_unsafe_share=null")
        ),
        *extra,
    ]


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def invoke(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)


VARIANTS = {  # algorithm: (command, extra overrides)
    "ppo": ("ppo", ()),
    "ppo-lag": ("ppo-lag", ()),
    "reward-shaping": ("ppo-lag", ("algorithm=reward-shaping",)),
    # one ratio per response for rloo, per token for rloo-lag: both actor losses run
    "rloo": ("ppo", ("algorithm=rloo", "generation.num_return_sequences=2", "rloo.ratio=sequence")),
    "rloo-lag": ("ppo-lag", ("algorithm=rloo-lag", "generation.num_return_sequences=2")),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_algorithm_trains_and_saves(world: Path, tmp_path: Path, variant: str) -> None:
    command, extra = VARIANTS[variant]
    invoke(ppo_args(world, tmp_path, command, *extra))
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all("rollout/reward" in r and "time/generate" in r for r in rows)
    lagrangian, critic_free = variant in ("ppo-lag", "rloo-lag"), variant.startswith("rloo")
    assert ("lagrange/lambda" in rows[-1]) == lagrangian
    assert ("train/cost_critic_loss" in rows[-1]) == (variant == "ppo-lag")
    assert ("train/reward_critic_loss" in rows[-1]) == (not critic_free)
    assert ("rollout/cost" in rows[-1]) == (variant not in ("ppo", "rloo"))
    # what the run held: RLOO trains the actor alone, PPO-Lag two critics beside it
    held = json.loads((tmp_path / "summary.json").read_text())["models"]
    critics = {"ppo-lag": ["reward_critic", "cost_critic"], "rloo": [], "rloo-lag": []}
    assert held["trained"] == ["actor", *critics.get(variant, ["reward_critic"])]
    assert (tmp_path / "training.png").stat().st_size > 0
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "model")  # plain transformers
    start = AutoModelForCausalLM.from_pretrained(world / "model").state_dict()
    moved = [k for k, v in trained.state_dict().items() if not torch.equal(v, start[k])]
    assert len(moved) > len(start) // 2  # the actor was trained, not only saved


def test_lambda_rises_above_and_falls_below_the_threshold(world: Path, tmp_path: Path) -> None:
    # The untrained cost model scores everything near 0: a threshold far below makes the
    # policy "unsafe" (lambda must rise), one far above makes it "safe" (lambda must fall).
    invoke(ppo_args(world, tmp_path / "up", "ppo-lag", "lagrange.threshold=-100"))
    invoke(ppo_args(world, tmp_path / "down", "ppo-lag", "lagrange.threshold=100"))
    up = [r["lagrange/lambda"] for r in metrics(tmp_path / "up")]
    down = [r["lagrange/lambda"] for r in metrics(tmp_path / "down")]
    assert up == sorted(up) and up[-1] > 1.0
    assert down == sorted(down, reverse=True) and down[-1] < 1.0


def test_calibrated_threshold_is_saved(world: Path, tmp_path: Path) -> None:
    invoke(
        ppo_args(
            world,
            tmp_path,
            "ppo-lag",
            "lagrange.target_unsafe_share=0.1",
            "lagrange.calibration_batches=2",
        )
    )
    saved = json.loads((tmp_path / "threshold.json").read_text())
    assert saved["target_unsafe_share"] == 0.1
    rows = metrics(tmp_path)
    assert rows[0]["lagrange/threshold"] == pytest.approx(saved["threshold"])


@pytest.mark.parametrize("rule", ["gradient", "pid"])
def test_resume_reproduces_losses_and_lambda(world: Path, tmp_path: Path, rule: str) -> None:
    # the PID rule's integral and last J_c travel in the checkpoint as the gradient rule's state
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ("lagrange.threshold=-1", f"lagrange.rule={rule}")
    invoke(ppo_args(world, straight, "ppo-lag", "train.save_every=2", *common))
    invoke(
        ppo_args(
            world,
            resumed,
            "ppo-lag",
            *common,
            f"train.resume={straight / 'checkpoints' / 'step-00000002'}",
        )
    )
    keys = (
        "loss",
        "lagrange/lambda",
        "train/reward_critic_loss",
        "train/cost_critic_loss",
        "rollout/reward",
        "rollout/cost",
    )
    after = {r["step"]: r for r in metrics(resumed)}
    assert sorted(after) == [3, 4]
    for row in metrics(straight)[2:]:
        for key in keys:
            assert after[row["step"]][key] == pytest.approx(row[key], abs=1e-6), key
    # J_c stays above d = -1 (the untrained cost model scores near 0): lambda rose from 1
    assert metrics(straight)[-1]["lagrange/lambda"] > 1.0


def test_ppo_lag_under_zero3_bf16(world: Path, tmp_path: Path) -> None:
    # Actor and critics partitioned, frozen models as ZeRO-3 inference engines, generation with
    # gathered parameters, fp32 score heads inside a bf16 engine.
    invoke(
        ppo_args(
            world,
            tmp_path,
            "ppo-lag",
            "deepspeed.zero_stage=3",
            "deepspeed.precision=bf16",
            "train.max_steps=2",
        )
    )
    rows = metrics(tmp_path)
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    AutoModelForCausalLM.from_pretrained(tmp_path / "model")


@pytest.mark.dist
@pytest.mark.slow
def test_two_ranks_zero3_share_one_multiplier(world: Path, tmp_path: Path) -> None:
    """ZeRO-3 over two CPU ranks: each rank rolls out its own prompts, but the threshold is
    calibrated from every rank's costs (all_gather), J_c is the mean over both ranks' windows
    (all-reduce), and lambda is the same number on both ranks after every step."""
    out = tmp_path / "run"
    window = 8  # = ppo.rollout_batch_size: each rank's window holds its last rollout
    args = ppo_args(
        world, out, "ppo-lag", "launch.num_gpus=2", f"launch.master_port={free_port()}",
        "deepspeed.zero_stage=3", "train.max_steps=3", "train.save_every=1", "train.keep_last=3",
        "lagrange.target_unsafe_share=0.5", "lagrange.calibration_batches=1",
        f"lagrange.episode_cost_window_size={window}", "lagrange.lambda_lr=0.5",
        "lagrange.lambda_max=null",
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "beaver", *args], env=child_env(), cwd=ROOT,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "deepspeed.launcher.runner" in proc.stdout  # really two processes
    d = json.loads((out / "threshold.json").read_text())["threshold"]  # written by rank 0
    logged = {r["step"]: r for r in metrics(out)}
    log_lambda = 0.0  # lambda_init = 1
    for step in (1, 2, 3):
        folder = out / "checkpoints" / f"step-{step:08d}"
        ranks = [
            torch.load(folder / f"rank-{r:05d}.pt", weights_only=True)["extra"]["lagrange"]
            for r in (0, 1)
        ]
        assert ranks[0]["threshold"] == ranks[1]["threshold"] == d  # one d, from both ranks
        assert ranks[0]["log_lambda"] == ranks[1]["log_lambda"]  # bit for bit
        w0, w1 = ranks[0]["window"], ranks[1]["window"]
        assert len(w0) == len(w1) == window and w0 != w1  # each rank saw its own episodes
        j_c = (sum(w0) + sum(w1)) / (2 * window)  # the mean over ranks, not either rank's
        log_lambda += 0.5 * math.exp(log_lambda) * (j_c - d)
        assert ranks[0]["log_lambda"] == pytest.approx(log_lambda, abs=1e-12)
        assert logged[step]["lagrange/mean_episode_cost"] == pytest.approx(j_c, abs=1e-6)
        assert logged[step]["lagrange/lambda"] == pytest.approx(math.exp(log_lambda), rel=1e-6)
    assert log_lambda != 0.0  # lambda moved, so the equalities above were tested on changes


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[tuple[Any, Any]]:
    """Record (args, result) of every call to `module.name` during the run."""
    calls: list[tuple[Any, Any]] = []
    real = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        calls.append((args, out))
        return out

    monkeypatch.setattr(module, name, spy)
    return calls


def test_per_step_cadence_moves_lambda_before_every_actor_update(
    world: Path, tmp_path: Path
) -> None:
    # 8 episodes a rollout in micro-batches of 4: two actor updates, so two multiplier steps
    # per rollout, each with that rollout's J_c (per_rollout would make one)
    invoke(
        ppo_args(
            world, tmp_path, "ppo-lag", "lagrange.update_cadence=per_step",
            "lagrange.threshold=-1", "lagrange.lambda_max=null", "lagrange.lambda_lr=0.1",
        )
    )  # fmt: skip
    log_lambda = 0.0
    for row in metrics(tmp_path):
        for _ in range(2):
            log_lambda += 0.1 * math.exp(log_lambda) * (row["lagrange/mean_episode_cost"] + 1)
        assert row["lagrange/lambda"] == pytest.approx(math.exp(log_lambda), rel=1e-9)
    assert log_lambda > 0.0


@pytest.mark.parametrize("whiten_them", [True, False])
def test_whitening_reaches_the_actor_step(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whiten_them: bool
) -> None:
    from beaver.stages import ppo_step

    steps = _spy(monkeypatch, ppo_step, "actor_step")
    invoke(ppo_args(world, tmp_path, "ppo-lag", f"ppo.whiten_advantages={whiten_them}"))
    assert len(steps) == 4 * 2  # 4 rollouts, 2 micro-batches each
    for (_actor, mb, adv, *_), _ in steps:
        mask = mb.response_mask.bool()
        # zero mean and unit (unbiased) variance over the micro-batch's response tokens
        mean, std = adv[mask].mean().item(), adv[mask].std().item()
        whitened = abs(mean) < 1e-4 and abs(std - 1.0) < 1e-3
        assert whitened == whiten_them, (mean, std)


def test_ptx_batches_train_the_actor_on_their_language_modelling_loss(
    world: Path, tmp_path: Path
) -> None:
    # Two runs that differ in the PTX weight only (same PTX batches, logged in both): the
    # weighted one must fit the SFT answers better, so the LM loss reached the actor's step.
    ptx = {}
    for coeff in (16.0, 1e-6):
        out = tmp_path / f"ptx-{coeff}"
        invoke(
            ppo_args(
                world, out, "ppo-lag", f"data.ptx=[toyworld-sft:1.0:{world}]",
                f"ppo.ptx_coeff={coeff}", "train.max_steps=6", "actor_optim.lr=2e-3",
            )
        )  # fmt: skip
        ptx[coeff] = [r["train/ptx_loss"] for r in metrics(out)]
    assert len(ptx[16.0]) == 6 and all(math.isfinite(x) for x in ptx[16.0] + ptx[1e-6])
    assert ptx[16.0][-1] < ptx[1e-6][-1] - 0.3, ptx
    invoke(ppo_args(world, tmp_path / "off", "ppo-lag", "ppo.ptx_coeff=0.0"))
    assert all("train/ptx_loss" not in r for r in metrics(tmp_path / "off"))


def test_several_responses_per_prompt_in_ppo_lag(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beaver.stages import ppo, ppo_step

    rollouts = _spy(monkeypatch, ppo, "collect_rollout")
    steps = _spy(monkeypatch, ppo_step, "actor_step")
    invoke(ppo_args(world, tmp_path, "ppo-lag", "generation.num_return_sequences=2"))
    assert len(rollouts) == 4
    for (_models, prompt_ids, *_), (rollout, _timings) in rollouts:
        # 8 prompts x 2 answers: each prompt twice, consecutively, each answer scored
        assert rollout.batch_size == 2 * prompt_ids.shape[0] == 16
        assert torch.equal(rollout.prompt_ids[0::2], rollout.prompt_ids[1::2])
        assert rollout.costs is not None and rollout.costs.shape == (16, 1)  # (B, K constraints)
    # every episode trains the actor: ceil(16 / 4) = 4 micro-batches per rollout
    assert len(steps) == 4 * 4 and all(mb.batch_size == 4 for (_a, mb, *_), _ in steps)
