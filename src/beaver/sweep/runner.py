"""Running a sweep's jobs: each step a subprocess of the real `beaver` CLI, N jobs at once.

- Before anything runs, every step's config is resolved by its own command
  (`beaver CMD ... --print-config`), so a bad key in any point stops the sweep before the first
  model loads. Training steps (their config has `train.resume`) run with `train.resume=auto`.
- Each step leaves a record beside its folder (`<step>.json`: status, resolved config, seconds
  over all attempts, error). A rerun skips finished steps and resumes the others from their last
  checkpoint; a finished step whose resolved config changed stops the sweep (its results would be
  stale), except an evaluation, which is simply run again.
- A failed step (non-zero exit) ends its job with the tail of its log as the error; the other
  jobs go on. Jobs that need a failed shared stage are skipped.
- SIGTERM / SIGINT (and SIGHUP) are passed to every running step, each in its own process group:
  training steps save a checkpoint and exit; nothing new starts; the sweep exits 128 + signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from beaver.config.sweep import flatten
from beaver.engine.checkpoint import latest_checkpoint
from beaver.errors import UserError
from beaver.sweep.plan import EVAL, POLICY_NAME, Job, Step

FINISHED, FAILED, INTERRUPTED, SKIPPED, PENDING = (
    "finished",
    "failed",
    "interrupted",
    "skipped",
    "pending",
)
INTERRUPT_CODES = (130, 143, -signal.SIGINT, -signal.SIGTERM)
ERROR_LINES = 20


def beaver_argv(args: list[str]) -> list[str]:
    """The real CLI, in the interpreter running the sweep."""
    return [sys.executable, "-m", "beaver", *args]


def read_record(step: Step) -> dict[str, Any] | None:
    if not step.record.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(step.record.read_text())
    except json.JSONDecodeError:
        return None  # a record cut short by a crash: the step is simply run again
    return record


def write_record(step: Step, record: dict[str, Any]) -> None:
    step.record.parent.mkdir(parents=True, exist_ok=True)
    tmp = step.record.with_name(step.record.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, step.record)


@dataclass
class Prepared:
    """A step with its resolved config and whether this run of the sweep must run it."""

    step: Step
    resolved: dict[str, Any]
    trains: bool
    """The command trains (its config has `train.resume`): it runs with `train.resume=auto`."""
    done: bool
    """Finished before, with the same resolved config."""
    note: str = ""

    def args(self) -> list[str]:
        return self.step.args(*(["train.resume=auto"] if self.trains else []))


def resolve(job: Job, step: Step) -> dict[str, Any]:
    """The step's config as its own command resolves and validates it (`--print-config`)."""
    done = subprocess.run(
        beaver_argv(step.args("--print-config")), capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().removeprefix("error:").strip()
        raise UserError(f"{job.id}, step {step.name} ({step.shell()}):\n{message}")
    resolved = yaml.safe_load(done.stdout)
    if not isinstance(resolved, dict) or "output_dir" not in resolved:
        raise UserError(
            f"{job.id}, step {step.name}: `beaver {' '.join(step.command)}` "
            "has no output_dir; the sweep runs only commands that write a folder"
        )
    toyworld_eval = step.name == EVAL and step.command == ("eval", "toyworld")
    if toyworld_eval and list(resolved.get("policies", {})) != [POLICY_NAME]:
        raise UserError(
            f"{job.id}: the evaluation config names policies of its own "
            f"({sorted(resolved['policies'])}); the sweep sets each point's one "
            "policy: remove `policies` from evaluation.config"
        )
    return resolved


def prepare(jobs: list[Job], workers: int = 4) -> dict[tuple[str, str], Prepared]:
    """Resolve every step (in parallel: each is a short subprocess) and decide what is left."""
    pairs = [(job, step) for job in jobs for step in job.steps]
    with ThreadPoolExecutor(workers) as pool:
        resolved = iter(list(pool.map(lambda js: resolve(*js), pairs)))
    out = {}
    for job in jobs:
        forced = False  # once a step runs, every later step of the job runs again too
        for step in job.steps:
            config = next(resolved)
            trains = isinstance(config.get("train"), dict) and "resume" in config["train"]
            p = Prepared(step, config, trains, done=False)
            p.done, p.note = _decide(job, step, config, read_record(step))
            if forced:
                p.done = False
            forced = forced or not p.done
            out[job.id, step.name] = p
    return out


def _decide(
    job: Job, step: Step, config: dict[str, Any], record: dict[str, Any] | None
) -> tuple[bool, str]:
    """(done, note): finished with this config; or why not. Raises when results would be stale."""
    if record is None:
        return False, ""
    changed = changed_keys(record.get("config") or {}, config)
    if not changed:
        return record.get("status") == FINISHED, ""
    listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    if step.name == EVAL:
        return False, f"evaluation config changed ({listed}): evaluating again"
    if record.get("status") == FINISHED or latest_checkpoint(step.dir / "checkpoints"):
        raise UserError(
            f"{job.id}, step {step.name} was run with another config (changed: {listed}); "
            f"delete {step.dir.parent if job.method else step.dir} to run it again, or give the "
            "sweep another output_dir."
        )
    return False, ""


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each key whose value differs. Keys in only one of them are left out:
    a newer beaver may add config fields (with defaults) or drop some, which is not a change
    of the run."""
    a, b = flatten(old), flatten(new)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]


@dataclass
class Outcome:
    status: str
    error: str | None = None
    step: str | None = None


class Runner:
    """Runs jobs' steps as subprocesses and passes stop signals on to them."""

    def __init__(self, parallel: int, console: Console) -> None:
        self.parallel = parallel
        self.console = console
        self.stop_signal: int | None = None
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
            self.env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))

    def request_stop(self, signum: int) -> None:
        """Signal handler: every running step gets the signal; nothing new starts."""
        with self._lock:
            self.stop_signal = signum
            for proc in self._procs:
                with contextlib.suppress(ProcessLookupError):  # it has just ended
                    os.killpg(proc.pid, signum)

    def run_job(self, job: Job, prepared: dict[tuple[str, str], Prepared]) -> Outcome:
        for step in job.steps:
            p = prepared[job.id, step.name]
            if p.done:
                continue
            if p.note:
                self.console.print(f"{job.id}: {p.note}")
            outcome = self._run_step(job, p)
            if outcome.status != FINISHED:
                return outcome
        return Outcome(FINISHED)

    def _run_step(self, job: Job, p: Prepared) -> Outcome:
        step = p.step
        record = read_record(step) or {}
        if changed_keys(record.get("config") or {}, p.resolved):  # reconfigured: a new count
            record = {}
        attempt = int(record.get("attempts", 0)) + 1
        if self.stop_signal is not None:
            return Outcome(PENDING)
        step.dir.parent.mkdir(parents=True, exist_ok=True)
        with open(step.log, "a", encoding="utf-8") as log:
            log.write(f"\n== attempt {attempt}: {shlex_join(p)}\n")
            log.flush()
            offset = log.tell()
            with self._lock:
                if self.stop_signal is not None:  # the stop came while this step was starting
                    log.write("(not started: the sweep is stopping)\n")
                    return Outcome(PENDING)
                start = time.time()
                proc = subprocess.Popen(
                    beaver_argv(p.args()),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
                self._procs.add(proc)
            self.console.print(f"{job.id}: {step.name} started (log: {step.log})")
            write_record(
                step,
                {
                    **record,
                    "status": "running",
                    "attempts": attempt,
                    "command": shlex_join(p),
                    "config": p.resolved,
                },
            )
            code = proc.wait()
            with self._lock:
                self._procs.discard(proc)
        seconds = time.time() - start
        if code == 0:
            status, error = FINISHED, None
        else:
            status = INTERRUPTED if code in INTERRUPT_CODES else FAILED
            error = f"exit code {code}; last lines of {step.log}:\n" + _tail(step.log, offset)
        write_record(
            step,
            {
                "status": status,
                "attempts": attempt,
                "command": shlex_join(p),
                "seconds": round(float(record.get("seconds", 0.0)) + seconds, 1),
                "returncode": code,
                "error": error,
                "config": p.resolved,
            },
        )
        self.console.print(f"{job.id}: {step.name} {status} after {seconds:.0f} s")
        return Outcome(status, error, step.name)

    def schedule(
        self,
        jobs: list[Job],
        prepared: dict[tuple[str, str], Prepared],
        on_done: Callable[[Job, Outcome], None],
    ) -> dict[str, Outcome]:
        """Run the jobs in order, up to `parallel` at once, each once the shared stages it names
        have finished; a job whose shared stage did not finish is skipped."""
        outcomes: dict[str, Outcome] = {}
        waiting = list(jobs)
        running: dict[Future[Outcome], Job] = {}

        def finish(job: Job, outcome: Outcome) -> None:
            outcomes[job.id] = outcome
            on_done(job, outcome)

        with ThreadPoolExecutor(self.parallel) as pool:
            try:
                while waiting or running:
                    for job in list(waiting) if self.stop_signal is None else []:
                        states = {n: outcomes.get(f"shared/{n}") for n in sorted(job.needs)}
                        blocked = [n for n, o in states.items() if o and o.status != FINISHED]
                        if blocked:
                            waiting.remove(job)
                            finish(
                                job,
                                Outcome(
                                    SKIPPED,
                                    f"needs shared stage {blocked[0]}, which did not finish",
                                ),
                            )
                        elif None not in states.values() and len(running) < self.parallel:
                            waiting.remove(job)
                            running[pool.submit(self.run_job, job, prepared)] = job
                    if self.stop_signal is not None:
                        waiting.clear()  # left pending: a rerun takes them up
                    if waiting and not running:
                        raise RuntimeError(f"no job can start: {[j.id for j in waiting]}")
                    done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        finish(running.pop(future), future.result())
            except BaseException:
                self.request_stop(signal.SIGTERM)  # a bug above: leave no run behind
                raise
        return outcomes


def shlex_join(p: Prepared) -> str:
    return p.step.shell(*(["train.resume=auto"] if p.trains else []))


def _tail(path: Path, offset: int, lines: int = ERROR_LINES) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        text = f.read()
    return "\n".join(text.rstrip().splitlines()[-lines:])


def handle_stop_signals(runner: Runner) -> Callable[[], None]:
    """Install handlers that stop the sweep gracefully; returns a function restoring the old."""
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.getsignal(s) for s in signals}

    def handler(signum: int, _frame: object) -> None:
        # SIGHUP (the terminal went away) stops the steps as SIGTERM does
        runner.request_stop(signal.SIGTERM if signum == signal.SIGHUP else signum)

    for s in signals:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
