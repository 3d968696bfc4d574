"""One PPO(-Lag) update on a rollout: advantages per stream, then actor and critic steps.

PPO and PPO-Lag share every line here; PPO-Lag only adds the cost streams (one per constraint,
each with its GAE and critic) and the multipliers in `combined_advantage_multi`:
A = (A_r - sum_k lambda_k A_ck) / (1 + sum_k lambda_k). With every lambda = 0 PPO-Lag's
advantage is PPO's; with one constraint it is (A_r - lambda A_c) / (1 + lambda).
RLOO(-Lag) differs in one place, where the advantages come from (`compute_targets`: leave-one-
out baselines over each prompt's k responses instead of critics and GAE); the actor step is
the same. What a run holds decides what runs: a rollout without cost values has no cost stream,
an update without a critic or a controller trains and weighs nothing for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from beaver.algo import (
    LagrangeController,
    Rollout,
    combined_advantage_multi,
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
    padding_free: bool = False
    """The actor's and critics' training passes on packed rows (`beaver.models.packing`)."""
    length_grouped: bool = False
    """Micro-batches of episodes of similar length, each trimmed to its own longest prompt and
    response (`length_groups`), instead of shuffled rows at the rollout's full width."""

    def micro_batches(
        self, n: int, generator: torch.Generator, lengths: Tensor | None = None
    ) -> Iterator[tuple[int, Tensor]]:
        """(k, rows) of every micro-batch of a rollout of `n` episodes: `update_iters` passes,
        k counting the micro-batches of each pass; shuffled rows, or with the episodes'
        `lengths` (length-grouped plans) `length_groups`."""
        size = self.micro_batch_size
        for _ in range(self.ppo.update_iters):
            if lengths is None:
                order = torch.randperm(n, generator=generator)
                groups = [order[start : start + size] for start in range(0, n, size)]
            else:
                groups = length_groups(lengths, size, generator)
            yield from enumerate(groups)

    def updates_per_rollout(self, episodes: int) -> int:
        """Actor (and critic) updates made on a rollout of `episodes` episodes."""
        return len(range(0, episodes, self.micro_batch_size)) * self.ppo.update_iters


@dataclass(frozen=True)
class Targets:
    """Advantages and returns per stream, 0 outside the response mask. Reward (B, T); the K
    cost streams (B, K, T), one per constraint."""

    reward_advantages: Tensor
    reward_returns: Tensor | None = None  # regression target of the reward critic (GAE)
    cost_advantages: Tensor | None = None  # PPO-Lag
    cost_returns: Tensor | None = None  # regression targets of the cost critics (PPO-Lag)

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

    def actor_advantages(
        self, lams: Sequence[float] | None, mask: Tensor, whiten_them: bool
    ) -> Tensor:
        """The actor's advantage: A_r for PPO, (A_r - sum_k lambda_k A_ck) / (1 + sum_k
        lambda_k) for PPO-Lag (`lams`: one multiplier per cost stream)."""
        adv = self.reward_advantages
        if self.cost_advantages is not None:
            assert lams is not None, "PPO-Lag needs its multipliers"
            streams = self.cost_advantages.unbind(dim=1)  # K x (B, T)
            adv = combined_advantage_multi(adv, streams, lams)
        return whiten(adv, mask) if whiten_them else adv


def length_groups(lengths: Tensor, size: int, generator: torch.Generator) -> list[Tensor]:
    """Rows sorted by `lengths` (ties in a random order) cut into micro-batches of `size`, the
    micro-batches in a random order: as many as shuffled rows make, each as narrow as can be."""
    tiebreak = torch.randperm(len(lengths), generator=generator)
    order = tiebreak[torch.argsort(lengths[tiebreak], stable=True)]
    groups = [order[start : start + size] for start in range(0, len(order), size)]
    return [groups[int(i)] for i in torch.randperm(len(groups), generator=generator)]


def trim(mb: Rollout, tg: Targets) -> tuple[Rollout, Targets]:
    """A micro-batch without the columns that are padding in all its rows: the left prompt
    padding beyond its longest prompt, the response columns beyond its longest response
    (every loss masks them, so nothing trained changes)."""
    p = int(mb.prompt_mask.sum(dim=1).max())
    t = int(mb.response_mask.sum(dim=1).max())
    width = mb.prompt_ids.shape[1]

    def cut(x: Tensor | None, response: bool = True) -> Tensor | None:
        if x is None or x.dim() < 2:
            return x
        return x[..., :t] if response else x[:, width - p :]

    fields = {
        "prompt_ids": cut(mb.prompt_ids, False), "prompt_mask": cut(mb.prompt_mask, False),
        "response_ids": cut(mb.response_ids), "response_mask": cut(mb.response_mask),
        "logp": cut(mb.logp), "ref_logp": cut(mb.ref_logp), "values": cut(mb.values),
        "cost_values": cut(mb.cost_values),
    }  # fmt: skip
    advantages = cut(tg.reward_advantages)
    assert advantages is not None
    targets = Targets(
        advantages, cut(tg.reward_returns), cut(tg.cost_advantages), cut(tg.cost_returns)
    )
    return dataclasses.replace(mb, **fields), targets  # type: ignore[arg-type]


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

    costs = None
    if rollout.costs is not None:  # (B, K): one stream per constraint
        costs = torch.stack([stream(c, beta) for c in rollout.costs.unbind(dim=1)], dim=1)
    return Targets(stream(rollout.reward, -beta), cost_advantages=costs)


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
    assert rollout.costs is not None
    streams = []  # per constraint k: its KL-shaped cost stream and its critic's values
    for cost, values in zip(
        rollout.costs.unbind(dim=1), rollout.cost_values.unbind(dim=1), strict=True
    ):
        costs = token_costs(
            cost, rollout.logp, rollout.ref_logp, mask, ppo.kl_coeff, ppo.clip_range_score
        )
        streams.append(gae(costs, values, mask, ppo.gamma, ppo.gae_lambda))
    return Targets(
        r.advantages,
        r.returns,
        torch.stack([c.advantages for c in streams], dim=1),
        torch.stack([c.returns for c in streams], dim=1),
    )


