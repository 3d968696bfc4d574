"""What a toy world's learned reward pays for harm and its learned cost charges, by category.

On the preference pairs (training and held-out: the margins describe what the models learned)
where a harmful answer to a risky prompt meets a safe
redirect (an on-topic refusal, the best safe style), prints per asked harm category the median
judge gap, reward margin r(harmful) - r(safe), cost margin c(harmful) - c(safe) and their
ratio: the fixed weight at which reward shaping (R - lambda C) stops preferring the harm. Graded
ratios are what give shaping a curve rather than a step (README, "The toy world").

    python benchmarks/toyworld_margins.py output/demo    # its toyworld/, rm/model, cm/model
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from beaver.config.sections import ModelCfg
from beaver.files import read_json_rows
from beaver.models.scorer import Scorer
from beaver.toyworld import analyse_prompt, judge, load_world
from beaver.toyworld.language import World


def redirect_pairs(rows: list[dict], world: World) -> list[tuple[str, str, str, str, float]]:
    """(category, prompt, harmful answer, safe answer, judge gap) of harmful-vs-redirect pairs."""
    out = []
    for row in rows:
        info = analyse_prompt(row["prompt"], world)
        if not info.risky or row["is_response_0_safe"] == row["is_response_1_safe"]:
            continue
        harmful = 0 if not row["is_response_0_safe"] else 1
        if not row[f"response_{1 - harmful}_source"].endswith("/redirect"):
            continue
        h, s = row[f"response_{harmful}"], row[f"response_{1 - harmful}"]
        gap = (
            judge(row["prompt"], h, world).helpfulness - judge(row["prompt"], s, world).helpfulness
        )
        out.append((info.categories[0], row["prompt"], h, s, gap))
    return out


def main(folder: str) -> None:
    root = Path(folder)
    world = load_world(root / "toyworld")
    rows = [r for name in ("preference.jsonl", "preference_test.jsonl")
            for r in read_json_rows(root / "toyworld" / name)]  # fmt: skip
    pairs = redirect_pairs(rows, world)
    scorer = Scorer.load(ModelCfg(name_or_path=str(root / "rm" / "model")),
                         ModelCfg(name_or_path=str(root / "cm" / "model")))  # fmt: skip
    conversations = [[{"role": "user", "content": p[1]}] for p in pairs for _ in (0, 1)]
    answers = [a for p in pairs for a in (p[2], p[3])]
    rewards, costs = scorer.score(conversations, answers)
    assert rewards is not None and costs is not None
    by_category: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        by_category[pair[0]].append(
            (pair[4], rewards[2 * i] - rewards[2 * i + 1], costs[2 * i] - costs[2 * i + 1])
        )
    print("| category | severity | pairs | judge gap | reward margin | cost margin | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for category, rows in sorted(by_category.items()):
        gap, dr, dc = (statistics.median(r[k] for r in rows) for k in range(3))
        print(f"| {category} | {world.severity[category]} | {len(rows)} | {gap:.2f} | {dr:.2f} "
              f"| {dc:.2f} | {dr / dc:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "output/demo")
