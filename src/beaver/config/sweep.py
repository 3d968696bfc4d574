"""`beaver sweep`: a grid (or list) of beaver runs, each evaluated, gathered into one table.

A sweep holds *shared* stages, run once (the toy world, an SFT, reward and cost model), and
*methods*, each one beaver command (or a chain of them) with the overrides of its points.
Strings may name other runs' folders with placeholders: `{NAME}` is the folder of the shared
stage NAME or of an earlier step NAME of the same method, `{sweep}` the sweep's folder and
`{point}` the point's folder. Everything is checked here, before any run starts; each stage's
own config is validated by that stage (`beaver CMD ... --print-config`) before the first run.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from beaver.config._base import Section

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z0-9][A-Za-z0-9_.-]*)\}")
RESERVED = ("sweep", "point", "eval")
SET_BY_SWEEP = ("output_dir", "train.resume")


class StepCfg(Section):
    """One beaver run: a command, its config file and overrides."""

    command: str
    """The beaver command, as typed after `beaver`: `sft`, `ppo-lag`, `dpo`, `toyworld`, ..."""
    config: str | None = None
    """Its YAML config (`--config`); none builds the config from the overrides alone."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """`key.sub: value` overrides of that config (nested mappings are flattened); the sweep sets
    `output_dir` (and `train.resume`) itself. Strings may hold placeholders (module docstring)."""

    @model_validator(mode="after")
    def _no_output_dir(self) -> StepCfg:
        _refuse_set_by_sweep(self.overrides)
        return self


class MethodCfg(Section):
    """A method: one step (`command`, `config`, `overrides`) or a chain of `steps`, and its points.

    The points are every combination of `grid`, crossed with each entry of `points`; a method
    with neither is one point. A method without steps only evaluates `policy` (a baseline).
    """

    command: str | None = None
    """The beaver command of a one-step method (a chain uses `steps` instead)."""
    config: str | None = None
    """Config file of the one step."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the one step, the same for every point."""
    steps: dict[str, StepCfg] = Field(default_factory=dict)
    """A chain of runs, in order (e.g. SACPO: `helpful` then `safe`, whose actor is
    `{helpful}/model`); each gets its own folder in the point's folder."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Override key -> values; every combination is a point. In a chain, keys name their step:
    `STEP:key.sub`."""
    points: list[dict[str, Any]] = Field(default_factory=list)
    """Explicit override sets, one point each (crossed with `grid` when both are given)."""
    policy: str | None = None
    """The model the evaluation judges; default `<last step>/model`."""
    label: str | None = None
    """Name in the legend and the table; default the method's key."""

    @field_validator("grid", mode="before")
    @classmethod
    def _flat_grid(cls, grid: Any) -> Any:
        # `methods.m.grid.lagrange.lambda_fixed=[...]` on the command line arrives nested
        return flatten(grid) if isinstance(grid, dict) else grid

    @model_validator(mode="after")
    def _shape(self) -> MethodCfg:
        if self.command is not None and self.steps:
            raise ValueError("give either `command` (one step) or `steps` (a chain), not both")
        if self.command is None and (self.config is not None or self.overrides):
            raise ValueError("`config` and `overrides` belong to a one-step method: set `command`")
        if self.command is None and not self.steps and self.policy is None:
            raise ValueError("a method needs `command`, `steps`, or a `policy` to evaluate")
        if (self.grid or self.points) and self.command is None and not self.steps:
            raise ValueError("`grid` and `points` vary runs: this method has none")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key} is empty: give at least one value")
        _refuse_set_by_sweep(self.overrides)
        for settings in [self.grid, *self.points]:
            _refuse_set_by_sweep({k.rpartition(":")[2]: v for k, v in settings.items()})
        chain = list(self.steps)
        for key in {k for p in [self.grid, *self.points] for k in p}:
            step, sep, _ = key.rpartition(":")
            if self.steps and not sep:
                raise ValueError(f"`{key}`: in a chain of steps, name the step: `STEP:{key}`")
            if sep and step not in chain:
                raise ValueError(f"`{key}`: no step `{step}` in this method (has {chain})")
        for name in chain:
            _check_name(name, "step")
        return self


