"""`beaver sft`: supervised fine-tuning of a causal LM on prompt-answer data.

parse (CLI) -> build (tokenizer, datasets, DeepSpeed engine) -> train (shared loop) -> save (HF
folder `<output_dir>/model`) -> summary.

Loss: the negative log-likelihood of the answer tokens (labels != -100, EOS included), averaged
per sample and then over samples (`masked_mean`), so the loss does not depend on how a step is
split into micro-batches of equal size. The reference averaged over the tokens of a micro-batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from beaver.algo.logprobs import logprobs_from_logits
from beaver.algo.masks import masked_mean
from beaver.config.stages import SFTConfig
from beaver.engine import dist
from beaver.engine.build import DeepSpeedSpec
from beaver.engine.data import set_position, to_device
from beaver.engine.loop import StepResult
from beaver.engine.run import start_run
from beaver.engine.stage import train_one_model
from beaver.models.loading import (
    check_models,
    dtype_of,
    fit_embeddings,
    load_causal_lm,
    load_tokenizer,
)
from beaver.models.packing import causal_lm_logits
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


def sft_step(
    engine: Any, micro_batches: list[dict[str, Tensor]], padding_free: bool = False
) -> StepResult:
    """One optimiser step: forward + backward per micro-batch; DeepSpeed steps at the boundary.
    `padding_free`: each micro-batch runs packed (same loss and gradients, no padding)."""
    losses, tokens, samples = [], 0, 0
    for batch in micro_batches:
        batch = to_device(batch, engine.device)
        logits = causal_lm_logits(
            engine, batch["input_ids"], batch["attention_mask"], padding_free=padding_free
        )
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


def run(cfg: SFTConfig) -> None:
    from beaver.data import make_datasets

    check_models("causal LM", model=cfg.model)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)

    def load_model(deepspeed: DeepSpeedSpec) -> Any:
        model = load_causal_lm(cfg.model, dtype_of(cfg.deepspeed.precision), deepspeed, True)
        fit_embeddings(model, tokenizer, deepspeed)
        return model

    train_one_model(
        cfg,
        run_,
        cfg.optim,
        make_datasets("supervised", cfg.data, tokenizer),
        load_model,
        # looked up at call time: tests replace `sft_step` on the module
        step=lambda engine, batches: sft_step(engine, batches, cfg.train.padding_free),
        evaluate=evaluate,
        save=lambda engine, out: save_hf(engine, tokenizer, out, cfg.model.lora.save_merged),
    )
