"""A sweep config expanded into jobs: shared stages, then one job per point, each a list of steps.

Layout of the sweep folder:

    shared/<name>/          the run folder of a shared stage (`{name}` in placeholders)
    shared/<name>.log       its console output; <name>.json: its record (status, config, times)
    points/<point>/<step>/  the run folder of each step of a point (`run` for one-step methods)
    points/<point>/eval/    the evaluation's output (eval.log, eval.json beside it)

Point ids are the method name plus the point's override values (`ppo-lag-target_unsafe_share=0.02`),
so adding values to a grid keeps the folders, and the records, of the points already run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beaver.config.sweep import (
    PLACEHOLDER_RE,
    MethodCfg,
    StepCfg,
    SweepConfig,
    flatten,
    placeholders,
)

ONE_STEP = "run"
"""Name of the step of a one-step method."""
EVAL = "eval"
"""Name of the evaluation step of every point."""
POLICY_NAME = "policy"
"""Name the evaluation gives the point's policy (`policies.policy`, `blue_name`)."""
_PLAIN = re.compile(r"[A-Za-z_/.][\w./:@=+-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~", ".inf", ".nan"}


@dataclass(frozen=True)
class Step:
    """One beaver run of a job."""

    name: str
    """`run`, a chain's step name, a shared stage's name, or `eval`."""
    command: tuple[str, ...]
    """The words after `beaver`, e.g. ("ppo-lag",) or ("eval", "toyworld")."""
    config: str | None
    """The `--config` file."""
    overrides: dict[str, Any]
    """Flat `key.sub -> value`, placeholders filled in, `output_dir` included."""
    dir: Path
    """The run folder (`output_dir`)."""

    @property
    def log(self) -> Path:
        return self.dir.with_name(self.dir.name + ".log")

    @property
    def record(self) -> Path:
        return self.dir.with_name(self.dir.name + ".json")

    def args(self, *extra: str) -> list[str]:
        """The arguments after `beaver`."""
        config = ["--config", self.config] if self.config else []
        dotlist = [f"{k}={encode_value(v)}" for k, v in self.overrides.items()]
        return [*self.command, *config, *dotlist, *extra]

    def shell(self, *extra: str) -> str:
        """The run as one shell command line (what a user would type)."""
        return shlex.join(["beaver", *self.args(*extra)])


@dataclass(frozen=True)
class Job:
    """A unit of scheduling: a shared stage (one step) or a point (its steps, then `eval`)."""

    id: str
    """`shared/<name>` or `points/<point id>`."""
    method: str | None
    """The method of a point; None for a shared stage."""
    label: str
    """Short text for the picture: the point's varying values (empty for a lone point)."""
    overrides: dict[str, Any]
    """The point's own override values (grid and points entries), as written."""
    steps: list[Step]
    needs: frozenset[str] = field(default_factory=frozenset)
    """Shared stages this job names in a placeholder, so they must finish first."""
    policy: Path | None = None
    """The model its evaluation judges."""
    uses: tuple[str, ...] = ()
    """Shared stages its own runs and policy start from (not the evaluation's models): part of
    what the point costs."""


def encode_value(value: Any) -> str:
    """An override value as omegaconf's dotlist reads it back to the same value: plain words and
    paths as they are, anything else (numbers, lists, strings YAML would read otherwise) as JSON,
    which YAML reads exactly."""
    if isinstance(value, str) and _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)


def fill(value: Any, folders: dict[str, str]) -> Any:
    """`value` with every `{NAME}` replaced by `folders[NAME]` (strings in lists and dicts too)."""
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub(lambda m: folders[m.group(1)], value)
    if isinstance(value, dict):
        return {k: fill(v, folders) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, folders) for v in value]
    return value


def point_settings(method: MethodCfg) -> list[dict[str, Any]]:
    """Every override set of a method: the grid's combinations crossed with `points`."""
    keys = list(method.grid)
    combos = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*method.grid.values())
    ]
    listed = [flatten(p) for p in method.points] or [{}]
    return [{**entry, **combo} for entry in listed for combo in combos]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value.rstrip("/").rsplit("/", 1)[-1]  # a path: its last part
    return json.dumps(value, separators=(",", ":"))


