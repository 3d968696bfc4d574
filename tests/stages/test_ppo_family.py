"""The PPO family as data: every algorithm has a spec, the config and the CLI read it, and one
rule splits a rollout into updates for both the update loop and the LR schedule."""

from __future__ import annotations

import typing

import pytest
import torch

from beaver.algo import Rollout
from beaver.config import ALGORITHMS, PPOCfg, PPOConfig, algorithms_of, load_config
from beaver.errors import UserError
from beaver.stages.ppo_step import UpdatePlan, compute_targets

BASE = ["output_dir=o", "actor=a", "reward_model=r", "data.train=[p]"]


def test_every_algorithm_value_has_a_spec_and_a_command() -> None:
    names = typing.get_args(PPOConfig.model_fields["algorithm"].annotation)
    assert set(names) == set(ALGORITHMS)
    assert algorithms_of("ppo") | algorithms_of("ppo-lag") == set(ALGORITHMS)
    for spec in ALGORITHMS.values():
        # a cost critic or a shaped reward needs the cost model; a multiplier needs a cost
        # stream (a cost critic's, or the critic-free one over the cost model's scores)
        assert spec.cost_model or not (spec.cost_critic or spec.fixed_cost_weight)
        assert spec.cost_critic or spec.critic_free or not spec.multiplier
        assert spec.cost_model or not spec.multiplier
        assert not (spec.critic_free and spec.cost_critic)  # critic-free holds no critic


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_the_config_asks_for_the_cost_model_the_spec_holds(algorithm: str) -> None:
    args = [*BASE, f"algorithm={algorithm}", "generation.num_return_sequences=2"]
    if ALGORITHMS[algorithm].cost_model:
        with pytest.raises(UserError, match="needs cost_model"):
            load_config(PPOConfig, None, args)
    assert load_config(PPOConfig, None, [*args, "cost_model=c"]).spec.name == algorithm


@pytest.mark.parametrize("algorithm", ["rloo", "rloo-lag"])
def test_critic_free_algorithms_need_k_samples_and_refuse_critics(algorithm: str) -> None:
    args = [*BASE, f"algorithm={algorithm}", "cost_model=c"]
    with pytest.raises(UserError, match="num_return_sequences >= 2"):
        load_config(PPOConfig, None, args)
    k2 = [*args, "generation.num_return_sequences=2"]
    assert load_config(PPOConfig, None, k2).spec.critic_names() == ()
    with pytest.raises(UserError, match="holds no critic"):
        load_config(PPOConfig, None, [*k2, "reward_critic=r"])


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


def test_critic_free_targets_are_leave_one_out_per_stream_on_every_token() -> None:
    # 2 prompts x k = 2 answers, no critic values; logp == ref_logp, so the KL terms are 0.
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    zeros = torch.zeros(4, 3)
    rollout = Rollout(
        prompt_ids=torch.ones(4, 2, dtype=torch.long),
        prompt_mask=torch.ones(4, 2, dtype=torch.long),
        response_ids=torch.ones(4, 3, dtype=torch.long),
        response_mask=mask,
        has_eos=torch.ones(4, dtype=torch.bool),
        logp=zeros,
        ref_logp=zeros,
        reward=torch.tensor([3.0, 1.0, 0.0, 0.0]),
        costs=torch.tensor([[1.0], [-1.0], [-2.0], [2.0]]),  # (B, K = 1)
    )
    plan = UpdatePlan(
        PPOCfg(), 2, 1.0, critic_free=True, samples_per_prompt=2, scale_advantages=False
    )
    out = compute_targets(rollout, plan)
    # reward: prompt 0: 3 - 1 = 2, 1 - 3 = -2; prompt 1: 0, 0
    # cost: prompt 0: 1 - (-1) = 2, -2; prompt 1: -2 - 2 = -4, 4
    assert out.reward_advantages.tolist() == [[2, 2, 0], [-2, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert out.cost_advantages is not None
    assert out.cost_advantages[:, 0].tolist() == [[2, 2, 0], [-2, 0, 0], [-4, -4, -4], [4, 4, 0]]
    assert out.reward_returns is None and out.cost_returns is None  # nothing to regress
