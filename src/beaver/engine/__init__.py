"""The shared DeepSpeed core: it knows no algorithm.

- `build`: DeepSpeed config from the validated config, AdamW (+ no decay on biases/norms),
  schedule, `init_engine`;
- `loop`: `train_loop(step_fn, loader, engines, ...)` with evaluation, checkpoints, faults, logging;
- `checkpoint`: `save_checkpoint(root, step, engines, extra_state, meta)` / `load_checkpoint`;
- `run`: the run folder (`start_run` / `finish_run`); `data`: the resumable sampler and loaders;
- `dist`: process group and collectives; `launch`: re-launch through the DeepSpeed launcher;
- `seed`: seeding and RNG state; `tracking`: console, metrics.jsonl, wandb / tensorboard.
"""

from beaver.engine.build import init_engine, make_ds_config, write_ds_config
from beaver.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from beaver.engine.data import make_loader, to_device
from beaver.engine.loop import LoopResult, Progress, StepResult, TrainingDiverged, train_loop
from beaver.engine.run import Run, finish_run, start_run

__all__ = [
    "LoopResult",
    "Progress",
    "Run",
    "StepResult",
    "TrainingDiverged",
    "finish_run",
    "init_engine",
    "latest_checkpoint",
    "load_checkpoint",
    "make_ds_config",
    "make_loader",
    "save_checkpoint",
    "start_run",
    "to_device",
    "train_loop",
    "write_ds_config",
]
