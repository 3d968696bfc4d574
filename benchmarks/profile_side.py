"""Run one benchmark side in this process, for profiling: no parent, no pauses.

    python benchmarks/profile_side.py bench_ppo:beaver_side --steps 8 --kw algorithm=ppo
    py-spy record -o ppo.svg -- .venv/bin/python benchmarks/profile_side.py bench_ppo:trl_side
    python benchmarks/profile_side.py bench_sft:trl_side --torch-profile --skip 5

With `--torch-profile` the steps after the first `--skip` run under `torch.profiler` and the
top operators by self CPU time are printed. Each step's seconds are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import time
from typing import Any

import report
from harness import StopBenchmark


class FreePacer:
    """A pacer that never waits: it counts steps, optionally starts a profiler, and stops."""

    def __init__(self, steps: int, skip: int, profiler: Any) -> None:
        self.steps, self.skip, self.profiler = steps, skip, profiler
        self.times: list[float] = []
        self.mark = time.perf_counter()

    def step(self, units: float, loss: float | None = None, **extra: float) -> None:
        now = time.perf_counter()
        self.times.append(now - self.mark)
        self.mark = now
        if self.profiler is not None and len(self.times) == self.skip:
            self.profiler.start()
        if len(self.times) >= self.steps:
            raise StopBenchmark


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("side", help="module:function, e.g. bench_ppo:beaver_side")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--skip", type=int, default=2, help="steps before the torch profiler starts")
    p.add_argument("--kw", nargs="*", default=[], help="extra side arguments, key=value")
    p.add_argument("--torch-profile", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    report.use_threads(a.threads)
    module, name = a.side.split(":")
    fn = getattr(importlib.import_module(module), name)
    kwargs: dict[str, Any] = dict(kv.split("=", 1) for kv in a.kw)
    if "steps" in fn.__code__.co_varnames:
        kwargs["steps"] = a.steps + 5
    profiler = None
    if a.torch_profile:
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CPU])
    pacer = FreePacer(a.steps, a.skip, profiler)
    with contextlib.suppress(StopBenchmark):
        fn(pacer, **kwargs)
    if profiler is not None:
        profiler.stop()
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(table)
    print("step seconds:", [round(t, 3) for t in pacer.times])


if __name__ == "__main__":
    main()