class EvaluationCfg(Section):
    """How each point's policy is judged."""

    kind: Literal["toyworld", "arena", "none"] = "toyworld"
    """`toyworld`: `beaver eval toyworld` (the ground-truth judge, and the learned reward and cost
    when named); `arena`: `beaver eval arena` (reward and cost models on any prompt set, the point's
    policy as blue against `red_model`); `none`: no evaluation (costs only)."""
    config: str | None = None
    """Config file of the evaluation command, without models of its own (the sweep sets the
    policy: `policies` of eval toyworld, `blue_model` of eval arena)."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the evaluation config (prompts, reward and cost models, sampling), with
    placeholders."""


class FrontierCfg(Section):
    """The frontier picture and the distance of each point to a reference method's front."""

    x: str = "harmful_rate_risky"
    """Table column on the x axis, lower is better (default: harmful rate on risky prompts)."""
    y: str = "helpfulness_risky"
    """Table column on the y axis, higher is better (default: helpfulness on risky prompts)."""
    reference: str | None = None
    """A method whose front the other points are measured against: the table gains
    `gap_y_vs_<ref>` (more y than the reference reaches at no more x) and `gap_x_vs_<ref>` (less x
    than the reference needs for as much y); positive means beyond its front."""
    title: str | None = None
    """Title of the picture; default the sweep folder's name."""


class SweepConfig(Section):
    """`beaver sweep`: shared stages, then every method's points, each evaluated; one table."""

    output_dir: str
    """Sweep folder: `shared/`, `points/`, `results.csv`, `results.json`, `frontier.png`."""
    parallel: int = Field(1, gt=0)
    """Runs at once. Above 1 each run gets OMP_NUM_THREADS = cores / parallel unless it is set;
    keep 1 when wall times are to be compared (concurrent runs slow each other down)."""
    shared: dict[str, StepCfg] = Field(default_factory=dict)
    """Stages run once, in order, before the points that name them (`{NAME}`)."""
    methods: dict[str, MethodCfg]
    """Method name -> its runs and points."""
    evaluation: EvaluationCfg = Field(default_factory=EvaluationCfg)
    """How every point's policy is judged."""
    frontier: FrontierCfg = Field(default_factory=FrontierCfg)
    """The frontier picture."""

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if not self.methods:
            raise ValueError("methods is empty: name at least one method")
        for name in self.shared:
            _check_name(name, "shared stage")
        for name, method in self.methods.items():
            _check_name(name, "method")
            clash = set(method.steps) & set(self.shared)
            if clash:
                raise ValueError(f"method {name}: steps {sorted(clash)} clash with shared stages")
        known = set(self.shared)
        for i, (name, step) in enumerate(self.shared.items()):
            earlier = set(list(self.shared)[:i])
            _check_placeholders(step.overrides, earlier | {"sweep"}, f"shared.{name}")
        for name, method in self.methods.items():
            earlier = set(known)
            for step_name, step in method.steps.items():
                _check_placeholders(step.overrides, earlier | {"sweep", "point"}, name)
                earlier.add(step_name)
            scope = earlier | {"sweep", "point"}
            _check_placeholders(method.overrides, scope, name)
            for values in [*method.grid.values(), *method.points]:
                _check_placeholders(values, scope, name)
            _check_placeholders(method.policy, scope, name)
        _check_placeholders(self.evaluation.overrides, known | {"sweep", "point"}, "evaluation")
        ref = self.frontier.reference
        if ref is not None and ref not in self.methods:
            raise ValueError(f"frontier.reference {ref!r} is not a method ({list(self.methods)})")
        return self


def flatten(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys (`{a: {b: 1}}` -> `{a.b: 1}`); an empty mapping is kept."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _refuse_set_by_sweep(overrides: dict[str, Any]) -> None:
    for key in SET_BY_SWEEP:
        if key in flatten(overrides):
            raise ValueError(
                f"`{key}` is set by the sweep (one folder per run, resumed); remove it"
            )


def _check_name(name: str, what: str) -> None:
    if not NAME_RE.fullmatch(name) or name in RESERVED:
        raise ValueError(
            f"{what} name {name!r}: use letters, digits, '_', '.', '-' (not {list(RESERVED)})"
        )


def placeholders(value: Any) -> set[str]:
    """Names of the `{NAME}` placeholders in the strings of `value` (nested lists and dicts)."""
    if isinstance(value, str):
        return set(PLACEHOLDER_RE.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value))
    return set()


def _check_placeholders(value: Any, known: set[str], where: str) -> None:
    unknown = placeholders(value) - known
    if unknown:
        raise ValueError(
            f"{where}: unknown placeholder(s) {sorted('{' + u + '}' for u in unknown)}; "
            f"known here: {sorted('{' + k + '}' for k in known)}"
        )
