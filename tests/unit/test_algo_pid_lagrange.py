"""PID Lagrangian multiplier (Stooke et al. 2020), by hand: terms, clamps, delay, resume."""

import json

import pytest

from beaver.algo import LagrangeController, PIDLagrangeController, controller_from_config
from beaver.config import LagrangeCfg


def pid(**settings: object) -> PIDLagrangeController:
    """A PID controller with `LagrangeCfg`'s defaults but `settings` (unvalidated)."""
    cfg = LagrangeCfg.model_construct(rule="pid", **settings)
    ctl = controller_from_config(cfg)
    assert isinstance(ctl, PIDLagrangeController)
    return ctl


def test_three_updates_by_hand() -> None:
    ctl = pid(lambda_init=1.0, lambda_max=None, threshold=0.0, pid_kp=0.5, pid_ki=0.1, pid_kd=2.0)
    assert ctl.lambda_ == 1.0  # lambda_init before any update
    # J = 2: e = 2, I = 1 + 0.1 * 2 = 1.2, no previous J so D = 0
    #   lambda = 0.5 * 2 + 1.2 + 0 = 2.2
    assert ctl.update(2.0) == pytest.approx(2.2)
    # J = 3: e = 3, I = 1.2 + 0.3 = 1.5, rise 3 - 2 = 1 -> lambda = 1.5 + 1.5 + 2 * 1 = 5.0
    assert ctl.update(3.0) == pytest.approx(5.0)
    # J = -1 (now safe): e = -1, I = 1.5 - 0.1 = 1.4, rise max(0, -1 - 3) = 0
    #   lambda = -0.5 + 1.4 + 0 = 0.9: the P term drops lambda at once (the integral alone: 1.4)
    assert ctl.update(-1.0) == pytest.approx(0.9)
    assert ctl.integral == pytest.approx(1.4)


def test_only_the_integral_is_plain_dual_ascent_and_lambda_floors_at_zero() -> None:
    ctl = pid(lambda_init=0.3, lambda_max=None, threshold=1.0, pid_kp=0.0, pid_ki=0.1, pid_kd=0.0)
    # J = 0, d = 1: e = -1 each time: I = 0.3 - 0.1 = 0.2, then 0.1, then 0.0, then max(0, -0.1) = 0
    assert [round(ctl.update(0.0), 6) for _ in range(4)] == [0.2, 0.1, 0.0, 0.0]
    # and it rises again from 0 (unlike a log-space multiplier): J = 3, e = 2 -> 0 + 0.2
    assert ctl.update(3.0) == pytest.approx(0.2)


def test_cap_and_delay() -> None:
    ctl = pid(lambda_init=1.0, lambda_max=3.0, threshold=0.0, lambda_update_delay_steps=1,
              pid_kp=1.0, pid_ki=1.0, pid_kd=0.0)  # fmt: skip
    assert ctl.update(5.0) == 1.0  # delayed: unchanged, but J = 5 is remembered
    # J = 5: I = 1 + 5 = 6, lambda = min(3, 5 + 6) = 3
    assert ctl.update(5.0) == 3.0
    assert ctl.integral == pytest.approx(6.0)


def test_resume_continues_exactly() -> None:
    def run(ctl: LagrangeController, costs: list[float]) -> list[float]:
        return [ctl.update(c) for c in costs]

    settings = dict(lambda_init=1.0, lambda_max=10.0, threshold=0.5, pid_kp=0.5, pid_ki=0.2,
                    pid_kd=1.0)  # fmt: skip
    costs = [2.0, 1.0, 3.0, 0.0, -1.0, 2.5]
    straight = run(pid(**settings), costs)
    first = pid(**settings)
    run(first, costs[:3])
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint keeps
    resumed = pid(**settings)
    resumed.load_state_dict(state)
    assert run(resumed, costs[3:]) == pytest.approx(straight[3:])


def test_the_default_rule_is_the_gradient_step() -> None:
    ctl = controller_from_config(LagrangeCfg())
    assert type(ctl) is LagrangeController
