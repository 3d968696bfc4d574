"""A training run's folder and lifetime: start (process group, seeds, config.yaml, logger, resume
point) and finish (summary, trackers closed, clean multi-process exit).

Run folder: config.yaml, ds_config.json (the DeepSpeed config of the stage's main engine, and
`ds_config.<engine>.json` of each other one), metrics.jsonl, checkpoints/, the final model,
summary.json + a few summary lines on the console.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beaver.config.loader import dump_config
from beaver.config.stages import TrainStage
from beaver.engine import checkpoint as ckpt
from beaver.engine import dist
from beaver.engine.build import DeepSpeedSpec, write_ds_config
from beaver.engine.loop import LoopResult
from beaver.engine.seed import seed_everything
from beaver.engine.tracking import MetricsLogger
from beaver.errors import UserError
from beaver.files import write_json


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

    def write_ds_config(self, spec: DeepSpeedSpec, engine: str | None = None) -> None:
        """`ds_config.json` of the main engine (`engine` None), `ds_config.<engine>.json` of
        another (rank 0)."""
        write_ds_config(
            spec, self.dir / ("ds_config.json" if engine is None else f"ds_config.{engine}.json")
        )


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
        **peak_memory(),
        "final_eval": result.last_eval,
        "model": str(model_dir) if model_dir else None,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        **(extra or {}),
    }
    if dist.is_main():
        write_json(run.dir / "summary.json", summary)
        run.print(_summary_text(summary))
    run.logger.close()
    code = 0
    if result.interrupted:
        code = {"SIGINT": 130, "SIGTERM": 143}.get(result.interrupted, 1)
    dist.finish(code)


def peak_memory() -> dict[str, float | None]:
    """Peak memory of this run, the largest over ranks, in MiB: the process's peak resident set
    (`peak_rss_mb`, CPU memory, what offload and a CPU run use) and, on CUDA, the peak memory
    allocated by torch on this rank's GPU (`peak_gpu_mb`, None without CUDA).

    Each stage runs in its own process, so the process peak is the run's peak (a stage called
    in-process by a test also counts what ran before it in that process).
    """
    import torch

    # ru_maxrss is in KiB on Linux and in bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    values = {"peak_rss_mb": rss / (2**20 if sys.platform == "darwin" else 2**10)}
    if torch.cuda.is_available():
        values["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    peak = dist.reduce_values(values, "max")
    return {
        "peak_rss_mb": round(peak["peak_rss_mb"], 1),
        "peak_gpu_mb": round(peak["peak_gpu_mb"], 1) if "peak_gpu_mb" in peak else None,
    }


def _summary_text(s: dict[str, Any]) -> str:
    gpu = f", peak GPU memory {s['peak_gpu_mb']:.0f} MiB" if s["peak_gpu_mb"] is not None else ""
    lines = [
        f"{s['status']}: {s['steps']} steps ({s['skipped_steps']} skipped) in "
        f"{s['wall_seconds']} s ({s['train_seconds']} s training), {s['tokens_per_s']} tokens/s",
        f"peak memory: {s['peak_rss_mb']:.0f} MiB resident{gpu}",
    ]
    if s["final_eval"]:
        lines.append("final eval: " + "  ".join(f"{k}={v:.4g}" for k, v in s["final_eval"].items()))
    if s["model"]:
        lines.append(f"model: {s['model']}")
    if s["checkpoint"]:
        lines.append(f"resumable checkpoint: {s['checkpoint']}")
    return "\n".join(lines)
