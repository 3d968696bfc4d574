"""A score model on preference pairs: one forward over both halves, end scores, and metrics.

Shared by the score stage (its training step and evaluation), `beaver eval score` and the DPO
stage (`pair_inputs`). Pairs are
(a, b) = (better, worse) for a reward model and (safer, unsafer) for a cost model; the batch
keys are those of the `preference` and `safety_preference` collators (`beaver.data.kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from beaver.models.forward import score_sequences

Objective = Literal["reward", "cost"]


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


def pair_inputs(
    batch: dict[str, Tensor], keys: tuple[str, str], field: str = "attention_mask"
) -> tuple[Tensor, Tensor]:
    """(ids, `field`) (2B, L) of both halves of a pair batch, `keys[0]`'s rows first (the
    collator pads both halves to one length); `field` may be `response_mask` (the answers)."""
    ka, kb = keys
    ids = torch.cat([batch[f"{ka}_input_ids"], batch[f"{kb}_input_ids"]])
    mask = torch.cat([batch[f"{ka}_{field}"], batch[f"{kb}_{field}"]])
    return ids, mask


def pair_forward(model: Any, batch: dict[str, Tensor], objective: Objective) -> Any:
    """One forward pass over both halves of a pair batch (per-token and end scores)."""
    ids, mask = pair_inputs(batch, pair_keys(objective))
    return model(input_ids=ids, attention_mask=mask)


@torch.no_grad()
def collect_scores(
    model: Any, loader: Any, objective: Objective, device: Any = "cpu"
) -> PairScores:
    """Raw end scores of every pair in `loader` (this rank's share)."""
    ka, kb = pair_keys(objective)
    parts: dict[str, list[Tensor]] = {"a": [], "b": [], "a_safe": [], "b_safe": []}
    for batch in loader:
        ids, mask = pair_inputs(batch, (ka, kb))
        first, second = score_sequences(model, ids.to(device), mask.to(device)).cpu().chunk(2)
        parts["a"].append(first)
        parts["b"].append(second)
        if f"{ka}_is_safe" in batch:
            parts["a_safe"].append(batch[f"{ka}_is_safe"].cpu())
            parts["b_safe"].append(batch[f"{kb}_is_safe"].cpu())
    cat = {k: torch.cat(v) if v else None for k, v in parts.items()}
    assert cat["a"] is not None and cat["b"] is not None, "no pairs to score"
    return PairScores(cat["a"], cat["b"], cat["a_safe"], cat["b_safe"])


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
