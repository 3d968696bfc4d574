"""Where metrics go (rank 0 only): the console, `metrics.jsonl`, and wandb or tensorboard.

Console: a rich live progress bar (step, loss, lr, tokens/s, ETA) on a terminal; plain lines every
`log_every` steps when stdout is not a TTY (CI logs, pipes). wandb runs offline unless an API key
is set (`WANDB_API_KEY`) or `WANDB_MODE` says otherwise; nothing reaches the network unless the
user configured it. Keys are never logged: the tracker gets the resolved config only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from beaver.config.sections import LoggingCfg
from beaver.console import plain_console

_SHOWN = (
    "loss",
    "eval/loss",
    "eval/accuracy",
    "eval/sign_accuracy",
    "lr",
    "grad_norm",
    "rollout/reward",
    "rollout/cost",
    "lagrange/lambda",
    "rollout/kl_k1",
    "rollout/eos_rate",
    "tokens_per_s",
)


def format_metrics(metrics: dict[str, float], keys: tuple[str, ...] | None = None) -> str:
    """`key=value` of `keys` (all by default); with several constraints, after `lagrange/lambda`
    comes each named multiplier (`lagrange/NAME/lambda`), which the fixed keys cannot list."""
    if keys is not None and "lagrange/lambda" in keys and "lagrange/lambda" not in metrics:
        named = tuple(k for k in metrics if k.startswith("lagrange/") and k.endswith("/lambda"))
        at = keys.index("lagrange/lambda") + 1
        keys = (*keys[:at], *named, *keys[at:])
    items = [(k, metrics[k]) for k in (keys or tuple(metrics)) if k in metrics]
    return "  ".join(f"{k}={_number(v)}" for k, v in items)


def _number(v: float) -> str:
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class MetricsLogger:
    """Rank 0 writes; on other ranks every method does nothing."""

    def __init__(
        self, run_dir: str | Path, cfg: LoggingCfg, config: dict[str, Any], enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.console = plain_console()
        self.live = enabled and sys.stdout.isatty()
        self._progress: Progress | None = None
        self._task: Any = None
        self._wandb: Any = None
        self._tb: Any = None
        self._jsonl: Any = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        name = cfg.run_name or self.run_dir.name
        if cfg.backend == "wandb":
            self._wandb = _start_wandb(self.run_dir, cfg.project, name, config)
        elif cfg.backend == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    # console -----------------------------------------------------------------------------
    def start(self, total_steps: int, step: int = 0, description: str = "train") -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}", markup=False),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(
            description, total=total_steps, completed=step, metrics=""
        )
        self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def print(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, markup=False, soft_wrap=True)

    # metrics -----------------------------------------------------------------------------
    def log(self, step: int, metrics: dict[str, float], line: bool = True) -> None:
        """Record `metrics` at `step` everywhere; the live bar shows training metrics, plain lines
        show them without a TTY (and evaluations always)."""
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, global_step=step)
        evaluation = any(k.startswith("eval/") for k in metrics)
        if self._progress is not None and not evaluation:
            self._progress.update(
                self._task, completed=step, metrics=format_metrics(metrics, _SHOWN)
            )
        elif line:  # evaluations print a line above the live bar
            eta = metrics.get("eta_s")
            tail = f"  eta={_duration(eta)}" if eta is not None else ""
            self.console.print(
                f"step {step}  {format_metrics(metrics, _SHOWN)}{tail}",
                markup=False,
                soft_wrap=True,
            )

    def drop_after(self, step: int) -> None:
        """Forget the rows of `metrics.jsonl` logged after `step`: a resumed run repeats the
        steps a killed run made past its last checkpoint (a line cut short by the kill goes too).
        """
        if not self.enabled:
            return
        path = self.run_dir / "metrics.jsonl"
        self._jsonl.close()
        kept = [line for line in path.read_text().splitlines() if _step_of(line) <= step]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
        self._jsonl = open(path, "a")  # noqa: SIM115 (closed in close())

    def close(self) -> None:
        self.stop()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _step_of(line: str) -> float:
    """The step of a metrics row; infinite for a line that does not parse (cut by a kill)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _start_wandb(run_dir: Path, project: str, name: str, config: dict[str, Any]) -> Any:
    import wandb

    mode = os.environ.get("WANDB_MODE") or (
        "online" if os.environ.get("WANDB_API_KEY") else "offline"
    )
    return wandb.init(
        project=project,
        name=name,
        dir=str(run_dir),
        config=config,
        mode=mode,  # type: ignore[arg-type]
        settings=wandb.Settings(silent=True, console="off"),
    )


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