def actor_step(
    actor: nn.Module,
    mb: Rollout,
    advantages: Tensor,
    ppo: PPOCfg,
    temperature: float,
    ptx_batch: dict[str, Tensor] | None = None,
    sequence_ratio: bool = False,
    padding_free: bool = False,
) -> dict[str, float]:
    """Clipped policy loss (+ ptx_coeff x LM loss on a PTX batch), one backward, one step;
    `padding_free`: the forward on packed rows."""
    actor.train()
    plen = mb.prompt_ids.shape[1]
    logp, logits = response_logprobs(
        actor, mb.input_ids, mb.attention_mask, plen, temperature, padding_free
    )
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
    critic: nn.Module,
    mb: Rollout,
    old_values: Tensor,
    returns: Tensor,
    ppo: PPOCfg,
    padding_free: bool = False,
) -> float:
    """Clipped value loss of one critic, one backward, one step; `padding_free`: the forward
    on packed rows."""
    critic.train()
    plen = mb.prompt_ids.shape[1]
    values = response_values(critic, mb.input_ids, mb.attention_mask, plen, padding_free)
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
    controllers: Sequence[LagrangeController] = (),
    names: Sequence[str] = (),
    ptx_batches: list[dict[str, Tensor]] | None = None,
) -> list[dict[str, float]]:
    """Actor and critic steps on every micro-batch of `plan`; stats per micro-batch.

    Each of `controllers` (one per constraint, named `names`) gives its lambda through
    `on_step()` before every actor step, so a multiplier updated per optimiser step (the
    reference's cadence) reaches the advantage at once. Whitening, when on, is per micro-batch.
    """
    ppo, stats, packed = plan.ppo, [], plan.padding_free
    if plan.length_grouped:
        lengths = rollout.prompt_mask.sum(dim=1) + rollout.response_mask.sum(dim=1)
        batches = plan.micro_batches(rollout.batch_size, generator, lengths.cpu())
    else:
        batches = plan.micro_batches(rollout.batch_size, generator)
    for k, index in batches:
        mb, tg = rollout.select(index), targets.select(index)
        if plan.length_grouped:
            mb, tg = trim(mb, tg)
        ptx = ptx_batches[k % len(ptx_batches)] if ptx_batches else None
        lams = [c.on_step() for c in controllers] if controllers else None
        adv = tg.actor_advantages(lams, mb.response_mask, ppo.whiten_advantages)
        s = actor_step(
            models.actor, mb, adv, ppo, plan.temperature, ptx, plan.sequence_ratio, packed
        )
        if models.reward_critic is not None:
            assert mb.values is not None and tg.reward_returns is not None
            s["train/reward_critic_loss"] = critic_step(
                models.reward_critic, mb, mb.values, tg.reward_returns, ppo, packed
            )
        for j, critic in enumerate(models.cost_critics):
            assert mb.cost_values is not None and tg.cost_returns is not None
            loss = critic_step(critic, mb, mb.cost_values[:, j], tg.cost_returns[:, j], ppo, packed)
            s.update(per_constraint("train/cost_critic_loss", names, j, loss))
        stats.append(s)
    return stats


def per_constraint(key: str, names: Sequence[str], k: int, value: float) -> dict[str, float]:
    """`value` of constraint k under its name, put before the key's last part
    (`lagrange/lambda` -> `lagrange/NAME/lambda`), and also as `key` when the run has one
    constraint (the metric's name from before constraints were a list)."""
    group, _, leaf = key.rpartition("/")
    out = {f"{group}/{names[k]}/{leaf}": value}
    if len(names) == 1:
        out[key] = value
    return out


def rollout_stats(rollout: Rollout, names: Sequence[str] = ()) -> dict[str, float]:
    """Per-rollout monitoring: scores, KL (k1 and k3), response length, EOS rate, and each
    cost source's mean cost and unsafe share (`names`: the constraints, in column order)."""
    mask = rollout.response_mask
    out = {
        "rollout/reward": rollout.reward.mean().item(),
        "rollout/kl_k1": masked_mean(kl_k1(rollout.logp, rollout.ref_logp), mask).item(),
        "rollout/kl_k3": masked_mean(kl_k3(rollout.logp, rollout.ref_logp), mask).item(),
        "rollout/response_length": rollout.response_length.float().mean().item(),
        "rollout/eos_rate": rollout.has_eos.float().mean().item(),
    }
    if rollout.costs is None:
        return out
    if not names:  # a cost source without a constraint (reward shaping)
        out["rollout/cost"] = rollout.costs[:, 0].mean().item()
        out["rollout/unsafe_share"] = (rollout.costs[:, 0] > 0).float().mean().item()
    for k, cost in enumerate(rollout.costs.unbind(dim=1)[: len(names)]):
        out.update(per_constraint("rollout/cost", names, k, cost.mean().item()))
        share = (cost > 0).float().mean().item()
        out.update(per_constraint("rollout/unsafe_share", names, k, share))
    return out
