"""`beaver rm` / `beaver cm`: one stage for both score models, with a loss switch.

parse (CLI) -> build (tokenizer, pair datasets, score model on the SFT backbone, DeepSpeed engine)
-> train (shared loop) -> save (HF folder `<output_dir>/model` with the score head) -> summary.

The reward model learns `better > worse` (sequence- or token-wise); the cost model learns
`unsafer > safer` plus the sign of each answer's cost (ALGORITHMS.md). With `score.heads` the
cost model also trains one head per harm category from the answers' category labels
(`category_cost_loss`), added to the overall loss, and reports each head's accuracy. Everything
else — data path, engine, evaluation, saving — is shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from beaver.algo import category_cost_loss, cost_loss, reward_loss_sequence, reward_loss_token
from beaver.config.stages import ScoreCfg, ScoreConfig
from beaver.engine import dist
from beaver.engine.build import DeepSpeedSpec
from beaver.engine.data import set_position, to_device
from beaver.engine.loop import StepResult
from beaver.engine.run import start_run
from beaver.engine.stage import train_one_model
from beaver.errors import UserError
from beaver.models.loading import check_models, dtype_of, load_tokenizer
from beaver.models.pairs import (
    Objective,
    PairScores,
    category_labels,
    collect_scores,
    pair_forward,
    pair_keys,
    pair_metrics,
)
from beaver.models.saving import full_state_dict, saved_folder, unwrap
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
        metrics = {"accuracy": c.accuracy.item(), "sign_accuracy": c.sign_accuracy.item()}
        if not score.heads:
            return c.loss, metrics
        loss, head_stats = head_loss(out, batch, score)
        return c.loss + loss, {**metrics, **head_stats}
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


def head_loss(out: Any, batch: dict[str, Any], score: ScoreCfg) -> tuple[Tensor, dict[str, float]]:
    """The category heads' loss on one pair batch, and each head's sign accuracy."""
    a_heads, b_heads = out.category_end_scores.chunk(2)  # (B, H) each
    device = a_heads.device
    a_flags = category_labels(batch["safer_categories"], score.heads).to(device)
    b_flags = category_labels(batch["unsafer_categories"], score.heads).to(device)
    h = category_cost_loss(a_heads, b_heads, a_flags, b_flags, score.regularization)
    stats = {"category_loss": h.loss.item()}
    for k, name in enumerate(score.heads):
        stats[f"heads/{name}/sign_accuracy"] = h.sign_accuracy[k].item()
    return h.loss, stats


def check_category_labels(dataset: Any, heads: list[str], what: str) -> None:
    """Before training category heads: every answer has category labels (else the first row
    without them is named), and every head is flagged on some training answer (a misspelt head,
    or one the data never labels, would learn "never harmful")."""
    seen: dict[str, int] = dict.fromkeys(heads, 0)
    found: set[str] = set()
    for sample in dataset.samples:
        for key, cats in (("category", sample.category), ("other_category", sample.other_category)):
            if cats is None:
                raise UserError(
                    f"{what} data, dataset {sample.dataset or '?'} row {_row(sample.row)}: no harm-"
                    f"category labels for {'response_0' if key == 'category' else 'response_1'} "
                    "(response_*_harm_category); score.heads needs them on every answer"
                )
            found.update(cats)
            for c in cats:
                if c in seen:
                    seen[c] += 1
    never = [h for h, n in seen.items() if n == 0]
    if never and what == "training":  # a small evaluation set may miss a rare category
        raise UserError(
            f"score.heads {never}: flagged on no answer of the {what} data; the categories "
            f"it flags are {sorted(found)}"
        )


def _row(row: int | None) -> str:
    return "?" if row is None else str(row + 1)  # messages count rows from 1


def score_step(
    engine: Any,
    micro_batches: list[dict[str, Tensor]],
    objective: Objective,
    score: ScoreCfg,
    padding_free: bool = False,
) -> StepResult:
    """One optimiser step over the micro-batches; normaliser statistics follow the end scores.
    `padding_free`: each micro-batch runs packed (same loss and gradients, no padding)."""
    model: ScoreModel = unwrap(engine)  # type: ignore[assignment]
    losses, metrics, tokens, samples = [], [], 0, 0
    for batch in micro_batches:
        batch = to_device(batch, engine.device)
        out = pair_forward(engine, batch, objective, padding_free)
        loss, m = pair_loss(out, batch, objective, score)
        engine.backward(loss)
        engine.step()
        if model.normalizer is not None:
            model.normalizer.update(dist.gather(out.end_scores.detach().float()))
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
        return None if t is None else dist.gather(t.to(engine.device)).cpu()

    gathered = PairScores(
        dist.gather(s.a.to(engine.device)).cpu(),
        dist.gather(s.b.to(engine.device)).cpu(),
        everywhere(s.a_safe),
        everywhere(s.b_safe),
        s.heads,
        everywhere(s.a_heads),
        everywhere(s.b_heads),
        everywhere(s.a_flags),
        everywhere(s.b_flags),
    )
    return {f"eval/{k}": v for k, v in pair_metrics(gathered, objective).items()}


def run(cfg: ScoreConfig) -> None:
    from beaver.data import make_datasets

    objective: Objective = cfg.objective
    # A fresh head goes on a causal LM. A score model as the start would keep its own head and
    # normaliser (a cost model's head trained on as a reward model's, sign and all): refused.
    check_models("causal LM", model=cfg.model)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)
    kind = "safety_preference" if objective == "cost" else "preference"

    def load_model(deepspeed: DeepSpeedSpec) -> ScoreModel:
        torch.manual_seed(cfg.train.seed)  # the fresh head's initialisation
        return load_score_model(
            cfg.model,
            dtype_of(cfg.deepspeed.precision),
            objective,
            cfg.score.normalizer,
            cfg.score.normalizer_momentum,
            deepspeed,
            trainable=True,
            heads=cfg.score.heads,
        )

    datasets = make_datasets(kind, cfg.data, tokenizer)
    if cfg.score.heads:
        for dataset, what in zip(datasets, ("training", "evaluation"), strict=True):
            if dataset is not None:
                check_category_labels(dataset, cfg.score.heads, what)
    train_one_model(
        cfg,
        run_,
        cfg.optim,
        datasets,
        load_model,
        step=lambda engine, batches: score_step(
            engine, batches, objective, cfg.score, cfg.train.padding_free
        ),
        evaluate=lambda engine, loader: evaluate(engine, loader, objective),
        save=lambda engine, out: save_score(engine, tokenizer, out, cfg.model.lora.save_merged),
    )


def save_score(engine: Any, tokenizer: Any, out_dir: Path, merged: bool = True) -> Path:
    """Gather the backbone (ZeRO-3) and write the score model in HF format on rank 0 (a LoRA
    backbone: its adapter too, and merged when `merged`). Returns the folder to load."""
    model: ScoreModel = unwrap(engine)  # type: ignore[assignment]
    state = full_state_dict(model)  # collective under ZeRO-3; None on ranks > 0
    if dist.is_main() and state is not None:
        save_score_model(model, out_dir, tokenizer, state=state, merged=merged)
    dist.barrier()
    return saved_folder(model.backbone, out_dir, merged)
