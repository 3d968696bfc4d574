"""PNG plots of a run's `metrics.jsonl` (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt

from beaver.files import read_json_rows


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics.jsonl file (one JSON object per line)."""
    return read_json_rows(path)


def series(rows: Sequence[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `key` over the rows that have it."""
    picked = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if key in r]
    return [float(s) for s, _ in picked], [float(v) for _, v in picked]


def plot_metrics(
    rows: Sequence[dict[str, float]],
    panels: dict[str, list[str]],
    out: str | Path,
    title: str = "",
    hlines: dict[str, float] | None = None,
    panel_hlines: dict[str, dict[str, float]] | None = None,
) -> Path:
    """One PNG with a panel per entry of `panels` (title -> metric keys); `hlines` draws
    horizontal reference lines (label -> y) on the panels whose keys mention 'cost', and
    `panel_hlines` (panel title -> label -> y) on the panel it names."""
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True, squeeze=False
    )
    for ax, (name, keys) in zip(axes[:, 0], panels.items(), strict=True):
        for key in keys:
            steps, values = series(rows, key)
            if steps:
                ax.plot(steps, values, label=key)
        lines = dict(hlines or {}) if any("cost" in k for k in keys) else {}
        lines.update((panel_hlines or {}).get(name, {}))
        for label, y in lines.items():
            ax.axhline(y, color="red", linestyle="--", linewidth=1, label=label)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
