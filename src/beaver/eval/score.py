"""`beaver eval score` (`eval rm`, `eval cm`): a score model's accuracy on preference pairs.

Scores every pair of `data.train` (a reward model preference pairs, a cost model safety-
preference pairs; `beaver.models.pairs` computes scores and metrics, as the score stage's own
evaluation does) and reports: a metrics table, per-pair scores (`scores.jsonl`, `scores.csv`),
`metrics.json`, and a histogram of the score distributions (`histogram.png`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from beaver.config.evaluation import ScoreEvalConfig
from beaver.console import plain_console
from beaver.errors import UserError
from beaver.files import write_csv, write_json, write_jsonl
from beaver.models.pairs import Objective, PairScores, collect_scores, pair_keys, pair_metrics

console = plain_console()


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


def model_objective(score_type: str, expected: str, name: str) -> Objective:
    """What the model scores (`cost` for a cost model, else `reward`); a command that expects
    the other kind (`eval rm` on a cost model) is a user error."""
    objective: Objective = "cost" if score_type == "cost" else "reward"
    if expected not in ("auto", objective):
        command = {"reward": "eval rm", "cost": "eval cm"}[expected]
        raise UserError(
            f"{name} is a {objective} model, but `{command}` evaluates {expected} models; "
            "use `beaver eval score` (it takes the model's own kind)"
        )
    return objective


def run(cfg: ScoreEvalConfig) -> dict[str, float]:
    """Score `cfg.data.train` with the model; write scores, metrics and a histogram."""
    from torch.utils.data import DataLoader

    from beaver.data import build_dataset
    from beaver.models.inference import inference_score_model, inference_tokenizer

    name = cfg.model.name_or_path
    model = inference_score_model(cfg.model)
    objective = model_objective(model.score_type, cfg.objective, name)
    tokenizer = inference_tokenizer(cfg.model, side="right")
    kind = "safety_preference" if objective == "cost" else "preference"
    dataset = build_dataset(kind, cfg.data.train, cfg.data, tokenizer, "evaluation")
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=dataset.collate
    )
    device = next(model.parameters()).device
    scores = collect_scores(model, loader, objective, device)
    metrics = pair_metrics(scores, objective)

    out = Path(cfg.output_dir)
    rows = _rows(scores, getattr(dataset, "samples", []), objective)
    write_jsonl(out / "scores.jsonl", rows)
    write_csv(out / "scores.csv", rows)
    write_json(out / "metrics.json", metrics)
    write_histogram(scores, objective, out / "histogram.png")

    table = Table(title=f"{objective} model {name} on {len(rows)} pairs")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(f"wrote {out}/scores.jsonl, scores.csv, metrics.json, histogram.png")
    return metrics
