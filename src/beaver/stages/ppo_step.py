"""One PPO(-Lag) update on a rollout: advantages per stream, then actor and critic steps.

PPO and PPO-Lag share every line here; PPO-Lag only adds the cost stream (its GAE and critic)
and the multiplier in `combined_advantage`. With lambda = 0 PPO-Lag's advantage is PPO's.
What a run holds decides what runs: a rollout without cost values has no cost stream, an
update without a cost critic or a controller trains and weighs no cost.
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
    ppo_actor_loss,
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
    reward_returns: Tensor  # regression target of the reward critic
    cost_advantages: Tensor | None = None  # PPO-Lag
    cost_returns: Tensor | None = None  # regression target of the cost critic (PPO-Lag)

    def select(self, index: Tensor) -> Targets:
        """The rows `index` (one micro-batch)."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return Targets(
            self.reward_advantages[index],
            self.reward_returns[index],
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


def compute_targets(rollout: Rollout, ppo: PPOCfg) -> Targets:
    """Per-token KL-shaped streams -> GAE per stream (ALGORITHMS.md)."""
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
) -> dict[str, float]:
    """Clipped policy loss (+ ptx_coeff x LM loss on a PTX batch), one backward, one step."""
    actor.train()
    plen = mb.prompt_ids.shape[1]
    logp, logits = response_logprobs(actor, mb.input_ids, mb.attention_mask, plen, temperature)
    out = ppo_actor_loss(logp, mb.logp, advantages, mb.response_mask, ppo.clip_range_ratio)
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
        s = actor_step(models.actor, mb, adv, ppo, plan.temperature, ptx)
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
