"""The training loop shared by every stage: it takes a step function and knows no algorithm.

A *step* is one optimiser step of the stage: SFT and the score models pass the
`gradient_accumulation_steps` micro-batches of one step; PPO passes one prompt batch and does the
rollout and all its updates inside `step_fn`. The loop owns everything around it:

- data position (epoch, micro-batches consumed) with a seeded sampler, so resume is exact;
- evaluation (an `Evaluation`: every `every` steps or per epoch, and once at the end);
- checkpoints every `save_every` steps, at the end, on SIGTERM / Ctrl-C, and when it gives up
  after `max_bad_steps` non-finite steps in a row (the model was not updated by those steps,
  and the `stateful` objects are put back as they were before each of them);
- resume: from `resume_from`, or from the newest older complete checkpoint when a file of that
  one is damaged (said on the console); the optimiser settings of *this* run apply from the
  resumed step (a one-line notice lists what changed; the optimiser's moments and the schedule's
  position come from the checkpoint); rows of `metrics.jsonl` past the resumed step (a killed
  run's) are dropped, so no step is logged twice;
- logging (rank 0): loss, the lr the step used, grad norm, tokens/s, ETA.

Engines in `engines` are the *trained* ones (saved and restored); frozen engines (reference
model, reward model) are the stage's business. `stateful` objects (`state_dict` /
`load_state_dict`: a Lagrange controller, normalisers) travel in the checkpoint per rank.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch.utils.data import DataLoader

from beaver.config.sections import LoopCfg, OptimCfg, TrainCfg
from beaver.engine import checkpoint as ckpt
from beaver.engine import dist
from beaver.engine.build import apply_optim_settings
from beaver.engine.data import batches_per_epoch, set_position
from beaver.engine.tracking import MetricsLogger
from beaver.errors import UserError


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class StepResult:
    """What a step function reports (values of this rank; the loop reduces over ranks)."""

    loss: float
    """The step's training loss (mean over its micro-batches)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """More scalars to log; every rank must report the same keys."""
    tokens: int = 0
    """Tokens processed (non-padding), for tokens/s."""
    samples: int = 0
    """Sequences processed."""
    applied: bool | None = None
    """False if an optimiser step was skipped; None lets the loop ask the engines."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint (meta.json)."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    """Micro-batches of this rank consumed in `epoch`."""
    tokens: int = 0
    samples: int = 0
    skipped_steps: int = 0
    bad_in_row: int = 0


@dataclass
class LoopResult:
    progress: Progress
    interrupted: str | None = None
    """The signal that stopped training early ("SIGINT", "SIGTERM"), or None."""
    last_eval: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    train_seconds: float = 0.0
    tokens_per_s: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """When and how the loop evaluates: `run()` returns the metrics (keys `eval/...`)."""

    run: Callable[[], dict[str, float]]
    strategy: str = "epoch"
    """`steps` (every `every` steps) or `epoch` (after each epoch); always once at the end."""
    every: int = 100

    @classmethod
    def of(cls, train: TrainCfg, run: Callable[[], dict[str, float]]) -> Evaluation | None:
        """The evaluation `train` asks for (None for `eval_strategy: no`)."""
        if train.eval_strategy == "no":
            return None
        return cls(run, train.eval_strategy, train.eval_every)


class TrainingDiverged(UserError):
    """`max_bad_steps` non-finite steps in a row."""


@dataclass
class _Clock:
    """Time spent in steps of this session (eval and saving excluded), for tokens/s and ETA."""

    seconds: float = 0.0
    steps: int = 0
    tokens: int = 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.steps += 1


def count_steps(train: LoopCfg, loader: DataLoader, batches_per_step: int = 1) -> int:
    """Optimiser steps of the run: `train.max_steps`, else `epochs` x whole steps per epoch."""
    return train.max_steps or train.epochs * (batches_per_epoch(loader) // batches_per_step)


def train_loop(
    step_fn: Callable[[list[Any]], StepResult],
    loader: DataLoader,
    engines: dict[str, Any],
    *,
    train: LoopCfg,
    checkpoint_dir: str | Path,
    logger: MetricsLogger,
    total_steps: int,
    batches_per_step: int = 1,
    evaluation: Evaluation | None = None,
    stateful: dict[str, Stateful] | None = None,
    resume_from: str | Path | None = None,
    optim: dict[str, tuple[str, OptimCfg]] | None = None,
) -> LoopResult:
    """Run `step_fn` until `total_steps`, resuming from `resume_from` if given.

    `optim`: per trained engine, the config key of its optimiser settings and the settings
    (`{"model": ("optim", cfg.optim)}`), for messages and for a resume with changed settings.
    """
    stateful = stateful or {}
    optim = optim or {}
    progress = Progress()
    if resume_from is not None:
        named = train.resume not in (None, "auto") and ckpt.is_checkpoint(train.resume)
        meta, extra, resume_from = ckpt.load_intact(
            resume_from, engines, logger.print, fallback=not named
        )
        progress = Progress(**meta["progress"])
        for key, obj in stateful.items():
            obj.load_state_dict(extra[key])
        for name, (_, settings) in optim.items():
            apply_optim_settings(engines[name], settings)
        logger.drop_after(progress.step)
        logger.print(f"resumed from {resume_from} at step {progress.step}")
        if notice := _changed_settings(meta, optim, total_steps):
            logger.print(notice)
    steps_per_epoch = batches_per_epoch(loader) // batches_per_step
    if steps_per_epoch == 0:
        raise UserError(
            f"An epoch has {batches_per_epoch(loader)} micro-batches per rank, fewer "
            f"than one step needs ({batches_per_step}); use more data or smaller "
            "batches."
        )
    result = LoopResult(progress)
    clock = _Clock()
    last_save = progress.step if resume_from is not None else -1
    last_eval_step = -1

    def save() -> Path:
        nonlocal last_save
        extra = {key: obj.state_dict() for key, obj in stateful.items()}
        settings = {
            name: {"key": key, **cfg.model_dump(mode="json")} for name, (key, cfg) in optim.items()
        }
        result.checkpoint = ckpt.save_checkpoint(
            checkpoint_dir,
            progress.step,
            engines,
            extra,
            {"progress": asdict(progress), "optim": settings, "total_steps": total_steps},
            train.keep_last,
        )
        last_save = progress.step
        return result.checkpoint

    def run_eval() -> None:
        nonlocal last_eval_step
        if evaluation is None or last_eval_step == progress.step:
            return
        result.last_eval = evaluation.run()
        last_eval_step = progress.step
        logger.log(progress.step, result.last_eval)

    logger.start(total_steps, progress.step)
    windows = _windows(loader, progress, batches_per_step, steps_per_epoch)
    try:
        with _stop_signals() as stop:
            while progress.step < total_steps:
                lrs = _lrs(engines)  # what this step trains with (the schedule moves in it)
                before = _snapshot(stateful)
                t0 = time.perf_counter()
                out = step_fn(next(windows))
                clock.add(time.perf_counter() - t0)
                progress.step += 1
                progress.batches_done += batches_per_step
                stop_now = _account(out, engines, progress, clock, logger, bool(stop))
                if progress.bad_in_row:  # a skipped step moves nothing (lambda included)
                    _restore(stateful, before)
                if progress.step % logger.cfg.log_every == 0 or progress.step == total_steps:
                    metrics = _step_metrics(out, engines, lrs, clock, progress, total_steps)
                    logger.log(progress.step, metrics)
                if progress.bad_in_row >= train.max_bad_steps:
                    raise _diverged(progress, save(), [key for key, _ in optim.values()])
                if progress.batches_done == steps_per_epoch * batches_per_step:
                    progress.epoch, progress.batches_done = progress.epoch + 1, 0
                    if evaluation is not None and evaluation.strategy == "epoch":
                        run_eval()
                if (
                    evaluation is not None
                    and evaluation.strategy == "steps"
                    and progress.step % evaluation.every == 0
                ):
                    run_eval()
                if train.save_every and progress.step % train.save_every == 0:
                    save()
                if stop_now:
                    result.interrupted = stop.name or "signal"
                    break
    finally:
        logger.stop()  # also when a step raises (or the run diverged)
    if result.interrupted is None:
        run_eval()
    if last_save != progress.step:
        save()
    result.train_seconds = clock.seconds
    result.tokens_per_s = clock.tokens / clock.seconds if clock.seconds > 0 else 0.0
    return result


def _snapshot(stateful: dict[str, Stateful]) -> dict[str, dict[str, Any]]:
    """A deep copy of every stateful object's state, taken before a step."""
    return {key: copy.deepcopy(obj.state_dict()) for key, obj in stateful.items()}


