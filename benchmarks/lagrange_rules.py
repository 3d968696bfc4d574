"""Overshoot of the multiplier rules: PPO-Lag runs that differ only in `lagrange.rule`.

Reads each run's `metrics.jsonl` and prints, per run, the peak lambda, the rollouts whose mean
episode cost J_c was above the threshold d (and the first rollout from which it stayed at or
below), the largest excess of J_c over d and the final lambda; writes one figure with lambda and
J_c - d of every run against the rollout.

    beaver ppo-lag --config configs/toy/ppo-lag.yaml output_dir=output/rule-gradient
    beaver ppo-lag --config configs/toy/ppo-lag.yaml output_dir=output/rule-pid lagrange.rule=pid
    python benchmarks/lagrange_rules.py output/rule-gradient output/rule-pid --png rules.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def trajectory(run: Path) -> tuple[list[float], list[float]]:
    """(lambda, J_c - d) per logged rollout."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "lagrange/lambda" in r and "lagrange/threshold" in r]
    excess = [r["lagrange/mean_episode_cost"] - r["lagrange/threshold"] for r in rows]
    return [r["lagrange/lambda"] for r in rows], excess


def overshoot(lambdas: list[float], excess: list[float]) -> dict[str, float]:
    above = [e > 0 for e in excess]
    settled = next((i for i in range(len(above)) if not any(above[i:])), len(above))
    return {
        "peak_lambda": max(lambdas),
        "rollouts_above_bound": sum(above),
        "settled_from_rollout": settled + 1,
        "max_excess": max(excess),
        "final_lambda": lambdas[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    curves = {run: trajectory(run) for run in args.runs}
    print(
        "| run | peak lambda | rollouts above d | within d from rollout | max J_c - d | final lambda |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for run, (lambdas, excess) in curves.items():
        o = overshoot(lambdas, excess)
        print(f"| {run} | {o['peak_lambda']:.2f} | {o['rollouts_above_bound']} / {len(lambdas)} "
              f"| {o['settled_from_rollout']} | {o['max_excess']:.2f} | {o['final_lambda']:.2f} |")  # fmt: skip
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
        for run, (lambdas, excess) in curves.items():
            top.plot(range(1, len(lambdas) + 1), lambdas, label=run.name)
            bottom.plot(range(1, len(excess) + 1), excess, label=run.name)
        top.set_ylabel("lambda")
        bottom.axhline(0.0, color="grey", lw=0.8)
        bottom.set_ylabel("J_c - d (cost units)")
        bottom.set_xlabel("rollout")
        top.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)


if __name__ == "__main__":
    main()
