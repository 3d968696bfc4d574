"""`beaver sft`: supervised fine-tuning of a causal LM on prompt-answer data.

parse (CLI) -> build (tokenizer, datasets, DeepSpeed engine) -> train (shared loop) -> save (HF
folder `<output_dir>/model`) -> summary.

Loss: the negative log-likelihood of the answer tokens (labels != -100, EOS included), averaged
per sample and then over samples (`masked_mean`), so the loss does not depend on how a step is
split into micro-batches of equal size. The reference averaged over the tokens of a micro-batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from beaver.algo.logprobs import logprobs_from_logits
from beaver.algo.masks import masked_mean
from beaver.config.stages import SFTConfig
from beaver.engine import dist
from beaver.engine.build import init_engine, make_ds_config, write_ds_config
from beaver.engine.data import make_loader, set_position, to_device
from beaver.engine.loop import StepResult, count_steps, train_loop
from beaver.engine.run import finish_run, start_run
from beaver.models.loading import (
    check_model_source,
    dtype_of,
    fit_embeddings,
    load_causal_lm,
    load_tokenizer,
)
from beaver.models.saving import save_hf

IGNORE_INDEX = -100


def token_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token NLL (B, L-1) of next-token targets and their mask (B, L-1).

    logits (B, L, V) at position t predict labels[:, t + 1]; labels are -100 where not trained.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = logprobs_from_logits(logits[:, :-1], targets.clamp(min=0))  # fp32
    return -logp, mask


def sft_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over samples of each sample's mean answer-token NLL (scalar)."""
    nll, mask = token_nll(logits, labels)
    return masked_mean(nll, mask)


def sft_step(engine: Any, micro_batches: list[dict[str, Tensor]]) -> StepResult:
    """One optimiser step: forward + backward per micro-batch; DeepSpeed steps at the boundary."""
    losses, tokens, samples = [], 0, 0
    for batch in micro_batches:
        batch = to_device(batch, engine.device)
        logits = engine(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        loss = sft_loss(logits, batch["labels"])
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
        tokens += int(batch["attention_mask"].sum())
        samples += batch["input_ids"].shape[0]
    return StepResult(loss=sum(losses) / len(losses), tokens=tokens, samples=samples)


@torch.no_grad()
def evaluate(engine: Any, loader: Any) -> dict[str, float]:
    """Mean per-sample answer NLL over the evaluation set (and its exp), over all ranks.

    The sampler pads the set to a multiple of the world size with a few repeated samples.
    """
    engine.eval()
    set_position(loader, 0, 0)
    total, count = 0.0, 0
    for batch in loader:
        batch = to_device(batch, engine.device)
        logits = engine(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        nll, mask = token_nll(logits, batch["labels"])
        has_target = mask.any(dim=1)
        per_sample = (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,)
        total += float(per_sample[has_target].sum())
        count += int(has_target.sum())
    engine.train()
    sums = dist.reduce_values({"total": total, "count": count}, "sum")
    loss = sums["total"] / max(sums["count"], 1.0)
    return {"eval/loss": loss, "eval/ppl": float(torch.exp(torch.tensor(min(loss, 50.0))))}


def _stats_line(name: str, ds: Any) -> str:
    stats: Any = getattr(ds, "stats", None)
    if hasattr(stats, "summary"):
        return f"{name}: {stats.summary()}"
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in _data_stats(ds).items())


def run(cfg: SFTConfig) -> None:
    from beaver.data import make_datasets

    check_model_source(cfg.model.name_or_path)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)
    train_ds, eval_ds = make_datasets("supervised", cfg.data, tokenizer)
    run_.print(_stats_line("train data", train_ds))
    if eval_ds is not None:
        run_.print(_stats_line("eval data", eval_ds))

    train = cfg.train
    loader = make_loader(train_ds, train.per_device_batch_size, shuffle=True, seed=train.seed)
    steps = count_steps(train, loader, train.gradient_accumulation_steps)
    ds_config = make_ds_config(cfg.deepspeed, train, cfg.optim)
    write_ds_config(ds_config, run_.dir / "ds_config.json")
    model = load_causal_lm(cfg.model, dtype_of(cfg.deepspeed.precision), ds_config)
    fit_embeddings(model, tokenizer)
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
        lambda batches: sft_step(engine, batches),
        loader,
        {"model": engine},
        train=train,
        checkpoint_dir=run_.checkpoint_dir,
        logger=run_.logger,
        total_steps=steps,
        batches_per_step=train.gradient_accumulation_steps,
        evaluate=(lambda: evaluate(engine, eval_loader)) if eval_loader is not None else None,
        resume_from=run_.resume_from,
    )
    model_dir = None
    if result.interrupted is None:
        model_dir = save_hf(engine, tokenizer, run_.dir / "model")
    else:
        run_.print(f"stopped by {result.interrupted}; continue with train.resume=auto")
    finish_run(run_, result, model_dir, {"data": _data_stats(train_ds)})


def _data_stats(ds: Any) -> dict[str, Any]:
    stats = getattr(ds, "stats", None)
    if stats is not None and dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return {"num_samples": len(ds)}
