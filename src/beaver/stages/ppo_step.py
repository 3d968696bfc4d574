"""One PPO(-Lag) update on a rollout: advantages per stream, then actor and critic steps.

PPO and PPO-Lag share every line here; PPO-Lag only adds the cost stream (its GAE and critic)
and the multiplier in `combined_advantage`. With lambda = 0 PPO-Lag's advantage is PPO's.
RLOO(-Lag) differs in one place, where the advantages come from (`compute_targets`: leave-one-
out baselines over each prompt's k responses instead of critics and GAE); the actor step is
the same. What a run holds decides what runs: a rollout without cost values has no cost stream,
an update without a critic or a controller trains and weighs nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from beaver.algo import (
    LagrangeController,
    Rollout,
    combined_advantage,
    critic_loss,
    entropy_from_logits,
    gae,
    kl_k1,
    kl_k3,
    masked_mean,
    per_token,
    ppo_actor_loss,
    rloo_stream,
    sequence_actor_loss,
    sequence_kl,
    token_costs,
    token_rewards,
    whiten,
)
from beaver.config import PPOCfg
from beaver.models.forward import response_logprobs, response_values
from beaver.stages.rollout import RolloutModels


@dataclass(frozen=True)
class UpdatePlan:
    """How each rollout becomes optimiser updates, fixed for the run: `micro_batches` splits a
    rollout, and the LR schedules count their steps with `updates_per_rollout`, one rule."""

    ppo: PPOCfg
    micro_batch_size: int
    temperature: float
    """The sampling temperature: log-probs are those of the distribution sampled from."""
    critic_free: bool = False
    """Advantages from leave-one-out baselines over `samples_per_prompt` responses (RLOO)."""
    samples_per_prompt: int = 1
    """k: responses per prompt, consecutive rows of the rollout."""
    scale_advantages: bool = True
    """RLOO: each stream's advantages divided by their std over the rollout."""
    sequence_ratio: bool = False
    """One clipped ratio per response (`sequence_actor_loss`) instead of one per token."""

    def micro_batches(self, n: int, generator: torch.Generator) -> Iterator[tuple[int, Tensor]]:
        """(k, rows) of every micro-batch of a rollout of `n` episodes: `update_iters` shuffled
        passes, k counting the micro-batches of each pass."""
        for _ in range(self.ppo.update_iters):
            order = torch.randperm(n, generator=generator)
            for k, start in enumerate(range(0, n, self.micro_batch_size)):
                yield k, order[start : start + self.micro_batch_size]

    def updates_per_rollout(self, episodes: int) -> int:
        """Actor (and critic) updates made on a rollout of `episodes` episodes."""
        return len(range(0, episodes, self.micro_batch_size)) * self.ppo.update_iters


@dataclass(frozen=True)
class Targets:
    """Advantages and returns per stream. All (B, T), 0 outside the response mask."""

    reward_advantages: Tensor
    reward_returns: Tensor | None = None  # regression target of the reward critic (GAE)
    cost_advantages: Tensor | None = None  # PPO-Lag
    cost_returns: Tensor | None = None  # regression target of the cost critic (PPO-Lag)

    def select(self, index: Tensor) -> Targets:
        """The rows `index` (one micro-batch)."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return Targets(
            self.reward_advantages[index],
            pick(self.reward_returns),
            pick(self.cost_advantages),
            pick(self.cost_returns),
        )

    def actor_advantages(self, lam: float | None, mask: Tensor, whiten_them: bool) -> Tensor:
        """The actor's advantage: A_r for PPO, (A_r - lambda A_c) / (1 + lambda) for PPO-Lag."""
        adv = self.reward_advantages
        if self.cost_advantages is not None:
            assert lam is not None, "PPO-Lag needs lambda"
            adv = combined_advantage(adv, self.cost_advantages, lam)
        return whiten(adv, mask) if whiten_them else adv


def compute_targets(rollout: Rollout, plan: UpdatePlan) -> Targets:
    """The advantages of every stream the rollout has: GAE on critics' values, or leave-one-out
    baselines when the plan is critic-free."""
    return rloo_targets(rollout, plan) if plan.critic_free else gae_targets(rollout, plan.ppo)


def rloo_targets(rollout: Rollout, plan: UpdatePlan) -> Targets:
    """Sequence scores with the KL folded in (reward - beta KL, cost + beta KL), leave-one-out
    baseline per stream, each scaled on its own, on every response token (`beaver.algo.rloo`)."""
    mask, beta = rollout.response_mask, plan.ppo.kl_coeff
    kl = sequence_kl(rollout.logp, rollout.ref_logp, mask)

    def stream(score: Tensor, kl_weight: float) -> Tensor:
        adv = rloo_stream(score, kl, kl_weight, plan.samples_per_prompt, plan.scale_advantages)
        return per_token(adv, mask)

    cost = None if rollout.cost is None else stream(rollout.cost, beta)
    return Targets(stream(rollout.reward, -beta), cost_advantages=cost)


