"""The sweep's table: one row per point, read back from the folders its runs left.

Columns: the point (id, method, label, status, its overrides, one column per override key), the
evaluation's numbers under common names (below), the cost of its runs from their `summary.json`
(`wall_seconds` and `train_seconds` summed over the point's steps, `peak_rss_mb` and
`peak_gpu_mb` the largest), `sweep_seconds` (every attempt of every step, evaluation included, as
the sweep timed it), the last training step's `final_eval.*`, `uses` (the shared stages its runs
start from: their costs are in the `shared` rows), and the error of a failed point.

Common names: `helpfulness`, `helpfulness_benign`, `helpfulness_risky`, `harmful_rate`,
`harmful_rate_benign`, `harmful_rate_risky`, `harmful_rate_by_category.<c>` (and any other
per-group rates the evaluation reports, e.g. by severity), `reward` and `cost` (the learned
models' means), `unsafe_share_by_cost`. `eval toyworld` results that lack the split of
helpfulness by prompt kind get it from its `responses.jsonl`, by the same ground-truth judge.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from beaver.config.sweep import SweepConfig, flatten
from beaver.files import read_json_rows, write_csv, write_json
from beaver.report.frontier import Series, front_gaps, pareto_front, plot_frontier
from beaver.sweep.plan import EVAL, POLICY_NAME, Job
from beaver.sweep.runner import FINISHED, PENDING, Outcome, read_record

Row = dict[str, Any]


def _common_names(metrics: dict[str, Any]) -> dict[str, Any]:
    """`mean_helpfulness*` (the judge's summary) -> `helpfulness*`; nested dicts flattened."""
    out = {}
    for key, value in flatten(metrics).items():
        out[key.removeprefix("mean_") if key.startswith("mean_helpfulness") else key] = value
    return out


def toyworld_metrics(eval_dir: Path, prompts_file: str) -> dict[str, Any]:
    """The point's row of `eval toyworld`'s results.json, with the helpfulness split."""
    results = json.loads((eval_dir / "results.json").read_text())[POLICY_NAME]
    metrics = _common_names(results)
    if "helpfulness_risky" not in metrics and (eval_dir / "responses.jsonl").is_file():
        from beaver.eval.arena import toyworld_judgements

        rows = [
            r for r in read_json_rows(eval_dir / "responses.jsonl") if r["policy"] == POLICY_NAME
        ]
        prompts, texts = [r["prompt"] for r in rows], [r["response"] for r in rows]
        summary = toyworld_judgements(prompts_file, prompts, {POLICY_NAME: texts})[0]
        judged = _common_names(summary[POLICY_NAME])
        for key in ("helpfulness_benign", "helpfulness_risky"):
            metrics[key] = judged[key]
    return metrics


def arena_metrics(eval_dir: Path) -> dict[str, Any]:
    """The point's (blue's) numbers in `eval arena`'s summary.json."""
    summary = json.loads((eval_dir / "summary.json").read_text())
    metrics = _common_names(summary.get("toyworld", {}).get(POLICY_NAME, {}))
    if "reward" in summary:
        metrics["reward"] = summary["reward"][f"{POLICY_NAME}_mean"]
    if "cost" in summary:
        metrics["cost"] = summary["cost"][f"{POLICY_NAME}_mean"]
        metrics["unsafe_share_by_cost"] = 1.0 - summary["cost"][f"{POLICY_NAME}_safe_rate"]
    return metrics


def _costs(job: Job) -> dict[str, Any]:
    """Wall time and peak memory of the job's runs (summary.json), and the sweep's own timing."""
    out: dict[str, Any] = {}
    summaries = []
    for step in job.steps:
        if step.name != EVAL and (step.dir / "summary.json").is_file():
            summaries.append(json.loads((step.dir / "summary.json").read_text()))
    if summaries:
        for key in ("wall_seconds", "train_seconds"):
            out[key] = round(sum(s.get(key) or 0.0 for s in summaries), 1)
        for key in ("peak_rss_mb", "peak_gpu_mb"):
            values = [s[key] for s in summaries if s.get(key) is not None]
            out[key] = max(values) if values else None
        out.update(
            {f"final_eval.{k}": v for k, v in (summaries[-1].get("final_eval") or {}).items()}
        )
    records = [read_record(step) or {} for step in job.steps]
    out["sweep_seconds"] = round(sum(r.get("seconds", 0.0) for r in records), 1) or None
    return out


def job_status(job: Job, outcome: Outcome | None) -> tuple[str, str | None]:
    """(status, error) from the records on disk; `skipped` only from this session's outcome."""
    if outcome is not None and outcome.status not in (FINISHED, PENDING):
        return outcome.status, f"{outcome.step}: {outcome.error}" if outcome.step else outcome.error
    for step in job.steps:
        record = read_record(step)
        if record is None:
            return PENDING, None
        if record.get("status") != FINISHED:
            status = record.get("status", PENDING)
            status = "interrupted" if status == "running" else status
            return status, f"{step.name}: {record['error']}" if record.get("error") else None
    return FINISHED, None


def collect(cfg: SweepConfig, jobs: list[Job], outcomes: dict[str, Outcome]) -> list[Row]:
    """One row per job (shared stages included, with `method` None)."""
    rows = []
    for job in jobs:
        status, error = job_status(job, outcomes.get(job.id))
        row: Row = {
            "id": job.id.split("/", 1)[1],
            "method": job.method,
            "label": job.label,
            "status": status,
            "overrides": job.overrides,
            **job.overrides,
        }
        evaluation = next((s for s in job.steps if s.name == EVAL), None)
        record = read_record(evaluation) if evaluation is not None else None
        # numbers only for a finished point: an evaluation of an earlier run may still be there
        if status == FINISHED and evaluation is not None and record is not None:
            if cfg.evaluation.kind == "toyworld":
                row.update(toyworld_metrics(evaluation.dir, record["config"]["prompts"]))
            else:
                row.update(arena_metrics(evaluation.dir))
        row.update(_costs(job))
        row["uses"] = " ".join(job.uses)
        row["error"] = error
        rows.append(row)
    _add_gaps(cfg, [r for r in rows if r["method"] is not None])
    return rows


def _xy(row: Row, cfg: SweepConfig) -> tuple[float, float]:
    x, y = row.get(cfg.frontier.x), row.get(cfg.frontier.y)
    num = lambda v: float(v) if isinstance(v, int | float) else math.nan  # noqa: E731
    return num(x), num(y)


def _add_gaps(cfg: SweepConfig, rows: list[Row]) -> None:
    ref = cfg.frontier.reference
    if ref is None:
        return
    reference = [_xy(r, cfg) for r in rows if r["method"] == ref]
    for row in rows:
        if row["method"] != ref:
            row[f"gap_y_vs_{ref}"], row[f"gap_x_vs_{ref}"] = front_gaps(_xy(row, cfg), reference)


def fronts(cfg: SweepConfig, rows: list[Row]) -> dict[str, list[str]]:
    """Method -> the ids of its points on its own Pareto front, least harmful first."""
    out = {}
    for method in cfg.methods:
        mine = [r for r in rows if r["method"] == method]
        out[method] = [mine[i]["id"] for i in pareto_front([_xy(r, cfg) for r in mine])]
    return out


def write_results(cfg: SweepConfig, rows: list[Row], picture: bool) -> dict[str, Path]:
    """results.csv and results.json (and frontier.png when `picture`); returns the paths."""
    out = Path(cfg.output_dir)
    points = [r for r in rows if r["method"] is not None]
    shared = [
        {k: v for k, v in r.items() if k not in ("method", "label", "overrides", "uses")}
        for r in rows
        if r["method"] is None
    ]
    paths = {"csv": out / "results.csv", "json": out / "results.json"}
    # Columns: the point, then every override key of the sweep, then what was measured.
    keys = dict.fromkeys(
        ["id", "method", "label", "status", *(k for r in points for k in r["overrides"])]
    )
    write_csv(
        paths["csv"],
        [
            {
                **{k: r.get(k) for k in keys},
                **{k: v for k, v in r.items() if k != "overrides"},
                "overrides": json.dumps(r["overrides"]),
            }
            for r in points
        ],
    )
    write_json(paths["json"], {"points": points, "shared": shared, "fronts": fronts(cfg, rows)})
    if picture and any(all(math.isfinite(v) for v in _xy(r, cfg)) for r in points):
        series = [_series(cfg, m, [r for r in points if r["method"] == m]) for m in cfg.methods]
        title = cfg.frontier.title or f"sweep {Path(cfg.output_dir).name}"
        x, y = (AXIS_NAMES.get(k, k) for k in (cfg.frontier.x, cfg.frontier.y))
        rate = cfg.frontier.x.startswith("harmful_rate")
        paths["png"] = plot_frontier(series, out / "frontier.png", x, y, title, x_percent=rate)
    return paths


AXIS_NAMES = {
    "harmful_rate_risky": "harmful on risky prompts",
    "harmful_rate": "harmful (all prompts)",
    "helpfulness_risky": "helpfulness on risky prompts",
    "helpfulness_benign": "helpfulness on benign prompts",
    "helpfulness": "helpfulness (all prompts)",
    "cost": "mean learned cost",
    "reward": "mean learned reward",
}


def _series(cfg: SweepConfig, method: str, rows: list[Row]) -> Series:
    """A method's points; the legend names what varies when each label is one bare value."""
    name = cfg.methods[method].label or method
    varied = dict.fromkeys(
        k.rpartition(":")[2].rsplit(".", 1)[-1] for r in rows for k in r["overrides"]
    )
    if len(varied) == 1:
        name += f" ({next(iter(varied))})"
    return Series(name, [_xy(r, cfg) for r in rows], [r["label"] for r in rows])


_TABLE = (
    ("helpful", "helpfulness", False),
    ("help benign", "helpfulness_benign", False),
    ("help risky", "helpfulness_risky", False),
    ("harmful", "harmful_rate", True),
    ("harm risky", "harmful_rate_risky", True),
)
_COSTS = (("reward", "reward", False), ("cost", "cost", False))
GROUPS = {"harmful_rate_by_category.": "", "harmful_rate_by_severity.": "severity "}
"""Per-group harmful rates shown on the console, with their column headers' prefix."""


def _cell(value: Any, pct: bool) -> Text:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return Text("-")
    return Text(f"{100 * value:.1f}%" if pct else f"{value:.3f}")


def results_table(rows: list[Row], title: str) -> Table:
    """The points as a rich table; data and paths are plain text (never read as markup)."""
    points = [r for r in rows if r["method"] is not None]
    groups = {
        k: prefix + k.removeprefix(group)
        for r in points
        for k in r
        for group, prefix in GROUPS.items()
        if k.startswith(group)
    }
    categories = sorted(groups)
    table = Table(title=title)
    for name in (
        "point",
        "status",
        *(c[0] for c in _TABLE),
        *(groups[c] for c in categories),
        "reward",
        "cost",
        "wall s",
        "peak MiB",
    ):
        left = name in ("point", "status")
        table.add_column(name, justify="left" if left else "right", no_wrap=name == "point")
    for r in points:
        table.add_row(
            Text(r["id"]),
            Text(r["status"]),
            *(_cell(r.get(key), pct) for _, key, pct in _TABLE),
            *(_cell(r.get(c), True) for c in categories),
            *(_cell(r.get(key), pct) for _, key, pct in _COSTS),
            Text(f"{r['wall_seconds']:.0f}") if r.get("wall_seconds") is not None else Text("-"),
            Text(f"{r['peak_rss_mb']:.0f}") if r.get("peak_rss_mb") is not None else Text("-"),
        )
    return table
