"""PPO-Lag's multiplier reaches the actor: the advantages every actor step trains on are
(A_r - lambda A_c) / (1 + lambda) with the lambda of that moment (after this rollout's update,
per_rollout; after each step's update, per_step), whitened when asked. In process, with the
actor and critic steps replaced by spies (their losses have tests of their own)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from ppo_helpers import prompts, rollout_models, rollout_options

from beaver.algo import LagrangeController, combined_advantage, whiten
from beaver.config import PPOCfg
from beaver.stages import ppo_step as step_mod
from beaver.stages.ppo import PPOParts, ppo_step
from beaver.stages.ppo_step import UpdatePlan


def _controller(cadence: str, threshold: float) -> LagrangeController:
    return LagrangeController(
        lambda_init=1.0, lambda_lr=0.02, lambda_max=100.0, threshold=threshold,
        lambda_update_delay_steps=0, episode_cost_window_size=64, update_cadence=cadence,  # type: ignore[arg-type]
    )  # fmt: skip


class _Spy:
    """Records each actor step's rows, advantages and the lambda of that moment; the critic
    steps do nothing."""

    def __init__(self, controller: LagrangeController) -> None:
        self.controller = controller
        self.rows: list[torch.Tensor] = []
        self.calls: list[tuple[Any, torch.Tensor, float]] = []

    def actor_step(self, actor: Any, mb: Any, adv: torch.Tensor, *args: Any) -> dict[str, float]:
        self.calls.append((mb, adv.clone(), self.controller.lambda_))
        return {"train/actor_loss": 0.0}

    @staticmethod
    def critic_step(*args: Any) -> float:
        return 0.0


def _run_step(
    monkeypatch: pytest.MonkeyPatch, cadence: str, whiten_them: bool = False
) -> tuple[_Spy, Any, list[float]]:
    """One `ppo_step` (rollout of 3 prompts x 2 answers, 2 passes of micro-batches of 2);
    returns the spy, the targets and lambda before / after the rollout's update."""
    torch.manual_seed(0)
    controller = _controller(cadence, threshold=-5.0)  # every rollout violates: lambda rises
    spy = _Spy(controller)
    monkeypatch.setattr(step_mod, "actor_step", spy.actor_step)
    monkeypatch.setattr(step_mod, "critic_step", spy.critic_step)
    captured: dict[str, Any] = {}
    real_targets, real_batches = step_mod.compute_targets, UpdatePlan.micro_batches

    def targets(rollout: Any, ppo: PPOCfg) -> Any:
        captured["targets"] = real_targets(rollout, ppo)
        captured["lambda_after_rollout"] = controller.lambda_
        return captured["targets"]

    def micro_batches(self: UpdatePlan, n: int, generator: Any) -> Any:
        for k, rows in real_batches(self, n, generator):
            spy.rows.append(rows)
            yield k, rows

    monkeypatch.setattr("beaver.stages.ppo.compute_targets", targets)
    monkeypatch.setattr(UpdatePlan, "micro_batches", micro_batches)
    ppo = PPOCfg(whiten_advantages=whiten_them, update_iters=2)
    parts = PPOParts(
        models=rollout_models(pad=0), opts=rollout_options(0, n=2),
        plan=UpdatePlan(ppo, micro_batch_size=2, temperature=1.0), controllers=(controller,),
        names=("cost",),
    )  # fmt: skip
    ids, mask = prompts(pad=0)
    batch = {"input_ids": ids, "attention_mask": mask}
    metrics = ppo_step(SimpleNamespace(ppo=ppo), parts, batch, None).metrics  # type: ignore[arg-type]
    assert metrics["lagrange/lambda"] == controller.lambda_
    return spy, captured["targets"], [1.0, captured["lambda_after_rollout"]]


def _expected(targets: Any, rows: torch.Tensor, mask: torch.Tensor, lam: float, w: bool) -> Any:
    cost = targets.cost_advantages[rows][:, 0]  # (B, K = 1, T) -> (B, T)
    adv = combined_advantage(targets.reward_advantages[rows], cost, lam)
    return whiten(adv, mask) if w else adv


@pytest.mark.parametrize("whiten_them", [False, True])
def test_per_rollout_the_actor_trains_on_this_rollouts_lambda(
    monkeypatch: pytest.MonkeyPatch, whiten_them: bool
) -> None:
    spy, targets, (before, after) = _run_step(monkeypatch, "per_rollout", whiten_them)
    assert after > before + 0.05  # the rollout moved lambda
    assert targets.cost_advantages.abs().sum() > 0  # the cost stream is there to be weighed
    assert len(spy.calls) == 6  # 3 micro-batches x 2 passes
    for (mb, adv, lam), rows in zip(spy.calls, spy.rows, strict=True):
        assert lam == after
        expected = _expected(targets, rows, mb.response_mask, after, whiten_them)
        assert torch.allclose(adv, expected, atol=1e-6)
        stale = _expected(targets, rows, mb.response_mask, before, whiten_them)
        assert not torch.allclose(adv, stale, atol=1e-4)  # lambda_init would differ
        if whiten_them:  # whitened: zero mean, unit variance on the response tokens
            assert adv[mb.response_mask.bool()].mean().abs() < 1e-5


