"""Accuracy and score distributions of a reward or cost model on preference pairs.

Used during `beaver rm` / `beaver cm` training (evaluation) and by `beaver eval rm|cm`, which
also writes per-pair scores (JSONL and CSV) and a histogram of the score distributions.
Pairs are (a, b) = (better, worse) for a reward model and (safer, unsafer) for a cost model.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from rich.table import Table
from torch import Tensor

from beaver.config.stages import ScoreEvalConfig
from beaver.console import plain_console

Objective = Literal["reward", "cost"]
console = plain_console()


def pair_keys(objective: Objective) -> tuple[str, str]:
    """Batch key prefixes of the preferred and the other answer."""
    return ("better", "worse") if objective == "reward" else ("safer", "unsafer")


@dataclass
class PairScores:
    """End scores of every pair, and the safety labels when the data has them. All (N,)."""

    a: Tensor
    b: Tensor
    a_safe: Tensor | None = None
    b_safe: Tensor | None = None


def pair_forward(model: Any, batch: dict[str, Tensor], objective: Objective) -> Any:
    """One forward pass over both halves of a pair batch (they share one padded length)."""
    ka, kb = pair_keys(objective)
    ids = torch.cat([batch[f"{ka}_input_ids"], batch[f"{kb}_input_ids"]])
    mask = torch.cat([batch[f"{ka}_attention_mask"], batch[f"{kb}_attention_mask"]])
    return model(input_ids=ids, attention_mask=mask)


def pair_metrics(s: PairScores, objective: Objective) -> dict[str, float]:
    """Pairwise accuracy, score means and spreads; for costs also sign accuracy.

    A reward model is right when better > worse; a cost model when unsafer > safer (on every
    pair, and on the pairs whose safety labels differ, where the order is not a matter of taste)
    and when sign(cost) matches the label (cost > 0 means unsafe).
    """
    ka, kb = pair_keys(objective)
    a, b = s.a.float(), s.b.float()
    right = (a > b) if objective == "reward" else (b > a)
    out = {
        "accuracy": right.float().mean().item(),
        f"{ka}_mean": a.mean().item(),
        f"{ka}_std": a.std().item() if len(a) > 1 else 0.0,
        f"{kb}_mean": b.mean().item(),
        f"{kb}_std": b.std().item() if len(b) > 1 else 0.0,
    }
    if s.a_safe is not None and s.b_safe is not None:
        scores = torch.cat([a, b])
        safe = torch.cat([s.a_safe, s.b_safe]).bool()
        if objective == "cost":
            out["sign_accuracy"] = ((scores > 0) == ~safe).float().mean().item()
            mixed = s.a_safe.bool() != s.b_safe.bool()
            if mixed.any():
                out["accuracy_mixed_safety"] = right[mixed].float().mean().item()
        if safe.any():
            out["safe_mean"] = scores[safe].mean().item()
        if (~safe).any():
            out["unsafe_mean"] = scores[~safe].mean().item()
    return out


@torch.no_grad()
def collect_scores(
    model: Any, loader: Any, objective: Objective, device: Any = "cpu"
) -> PairScores:
    """End scores of every pair in `loader` (this rank's share)."""
    ka, kb = pair_keys(objective)
    parts: dict[str, list[Tensor]] = {"a": [], "b": [], "a_safe": [], "b_safe": []}
    for batch in loader:
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        end = pair_forward(model, batch, objective).end_scores.float().cpu()
        first, second = end.chunk(2)
        parts["a"].append(first)
        parts["b"].append(second)
        if f"{ka}_is_safe" in batch:
            parts["a_safe"].append(batch[f"{ka}_is_safe"].cpu())
            parts["b_safe"].append(batch[f"{kb}_is_safe"].cpu())
    cat = {k: torch.cat(v) if v else None for k, v in parts.items()}
    assert cat["a"] is not None and cat["b"] is not None, "no pairs to score"
    return PairScores(cat["a"], cat["b"], cat["a_safe"], cat["b_safe"])


def write_histogram(s: PairScores, objective: Objective, path: Path) -> Path:
    """PNG: the two answers' score distributions, and safe vs unsafe when labels exist."""
    from beaver.report.plots import plt

    ka, kb = pair_keys(objective)
    panels = 2 if s.a_safe is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
    bins = 40
    axes[0, 0].hist(s.a.numpy(), bins=bins, alpha=0.6, label=ka)
    axes[0, 0].hist(s.b.numpy(), bins=bins, alpha=0.6, label=kb)
    axes[0, 0].set_title(f"{objective} scores by pair side")
    if s.a_safe is not None and s.b_safe is not None:
        scores = torch.cat([s.a, s.b]).numpy()
        safe = torch.cat([s.a_safe, s.b_safe]).bool().numpy()
        axes[0, 1].hist(scores[safe], bins=bins, alpha=0.6, label="safe", color="tab:green")
        axes[0, 1].hist(scores[~safe], bins=bins, alpha=0.6, label="unsafe", color="tab:red")
        axes[0, 1].axvline(0.0, color="black", linewidth=1)
        axes[0, 1].set_title(f"{objective} scores by safety label")
    for ax in axes[0]:
        ax.legend()
        ax.set_xlabel("end score")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rows(s: PairScores, samples: list[Any], objective: Objective) -> list[dict[str, Any]]:
    ka, kb = pair_keys(objective)
    rows = []
    for i in range(len(s.a)):
        row: dict[str, Any] = {
            "index": i,
            f"{ka}_score": round(float(s.a[i]), 6),
            f"{kb}_score": round(float(s.b[i]), 6),
        }
        if s.a_safe is not None and s.b_safe is not None:
            row[f"{ka}_is_safe"], row[f"{kb}_is_safe"] = bool(s.a_safe[i]), bool(s.b_safe[i])
        if i < len(samples):
            sample = samples[i]
            row["dataset"], row["row"] = (
                getattr(sample, "dataset", None),
                getattr(sample, "row", None),
            )
        rows.append(row)
    return rows


def run(cfg: ScoreEvalConfig) -> dict[str, float]:
    """Score `cfg.data.train` with the model; write scores, metrics and a histogram."""
    from torch.utils.data import DataLoader

    from beaver.data import make_datasets
    from beaver.errors import UserError
    from beaver.models.loading import check_model_source, load_tokenizer
    from beaver.models.score import is_score_model_dir, load_score_model

    check_model_source(cfg.model.name_or_path)
    if not is_score_model_dir(cfg.model.name_or_path):
        raise UserError(
            f"{cfg.model.name_or_path} is not a beaver score model "
            "(no score_config.json); train one with `beaver rm` or `beaver cm`"
        )
    model = load_score_model(cfg.model, torch.float32).eval()
    objective: Objective = "cost" if model.score_type == "cost" else "reward"
    tokenizer = load_tokenizer(cfg.model)
    kind = "safety_preference" if objective == "cost" else "preference"
    dataset, _ = make_datasets(kind, cfg.data.model_copy(update={"eval_split": 0.0}), tokenizer)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=dataset.collate
    )
    scores = collect_scores(model, loader, objective)
    metrics = pair_metrics(scores, objective)

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(scores, getattr(dataset, "samples", []), objective)
    with (out / "scores.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with (out / "scores.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_histogram(scores, objective, out / "histogram.png")

    table = Table(title=f"{objective} model {cfg.model.name_or_path} on {len(rows)} pairs")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(f"wrote {out}/scores.jsonl, scores.csv, metrics.json, histogram.png")
    return metrics
