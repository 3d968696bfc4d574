"""The math of Safe RLHF (ALGORITHMS.md) as pure tensor functions, importing only torch.

Masks and log-probs, score-model losses, DPO-family losses and linear merging, KL-shaped reward/cost streams, GAE, PPO losses, the
Lagrange multiplier controller with threshold calibration, critic-free (RLOO) advantages, score normalizers and typed containers.
"""

from beaver.algo.advantages import combined_advantage, combined_advantage_multi, gae, whiten
from beaver.algo.dpo import (
    DPOLossOut,
    SafeDPOPairs,
    dpo_loss,
    sacpo_beta,
    safedpo_pairs,
    safety_margin,
)
from beaver.algo.lagrange import (
    LagrangeController,
    PIDLagrangeController,
    calibrate_threshold,
    controller_from_config,
    threshold_from_costs,
)
from beaver.algo.logprobs import entropy_from_logits, logprobs_from_logits, shifted_logprobs
from beaver.algo.masks import (
    gather_end_scores,
    has_eos,
    last_token_index,
    masked_mean,
    masked_sum,
    position_ids_from_attention_mask,
    response_mask,
)
from beaver.algo.merge import linear_merge
from beaver.algo.normalizers import (
    ExponentialMovingAverage,
    Normalizer,
    RunningMeanStd,
    ScoreKind,
    build_normalizer,
)
from beaver.algo.ppo_losses import critic_loss, ppo_actor_loss, sequence_actor_loss
from beaver.algo.rewards import (
    apply_missing_eos_penalty,
    kl_k1,
    kl_k3,
    shaped_reward,
    token_costs,
    token_rewards,
)
from beaver.algo.rloo import leave_one_out, per_token, rloo_stream, scale_by_std, sequence_kl
from beaver.algo.score_losses import (
    category_cost_loss,
    cost_loss,
    divergence_span,
    reward_loss_sequence,
    reward_loss_token,
)
from beaver.algo.types import (
    ActorLossOut,
    CategoryLossOut,
    CostLossOut,
    GAEOut,
    RewardLossOut,
    Rollout,
)

__all__ = [
    "ActorLossOut",
    "CategoryLossOut",
    "CostLossOut",
    "DPOLossOut",
    "ExponentialMovingAverage",
    "GAEOut",
    "LagrangeController",
    "Normalizer",
    "PIDLagrangeController",
    "RewardLossOut",
    "Rollout",
    "RunningMeanStd",
    "SafeDPOPairs",
    "ScoreKind",
    "apply_missing_eos_penalty",
    "build_normalizer",
    "calibrate_threshold",
    "category_cost_loss",
    "combined_advantage",
    "combined_advantage_multi",
    "controller_from_config",
    "cost_loss",
    "critic_loss",
    "divergence_span",
    "dpo_loss",
    "entropy_from_logits",
    "gae",
    "gather_end_scores",
    "has_eos",
    "kl_k1",
    "kl_k3",
    "last_token_index",
    "leave_one_out",
    "linear_merge",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "per_token",
    "position_ids_from_attention_mask",
    "ppo_actor_loss",
    "response_mask",
    "reward_loss_sequence",
    "reward_loss_token",
    "rloo_stream",
    "sacpo_beta",
    "safedpo_pairs",
    "safety_margin",
    "scale_by_std",
    "sequence_actor_loss",
    "sequence_kl",
    "shaped_reward",
    "shifted_logprobs",
    "threshold_from_costs",
    "token_costs",
    "token_rewards",
    "whiten",
]
