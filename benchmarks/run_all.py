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


def side_ratios(r: dict[str, Any]) -> str:
    """Each side's median and block-pair ratio to the peer: `beaver 1.00x (pairs 0.99x), ...`."""
    return ", ".join(
        f"{name} {x['median']:.2f}x (block pairs {x['paired_median']:.2f}x, quartiles "
        f"{x['paired_q1']:.2f} - {x['paired_q3']:.2f}x)"
        for name, x in r["ratios"].items()
    )


def findings(results: dict[str, dict[str, Any]]) -> list[str]:
    """What the numbers say, per benchmark, with the causes the profiles found
    (benchmarks/README.md, "What the profiles found")."""
    out = []
    for name in ("sft", "rm", "dpo"):
        r = results.get(name)
        if r is None:
            continue
        out.append(
            f"- {r['benchmark']} vs TRL at its default: {side_ratios(r)}, on the same batches "
            "in the same order. Padded, both run the same transformers Llama forward and "
            "backward (~97% of a step on both sides), so padded beaver is at parity; an A/A "
            "run of the harness gives 0.96 - 1.01x. Packed (`train.padding_free`), beaver "
            "runs the batch as one row of real tokens with sdpa per sequence (varlen "
            "attention): no position is padding and attention costs sum(L_i^2), not W^2."
        )
    r = results.get("ppo")
    if r is not None:
        s = r["split"]
        b, t, lag = s["beaver-ppo"], s["trl-ppo"], s["beaver-ppo-lag"]
        gc = t.get("gc_collect_s", 0.0)
        text = (
            f"- ppo vs TRL: {side_ratios(r)}. Per step beaver {b['step_s']} s, TRL "
            f"{t['step_s']} s (responses of {b['response_tokens']} vs {t['response_tokens']} "
            f"tokens), of which {gc} s in the two full `gc.collect()` calls TRL's PPO loop "
            "makes every step (with the transformers/datasets/pandas heap loaded). "
            f"Generation is the same HF `generate` ({b['generate_s']} vs {t['generate_s']} "
            "s). Both take the old log-probs from the sampling scores and score with the "
            f"reference, reward and critic passes (beaver {b['score_s']} s, TRL "
            f"{t['score_s']} s with one gc.collect)."
        )
        if (rc := s.get("beaver-ppo-recompute")) is not None:
            text += f" `-recompute` runs the actor again (score {rc['score_s']} s)."
        if (pk := s.get("beaver-ppo-packed")) is not None:
            text += (
                " `-packed` runs every scoring and training pass on one row of real tokens "
                f"with varlen attention (score {pk['score_s']} s, train {pk['train_s']} s vs "
                f"{b['train_s']} s padded)."
            )
        out.append(text)
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
