"""Lagrange controller (by hand, direction, clamp, delay, window, exact resume) and thresholds."""

import json
import math

import pytest
import torch

from beaver.algo import (
    LagrangeController,
    calibrate_threshold,
    combined_advantage,
    threshold_from_costs,
)
from beaver.algo.lagrange import LAMBDA_CEILING
from beaver.config import LagrangeCfg


def controller(lambda_min: float | None = None, **settings: object) -> LagrangeController:
    """A controller with `LagrangeCfg`'s defaults (its one set of defaults) but `settings`;
    unvalidated, so that the controller's own checks are what is tested."""
    extra = {} if lambda_min is None else {"lambda_min": lambda_min}
    return LagrangeController.from_config(LagrangeCfg.model_construct(**settings), **extra)


def test_one_step_by_hand() -> None:
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_max=None, threshold=0.0)
    ctl.observe([1.0, 3.0])  # J_c = 2
    # log lambda = 0 + 0.1 * 1 * (2 - 0) = 0.2 -> lambda = e^0.2 = 1.2214028
    assert ctl.update() == pytest.approx(math.exp(0.2))
    assert ctl.log_lambda == pytest.approx(0.2)
    # second step: 0.2 + 0.1 * 1.2214028 * 2 = 0.4442806 -> lambda = 1.5593679
    assert ctl.update() == pytest.approx(1.5593679)


def test_lambda_rises_above_threshold_and_falls_below() -> None:
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_max=None, threshold=-1.0)
    ctl.observe(torch.tensor([0.5, 1.5]))  # J_c = 1 > d = -1
    lams = [ctl.update() for _ in range(3)]
    assert 1.0 < lams[0] < lams[1] < lams[2]
    below = controller(lambda_init=2.0, lambda_lr=0.1, lambda_max=None, threshold=0.0)
    below.observe([-1.0])  # J_c = -1 < 0: log lambda = ln 2 - 0.1 * 2 * 1 -> 2 e^-0.2
    first = below.update()
    assert first == pytest.approx(2.0 * math.exp(-0.2))
    assert below.update() < first


def test_clamp_at_lambda_max_and_floor() -> None:
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_max=1.1)
    ctl.observe([10.0])  # unclamped: log lambda = 1.0, lambda = e
    assert ctl.update() == pytest.approx(1.1)
    low = controller(lambda_init=1.0, lambda_lr=1.0, lambda_min=0.5)
    low.observe([-100.0])  # unclamped: lambda = e^-100
    assert low.update() == pytest.approx(0.5)
    # lambda_init above lambda_max is clamped at construction
    assert controller(lambda_init=10.0, lambda_max=5.0).lambda_ == pytest.approx(5.0)


def test_unbounded_lambda_stays_finite_under_a_constraint_never_met() -> None:
    # lambda_max unset and J_c = 10 > d = 0 forever: log lambda grows by 0.1 * lambda * 10 per
    # update, i.e. double-exponentially; exp() of it overflowed within ~10 updates
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_max=None, threshold=0.0)
    lams = [ctl.update(mean_cost=10.0) for _ in range(40)]
    assert lams == sorted(lams) and lams[-1] == pytest.approx(LAMBDA_CEILING)
    assert all(math.isfinite(x) for x in lams)
    # the actor's advantages at that lambda: (A_r - lambda A_c) / (1 + lambda) -> -A_c, finite
    adv_r, adv_c = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    adv = combined_advantage(adv_r, adv_c, ctl.lambda_)
    assert torch.isfinite(adv).all() and adv.tolist() == pytest.approx([-0.5, -3.0])
    # once the constraint holds the multiplier comes down again (to the floor, in one step)
    assert ctl.update(mean_cost=-1.0) == pytest.approx(ctl.lambda_min)
    assert json.loads(json.dumps(ctl.state_dict()))["log_lambda"] == ctl.log_lambda


def test_update_delay_respected() -> None:
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_update_delay_steps=2)
    ctl.observe([2.0])
    assert ctl.update() == 1.0  # step 0 < 2
    assert ctl.update() == 1.0  # step 1 < 2
    assert ctl.update() == pytest.approx(math.exp(0.2))  # step 2: first real update


def test_window_keeps_last_n() -> None:
    ctl = controller(episode_cost_window_size=3)
    assert ctl.mean_cost is None
    ctl.observe([1.0, 2.0])
    ctl.observe(torch.tensor([3.0, 4.0]))
    assert list(ctl.window) == [2.0, 3.0, 4.0]
    assert ctl.mean_cost == pytest.approx(3.0)


def test_external_mean_cost_overrides_window() -> None:
    # e.g. J_c all-reduced over ranks: the local window (cost 100) is not used
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_max=None)
    ctl.observe([100.0])
    assert ctl.update(mean_cost=2.0) == pytest.approx(math.exp(0.2))


def test_update_without_costs_and_bad_init_raise() -> None:
    with pytest.raises(ValueError, match="no episode costs"):
        controller().update()
    with pytest.raises(ValueError, match="lambda_init"):
        controller(lambda_init=0.0)


def test_per_rollout_cadence_moves_lambda_once_per_rollout() -> None:
    ctl = controller(lambda_init=1.0, lambda_lr=0.1, lambda_max=None, threshold=0.0)
    ctl.on_rollout(2.0)  # log lambda = 0 + 0.1 * 1 * (2 - 0) = 0.2
    assert ctl.lambda_ == pytest.approx(math.exp(0.2))
    # the updates of that rollout read lambda without moving it
    assert [ctl.on_step() for _ in range(3)] == [pytest.approx(math.exp(0.2))] * 3
    assert ctl.step == 1


