"""All CPU benchmarks, one after the other (`make bench`), then one summary table.

Each benchmark runs as its own script (`python benchmarks/bench_<name>.py`) and writes
`benchmarks/results/<name>.json`; this script adds `results/summary.md`: the machine, the table
(medians, min - max over blocks, beaver/peer ratio of medians, MFU, peak RSS), the PPO split,
the loss-trend checks and what the profiles found.

    python benchmarks/run_all.py [--only sft rm] [--threads 1] [--summarize]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import prepare
import report

HERE = Path(__file__).resolve().parent
BENCHES = {
    "sft": "sft",
    "rm": "rm",
    "dpo": "dpo",
    "ppo": "ppo",
    "rloo": "rloo",
    "generation": "generation",
    "lora": "lora",
}
# Benchmarks of beaver against itself (no TRL side): their own table, not the one vs TRL.
SELF = ("lora",)


def findings(results: dict[str, dict[str, Any]]) -> list[str]:
    """What the numbers say, per benchmark, with the causes the profiles found
    (benchmarks/README.md, "What the profiles found")."""
    out = []
    for name in ("sft", "rm"):
        r = results.get(name)
        if r is None:
            continue
        ratio = next(iter(r["ratios"].values()))
        out.append(
            f"- {r['benchmark']}: beaver/TRL {ratio['median']:.2f}x (block pairs: median "
            f"{ratio['paired_median']:.2f}x, quartiles {ratio['paired_q1']:.2f} - "
            f"{ratio['paired_q3']:.2f}x) on the same batches "
            "in the same order. Both run the same transformers Llama forward and backward, "
            "which is ~97% of a step on both sides; the loops around it differ by a few ms "
            "(beaver's for-loop AdamW + clipping norm ~5 ms vs TRL's fused AdamW ~2 ms). An "
            "A/A run of the harness (a side against itself) gives 0.96 - 1.01x: differences "
            "of a few percent are noise. Peak RSS: TRL's process imports more (the model is "
            "3 MB)."
        )
    r = results.get("dpo")
    if r is not None:
        ratio = next(iter(r["ratios"].values()))
        out.append(
            f"- {r['benchmark']}: beaver/TRL {ratio['median']:.2f}x (block pairs: median "
            f"{ratio['paired_median']:.2f}x, quartiles {ratio['paired_q1']:.2f} - "
            f"{ratio['paired_q3']:.2f}x) on the same token ids in the same order: both run one "
            "policy forward + backward over the concatenated chosen and rejected answers and "
            "one reference forward per batch."
        )
    r = results.get("ppo")
    if r is not None:
        s = r["split"]
        b, t, lag = s["beaver-ppo"], s["trl-ppo"], s["beaver-ppo-lag"]
        gc = t.get("gc_collect_s", 0.0)
        out.append(
            f"- ppo: beaver/TRL {r['ratios']['beaver-ppo']['median']:.2f}x at equal work "
            f"(responses of {b['response_tokens']} vs {t['response_tokens']} tokens). "
            f"Per step beaver {b['step_s']} s, TRL {t['step_s']} s, of which {gc} s in the two "
            "full `gc.collect()` calls TRL's PPO loop makes every step (with the "
            f"transformers/datasets/pandas heap loaded): TRL without them would take "
            f"{t['step_s'] - gc:.2f} s. Generation is the same HF `generate` "
            f"({b['generate_s']} vs {t['generate_s']} s). beaver scores with 4 forward "
            f"passes (actor, reference, reward, critic: {b['score_s']} s), TRL with 3 (its "
            f"old log-probs come from the sampling logits) plus one gc.collect "
            f"({t['score_s']} s); both train actor and critic on the same micro-batches "
            f"({b['train_s']} vs {t['train_s']} s, TRL's with the other gc.collect). "
            "beaver is ahead by TRL's garbage collection and behind by one forward pass."
        )
        out.append(
            f"- ppo-lag: {r['lag_over_ppo']['median']:.2f}x of PPO's episodes/s "
            f"({lag['step_s']} vs {b['step_s']} s per step, responses of "
            f"{lag['response_tokens']} tokens): two more scoring passes (cost model, cost "
            f"critic: score {lag['score_s']} vs {b['score_s']} s) and a third trained "
            f"model (train {lag['train_s']} vs {b['train_s']} s)."
        )
    r = results.get("generation")
    if r is not None:
        ratios = ", ".join(f"{k} {v['median']:.2f}x" for k, v in r["ratios"].items())
        out.append(
            f"- generation: {ratios} of TRL: every side calls the same HF `generate`, ~80% of "
            "whose time is the model's forward; at hidden size 128 RoPE and the KV-cache "
            "update cost more than the q/k/v/o projections."
        )
    return out


def summary(results: dict[str, dict[str, Any]], seconds: float, load: list[float]) -> str:
    first = next(r for n, r in results.items() if n not in SELF)
    m = first["machine"]
    lines = [
        "# beaver vs TRL on the toy world (CPU)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']} per "
        f"side, fp32 GEMM peak {first['gemm_peak_gflops']} GFLOP/s (measured); load average "
        f"{load[0]:.1f} at start, {load[1]:.1f} at end (the machine is shared). "
        f"torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}, "
        f"Python {m['python']}. Total {seconds / 60:.1f} min.",
        "",
        "Medians over timed blocks (min - max), sides interleaved block by block; vs TRL = "
        "median / the TRL median of the same benchmark; MFU = model FLOP/s / GEMM peak.",
        "",
        report.markdown(
            [row for n, r in results.items() if n not in SELF for row in report.table_rows(r)]
        ),
        "",
    ]
    if "lora" in results:
        import bench_lora

        lines += [bench_lora.text(results["lora"]), ""]
    if "ppo" in results:
        lag = results["ppo"]["lag_over_ppo"]
        lines += [
            f"PPO-Lag / PPO episodes/s: {lag['median']:.2f}x (block pairs: quartiles "
            f"{lag['paired_q1']:.2f} - {lag['paired_q3']:.2f}x).",
            "",
            "PPO step split (median seconds per step of 64 episodes):",
            "",
        ]
        split = results["ppo"]["split"]
        keys = list(dict.fromkeys(k for s in split.values() for k in s))
        lines.append("| side | " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * (len(keys) + 1))
        for side, s in split.items():
            lines.append(f"| {side} | " + " | ".join(str(s.get(k, "")) for k in keys) + " |")
        lines.append("")
    lines += ["Loss-trend checks (same data and objective, first 20% -> last 20% of steps):", ""]
    for r in results.values():
        tr = r.get("trend")
        if tr is not None:
            verdict = "agree" if tr["ok"] else "DO NOT AGREE"
            lines.append(f"- {r['benchmark']} ({tr['metric']}): {tr['first_last']} -> {verdict}")
    lines += ["", "Findings:", "", *findings(results), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(BENCHES), default=list(BENCHES))
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")))
    p.add_argument("--summarize", action="store_true", help="only rewrite summary.md")
    a = p.parse_args()
    meta_path = report.RESULTS / "run_all.json"
    if not a.summarize:
        start, load = time.time(), [os.getloadavg()[0]]
        report.use_threads(a.threads)  # the prepare steps and every benchmark inherit it
        prepare.world(), prepare.score_model("rm"), prepare.score_model("cm")
        for name in a.only:
            print(f"== {name}", flush=True)
            script = HERE / f"bench_{BENCHES[name]}.py"
            subprocess.run([sys.executable, str(script), "--threads", str(a.threads)], check=True)
        load.append(os.getloadavg()[0])
        meta = {"seconds": round(time.time() - start, 1), "load_avg_1m": load}
        meta_path.write_text(json.dumps(meta) + "\n")
    meta = json.loads(meta_path.read_text())
    results = {
        name: json.loads(path.read_text())
        for name in BENCHES
        if (path := report.RESULTS / f"{name}.json").exists()
    }
    text = summary(results, meta["seconds"], meta["load_avg_1m"])
    (report.RESULTS / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
