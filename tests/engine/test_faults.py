"""Faults: non-finite steps are skipped (the model is untouched), `max_bad_steps` in a row stops
the run with a checkpoint, and SIGTERM / SIGINT save a resumable checkpoint and stop."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_helpers import make_trainer

from beaver.engine.checkpoint import latest_checkpoint
from beaver.engine.loop import StepResult, TrainingDiverged
from beaver.stages.sft import sft_step


def _params(engine: Any) -> list[torch.Tensor]:
    return [p.detach().clone() for p in engine.module.parameters()]


def _poisoned(bad_steps: set[int]) -> Any:
    """sft_step, but steps in `bad_steps` (1-based) get a NaN loss (NaN gradients)."""
    calls = {"n": 0}

    def step(engine: Any, batches: list[Any]) -> StepResult:
        calls["n"] += 1
        if calls["n"] not in bad_steps:
            return sft_step(engine, batches)
        for batch in batches:
            out = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            loss = out.logits.float().mean() * float("nan")
            engine.backward(loss)
            engine.step()
        return StepResult(loss=float("nan"))

    return step


@pytest.mark.parametrize("zero", [0, 2])
def test_nonfinite_step_is_skipped(tmp_path: Path, zero: int) -> None:
    t = make_trainer(tmp_path, zero=zero, total=3)
    t.run(1, tmp_path / "ckpt")
    before = _params(t.engine)
    result = t.run(1, tmp_path / "ckpt", step_fn=_poisoned({1}))
    after = _params(t.engine)
    assert result.progress.skipped_steps == 1 and result.progress.bad_in_row == 1
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # the next good step trains again, from finite weights
    result = t.run(1, tmp_path / "ckpt2")
    assert math.isfinite(t.losses[-1]) and result.progress.bad_in_row == 0
    assert all(torch.isfinite(p).all() for p in t.engine.module.parameters())


def test_max_bad_steps_stops_with_checkpoint(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, total=10, max_bad_steps=2)
    with pytest.raises(TrainingDiverged, match="2 steps in a row") as err:
        t.run(10, tmp_path / "ckpt", step_fn=_poisoned({3, 4}))
    saved = latest_checkpoint(tmp_path / "ckpt")
    assert saved is not None and saved.name == "step-00000004"
    assert str(saved) in str(err.value)
    # the model in that checkpoint is the one before the bad steps: it resumes and trains
    t2 = make_trainer(tmp_path / "b", total=10)
    t2.run(6, tmp_path / "ckpt", resume_from=saved)
    assert len(t2.losses) == 2 and all(math.isfinite(x) for x in t2.losses)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_resume_is_exact(tmp_path: Path, sig: signal.Signals) -> None:
    straight = make_trainer(tmp_path / "a", total=6)
    straight.run(6, tmp_path / "a" / "ckpt")

    def signalled(engine: Any, batches: list[Any]) -> StepResult:
        out = sft_step(engine, batches)
        if len(interrupted.losses) == 2:  # during step 3: the loop finishes it, then stops
            os.kill(os.getpid(), sig)
        return out

    interrupted = make_trainer(tmp_path / "b", total=6)
    before = signal.getsignal(sig)
    result = interrupted.run(6, tmp_path / "b" / "ckpt", step_fn=signalled)
    assert result.interrupted == sig.name and result.progress.step == 3
    assert result.checkpoint == latest_checkpoint(tmp_path / "b" / "ckpt")
    assert signal.getsignal(sig) is before  # the caller's handler is back after the loop
    resumed = make_trainer(tmp_path / "c", total=6)
    resumed.run(6, tmp_path / "b" / "ckpt", resume_from=result.checkpoint)
    combined = interrupted.losses + resumed.losses
    assert max(abs(a - b) for a, b in zip(straight.losses, combined, strict=True)) < 1e-6


def _controller() -> Any:
    from beaver.algo import LagrangeController

    return LagrangeController(
        lambda_init=1.0,
        lambda_lr=0.5,
        lambda_max=None,
        threshold=0.0,
        lambda_update_delay_steps=0,
        episode_cost_window_size=4,
    )


def _moving_lambda(controller: Any, step_fn: Any) -> Any:
    """`step_fn`, with a PPO-Lag rollout event first: every step observes cost 1 > threshold 0,
    so lambda rises on every step the loop keeps."""

    def step(engine: Any, batches: list[Any]) -> StepResult:
        controller.observe([1.0, 1.0])
        controller.on_rollout(1.0)
        return step_fn(engine, batches)

    return step


def test_a_skipped_step_does_not_move_lambda(tmp_path: Path) -> None:
    controller, reference = _controller(), _controller()
    t = make_trainer(tmp_path, total=4)
    result = t.run(
        4, tmp_path / "ckpt", step_fn=_moving_lambda(controller, _poisoned({2, 3})),
        stateful={"lagrange": controller},
    )  # fmt: skip
    assert result.progress.skipped_steps == 2
    for _ in range(2):  # the two steps that were kept
        reference.observe([1.0, 1.0])
        reference.on_rollout(1.0)
    assert controller.state_dict() == reference.state_dict()
    assert controller.lambda_ > 1.0


def test_the_checkpoint_before_bad_steps_holds_lambda_from_before_them(tmp_path: Path) -> None:
    controller = _controller()
    seen: list[dict[str, Any]] = []

    def step(engine: Any, batches: list[Any]) -> StepResult:
        seen.append(controller.state_dict())  # the state each step starts from
        return inner(engine, batches)

    inner = _moving_lambda(controller, _poisoned({3, 4}))
    t = make_trainer(tmp_path, total=10, max_bad_steps=2)
    with pytest.raises(TrainingDiverged):
        t.run(10, tmp_path / "ckpt", step_fn=step, stateful={"lagrange": controller})
    saved = latest_checkpoint(tmp_path / "ckpt")
    assert saved is not None and saved.name == "step-00000004"
    state = torch.load(saved / "rank-00000.pt", weights_only=True)["extra"]["lagrange"]
    assert state == seen[2]  # lambda after step 2, before the bad steps 3 and 4
    assert state["step"] == 2 and controller.state_dict() == seen[2]