def test_per_step_each_actor_step_trains_on_its_own_lambda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy, targets, _ = _run_step(monkeypatch, "per_step")
    lambdas = [lam for _, _, lam in spy.calls]
    assert lambdas == sorted(lambdas) and len(set(lambdas)) == len(lambdas)  # moved every step
    for (mb, adv, lam), rows in zip(spy.calls, spy.rows, strict=True):
        assert torch.allclose(adv, _expected(targets, rows, mb.response_mask, lam, False))


def test_two_cost_streams_are_weighed_by_their_own_multipliers() -> None:
    # One response of 2 tokens, the second masked. Streams (B, K = 2, T):
    # A_r = 2, A_c1 = 1, A_c2 = -2 on token 0; lambdas (1, 0.5):
    # (2 - 1 * 1 - 0.5 * (-2)) / (1 + 1 + 0.5) = 2 / 2.5 = 0.8.
    targets = step_mod.Targets(
        reward_advantages=torch.tensor([[2.0, 0.0]]),
        cost_advantages=torch.tensor([[[1.0, 0.0], [-2.0, 0.0]]]),
    )
    mask = torch.tensor([[1, 0]])
    adv = targets.actor_advantages([1.0, 0.5], mask, whiten_them=False)
    assert adv.tolist() == [[pytest.approx(0.8), 0.0]]
    # swapping the multipliers changes the answer: each weighs its own stream
    # (2 - 0.5 * 1 - 1 * (-2)) / 2.5 = 3.5 / 2.5 = 1.4
    swapped = targets.actor_advantages([0.5, 1.0], mask, whiten_them=False)
    assert swapped.tolist() == [[pytest.approx(1.4), 0.0]]


def test_length_groups_sort_by_length_and_cover_every_row_once() -> None:
    lengths = torch.tensor([5, 1, 3, 2, 4, 6])
    groups = step_mod.length_groups(lengths, 2, torch.Generator().manual_seed(0))
    # sorted 1, 2 | 3, 4 | 5, 6: rows (1, 3), (2, 4), (0, 5), the groups in a random order
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 5], [1, 3], [2, 4]]
    plan = UpdatePlan(PPOCfg(update_iters=2), micro_batch_size=4, temperature=1.0)
    batches = list(plan.micro_batches(6, torch.Generator().manual_seed(1), lengths))
    assert [k for k, _ in batches] == [0, 1, 0, 1]  # as many micro-batches as shuffled rows
    for first in (0, 2):  # each pass covers every row once
        rows = torch.cat([batches[first][1], batches[first + 1][1]])
        assert sorted(rows.tolist()) == list(range(6))


def test_trimmed_micro_batch_gives_the_same_actor_and_critic_losses() -> None:
    from beaver.algo import Rollout, critic_loss, ppo_actor_loss
    from beaver.models.batching import pad_batch
    from beaver.models.forward import response_logprobs, response_values

    models = rollout_models(pad=0, cost=False)
    prompts, p_mask = pad_batch([[1, 5, 6], [1, 7], [1, 8], [1, 9, 10, 11]], 0, "left")
    responses, r_mask = pad_batch([[12, 2], [13], [14, 15, 2], [16, 17, 18, 19, 2]], 0)
    torch.manual_seed(0)
    shape = responses.shape
    rollout = Rollout(
        prompt_ids=prompts, prompt_mask=p_mask, response_ids=responses, response_mask=r_mask,
        has_eos=torch.ones(4, dtype=torch.bool), logp=-torch.rand(shape), ref_logp=-torch.rand(shape),
        reward=torch.randn(4), values=torch.randn(shape),
    )  # fmt: skip
    targets = step_mod.Targets(torch.randn(shape), torch.randn(shape))
    mb, tg = rollout.select(torch.tensor([1, 2])), targets.select(torch.tensor([1, 2]))
    short, short_tg = step_mod.trim(mb, tg)
    assert short.prompt_ids.shape == (2, 2) and short.response_ids.shape == (2, 3)
    assert short.prompt_ids.tolist() == [[1, 7], [1, 8]]

    def losses(m: Rollout, t: step_mod.Targets) -> tuple[torch.Tensor, torch.Tensor]:
        plen = m.prompt_ids.shape[1]
        logp, _ = response_logprobs(models.actor, m.input_ids, m.attention_mask, plen)
        actor = ppo_actor_loss(logp, m.logp, t.reward_advantages, m.response_mask).loss
        values = response_values(models.reward_critic, m.input_ids, m.attention_mask, plen)
        assert m.values is not None and t.reward_returns is not None
        return actor, critic_loss(values, m.values, t.reward_returns, m.response_mask)

    with torch.no_grad():
        for full, cut in zip(losses(mb, tg), losses(short, short_tg), strict=True):
            torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)
