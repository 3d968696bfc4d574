"""Pareto fronts and front gaps (hand-checked), and the frontier picture."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from beaver.report.frontier import Series, front_gaps, pareto_front, plot_frontier


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = [
        (0.10, 0.50),  # 0: the least harmful point: on the front
        (0.30, 0.60),  # 1: more harm, more help: on the front
        (0.40, 0.55),  # 2: dominated by 1 (more harm and less help)
        (0.50, 0.80),  # 3: the most helpful: on the front
        (0.10, 0.45),  # 4: dominated by 0 (same harm, less help)
        (math.nan, 0.90),  # 5: not measured: never on the front
        (0.30, 0.60),  # 6: the same as 1: neither dominates the other, both kept
    ]
    # sorted by harm, then by descending helpfulness: 0 (0.10), 1 and 6 (0.30), 3 (0.50)
    assert pareto_front(points) == [0, 1, 6, 3]


def test_pareto_front_edge_cases() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(0.2, 0.3)]) == [0]
    # (0.2, 0.9) is at least as good as every other point on both axes: it alone remains
    assert pareto_front([(0.5, 0.5), (0.2, 0.9), (0.2, 0.4), (0.9, 0.9)]) == [1]


REFERENCE = [(0.1, 0.5), (0.3, 0.6), (0.5, 0.8), (0.4, 0.55)]  # the last one is dominated


@pytest.mark.parametrize(
    ("point", "gap_y", "gap_x"),
    [
        # at harm 0.2 the reference reaches 0.5 (from (0.1, 0.5)): 0.65 - 0.5 = +0.15 more help;
        # for help >= 0.65 the reference needs harm 0.5: 0.5 - 0.2 = +0.3 less harm
        ((0.2, 0.65), 0.15, 0.3),
        # a reference front point itself: 0 on both axes
        ((0.3, 0.6), 0.0, 0.0),
        # behind the front: at harm 0.6 the reference reaches 0.8 (-0.1); help 0.7 needs 0.5 (-0.1)
        ((0.6, 0.7), -0.1, -0.1),
        # less harmful than any reference point: no gap_y; help 0.4 needs harm 0.1: +0.05
        ((0.05, 0.4), None, 0.05),
        # more helpful than any reference point: at harm 0.9 the reference reaches 0.8: +0.15
        ((0.9, 0.95), 0.15, None),
        ((math.nan, 0.5), None, None),
    ],
)
def test_front_gaps(point: tuple[float, float], gap_y: float | None, gap_x: float | None) -> None:
    got_y, got_x = front_gaps(point, REFERENCE)
    for got, want in ((got_y, gap_y), (got_x, gap_x)):
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want)


def test_plot_frontier_writes_a_png(tmp_path: Path) -> None:
    series = [
        Series("ppo-lag (target)", [(0.01, 0.5), (0.05, 0.6), (0.2, 0.7)], ["0.01", "0.05", "0.2"]),
        Series("shaping (lambda)", [(0.02, 0.45), (0.3, 0.68), (math.nan, 0.1)], ["1", "0.1", "x"]),
        Series("sft", [(0.47, 0.27)], [""]),
    ]
    path = plot_frontier(series, tmp_path / "f.png", "harm", "help", "title")
    image = mpimg.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert image[..., :3].min() < 0.5  # something dark was drawn (points, lines, text)