def point_label(settings: dict[str, Any]) -> str:
    """`key=value` of each setting (last part of the key), or just the value when there is one."""
    if len(settings) == 1:
        return _fmt(next(iter(settings.values())))
    return " ".join(f"{_leaf(k)}={_fmt(v)}" for k, v in settings.items())


def _leaf(key: str) -> str:
    return key.rpartition(":")[2].rsplit(".", 1)[-1]


def point_id(method: str, settings: dict[str, Any], taken: set[str]) -> str:
    """A folder name from the method and its settings, unique among `taken`."""
    parts = [method, *(f"{_leaf(k)}={_fmt(v)}" for k, v in settings.items())]
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))[:100]
    if name in taken:
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        name = f"{name}-{digest}"
    return name


def build_plan(cfg: SweepConfig) -> list[Job]:
    """The shared stages (in order), then every point of every method (in order)."""
    root = Path(cfg.output_dir)
    shared = {name: str(root / "shared" / name) for name in cfg.shared}
    jobs: list[Job] = []
    for name, step in cfg.shared.items():
        needs = placeholders(step.overrides) & set(cfg.shared)
        built = _step(name, step, {"sweep": str(root), **shared}, {}, Path(shared[name]))
        jobs.append(Job(f"shared/{name}", None, name, {}, [built], frozenset(needs)))
    taken: set[str] = set()
    for method_name, method in cfg.methods.items():
        for settings in point_settings(method):
            pid = point_id(method_name, settings, taken)
            taken.add(pid)
            jobs.append(_point(cfg, method_name, method, settings, pid, shared))
    return jobs


def _chain(method: MethodCfg) -> dict[str, StepCfg]:
    if method.steps or method.command is None:
        return method.steps
    one = StepCfg(command=method.command, config=method.config, overrides=method.overrides)
    return {ONE_STEP: one}


def _point(
    cfg: SweepConfig,
    method_name: str,
    method: MethodCfg,
    settings: dict[str, Any],
    pid: str,
    shared: dict[str, str],
) -> Job:
    """One point: its steps in order (each may name the earlier ones), then its evaluation."""
    point_dir = Path(cfg.output_dir) / "points" / pid
    folders = {"sweep": cfg.output_dir, "point": str(point_dir), **shared}
    chain = _chain(method)
    steps = []
    for name, step in chain.items():
        # grid keys `STEP:key` go to that step; bare keys to the one step of a one-step method
        mine = {
            k.rpartition(":")[2]: v
            for k, v in settings.items()
            if k.rpartition(":")[0] in ("", name)
        }
        steps.append(_step(name, step, folders, mine, point_dir / name))
        folders[name] = str(point_dir / name)
    policy = Path(fill(method.policy, folders)) if method.policy else steps[-1].dir / "model"
    used = placeholders([method.policy, settings, [s.overrides for s in chain.values()]])
    uses = tuple(n for n in shared if n in used)
    evaluation = _eval_step(cfg, folders, point_dir, policy)
    if evaluation is not None:
        steps.append(evaluation)
        used |= placeholders(cfg.evaluation.overrides)
    label = point_label(settings) if settings else ""
    needs = frozenset(used & set(shared))
    return Job(f"points/{pid}", method_name, label, settings, steps, needs, policy, uses)


def _step(
    name: str, step: StepCfg, folders: dict[str, str], extra: dict[str, Any], run_dir: Path
) -> Step:
    overrides = fill({**flatten(step.overrides), **flatten(extra)}, folders)
    overrides["output_dir"] = str(run_dir)
    command = tuple(step.command.split())
    return Step(name, command, fill(step.config, folders), overrides, run_dir)


def _eval_step(
    cfg: SweepConfig, folders: dict[str, str], point_dir: Path, policy: Path
) -> Step | None:
    ev = cfg.evaluation
    if ev.kind == "none":
        return None
    overrides = fill(flatten(ev.overrides), folders)
    if ev.kind == "toyworld":
        overrides[f"policies.{POLICY_NAME}"] = str(policy)
    else:
        overrides.update({"blue_model": str(policy), "blue_name": POLICY_NAME})
    overrides["output_dir"] = str(point_dir / EVAL)
    command = ("eval", ev.kind)
    return Step(EVAL, command, fill(ev.config, folders), overrides, point_dir / EVAL)
