"""Win / tie / loss, the safety table and Elo, with expected values worked out by hand."""

from __future__ import annotations

import pytest

from beaver.eval.pairwise import (
    elo_ratings,
    elo_update,
    games_from_scores,
    safety_table,
    win_tie_loss,
)


def test_win_tie_loss_counts_from_blue_and_skips_missing() -> None:
    red = [1.0, 2.0, 3.0, None, 5.0]
    blue = [2.0, 2.0, 1.0, 9.0, None]
    # pair 0: blue 2 > 1 win; pair 1: tie; pair 2: 1 < 3 loss; pairs 3-4: a score missing
    w = win_tie_loss(red, blue)
    assert (w.win, w.tie, w.loss, w.count) == (1, 1, 1, 3)
    assert w.rates()["win_rate"] == pytest.approx(1 / 3)
    # lower is better (costs): pair 2 becomes blue's win, pair 0 its loss
    c = win_tie_loss(red, blue, higher_is_better=False)
    assert (c.win, c.tie, c.loss) == (1, 1, 1)


def test_safety_table_cells_and_reward_win_rates() -> None:
    red_costs = [-1.0, -1.0, 2.0, 0.0]  # safe, safe, unsafe, safe (cost 0 counts as safe)
    blue_costs = [-2.0, 3.0, -1.0, -0.5]  # safe, unsafe, safe, safe
    red_rewards = [0.0, 0.0, 0.0, 1.0]
    blue_rewards = [1.0, -1.0, 2.0, 0.5]
    table = safety_table(red_costs, blue_costs, red_rewards, blue_rewards)
    assert table["red safe / blue safe"]["count"] == 2  # pairs 0 and 3
    assert table["red safe / blue safe"]["blue_reward_win_rate"] == 0.5  # won 0, lost 3
    assert table["red safe / blue unsafe"]["count"] == 1
    assert table["red unsafe / blue safe"]["count"] == 1
    assert table["red unsafe / blue safe"]["share"] == 0.25
    assert table["red unsafe / blue unsafe"]["count"] == 0


def test_elo_update_by_hand() -> None:
    # Equal ratings: expected 0.5, so a win moves k * 0.5 = 16 points each way.
    assert elo_update(1000.0, 1000.0, 1.0, k=32) == pytest.approx((1016.0, 984.0))
    # 1016 vs 984, a loss: E = 1 / (1 + 10^(-32/400)) = 0.545922, delta = -32 * E = -17.4695
    assert elo_update(1016.0, 984.0, 0.0, k=32) == pytest.approx((998.5305, 1001.4695), abs=1e-4)


def test_elo_ratings_in_order_and_averaged_over_orders() -> None:
    games = games_from_scores("red", "blue", [1.0, 2.0], [2.0, 1.0])  # blue wins then loses
    assert games == [("blue", "red", 1.0), ("blue", "red", 0.0)]
    in_order = elo_ratings(games, k=32, rounds=1)
    assert in_order["blue"] == pytest.approx(998.5305, abs=1e-4)  # as in the hand example
    # Over many shuffles both orders are played; a win and a loss average out near 1000.
    averaged = elo_ratings(games, k=32, rounds=200, seed=1)
    assert averaged["blue"] == pytest.approx(1000.0, abs=1.0)
    assert averaged["blue"] + averaged["red"] == pytest.approx(2000.0)  # Elo is zero-sum
    sweep = elo_ratings(games_from_scores("r", "b", [1.0] * 5, [2.0] * 5), rounds=10)
    assert sweep["b"] > 1000.0 > sweep["r"]
    assert elo_ratings([], players=["x"]) == {"x": 1000.0}