def _restore(stateful: dict[str, Stateful], states: dict[str, dict[str, Any]]) -> None:
    """Undo a skipped step's changes: the model was not updated, so a multiplier or a
    normaliser moved by its rollout must not be either, and the checkpoint "before them"
    holds their state from before them."""
    for key, obj in stateful.items():
        obj.load_state_dict(states[key])


def _windows(
    loader: DataLoader, progress: Progress, size: int, steps_per_epoch: int
) -> Iterator[list[Any]]:
    """Endless windows of `size` micro-batches, one per step, starting at the data position in
    `progress` (which the caller advances). An epoch ends after `steps_per_epoch` windows; its
    leftover micro-batches are dropped, so a step never spans two epochs."""
    while True:
        set_position(loader, progress.epoch, progress.batches_done)
        batches = iter(loader)
        for _ in range(steps_per_epoch - progress.batches_done // size):
            yield [next(batches) for _ in range(size)]


def _account(
    out: StepResult,
    engines: dict[str, Any],
    progress: Progress,
    clock: _Clock,
    logger: MetricsLogger,
    stop_requested: bool,
) -> bool:
    """Count tokens and bad steps (agreed over ranks); True when any rank was asked to stop."""
    ok = math.isfinite(out.loss) and (
        out.applied if out.applied is not None else _engines_applied(engines)
    )
    flags = dist.reduce_values({"bad": float(not ok), "stop": float(stop_requested)}, "max")
    counts = dist.reduce_values({"tokens": out.tokens, "samples": out.samples}, "sum")
    progress.tokens += int(counts["tokens"])
    progress.samples += int(counts["samples"])
    clock.tokens += int(counts["tokens"])
    if flags["bad"] > 0:
        progress.bad_in_row += 1
        progress.skipped_steps += 1
        logger.print(
            f"warning: step {progress.step} skipped: non-finite loss or gradient norm "
            f"(loss={out.loss}); {progress.bad_in_row} in a row"
        )
    else:
        progress.bad_in_row = 0
    return flags["stop"] > 0


def _diverged(progress: Progress, checkpoint: Path, optim_keys: list[str]) -> TrainingDiverged:
    keys = " and/or ".join(f"{k}.lr" for k in dict.fromkeys(optim_keys)) or "the learning rate"
    return TrainingDiverged(
        f"{progress.bad_in_row} steps in a row had a non-finite loss or gradient norm (at step "
        f"{progress.step}); they were skipped and the run stopped. The model before them is in "
        f"checkpoint {checkpoint}. Lower {keys} (or check the data) and resume with "
        "train.resume=auto: the new values apply from that step."
    )


def _changed_settings(
    meta: dict[str, Any], optim: dict[str, tuple[str, OptimCfg]], total_steps: int
) -> str | None:
    """A one-line notice of the optimiser settings that differ from the checkpoint's."""
    saved = meta.get("optim") or {}
    changes = []
    for name, (key, cfg) in optim.items():
        before = saved.get(name)
        if before is None:
            continue
        now = cfg.model_dump(mode="json")
        changes += [
            f"{key}.{field} {before[field]} -> {value}"
            for field, value in now.items()
            if field in before and before[field] != value
        ]
    length = meta.get("total_steps")
    if length is not None and length != total_steps:
        changes.append(f"schedule length {length} -> {total_steps} steps")
    if not changes:
        return None
    listed = ", ".join(dict.fromkeys(changes))  # two critics share critic_optim: said once
    return (
        f"resumed with changed optimiser settings, applied from step {meta['progress']['step']} "
        f"(the optimiser's moments and the schedule's position kept): {listed}"
    )


def _lrs(engines: dict[str, Any]) -> dict[str, float]:
    """The current learning rate of every trained engine."""
    return {
        name: float(e.get_lr()[0])
        for name, e in engines.items()
        if getattr(e, "optimizer", None) is not None
    }


def _engines_applied(engines: dict[str, Any]) -> bool:
    """Did every trained engine apply its last optimiser step? fp16 loss-scale overflows are
    DeepSpeed's normal loss-scale search, not a fault, so fp16 engines are not asked."""
    return all(
        e.was_step_applied()
        for e in engines.values()
        if getattr(e, "optimizer", None) is not None and not e.fp16_enabled()
    )


def _step_metrics(
    out: StepResult,
    engines: dict[str, Any],
    lrs: dict[str, float],
    clock: _Clock,
    progress: Progress,
    total_steps: int,
) -> dict[str, float]:
    metrics = dist.reduce_values({"loss": out.loss, **out.metrics}, "mean")
    trained = {n: e for n, e in engines.items() if getattr(e, "optimizer", None) is not None}
    for name, engine in trained.items():
        suffix = "" if len(trained) == 1 else f"/{name}"
        metrics[f"lr{suffix}"] = lrs[name]
        norm = engine.get_global_grad_norm()
        if norm is not None:
            metrics[f"grad_norm{suffix}"] = float(norm)
    per_step = clock.seconds / max(clock.steps, 1)
    metrics["tokens_per_s"] = clock.tokens / clock.seconds if clock.seconds > 0 else 0.0
    metrics["epoch"] = progress.epoch
    metrics["eta_s"] = per_step * (total_steps - progress.step)
    return metrics


class _StopFlag:
    def __init__(self) -> None:
        self.name: str | None = None

    def __bool__(self) -> bool:
        return self.name is not None


@contextmanager
def _stop_signals() -> Iterator[_StopFlag]:
    """SIGINT / SIGTERM ask the loop to save and stop after the current step; a second Ctrl-C
    interrupts at once."""
    flag = _StopFlag()

    def handler(signum: int, _frame: Any) -> None:
        if flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.name = signal.Signals(signum).name

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no handlers, no graceful stop
        previous = {}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
