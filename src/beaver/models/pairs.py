"""A score model on preference pairs: one forward over both halves, end scores, and metrics.

Shared by the score stage (its training step and evaluation), `beaver eval score` and the DPO
stage (`pair_inputs`). Pairs are
(a, b) = (better, worse) for a reward model and (safer, unsafer) for a cost model; the batch
keys are those of the `preference` and `safety_preference` collators (`beaver.data.kinds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

Objective = Literal["reward", "cost"]


def pair_keys(objective: Objective) -> tuple[str, str]:
    """Batch key prefixes of the preferred and the other answer."""
    return ("better", "worse") if objective == "reward" else ("safer", "unsafer")


@dataclass
class PairScores:
    """End scores of every pair (N,), and the safety labels (N,) when the data has them; for a
    multi-head cost model the category heads' end scores and the answers' labels, (N, H)."""

    a: Tensor
    b: Tensor
    a_safe: Tensor | None = None
    b_safe: Tensor | None = None
    heads: tuple[str, ...] = ()
    a_heads: Tensor | None = None
    b_heads: Tensor | None = None
    a_flags: Tensor | None = None  # (N, H) bool: the answer is flagged for the category
    b_flags: Tensor | None = None


def category_labels(categories: Sequence[Sequence[str] | None], heads: Sequence[str]) -> Tensor:
    """(B, H) bool: answer b is flagged for head h, from each answer's flagged categories (a
    list of names, as the safety-preference collator gives them). An answer without labels
    (None) is an error: a category head cannot learn from it."""
    missing = [i for i, c in enumerate(categories) if c is None]
    if missing:
        raise ValueError(
            f"answers {missing[:5]} of the batch have no harm-category labels "
            "(response_*_harm_category); the category heads need them on every answer"
        )
    return torch.tensor([[h in (c or ()) for h in heads] for c in categories], dtype=torch.bool)


def pair_inputs(
    batch: dict[str, Tensor], keys: tuple[str, str], field: str = "attention_mask"
) -> tuple[Tensor, Tensor]:
    """(ids, `field`) (2B, L) of both halves of a pair batch, `keys[0]`'s rows first (the
    collator pads both halves to one length); `field` may be `response_mask` (the answers)."""
    ka, kb = keys
    ids = torch.cat([batch[f"{ka}_input_ids"], batch[f"{kb}_input_ids"]])
    mask = torch.cat([batch[f"{ka}_{field}"], batch[f"{kb}_{field}"]])
    return ids, mask


def pair_forward(
    model: Any, batch: dict[str, Tensor], objective: Objective, padding_free: bool = False
) -> Any:
    """One forward pass over both halves of a pair batch (per-token and end scores); packed
    rows when `padding_free`."""
    ids, mask = pair_inputs(batch, pair_keys(objective))
    if padding_free:
        return model(input_ids=ids, attention_mask=mask, padding_free=True)
    return model(input_ids=ids, attention_mask=mask)


@torch.no_grad()
def collect_scores(
    model: Any, loader: Any, objective: Objective, device: Any = "cpu"
) -> PairScores:
    """Raw end scores of every pair in `loader` (this rank's share); with category heads
    (a multi-head cost model) also theirs and the answers' category labels, where the data has
    labels on every answer."""
    from beaver.models.saving import unwrap

    ka, kb = pair_keys(objective)
    heads: tuple[str, ...] = tuple(getattr(unwrap(model), "heads", ()))
    names = ("a", "b", "a_safe", "b_safe", "a_heads", "b_heads", "a_flags", "b_flags")
    parts: dict[str, list[Tensor]] = {k: [] for k in names}
    labelled = bool(heads)
    for batch in loader:
        ids, mask = pair_inputs(batch, (ka, kb))
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device))
        first, second = out.end_scores.float().cpu().chunk(2)
        parts["a"].append(first)
        parts["b"].append(second)
        if f"{ka}_is_safe" in batch:
            parts["a_safe"].append(batch[f"{ka}_is_safe"].cpu())
            parts["b_safe"].append(batch[f"{kb}_is_safe"].cpu())
        if heads:
            a_heads, b_heads = out.category_end_scores.float().cpu().chunk(2)
            parts["a_heads"].append(a_heads)
            parts["b_heads"].append(b_heads)
            cats = (batch.get(f"{ka}_categories"), batch.get(f"{kb}_categories"))
            labelled = labelled and all(c is not None and None not in c for c in cats)
            if labelled:
                parts["a_flags"].append(category_labels(cats[0], heads))  # type: ignore[arg-type]
                parts["b_flags"].append(category_labels(cats[1], heads))  # type: ignore[arg-type]
    if not labelled:  # some answers lack labels: no per-head accuracy, only the scores
        parts["a_flags"], parts["b_flags"] = [], []
    cat = {k: torch.cat(v) if v else None for k, v in parts.items()}
    assert cat["a"] is not None and cat["b"] is not None, "no pairs to score"
    return PairScores(
        cat["a"], cat["b"], cat["a_safe"], cat["b_safe"], heads,
        cat["a_heads"], cat["b_heads"], cat["a_flags"], cat["b_flags"],
    )  # fmt: skip


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
    out.update(head_metrics(s))
    return out


def head_metrics(s: PairScores) -> dict[str, float]:
    """Per category head h (`heads/h/...`): sign accuracy over all answers (cost > 0 iff
    flagged), accuracy on the pairs whose labels for h differ (the flagged answer costs more),
    the number of such pairs, the share of answers flagged and the share of flagged answers
    with cost > 0 (recall). Empty without labels."""
    if s.a_heads is None or s.b_heads is None or s.a_flags is None or s.b_flags is None:
        return {}
    scores = torch.cat([s.a_heads, s.b_heads])  # (2N, H)
    flags = torch.cat([s.a_flags, s.b_flags]).bool()
    differ = s.a_flags.bool() != s.b_flags.bool()  # (N, H)
    flagged_higher = torch.where(s.b_flags.bool(), s.b_heads > s.a_heads, s.a_heads > s.b_heads)
    out: dict[str, float] = {}
    for h, name in enumerate(s.heads):
        key = f"heads/{name}"
        out[f"{key}/sign_accuracy"] = ((scores[:, h] > 0) == flags[:, h]).float().mean().item()
        n = int(differ[:, h].sum())
        out[f"{key}/pairs_ordered"] = float(n)
        if n:
            out[f"{key}/accuracy"] = flagged_higher[differ[:, h], h].float().mean().item()
        out[f"{key}/flagged_share"] = flags[:, h].float().mean().item()
        if flags[:, h].any():  # sign accuracy alone rewards "never flagged" on a rare category
            out[f"{key}/flagged_recall"] = (scores[flags[:, h], h] > 0).float().mean().item()
    return out
