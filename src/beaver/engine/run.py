"""A training run's folder and lifetime: start (process group, seeds, config.yaml, logger, resume
point) and finish (summary, trackers closed, clean multi-process exit).

Run folder: config.yaml, ds_config.json (per engine), metrics.jsonl, checkpoints/, the final
model, summary.json + a few summary lines on the console.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beaver.config.loader import dump_config
from beaver.config.stages import TrainStage
from beaver.engine import checkpoint as ckpt
from beaver.engine import dist
from beaver.engine.loop import LoopResult
from beaver.engine.seed import seed_everything
from beaver.engine.tracking import MetricsLogger
from beaver.errors import UserError


@dataclass
class Run:
    cfg: TrainStage
    dir: Path
    logger: MetricsLogger
    resume_from: Path | None
    started: float

    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def print(self, message: str) -> None:
        self.logger.print(message)


def start_run(cfg: TrainStage) -> Run:
    """Process group, per-rank seeds, run folder with config.yaml, logger; finds the resume point.

    A fresh run (no `train.resume`) refuses a folder that already holds checkpoints, so two runs
    never mix their checkpoints.
    """
    started = time.time()
    dist.init_distributed()
    _quiet_transformers()
    seed_everything(cfg.train.seed, dist.rank())
    out = Path(cfg.output_dir)
    resume_from = ckpt.resolve_resume(cfg.train.resume, out / "checkpoints")
    if cfg.train.resume is None and ckpt.latest_checkpoint(out / "checkpoints") is not None:
        raise UserError(
            f"output_dir {out} already holds checkpoints of a run: continue it with "
            "train.resume=auto, or choose another output_dir (or delete it)."
        )
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(cfg))
    dist.barrier()
    logger = MetricsLogger(out, cfg.logging, cfg.model_dump(mode="json"), enabled=dist.is_main())
    return Run(cfg, out, logger, resume_from, started)


def _quiet_transformers() -> None:
    """No per-file progress bars ("Loading weights", "Writing model shards") in run logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def finish_run(
    run: Run, result: LoopResult, model_dir: Path | None, extra: dict[str, Any] | None = None
) -> None:
    """Print and save the summary, close the trackers, and end the process cleanly.

    An interrupted run exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
    """
    p = result.progress
    summary = {
        "status": f"interrupted ({result.interrupted})" if result.interrupted else "finished",
        "steps": p.step,
        "epochs_completed": p.epoch,
        "skipped_steps": p.skipped_steps,
        "wall_seconds": round(time.time() - run.started, 1),
        "train_seconds": round(result.train_seconds, 1),
        "tokens": p.tokens,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "final_eval": result.last_eval,
        "model": str(model_dir) if model_dir else None,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        **(extra or {}),
    }
    if dist.is_main():
        (run.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        run.print(_summary_text(summary))
    run.logger.close()
    code = 0
    if result.interrupted:
        code = {"SIGINT": 130, "SIGTERM": 143}.get(result.interrupted, 1)
    dist.finish(code)


def _summary_text(s: dict[str, Any]) -> str:
    lines = [
        f"{s['status']}: {s['steps']} steps ({s['skipped_steps']} skipped) in "
        f"{s['wall_seconds']} s ({s['train_seconds']} s training), {s['tokens_per_s']} tokens/s",
    ]
    if s["final_eval"]:
        lines.append("final eval: " + "  ".join(f"{k}={v:.4g}" for k, v in s["final_eval"].items()))
    if s["model"]:
        lines.append(f"model: {s['model']}")
    if s["checkpoint"]:
        lines.append(f"resumable checkpoint: {s['checkpoint']}")
    return "\n".join(lines)
