"""`beaver rm` / `beaver cm`: one stage for both score models, with a loss switch.

parse (CLI) -> build (tokenizer, pair datasets, score model on the SFT backbone, DeepSpeed engine)
-> train (shared loop) -> save (HF folder `<output_dir>/model` with the score head) -> summary.

The reward model learns `better > worse` (sequence- or token-wise); the cost model learns
`unsafer > safer` plus the sign of each answer's cost (ALGORITHMS.md). Everything else — data
path, engine, evaluation, saving — is shared.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from beaver.algo import cost_loss, reward_loss_sequence, reward_loss_token
from beaver.config.stages import ScoreCfg, ScoreConfig
from beaver.engine import dist
from beaver.engine.build import init_engine, make_ds_config, write_ds_config
from beaver.engine.data import make_loader, set_position, to_device
from beaver.engine.loop import StepResult, count_steps, train_loop
from beaver.engine.run import finish_run, start_run
from beaver.eval.score import (
    Objective,
    PairScores,
    collect_scores,
    pair_forward,
    pair_keys,
    pair_metrics,
)
from beaver.models.loading import check_model_source, dtype_of, load_tokenizer
from beaver.models.saving import full_state_dict, unwrap
from beaver.models.score import ScoreModel, load_score_model, save_score_model


def pair_loss(
    out: Any, batch: dict[str, Tensor], objective: Objective, score: ScoreCfg
) -> tuple[Tensor, dict[str, float]]:
    """The loss switch: reward (sequence or token-wise) or cost, on one pair batch."""
    a_end, b_end = out.end_scores.chunk(2)
    if objective == "cost":
        c = cost_loss(
            a_end, b_end, batch["safer_is_safe"], batch["unsafer_is_safe"], score.regularization
        )
        return c.loss, {"accuracy": c.accuracy.item(), "sign_accuracy": c.sign_accuracy.item()}
    if score.loss_type == "token":
        a_scores, b_scores = out.scores.chunk(2)
        r = reward_loss_token(
            a_scores,
            b_scores,
            batch["better_input_ids"],
            batch["worse_input_ids"],
            batch["better_attention_mask"],
            batch["worse_attention_mask"],
            score.regularization,
        )
    else:
        r = reward_loss_sequence(a_end, b_end, score.regularization)
    return r.loss, {"accuracy": r.accuracy.item()}


def gather(x: Tensor) -> Tensor:
    """`x` (N,) from every rank, concatenated (equal N on every rank: the sampler pads)."""
    if dist.world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.world_size())]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def score_step(
    engine: Any, micro_batches: list[dict[str, Tensor]], objective: Objective, score: ScoreCfg
) -> StepResult:
    """One optimiser step over the micro-batches; normaliser statistics follow the end scores."""
    model: ScoreModel = unwrap(engine)  # type: ignore[assignment]
    losses, metrics, tokens, samples = [], [], 0, 0
    for batch in micro_batches:
        batch = to_device(batch, engine.device)
        out = pair_forward(engine, batch, objective)
        loss, m = pair_loss(out, batch, objective, score)
        engine.backward(loss)
        engine.step()
        if model.normalizer is not None:
            model.normalizer.update(gather(out.end_scores.detach().float()))
        losses.append(loss.item())
        metrics.append(m)
        ka, kb = pair_keys(objective)
        tokens += int(batch[f"{ka}_attention_mask"].sum() + batch[f"{kb}_attention_mask"].sum())
        samples += batch[f"{ka}_input_ids"].shape[0]
    mean = {f"train/{k}": sum(m[k] for m in metrics) / len(metrics) for k in metrics[0]}
    return StepResult(loss=sum(losses) / len(losses), metrics=mean, tokens=tokens, samples=samples)


def evaluate(engine: Any, loader: Any, objective: Objective) -> dict[str, float]:
    """Pairwise (and sign) accuracy and score statistics over the whole evaluation set."""
    engine.eval()
    set_position(loader, 0, 0)
    s = collect_scores(engine, loader, objective, engine.device)
    engine.train()

    def everywhere(t: Tensor | None) -> Tensor | None:
        return None if t is None else gather(t.to(engine.device)).cpu()

    gathered = PairScores(
        gather(s.a.to(engine.device)).cpu(),
        gather(s.b.to(engine.device)).cpu(),
        everywhere(s.a_safe),
        everywhere(s.b_safe),
    )
    return {f"eval/{k}": v for k, v in pair_metrics(gathered, objective).items()}


def run(cfg: ScoreConfig) -> None:
    from beaver.data import make_datasets

    objective: Objective = cfg.objective
    check_model_source(cfg.model.name_or_path)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)
    kind = "safety_preference" if objective == "cost" else "preference"
    train_ds, eval_ds = make_datasets(kind, cfg.data, tokenizer)
    run_.print(f"train data: {train_ds.stats.summary()}")
    if eval_ds is not None:
        run_.print(f"eval data: {eval_ds.stats.summary()}")

    train = cfg.train
    loader = make_loader(train_ds, train.per_device_batch_size, shuffle=True, seed=train.seed)
    steps = count_steps(train, loader, train.gradient_accumulation_steps)
    ds_config = make_ds_config(cfg.deepspeed, train, cfg.optim)
    write_ds_config(ds_config, run_.dir / "ds_config.json")
    torch.manual_seed(train.seed)  # the fresh head's initialisation
    model = load_score_model(
        cfg.model,
        dtype_of(cfg.deepspeed.precision),
        objective,
        cfg.score.normalizer,
        cfg.score.normalizer_momentum,
        ds_config,
    )
    engine = init_engine(
        model,
        ds_config,
        cfg.optim,
        steps,
        activation_checkpointing=cfg.deepspeed.activation_checkpointing,
    )
    eval_loader = None
    if eval_ds is not None and len(eval_ds) > 0 and train.eval_strategy != "no":
        eval_loader = make_loader(
            eval_ds, train.per_device_batch_size, shuffle=False, seed=train.seed
        )

    result = train_loop(
        lambda batches: score_step(engine, batches, objective, cfg.score),
        loader,
        {"model": engine},
        train=train,
        checkpoint_dir=run_.checkpoint_dir,
        logger=run_.logger,
        total_steps=steps,
        batches_per_step=train.gradient_accumulation_steps,
        evaluate=(lambda: evaluate(engine, eval_loader, objective)) if eval_loader else None,
        resume_from=run_.resume_from,
    )
    model_dir = None
    if result.interrupted is None:
        model_dir = run_.dir / "model"
        save_score(engine, tokenizer, model_dir)
    else:
        run_.print(f"stopped by {result.interrupted}; continue with train.resume=auto")
    finish_run(run_, result, model_dir, {"data": train_ds.stats.as_dict()})


def save_score(engine: Any, tokenizer: Any, out_dir: Any) -> None:
    """Gather the backbone (ZeRO-3) and write the score model in HF format on rank 0."""
    model: ScoreModel = unwrap(engine)  # type: ignore[assignment]
    state = full_state_dict(model)  # collective under ZeRO-3; None on ranks > 0
    if dist.is_main() and state is not None:
        save_score_model(model, out_dir, tokenizer, state=state)
    dist.barrier()
