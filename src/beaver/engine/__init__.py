"""The shared DeepSpeed core: it knows no algorithm.

- `build`: each engine's `DeepSpeedSpec` from the validated config, AdamW (+ no decay on
  biases/norms), schedule, `init_engine`;
- `loop`: `train_loop(step_fn, loader, engines, ...)` with evaluation, checkpoints, faults, logging;
- `checkpoint`: `save_checkpoint(root, step, engines, extra_state, meta)` / `load_checkpoint`;
- `run`: the run folder (`start_run` / `finish_run`); `data`: the resumable sampler and loaders;
- `dist`: process group and collectives (`reduce_values`, `gather`); `launch`: re-launch
  through the DeepSpeed launcher;
- `seed`: seeding and RNG state; `tracking`: console, metrics.jsonl, wandb / tensorboard.

A stage with several engines and extra state (PPO-Lag) looks like this:

    run = start_run(cfg)                                   # process group, seeds, run folder
    actor = init_engine(actor_model, make_ds_config(cfg.deepspeed, cfg.train, cfg.actor_optim),
                        cfg.actor_optim, total_steps)      # same for the critics
    ref = init_engine(ref_model, make_ds_config(cfg.deepspeed, cfg.train, None))   # frozen
    def step(batches): ...rollout with ref/RM/CM, update actor + critics...; return StepResult(..)
    # one-model stages pass evaluation=Evaluation.of(cfg.train, fn) to evaluate
    result = train_loop(step, prompt_loader, {"actor": actor, "reward_critic": rc,
                        "cost_critic": cc}, train=cfg.train, checkpoint_dir=run.checkpoint_dir,
                        logger=run.logger, total_steps=total_steps,
                        stateful={"lagrange": controller, "normalizer": norm},
                        resume_from=run.resume_from)
    finish_run(run, result, save_hf(actor, tokenizer, run.dir / "model"))
"""

from beaver.engine.build import DeepSpeedSpec, init_engine, make_ds_config, write_ds_config
from beaver.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from beaver.engine.data import make_loader, to_device
from beaver.engine.loop import (
    Evaluation,
    LoopResult,
    Progress,
    StepResult,
    TrainingDiverged,
    train_loop,
)
from beaver.engine.run import Run, finish_run, start_run

__all__ = [
    "DeepSpeedSpec",
    "Evaluation",
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
