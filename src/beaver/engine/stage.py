"""The skeleton of a stage that trains one model on a dataset (SFT, reward / cost model, DPO).

The stage brings what differs — how to load its model, its step, its evaluation, how to save —
and this runs the rest: data loaders, DeepSpeed config and engine, the shared loop, the final
save (skipped when a signal stopped the run), the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from beaver.config.sections import OptimCfg
from beaver.config.stages import OneModelStage
from beaver.engine.build import DeepSpeedSpec, init_engine, make_ds_config
from beaver.engine.checkpoint import disk_errors
from beaver.engine.checkpoint import finished_advice as _finished
from beaver.engine.data import make_loader
from beaver.engine.loop import Evaluation, StepResult, count_steps, train_loop
from beaver.engine.run import Run, finish_run
from beaver.models.adapters import parameter_counts


def train_one_model(
    cfg: OneModelStage,
    run: Run,
    optim: OptimCfg,
    datasets: tuple[Any, Any | None],
    load_model: Callable[[DeepSpeedSpec], nn.Module],
    step: Callable[[Any, list[Any]], StepResult],
    evaluate: Callable[[Any, Any], dict[str, float]],
    save: Callable[[Any, Path], Path],
    summary: dict[str, Any] | None = None,
) -> None:
    """Train `load_model(deepspeed)` (the model, loaded for its engine's set-up) with
        `step(engine, micro_batches)` on `datasets` (train, eval), evaluating with
        `evaluate(engine, eval_loader)`; `save(engine, <run>/model)` at the end (it returns the folder
    written: `model/`, or `adapter/` for a LoRA model saved without its merged copy). `summary` adds the
        stage's own entries to summary.json."""
    train_ds, eval_ds = datasets
    for name, ds in (("train data", train_ds), ("eval data", eval_ds)):
        if ds is not None:
            run.print(f"{name}: {ds.stats.summary()}")
    train = cfg.train
    loader = make_loader(train_ds, train.per_device_batch_size, shuffle=True, seed=train.seed)
    steps = count_steps(train, loader, train.gradient_accumulation_steps)
    deepspeed = make_ds_config(cfg.deepspeed, train, optim)
    run.write_ds_config(deepspeed)
    engine = init_engine(
        load_model(deepspeed),
        deepspeed,
        optim,
        steps,
        activation_checkpointing=cfg.deepspeed.activation_checkpointing,
    )
    evaluation = None
    if eval_ds is not None and len(eval_ds) > 0:
        eval_loader = make_loader(
            eval_ds, train.per_device_batch_size, shuffle=False, seed=train.seed
        )
        evaluation = Evaluation.of(train, lambda: evaluate(engine, eval_loader))
    result = train_loop(
        lambda batches: step(engine, batches),
        loader,
        {"model": engine},
        train=train,
        checkpoint_dir=run.checkpoint_dir,
        logger=run.logger,
        total_steps=steps,
        batches_per_step=train.gradient_accumulation_steps,
        evaluation=evaluation,
        resume_from=run.resume_from,
        optim={"model": ("optim", optim)},
    )
    model_dir = None
    if result.interrupted is None:
        with disk_errors("the final model", run.dir / "model", _finished(result)):
            model_dir = save(engine, run.dir / "model")
    else:
        run.print(f"stopped by {result.interrupted}; continue with train.resume=auto")
    trainable, total = parameter_counts(engine.module)
    run.print(f"parameters: {trainable:,} of {total:,} trained")
    sizes = {"trainable_parameters": trainable, "parameters": total}
    finish_run(
        run, result, model_dir, {"data": train_ds.stats.as_dict(), **sizes, **(summary or {})}
    )
