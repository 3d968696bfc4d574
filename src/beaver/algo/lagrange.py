"""The Lagrange multiplier of PPO-Lag as a tiny controller, and threshold calibration.

Update (ALGORITHMS.md; SGD on log_lambda with loss -(J_c - d) * exp(log_lambda)):
    log_lambda <- log_lambda + lambda_lr * lambda * (J_c - d),
then lambda <= lambda_max; no update while step < lambda_update_delay_steps. J_c is the mean
episode cost over the last `episode_cost_window_size` episodes.

The controller's settings are named as in `LagrangeCfg`, which holds their one set of defaults
(`LagrangeController.from_config`). It owns its cadence: the stage reports two events,
`on_rollout(J_c)` after each rollout and `on_step()` before each actor update, and the
controller moves lambda on the one `update_cadence` names (`per_rollout`, default;
`per_step`, as the reference).

Choices beyond the reference:
- [beaver] lambda is also floored at `lambda_min` (default 1e-6) so log_lambda stays finite; the
  update is multiplicative, so lambda_init must be > 0 (lambda = 0 would never move).
- [beaver] `lambda_max=None` caps lambda at `LAMBDA_CEILING` (1e30) instead of nowhere: the step
  is lambda_lr * lambda * (J_c - d), so under a constraint that is never met log_lambda grows
  exponentially, and exp() overflows (an OverflowError, or lambda = inf and NaN advantages
  (A_r - inf A_c) / (1 + inf)) within a few dozen updates. At 1e30, lambda / (1 + lambda) is 1
  in fp32 and lambda A_c stays finite.
- [beaver] Multi-rank runs: each rank observes its own episodes; the caller averages J_c over
  ranks (all-reduce of `mean_cost`), calls `update(mean_cost=J_c)` on rank 0 and broadcasts the
  returned lambda (or calls it with the same J_c on every rank: the update is deterministic).
- [beaver] `state_dict()` holds plain floats/ints/lists (JSON-serialisable) including the cost
  window, the threshold (which may have been calibrated at run time) and the last rollout's J_c
  (which `per_step` updates read), so a resumed run makes exactly the updates an uninterrupted
  one would.
- [beaver] `PIDLagrangeController`: the PID Lagrangian as a selectable rule (`rule: pid`), the
  same events and checkpointed state (`controller_from_config` picks the rule).
- [beaver] `threshold_from_costs`: state the constraint as a target unsafe share q and turn it into
  a threshold d in cost units from the cost model's scores on rollouts of the initial policy.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

Cadence = Literal["per_rollout", "per_step"]

LAMBDA_CEILING = 1e30
"""The cap on lambda when `lambda_max` is None (module docstring)."""


class LagrangeController:
    """Holds log_lambda and the window of recent episode costs; `update()` moves lambda."""

    SETTINGS: tuple[str, ...] = (
        "lambda_init",
        "lambda_lr",
        "lambda_max",
        "threshold",
        "lambda_update_delay_steps",
        "episode_cost_window_size",
        "update_cadence",
    )
    """The settings, named as the fields of `LagrangeCfg`."""

    def __init__(
        self,
        *,
        lambda_init: float,
        lambda_lr: float,
        lambda_max: float | None,
        threshold: float,
        lambda_update_delay_steps: int,
        episode_cost_window_size: int,
        update_cadence: Cadence = "per_rollout",
        lambda_min: float = 1e-6,
    ) -> None:
        if lambda_init <= 0.0:
            raise ValueError(
                f"lambda_init must be > 0 (the update is multiplicative), got {lambda_init}"
            )
        if episode_cost_window_size < 1:
            raise ValueError(
                f"episode_cost_window_size must be >= 1, got {episode_cost_window_size}"
            )
        if update_cadence not in ("per_rollout", "per_step"):
            raise ValueError(
                f"update_cadence must be per_rollout or per_step, got {update_cadence}"
            )
        self.lambda_lr = lambda_lr
        self.lambda_max = lambda_max
        self.lambda_min = lambda_min
        self.threshold = threshold
        self.update_delay_steps = lambda_update_delay_steps
        self.window_size = episode_cost_window_size
        self.update_cadence: Cadence = update_cadence
        self.log_lambda = self._clamp_log(math.log(lambda_init))
        self.step = 0  # number of update() calls so far
        self.window: deque[float] = deque(maxlen=episode_cost_window_size)
        self._rollout_cost: float | None = None  # J_c of the last rollout (per_step cadence)

    @classmethod
    def from_config(cls, cfg: Any, **extra: Any) -> LagrangeController:
        """A controller from a `LagrangeCfg` (any object with the `SETTINGS` attributes)."""
        return cls(**{name: getattr(cfg, name) for name in cls.SETTINGS}, **extra)

    def _clamp_log(self, log_lambda: float) -> float:
        ceiling = LAMBDA_CEILING if self.lambda_max is None else self.lambda_max
        return max(min(log_lambda, math.log(ceiling)), math.log(self.lambda_min))

    @property
    def lambda_(self) -> float:
        return math.exp(self.log_lambda)

    @property
    def mean_cost(self) -> float | None:
        """J_c: mean of the episode costs in the window, None while it is empty."""
        return sum(self.window) / len(self.window) if self.window else None

    def observe(self, episode_costs: Sequence[float] | Tensor) -> None:
        """Append episode costs (B,) to the window; the oldest fall out past `window_size`."""
        if isinstance(episode_costs, Tensor):
            values = [float(c) for c in episode_costs.detach().flatten().tolist()]
        else:
            values = [float(c) for c in episode_costs]
        self.window.extend(values)

    def on_rollout(self, mean_cost: float) -> None:
        """Event: a rollout's costs were observed and J_c (e.g. reduced over ranks) is
        `mean_cost`. `per_rollout` moves lambda now; `per_step` keeps J_c for the steps."""
        self._rollout_cost = float(mean_cost)
        if self.update_cadence == "per_rollout":
            self.update(mean_cost)

    def on_step(self) -> float:
        """Event: an actor update is about to use lambda; `per_step` moves it first, with the
        last rollout's J_c. Returns lambda for this update."""
        if self.update_cadence == "per_step":
            if self._rollout_cost is None:
                raise ValueError("LagrangeController.on_step: no rollout observed yet")
            self.update(self._rollout_cost)
        return self.lambda_

    def update(self, mean_cost: float | None = None) -> float:
        """One multiplier step with J_c = `mean_cost` (e.g. reduced over ranks) or the window mean.

        Returns lambda after the step (unchanged while step < update_delay_steps).
        """
        j_c = self.mean_cost if mean_cost is None else float(mean_cost)
        if j_c is None:
            raise ValueError("LagrangeController.update: no episode costs observed yet")
        if self.step >= self.update_delay_steps:
            new_log = self.log_lambda + self.lambda_lr * self.lambda_ * (j_c - self.threshold)
            self.log_lambda = self._clamp_log(new_log)
        self.step += 1
        return self.lambda_

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_lambda": self.log_lambda,
            "step": self.step,
            "threshold": self.threshold,
            "window": list(self.window),
            "rollout_cost": self._rollout_cost,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_lambda = float(state["log_lambda"])
        self.step = int(state["step"])
        self.threshold = float(state["threshold"])
        self.window = deque((float(c) for c in state["window"]), maxlen=self.window_size)
        pending = state.get("rollout_cost")  # absent from checkpoints written before it was kept
        self._rollout_cost = None if pending is None else float(pending)


