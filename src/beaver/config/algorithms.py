"""The online algorithms of the PPO family as data: what each one holds, trains and optimises.

`PPOConfig.algorithm` names one; the config checks the models it needs before anything loads,
the CLI routes it to its command, and the PPO stage builds exactly the parts it lists. A new
online method is one more entry here plus its math in `beaver.algo` (see ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OnlineAlgorithm:
    """One algorithm of the PPO family. Every one samples with the actor, holds the frozen
    reference and the reward model, and trains the actor (and a reward critic unless it is
    critic-free)."""

    name: str
    """The `algorithm` value."""
    command: str
    """The `beaver` command that runs it."""
    cost_model: bool = False
    """Holds the cost model and scores every response with it (C)."""
    cost_critic: bool = False
    """Trains a cost critic on a KL-shaped cost stream with its own GAE (needs the cost model)."""
    multiplier: bool = False
    """A Lagrange multiplier moves with the constraint E[C] <= d and weighs the cost advantage:
    A = (A_r - lambda A_c) / (1 + lambda) (needs a cost stream: the cost critic's, or the
    critic-free one)."""
    fixed_cost_weight: bool = False
    """The reward is shaped as R - lambda_fixed * C before its stream (needs the cost model)."""
    critic_free: bool = False
    """No critic is held or trained: k responses per prompt (`generation.num_return_sequences`),
    each one's advantage its score minus the mean of the other k - 1 (RLOO), per stream
    (`beaver.algo.rloo`)."""

    def critic_names(self) -> tuple[str, ...]:
        """The critics the algorithm trains, by engine name."""
        if self.critic_free:
            return ()
        return ("reward_critic", "cost_critic") if self.cost_critic else ("reward_critic",)


ALGORITHMS: dict[str, OnlineAlgorithm] = {
    a.name: a
    for a in (
        OnlineAlgorithm("ppo", "ppo"),
        OnlineAlgorithm("ppo-lag", "ppo-lag", cost_model=True, cost_critic=True, multiplier=True),
        OnlineAlgorithm("reward-shaping", "ppo-lag", cost_model=True, fixed_cost_weight=True),
        OnlineAlgorithm("rloo", "ppo", critic_free=True),
        OnlineAlgorithm("rloo-lag", "ppo-lag", cost_model=True, multiplier=True, critic_free=True),
    )
}
"""Every online algorithm, by name."""


def algorithms_of(command: str) -> frozenset[str]:
    """The algorithm names a `beaver` command runs."""
    return frozenset(a.name for a in ALGORITHMS.values() if a.command == command)