def gae_targets(rollout: Rollout, ppo: PPOCfg) -> Targets:
    """Per-token KL-shaped streams -> GAE per stream (ALGORITHMS.md)."""
    assert rollout.values is not None, "GAE needs the reward critic's values"
    mask = rollout.response_mask
    rewards = token_rewards(
        rollout.reward, rollout.logp, rollout.ref_logp, mask, ppo.kl_coeff, ppo.clip_range_score
    )
    r = gae(rewards, rollout.values, mask, ppo.gamma, ppo.gae_lambda)
    if rollout.cost_values is None:
        return Targets(r.advantages, r.returns)
    assert rollout.cost is not None
    costs = token_costs(
        rollout.cost, rollout.logp, rollout.ref_logp, mask, ppo.kl_coeff, ppo.clip_range_score
    )
    c = gae(costs, rollout.cost_values, mask, ppo.gamma, ppo.gae_lambda)
    return Targets(r.advantages, r.returns, c.advantages, c.returns)


def actor_step(
    actor: nn.Module,
    mb: Rollout,
    advantages: Tensor,
    ppo: PPOCfg,
    temperature: float,
    ptx_batch: dict[str, Tensor] | None = None,
    sequence_ratio: bool = False,
) -> dict[str, float]:
    """Clipped policy loss (+ ptx_coeff x LM loss on a PTX batch), one backward, one step."""
    actor.train()
    plen = mb.prompt_ids.shape[1]
    logp, logits = response_logprobs(actor, mb.input_ids, mb.attention_mask, plen, temperature)
    loss_fn = sequence_actor_loss if sequence_ratio else ppo_actor_loss
    out = loss_fn(logp, mb.logp, advantages, mb.response_mask, ppo.clip_range_ratio)
    loss = out.loss
    stats = {
        "train/actor_loss": out.loss.item(),
        "train/clip_fraction": out.clip_fraction.item(),
        "train/approx_kl": out.approx_kl.item(),
    }
    if ptx_batch is not None and ppo.ptx_coeff > 0:
        ptx_loss = actor(**ptx_batch, use_cache=False).loss
        loss = loss + ppo.ptx_coeff * ptx_loss
        stats["train/ptx_loss"] = ptx_loss.item()
    with torch.no_grad():
        stats["train/entropy"] = masked_mean(
            entropy_from_logits(logits.detach()), mb.response_mask
        ).item()
    _backward_step(actor, loss)
    return stats


def critic_step(
    critic: nn.Module, mb: Rollout, old_values: Tensor, returns: Tensor, ppo: PPOCfg
) -> float:
    """Clipped value loss of one critic, one backward, one step."""
    critic.train()
    values = response_values(critic, mb.input_ids, mb.attention_mask, mb.prompt_ids.shape[1])
    loss = critic_loss(values, old_values, returns, mb.response_mask, ppo.clip_range_value)
    _backward_step(critic, loss)
    return loss.item()


def _backward_step(model: nn.Module, loss: Tensor) -> None:
    """DeepSpeed engines own backward and step (accumulation, clipping, ZeRO)."""
    model.backward(loss)  # type: ignore[operator]
    model.step()  # type: ignore[operator]


def update(
    models: RolloutModels,
    rollout: Rollout,
    targets: Targets,
    plan: UpdatePlan,
    generator: torch.Generator,
    *,
    controller: LagrangeController | None = None,
    ptx_batches: list[dict[str, Tensor]] | None = None,
) -> list[dict[str, float]]:
    """Actor and critic steps on every micro-batch of `plan`; stats per micro-batch.

    `controller.on_step()` gives lambda before every actor step, so a multiplier updated per
    optimiser step (the reference's cadence) reaches the advantage at once. Whitening, when on,
    is per micro-batch.
    """
    ppo, stats = plan.ppo, []
    for k, index in plan.micro_batches(rollout.batch_size, generator):
        mb, tg = rollout.select(index), targets.select(index)
        ptx = ptx_batches[k % len(ptx_batches)] if ptx_batches else None
        lam = controller.on_step() if controller is not None else None
        adv = tg.actor_advantages(lam, mb.response_mask, ppo.whiten_advantages)
        s = actor_step(models.actor, mb, adv, ppo, plan.temperature, ptx, plan.sequence_ratio)
        if models.reward_critic is not None:
            assert mb.values is not None and tg.reward_returns is not None
            s["train/reward_critic_loss"] = critic_step(
                models.reward_critic, mb, mb.values, tg.reward_returns, ppo
            )
        if models.cost_critic is not None:
            assert mb.cost_values is not None and tg.cost_returns is not None
            s["train/cost_critic_loss"] = critic_step(
                models.cost_critic, mb, mb.cost_values, tg.cost_returns, ppo
            )
        stats.append(s)
    return stats


def rollout_stats(rollout: Rollout) -> dict[str, float]:
    """Per-rollout monitoring: scores, KL (k1 and k3), response length, EOS rate."""
    mask = rollout.response_mask
    out = {
        "rollout/reward": rollout.reward.mean().item(),
        "rollout/kl_k1": masked_mean(kl_k1(rollout.logp, rollout.ref_logp), mask).item(),
        "rollout/kl_k3": masked_mean(kl_k3(rollout.logp, rollout.ref_logp), mask).item(),
        "rollout/response_length": rollout.response_length.float().mean().item(),
        "rollout/eos_rate": rollout.has_eos.float().mean().item(),
    }
    if rollout.cost is not None:
        out["rollout/cost"] = rollout.cost.mean().item()
        out["rollout/unsafe_share"] = (rollout.cost > 0).float().mean().item()
    return out