def calibrate_threshold(
    safe_costs: Tensor, unsafe_costs: Tensor, target_unsafe_share: float
) -> float:
    """d = (1 - q) * mean(safe_costs) + q * mean(unsafe_costs), q = `target_unsafe_share`.

    A policy whose answers are unsafe a share q of the time, with the costs of these two groups,
    has expected cost exactly d, so E[C] <= d asks for an unsafe share of at most about q.
    An empty group is replaced by the sign boundary 0 (safe costs are <= 0, unsafe > 0), which
    is the closest value known without samples; callers should log when that happens.
    """
    if not 0.0 <= target_unsafe_share <= 1.0:
        raise ValueError(f"target_unsafe_share must be in [0, 1], got {target_unsafe_share}")
    if safe_costs.numel() + unsafe_costs.numel() == 0:
        raise ValueError("calibrate_threshold: no costs given")
    mean_safe = float(safe_costs.float().mean()) if safe_costs.numel() else 0.0
    mean_unsafe = float(unsafe_costs.float().mean()) if unsafe_costs.numel() else 0.0
    q = target_unsafe_share
    return (1.0 - q) * mean_safe + q * mean_unsafe


def threshold_from_costs(costs: Tensor, target_unsafe_share: float) -> float:
    """Threshold d from cost-model scores (N,) of the initial policy's answers, split by sign.

    d = (1 - q) * mean(c | c <= 0) + q * mean(c | c > 0); see `calibrate_threshold` for the
    meaning and for the fallback when all answers fall on one side.
    """
    costs = costs.detach().flatten().float()
    return calibrate_threshold(costs[costs <= 0], costs[costs > 0], target_unsafe_share)