def test_per_step_cadence_moves_lambda_before_every_update() -> None:
    ctl = controller(
        lambda_init=1.0, lambda_lr=0.1, lambda_max=None, threshold=0.0, update_cadence="per_step"
    )
    with pytest.raises(ValueError, match="no rollout"):
        ctl.on_step()
    ctl.on_rollout(2.0)  # J_c = 2 is kept; lambda stays 1 until the first update
    assert ctl.lambda_ == 1.0
    # first update: log lambda = 0.2; second: 0.2 + 0.1 * e^0.2 * 2 = 0.4442806 (as by hand above)
    assert ctl.on_step() == pytest.approx(math.exp(0.2))
    assert ctl.on_step() == pytest.approx(1.5593679)
    assert ctl.step == 2


def test_per_step_resume_between_a_rollout_and_its_updates_is_exact() -> None:
    # The J_c that per_step updates read is state: a controller restored after `on_rollout`
    # makes the same next updates (without it, it had no rollout to update from).
    def make() -> LagrangeController:
        return controller(lambda_init=1.0, lambda_lr=0.1, update_cadence="per_step")

    straight = make()
    straight.on_rollout(2.0)
    straight.on_step()
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(straight.state_dict())))
    assert [resumed.on_step() for _ in range(2)] == [straight.on_step() for _ in range(2)]
    assert resumed.state_dict() == straight.state_dict()
    # a state saved before the rollout cost was kept still loads (nothing pending)
    old = {k: v for k, v in make().state_dict().items() if k != "rollout_cost"}
    fresh = make()
    fresh.load_state_dict(old)
    with pytest.raises(ValueError, match="no rollout"):
        fresh.on_step()


def test_settings_are_the_config_fields() -> None:
    # One set of names: every setting is a LagrangeCfg field, and from_config reads them all.
    assert set(LagrangeController.SETTINGS) <= set(LagrangeCfg.model_fields)
    ctl = LagrangeController.from_config(LagrangeCfg(lambda_max=7.0, episode_cost_window_size=4))
    assert ctl.lambda_max == 7.0 and ctl.window_size == 4 and ctl.update_cadence == "per_rollout"


def test_state_dict_round_trip_reproduces_next_updates_exactly() -> None:
    def make() -> LagrangeController:
        return controller(
            lambda_init=1.0,
            lambda_lr=0.3,
            threshold=0.5,
            lambda_update_delay_steps=1,
            episode_cost_window_size=4,
        )

    costs = [[1.0, 2.0], [0.0, -1.0], [3.0], [-2.0, -2.0, 1.0], [0.25], [5.0]]
    straight = make()
    expected = []
    for batch in costs:
        straight.observe(batch)
        expected.append(straight.update())

    first = make()
    for batch in costs[:3]:
        first.observe(batch)
        first.update()
    first.threshold = 0.5  # a calibrated threshold is part of the state
    saved = json.loads(json.dumps(first.state_dict()))
    resumed = make()
    resumed.threshold = 123.0  # overwritten by the state
    resumed.load_state_dict(saved)
    got = []
    for batch in costs[3:]:
        resumed.observe(batch)
        got.append(resumed.update())
    assert got == expected[3:]  # exact, not approximate
    assert resumed.state_dict() == straight.state_dict()


def test_threshold_from_costs_by_hand() -> None:
    costs = torch.tensor([-4.0, -5.0, -3.0, 3.0, 4.0])
    # safe mean (-4 - 5 - 3) / 3 = -4; unsafe mean (3 + 4) / 2 = 3.5
    # q = 0.1: 0.9 * -4 + 0.1 * 3.5 = -3.6 + 0.35 = -3.25
    assert threshold_from_costs(costs, 0.1) == pytest.approx(-3.25)
    assert threshold_from_costs(costs, 0.0) == pytest.approx(-4.0)
    assert threshold_from_costs(costs, 1.0) == pytest.approx(3.5)
    # a cost of exactly 0 is safe: safe mean (-2 + 0) / 2 = -1, unsafe mean 2; q = 0.5 -> 0.5
    assert threshold_from_costs(torch.tensor([-2.0, 0.0, 2.0]), 0.5) == pytest.approx(0.5)


def test_threshold_fallbacks_and_errors() -> None:
    # no unsafe answers: the unsafe mean falls back to the boundary 0 -> 0.5 * -3 + 0.5 * 0
    assert threshold_from_costs(torch.tensor([-4.0, -2.0]), 0.5) == pytest.approx(-1.5)
    # no safe answers: the safe mean falls back to 0 -> 0.25 * 4
    assert threshold_from_costs(torch.tensor([4.0]), 0.25) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="target_unsafe_share"):
        threshold_from_costs(torch.tensor([1.0]), 1.5)
    with pytest.raises(ValueError, match="no costs"):
        threshold_from_costs(torch.tensor([]), 0.1)


def test_calibrate_threshold_with_given_groups() -> None:
    # groups from labels rather than the cost sign: 0.8 * -1 + 0.2 * 4 = 0
    got = calibrate_threshold(torch.tensor([-1.0, -1.0]), torch.tensor([4.0]), 0.2)
    assert got == pytest.approx(0.0)
