"""Results: the loss-trend check, ratios, MFU, JSON files and the printed table."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from harness import Side, Stat, curve, per_step, throughput

RESULTS = Path(__file__).resolve().parent / "results"


def trend(values: list[float], window: float = 0.2) -> tuple[float, float]:
    """Medians of the first and last `window` share of a curve (a median: one loss spike of
    one side must not decide the check)."""
    k = max(1, int(len(values) * window))
    return statistics.median(values[:k]), statistics.median(values[-k:])


def check_trends(
    sides: list[Side], direction: str, min_change_ratio: float = 0.5, metric: str = "loss"
) -> dict[str, Any]:
    """Do the sides' curves move the same way by a similar amount?

    Each curve (median of its first 20% of steps -> median of its last 20%) must move in
    `direction` ("down" for a loss, "up" for a reward), and the smallest change must be at least
    `min_change_ratio` of the largest. Same data, same objective and the same optimiser settings
    should give that; if not, the speed comparison is not of equal work and is flagged.
    """
    ends = {side.name: trend(curve(side)) for side in sides}
    changes = {name: last - first for name, (first, last) in ends.items()}
    sign = -1 if direction == "down" else 1
    moved = {name: sign * change > 0 for name, change in changes.items()}
    sizes = [abs(c) for c in changes.values()]
    ratio = min(sizes) / max(sizes) if max(sizes) > 0 else 0.0
    return {
        "metric": metric,
        "direction": direction,
        "first_last": {n: [round(a, 4), round(b, 4)] for n, (a, b) in ends.items()},
        "moved_as_expected": moved,
        "change_ratio": round(ratio, 3),
        "min_change_ratio": min_change_ratio,
        "ok": all(moved.values()) and ratio >= min_change_ratio,
        "curves": {s.name: [round(v, 4) for v in curve(s)] for s in sides},
    }


def same_work(sides: list[Side], key: str = "tokens") -> dict[str, Any]:
    """Total `key` (e.g. non-pad tokens) each side processed in warm-up and blocks: equal when
    both trained on the same batches."""
    totals = {
        s.name: sum(r.get(key, r["units"]) for r in s.warmup + [r for b in s.blocks for r in b])
        for s in sides
    }
    return {"key": key, "totals": totals, "equal": len(set(totals.values())) == 1}


def side_result(side: Side, flops_per_unit: float, peak: float, unit: str) -> dict[str, Any]:
    """Throughput, its MFU, seconds per step and peak RSS of one side."""
    tp = throughput(side)
    mfu = Stat(*(v * flops_per_unit / peak for v in (tp.median, tp.min, tp.max)), values=[])
    return {
        "unit": unit,
        "throughput": tp.as_dict(),
        "mfu": {k: round(v, 5) for k, v in mfu.as_dict().items() if k != "per_block"},
        "step_seconds": per_step(side).as_dict(),
        "peak_rss_mb": round(side.peak_rss_mb, 1),
        "torch_threads": side.threads,
        "blocks": len(side.blocks),
        "steps_per_block": len(side.blocks[0]) if side.blocks else 0,
    }


def ratio(a: Side, b: Side) -> dict[str, float]:
    """Median throughput of `a` over that of `b`, and the quartiles of the block-by-block ratios
    (block k of `a` against block k of `b`, run right after one another)."""
    ta, tb = throughput(a), throughput(b)
    pairs = sorted(x / y for x, y in zip(ta.values, tb.values, strict=True))
    q1, _, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else (pairs[0],) * 3
    return {
        "median": round(ta.median / tb.median, 3),
        "paired_median": round(statistics.median(pairs), 3),
        "paired_q1": round(q1, 3),
        "paired_q3": round(q3, 3),
    }


def cross_ratios(sides: list[Side], ours: str, peers: str) -> dict[str, dict[str, float]]:
    """`ratio` of every side named `ours*` to every side named `peers-*` (a peer's own
    settings, e.g. TRL padding-free), keyed `ours/peer`."""
    return {
        f"{a.name}/{b.name}": ratio(a, b)
        for a in sides
        if a.name.startswith(ours)
        for b in sides
        if b.name.startswith(f"{peers}-")
    }


def write(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows of the summary table for one benchmark result."""
    rows = []
    for name, s in result["sides"].items():
        tp, mfu = s["throughput"], s["mfu"]
        r = result.get("ratios", {}).get(name)
        rows.append(
            [
                result["benchmark"],
                name,
                f"{_num(tp['median'])} {s['unit']}",
                f"{_num(tp['min'])} - {_num(tp['max'])}",
                f"{r['median']:.2f}x" if r else "",
                f"{100 * mfu['median']:.2f}%",
                f"{s['peak_rss_mb']:.0f}",
            ]
        )
    return rows


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