class PIDLagrangeController(LagrangeController):
    """The PID Lagrangian (Stooke, Achiam, Abbeel 2020, arXiv 2007.03964) behind the same events.

    With e_t = J_c,t - d:
        I_t = max(0, I_{t-1} + K_i e_t),        I_0 = lambda_init,
        lambda_t = min(lambda_max, max(0, K_p e_t + I_t + K_d max(0, J_c,t - J_c,t-1))),
    the D term 0 at the first update. K_p = K_d = 0 is plain (linear, not log-space) dual ascent
    with step K_i. The proportional term lowers lambda as soon as the cost falls below d, and the
    derivative term raises it while the cost is still rising, which damps the overshoot the
    integral alone (like the gradient rule) shows.

    Choices, stated: [beaver] P and D act on J_c, which is already the mean of the last
    `episode_cost_window_size` episodes (the paper smooths them with EMAs; the window does that
    here); lambda may reach 0 (no log space); no update, but J_c remembered, while
    step < lambda_update_delay_steps. `lambda_lr` is not used (K_i is the integral's step).
    """

    SETTINGS: tuple[str, ...] = (*LagrangeController.SETTINGS, "pid_kp", "pid_ki", "pid_kd")

    def __init__(self, *, pid_kp: float, pid_ki: float, pid_kd: float, **settings: Any) -> None:
        super().__init__(**settings)
        self.kp, self.ki, self.kd = pid_kp, pid_ki, pid_kd
        self.integral = float(settings["lambda_init"])
        self.previous_cost: float | None = None
        self._lambda = self._cap(self.integral)

    def _cap(self, value: float) -> float:
        value = max(0.0, value)
        return value if self.lambda_max is None else min(value, self.lambda_max)

    @property
    def lambda_(self) -> float:
        return self._lambda

    def update(self, mean_cost: float | None = None) -> float:
        j_c = self.mean_cost if mean_cost is None else float(mean_cost)
        if j_c is None:
            raise ValueError("PIDLagrangeController.update: no episode costs observed yet")
        if self.step >= self.update_delay_steps:
            error = j_c - self.threshold
            self.integral = max(0.0, self.integral + self.ki * error)
            rise = 0.0 if self.previous_cost is None else max(0.0, j_c - self.previous_cost)
            self._lambda = self._cap(self.kp * error + self.integral + self.kd * rise)
        self.previous_cost = j_c
        self.step += 1
        return self._lambda

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "integral": self.integral,
            "previous_cost": self.previous_cost,
            "lambda": self._lambda,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.integral = float(state["integral"])
        prev = state["previous_cost"]
        self.previous_cost = None if prev is None else float(prev)
        self._lambda = float(state["lambda"])


def controller_from_config(cfg: Any) -> LagrangeController:
    """The multiplier rule `cfg.rule` names (`gradient`, default, or `pid`) with its settings."""
    if getattr(cfg, "rule", "gradient") == "pid":
        return PIDLagrangeController.from_config(cfg)
    return LagrangeController.from_config(cfg)
