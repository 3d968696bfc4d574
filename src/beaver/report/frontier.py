"""The helpful-safe frontier: Pareto fronts of (harm, helpfulness) points and their picture.

A point is (x, y) with x lower-is-better (harmful rate) and y higher-is-better (helpfulness).
Point a dominates b when a.x <= b.x and a.y >= b.y and a differs from b in at least one of them;
a method's front is its points that no other of its points dominates. The front is drawn as the
staircase that bounds what the method reached: from each front point, rightwards at its height
until the next (more harmful, more helpful) front point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

Point = tuple[float, float]
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def _finite(p: Point) -> bool:
    return math.isfinite(p[0]) and math.isfinite(p[1])


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (x lower is better, y higher is better), sorted by x
    then by descending y. Points with a NaN or infinite coordinate are never on the front; two
    identical points do not dominate each other, so both are kept."""
    kept = []
    for i, (x, y) in enumerate(points):
        if not _finite((x, y)):
            continue
        dominated = any(
            _finite(q) and q[0] <= x and q[1] >= y and (q[0] < x or q[1] > y) for q in points
        )
        if not dominated:
            kept.append(i)
    return sorted(kept, key=lambda i: (points[i][0], -points[i][1]))


def front_gaps(point: Point, reference: Sequence[Point]) -> tuple[float | None, float | None]:
    """How far `point` lies beyond the front of the `reference` points, on each axis.

    gap_y = y - (the most y any reference point reaches with x' <= x): more helpful than the
    reference at no more harm when positive; None when no reference point is that harmless.
    gap_x = (the least x' of the reference points with y' >= y) - x: less harmful than the
    reference at as much helpfulness when positive; None when no reference point is that helpful.
    Zero on either axis means on the reference's front; negative, behind it.
    """
    x, y = point
    refs = [q for q in reference if _finite(q)]
    if not _finite(point):
        return None, None
    at_most_x = [qy for qx, qy in refs if qx <= x]
    at_least_y = [qx for qx, qy in refs if qy >= y]
    gap_y = y - max(at_most_x) if at_most_x else None
    gap_x = min(at_least_y) - x if at_least_y else None
    return gap_y, gap_x


@dataclass(frozen=True)
class Series:
    """One method's points in the picture."""

    name: str
    points: list[Point]
    labels: list[str]


def plot_frontier(
    series: Sequence[Series],
    out: str | Path,
    x_label: str,
    y_label: str,
    title: str = "",
    x_percent: bool = False,
) -> Path:
    """One PNG: every method's points (one marker style each, labelled), its front as a staircase;
    `x_percent` shows x (a rate in [0, 1]) in percent."""
    fig, ax = plt.subplots(figsize=(8, 6))
    if x_percent:
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, s in enumerate(series):
        color, marker = colors[k % len(colors)], MARKERS[k % len(MARKERS)]
        shown = [(p, label) for p, label in zip(s.points, s.labels, strict=True) if _finite(p)]
        if not shown:
            continue
        xs, ys = [p[0] for p, _ in shown], [p[1] for p, _ in shown]
        ax.scatter(xs, ys, marker=marker, color=color, s=50, label=s.name, zorder=3)
        front = [s.points[i] for i in pareto_front(s.points)]
        if len(front) > 1:
            ax.step(
                [p[0] for p in front],
                [p[1] for p in front],
                where="post",
                color=color,
                alpha=0.6,
                linewidth=1.5,
                zorder=2,
            )
        for (px, py), label in shown:
            if label:
                ax.annotate(
                    label,
                    (px, py),
                    textcoords="offset points",
                    xytext=(5, 4),
                    fontsize=7,
                    color=color,
                )
    ax.set_xlabel(f"{x_label} (lower is better)")
    ax.set_ylabel(f"{y_label} (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
