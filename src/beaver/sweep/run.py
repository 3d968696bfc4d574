"""`beaver sweep`: plan, check every run's config, run what is left, write the table and picture.

Exit codes: 0 when every point finished, 1 when some failed (the table says which and why),
2 for a mistake in the sweep's config (or a run's config: every run is checked first),
128 + signal when stopped (rerun the same command to go on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.text import Text

from beaver.config.loader import dump_config
from beaver.config.sweep import SweepConfig
from beaver.console import plain_console
from beaver.errors import UserError
from beaver.sweep.plan import Job, build_plan
from beaver.sweep.results import collect, results_table, write_results
from beaver.sweep.runner import (
    FAILED,
    FINISHED,
    SKIPPED,
    Outcome,
    Prepared,
    Runner,
    handle_stop_signals,
    prepare,
    shlex_join,
)


@contextmanager
def sweep_lock(folder: Path) -> Iterator[None]:
    """One sweep at a time per folder (two would run the same points into the same folders)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another beaver sweep is running in {folder}") from None
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def print_plan(
    jobs: list[Job], prepared: dict[tuple[str, str], Prepared], console: Console
) -> None:
    for job in jobs:
        for step in job.steps:
            p = prepared[job.id, step.name]
            state = "done" if p.done else "to run"
            console.print(Text(f"{job.id} / {step.name} [{state}]: {shlex_join(p)}"))


def run(cfg: SweepConfig, dry_run: bool = False) -> int:
    """Run the sweep (or, with `dry_run`, check it and list its commands); returns the exit code."""
    console = plain_console()
    if not console.is_terminal:  # a log file: room for the table's columns
        console = plain_console(width=160)
    out = Path(cfg.output_dir)
    jobs = build_plan(cfg)
    steps = sum(len(j.steps) for j in jobs)
    with console.status(Text(f"checking the config of each of the {steps} runs")):
        prepared = prepare(jobs)
    left = sum(not p.done for p in prepared.values())
    points = sum(j.method is not None for j in jobs)
    console.print(
        f"sweep {out}: {len(jobs) - points} shared stages, {points} points, {steps} runs "
        f"({steps - left} finished before, {left} to run)"
    )
    if dry_run:
        print_plan(jobs, prepared, console)
        return 0
    with sweep_lock(out):
        (out / "sweep.yaml").write_text(dump_config(cfg))
        runner = Runner(cfg.parallel, console)
        outcomes: dict[str, Outcome] = {}

        def on_done(job: Job, outcome: Outcome) -> None:
            outcomes[job.id] = outcome
            write_results(cfg, collect(cfg, jobs, outcomes), picture=False)  # progress so far

        restore = handle_stop_signals(runner)
        try:
            runner.schedule(jobs, prepared, on_done)
        finally:
            restore()
        rows = collect(cfg, jobs, outcomes)
        paths = write_results(cfg, rows, picture=True)
    console.print(results_table(rows, f"sweep {out.name}"))
    for row in rows:
        if row["error"] and row["status"] in (FAILED, SKIPPED):
            console.print(Text(f"{row['status']}: {row['id']}: {row['error']}", style="red"))
    console.print(Text("results: " + ", ".join(str(p) for p in paths.values())))
    if runner.stop_signal is not None:
        console.print("stopped; run the same command again to go on (finished runs are kept)")
        return 128 + runner.stop_signal
    return 0 if all(r["status"] == FINISHED for r in rows) else 1