HEADER = ["benchmark", "side", "median", "min - max", "vs TRL", "MFU", "peak RSS MB"]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def print_result(result: dict[str, Any]) -> None:
    print(markdown(table_rows(result)))
    tr = result.get("trend")
    if tr is not None:
        verdict = "agree" if tr["ok"] else "DO NOT AGREE: speed comparison is not of equal work"
        print(f"{tr['metric']} trends (first 20% -> last 20%): {tr['first_last']} -> {verdict}")
    same = result.get("same_tokens")
    if same is not None:
        print(f"same batches: {same['totals']} {same['key']} -> {'yes' if same['equal'] else 'NO'}")
    for key, value in result.get("split", {}).items():
        print(f"{key}: {value}")
    for key, value in result.get("cross_ratios", {}).items():
        print(
            f"{key}: {value['median']}x (block pairs {value['paired_q1']} - {value['paired_q3']})"
        )


def assemble(
    benchmark: str,
    sides: list[Side],
    *,
    flops_per_unit: dict[str, float],
    unit: str,
    peer: str | None,
    peak: float,
    **extra: Any,
) -> dict[str, Any]:
    """The result of one benchmark: machine, peak, every side, ratios to `peer`, and `extra`.

    `peak` is the GEMM peak measured before the benchmark; it is measured again now and the
    higher one is used (other processes on a shared machine only ever lower it)."""
    import machine

    peak = max(peak, machine.gemm_peak_flops())
    by_name = {s.name: s for s in sides}
    ratios = {}
    if peer is not None:
        ratios = {s.name: ratio(s, by_name[peer]) for s in sides if s.name != peer}
    return {
        "benchmark": benchmark,
        "machine": machine.describe(),
        "gemm_peak_gflops": round(peak / 1e9, 1),
        "sides": {s.name: side_result(s, flops_per_unit[s.name], peak, unit) for s in sides},
        "ratios": ratios,
        **extra,
    }


def bench_args(
    doc: str,
    blocks: int,
    block_steps: int,
    warmup_steps: int,
    replicas: int = 1,
    flags: dict[str, str] | None = None,
) -> Any:
    """The command line every benchmark takes: how many blocks of how many steps, in how many
    processes per side, with how many threads; `flags`: a benchmark's own on/off switches
    (name: help)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, text in (flags or {}).items():
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--blocks", type=int, default=blocks, help="timed blocks per side (>= 5)")
    p.add_argument("--block-steps", type=int, default=block_steps, help="steps per block")
    p.add_argument("--warmup-steps", type=int, default=warmup_steps, help="untimed first steps")
    p.add_argument(
        "--replicas", type=int, default=replicas, help="processes per side (blocks alternate)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("BENCH_THREADS", "1")),
        help="torch threads of every side and of the GEMM peak (env BENCH_THREADS; default 1)",
    )
    a = p.parse_args()
    use_threads(a.threads)
    a.steps = a.warmup_steps + -(-a.blocks // a.replicas) * a.block_steps + 5  # per process
    return a


def use_threads(n: int) -> None:
    """Every side (a child process inherits the environment) and the GEMM peak use `n` threads.

    One by default: on a shared machine a second OpenMP thread that the scheduler parks makes
    every parallel region wait for it (a 64 x 40-token generate took 15 s with 2 threads next to
    colleagues' training and 0.4 s with 1). On a dedicated machine pass --threads 2.
    """
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
