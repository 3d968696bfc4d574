"""The offline demo's table: the ground-truth judge's numbers next to each method's cost.

Reads `<demo>/offline/results.json` (from `beaver eval toyworld`) and the `summary.json` of each
run (wall time, training time, peak resident memory), and writes `<demo>/offline/table.md` and
`timings.json`. SACPO's cost includes its first step (the `dpo` run it starts from); P-SACPO's
is SACPO's plus the merge (its wall seconds are passed on the command line).

    python scripts/offline_table.py output/demo [merge_seconds]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# policy -> the runs whose training it needed (beyond the SFT model every method starts from)
RUNS = {
    "sft": [],
    "ppo-lag": ["ppo-lag"],
    "dpo": ["dpo"],
    "safe-dpo": ["safe-dpo"],
    "sacpo": ["dpo", "sacpo"],
    "p-sacpo": ["dpo", "sacpo"],
}
# PPO-Lag also needs its reward and cost models; shown in their own column
PREREQ = {"ppo-lag": ["rm", "cm"]}


def runs_of(demo: Path, policy: str) -> list[str]:
    """The runs behind a policy: `RUNS`, else a SACPO variant (`sacpo-...`) after its DPO step,
    else the run of the same name when there is one."""
    if policy in RUNS:
        return RUNS[policy]
    if policy.startswith("sacpo"):
        return ["dpo", policy]
    return [policy] if (demo / policy / "summary.json").is_file() else []


def summary(demo: Path, run: str) -> dict[str, Any]:
    return json.loads((demo / run / "summary.json").read_text())


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> None:
    demo = Path(sys.argv[1] if len(sys.argv) > 1 else "output/demo")
    merge_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    results = json.loads((demo / "offline" / "results.json").read_text())
    rows, timings = [], {}
    for policy, r in results.items():
        runs = runs_of(demo, policy)
        s = [summary(demo, run) for run in runs]
        extra = merge_s if policy == "p-sacpo" else 0.0
        train = sum(x["train_seconds"] for x in s)
        wall = sum(x["wall_seconds"] for x in s) + extra
        peak = max((x["peak_rss_mb"] for x in s), default=0.0)
        prereq = sum(summary(demo, run)["wall_seconds"] for run in PREREQ.get(policy, []))
        timings[policy] = {
            "runs": runs,
            "train_seconds": round(train, 1),
            "wall_seconds": round(wall, 1),
            "peak_rss_mb": peak,
            "reward_and_cost_models_wall_seconds": round(prereq, 1),
        }
        cost = (
            ["-", "-", "-", "-"]
            if not runs
            else [f"{train:.0f}", f"{wall:.0f}", f"{prereq:.0f}" if prereq else "-", f"{peak:.0f}"]
        )
        rows.append(
            [
                policy,
                f"{r['helpfulness']:.3f}",
                f"{r['helpfulness_benign']:.3f}",
                f"{r['helpfulness_risky']:.3f}",
                pct(r["harmful_rate"]),
                pct(r["harmful_rate_risky"]),
                pct(r["eos_rate"]),
                *cost,
            ]
        )
    head = [
        "policy",
        "helpfulness",
        "help benign",
        "help risky",
        "harmful (all)",
        "harmful (risky)",
        "EOS",
        "training s",
        "wall s",
        "RM + CM wall s",
        "peak RSS MiB",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if "safe-dpo" in timings and "ppo-lag" in timings:
        ratio = timings["safe-dpo"]["train_seconds"] / timings["ppo-lag"]["train_seconds"]
        lines.append("")
        lines.append(f"SafeDPO training time / PPO-Lag's RL training time: {ratio:.2f}")
        timings["safe_dpo_over_ppo_lag_train"] = {"ratio": round(ratio, 3)}
    text = "\n".join(lines) + "\n"
    (demo / "offline" / "table.md").write_text(text)
    (demo / "offline" / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
