"""Interleaved A/B timing of training loops that each run in their own process.

Every side (beaver, TRL, ...) is a function `side(pacer, **kwargs)` that builds its models and
runs its framework's own training loop, calling `pacer.step(...)` at every step boundary. The
pacer times the steps and, after each block of steps, reports to the parent and waits: so the
parent can run a block of side A, then a block of side B, then A again, and no two sides ever
compete for the CPU. One process per side keeps imports, caches and peak RSS apart.

    parent                      child A                    child B
    start A, send warm-up  ->   build, train warm-up
                           <-   records (discarded)        (waits)
    start B, send warm-up  ->                              build, train warm-up
    block A (n steps)      ->   train n steps ...
    block B ...

A step's time runs from the end of the previous step to the end of this one, so it includes the
loop's own work between steps (data loading, logging, bookkeeping), not only the step function.
The first block after start-up is a warm-up and is not reported.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StopBenchmark(Exception):
    """Raised inside a child's training loop when the parent has all the blocks it needs."""


class Pacer:
    """Child side: records one entry per training step and pauses between blocks."""

    def __init__(self, conn: Any, first_block: int) -> None:
        self.conn = conn
        self.want = first_block
        self.records: list[dict[str, float]] = []
        self.mark = time.perf_counter()

    def step(self, units: float, loss: float | None = None, **extra: float) -> None:
        """Call once per step: `units` done (tokens, pairs, episodes), the step's loss or other
        trend metric, and more timings (e.g. `generate` seconds) to aggregate."""
        now = time.perf_counter()
        record = {"seconds": now - self.mark, "units": float(units), **extra}
        if loss is not None:
            record["loss"] = float(loss)
        self.records.append(record)
        self.mark = now
        if len(self.records) < self.want:
            return
        self.conn.send(self.records)
        command = self.conn.recv()  # blocks: the other side runs meanwhile
        if command is None:
            raise StopBenchmark
        self.want, self.records = int(command), []
        self.mark = time.perf_counter()


def _child(
    conn: Any, side: Callable[..., None], kwargs: dict[str, Any], first: int, log: str
) -> None:
    """Entry of a side's process: output to its log file, run, report peak RSS or the error."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = sys.stdout
    try:
        side(Pacer(conn, first), **kwargs)
        conn.send({"error": "the training loop ended before the benchmark stopped it"})
    except StopBenchmark:
        import torch

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        conn.send({"peak_rss_mb": peak_kb / 1024, "threads": torch.get_num_threads()})
    except BaseException:
        traceback.print_exc()
        conn.send({"error": traceback.format_exc(limit=-3)})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


@dataclass
class Side:
    """One contestant: a name, the function its process runs, and that function's kwargs."""

    name: str
    fn: Callable[..., None]
    kwargs: dict[str, Any] = field(default_factory=dict)
    blocks: list[list[dict[str, float]]] = field(default_factory=list)
    warmup: list[dict[str, float]] = field(default_factory=list)
    replica_of_block: list[int] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    """The largest over the side's processes."""
    threads: int = 0


class _Running:
    def __init__(self, side: Side, warmup_steps: int, log: Path) -> None:
        ctx = mp.get_context("spawn")
        self.side = side
        self.conn, child_conn = ctx.Pipe()
        self.log = str(log)
        self.proc = ctx.Process(
            target=_child,
            args=(child_conn, side.fn, side.kwargs, warmup_steps, self.log),
            daemon=True,
        )
        self.proc.start()

    def receive(self) -> Any:
        if not self.conn.poll(1800):
            raise TimeoutError(f"{self.side.name}: no answer in 30 min (see {self.log})")
        reply = self.conn.recv()
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"{self.side.name} failed (log: {self.log}):\n{reply['error']}")
        return reply


def interleave(
    sides: list[Side],
    *,
    warmup_steps: int,
    block_steps: int,
    blocks: int,
    log_dir: Path,
    prefix: str,
    replicas: int = 1,
) -> list[Side]:
    """Warm each side up in turn, then run `blocks` blocks of `block_steps` steps per side,
    alternating the order every round (A B, B A, A B, ...) so that a slow drift of the machine
    falls on both sides alike.

    With `replicas` > 1 every side runs in that many processes, each training from the start,
    and block k goes to replica k % replicas: two identical processes can differ by a few
    percent for good (memory layout; an A/A run of this harness showed 0.96 - 1.01x), and
    spreading the blocks over processes averages that out. Each process's output goes to
    `log_dir/<prefix>-<side>[-<replica>].log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    running: dict[tuple[int, int], _Running] = {}
    try:
        for rep in range(replicas):  # one after the other: start-up must not overlap a block
            for i, side in enumerate(sides):
                suffix = f"-{rep}" if replicas > 1 else ""
                r = _Running(side, warmup_steps, log_dir / f"{prefix}-{side.name}{suffix}.log")
                warmup = r.receive()
                if rep == 0:
                    side.warmup = warmup
                running[i, rep] = r
        for k in range(blocks):
            rep, rounds = k % replicas, k // replicas
            order = range(len(sides)) if rounds % 2 == 0 else reversed(range(len(sides)))
            for i in order:
                r = running[i, rep]
                r.conn.send(block_steps)
                sides[i].blocks.append(r.receive())
                sides[i].replica_of_block.append(rep)
        for (i, _), r in running.items():
            r.conn.send(None)
            final = r.receive()
            sides[i].peak_rss_mb = max(sides[i].peak_rss_mb, final["peak_rss_mb"])
            sides[i].threads = final["threads"]
    finally:
        for r in running.values():
            r.proc.join(timeout=60)
            if r.proc.is_alive():
                r.proc.kill()
    return sides


@dataclass
class Stat:
    """Median, min and max over blocks of a per-block value."""

    median: float
    min: float
    max: float
    values: list[float]

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {
            "median": _round(self.median, digits),
            "min": _round(self.min, digits),
            "max": _round(self.max, digits),
            "per_block": [_round(v, digits) for v in self.values],
        }


def _round(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def stat(values: list[float]) -> Stat:
    return Stat(statistics.median(values), min(values), max(values), values)


def throughput(side: Side) -> Stat:
    """Units per second of each block (total units / total seconds of the block)."""
    return stat([sum(r["units"] for r in b) / sum(r["seconds"] for r in b) for b in side.blocks])


def share(side: Side, key: str) -> Stat:
    """Seconds per step spent in `key` (e.g. "generate"), per block."""
    return stat([sum(r.get(key, 0.0) for r in b) / len(b) for b in side.blocks])


def per_step(side: Side) -> Stat:
    return stat([sum(r["seconds"] for r in b) / len(b) for b in side.blocks])


def curve(side: Side) -> list[float]:
    """The loss (or trend metric) of every step of the first process, warm-up included:
    training starts there."""
    first = [b for b, rep in zip(side.blocks, side.replica_of_block, strict=True) if rep == 0]
    return [r["loss"] for r in side.warmup + [r for b in first for r in b] if "loss" in r]
