"""The PPO family as data: every algorithm has a spec, the config and the CLI read it, and one
rule splits a rollout into updates for both the update loop and the LR schedule."""

from __future__ import annotations

import typing

import pytest
import torch

from beaver.config import ALGORITHMS, PPOCfg, PPOConfig, algorithms_of, load_config
from beaver.errors import UserError
from beaver.stages.ppo_step import UpdatePlan

BASE = ["output_dir=o", "actor=a", "reward_model=r", "data.train=[p]"]


def test_every_algorithm_value_has_a_spec_and_a_command() -> None:
    names = typing.get_args(PPOConfig.model_fields["algorithm"].annotation)
    assert set(names) == set(ALGORITHMS)
    assert algorithms_of("ppo") | algorithms_of("ppo-lag") == set(ALGORITHMS)
    for spec in ALGORITHMS.values():
        # a cost critic or a shaped reward needs the cost model; a multiplier needs a cost critic
        assert spec.cost_model or not (spec.cost_critic or spec.fixed_cost_weight)
        assert spec.cost_critic or not spec.multiplier


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_the_config_asks_for_the_cost_model_the_spec_holds(algorithm: str) -> None:
    args = [*BASE, f"algorithm={algorithm}"]
    if ALGORITHMS[algorithm].cost_model:
        with pytest.raises(UserError, match="needs cost_model"):
            load_config(PPOConfig, None, args)
    assert load_config(PPOConfig, None, [*args, "cost_model=c"]).spec.name == algorithm


def test_update_plan_splits_each_pass_into_the_counted_micro_batches() -> None:
    plan = UpdatePlan(PPOCfg(update_iters=2), micro_batch_size=4, temperature=1.0)
    batches = list(plan.micro_batches(10, torch.Generator().manual_seed(0)))
    # ceil(10 / 4) = 3 micro-batches per pass (4, 4, 2 rows), 2 passes
    assert [len(rows) for _, rows in batches] == [4, 4, 2, 4, 4, 2]
    assert [k for k, _ in batches] == [0, 1, 2, 0, 1, 2]  # k restarts each pass (PTX batches)
    assert plan.updates_per_rollout(10) == len(batches) == 6
    for first in (0, 3):  # every pass sees each episode exactly once
        rows = torch.cat([r for _, r in batches[first : first + 3]])
        assert sorted(rows.tolist()) == list(range(10))
