"""Critic-free advantages from k samples per prompt: RLOO and RLOO-Lagrangian.

RLOO (Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740): sample k responses per prompt,
treat each whole response as one action, and use the mean score of the prompt's other k - 1
responses as the baseline:

    A_i = R_i - 1/(k-1) sum_{j != i} R_j  =  k/(k-1) (R_i - mean_j R_j).

No value model is held or trained. As in the paper (and TRL's RLOOTrainer) the KL penalty is
folded into the sequence score before the baseline: R_i <- R_i - beta KL_i, KL_i the k1 sum
over the response tokens.

RLOO-Lagrangian: the same estimator per stream (reward, cost), combined after, with the
PPO-Lagrangian rule A = (A_r - lambda A_c) / (1 + lambda) (`combined_advantage`), so lambda keeps
its meaning: it weighs the cost stream against the reward stream, not against a sum that was
normalised as a whole (ALGORITHMS.md: normalising an already-summed score silently reweights
its terms). The cost stream carries +beta KL_i, as PPO-Lag's token cost stream does, so that
before normalisation (A_r - lambda A_c) / (1 + lambda) is the leave-one-out advantage of
(R - lambda C) / (1 + lambda) - beta KL: the KL weight stays beta whatever lambda is.

Choices, stated:
- [beaver] Each stream's advantages are divided by their standard deviation over the rollout
  (`scale_by_std`), as TRL's RLOOTrainer normalises advantages by default; leave-one-out
  advantages already sum to 0 within each prompt's group, so they are not re-centred. Scaling
  each stream on its own puts reward and cost in the same units before lambda weighs them.
- [beaver] The update keeps PPO's clipped ratio (TRL's RLOOTrainer does too), by default per
  token with the sequence advantage broadcast over the response and the loss averaged per
  response (`ppo_actor_loss`, the same step as PPO-Lag's, at the learning rates tuned for it);
  `rloo.ratio: sequence` takes one ratio per response on its summed log-probability
  (`sequence_actor_loss`), as the paper and TRL do. With one pass and one optimiser step per
  rollout the ratio is 1 and either is REINFORCE with the leave-one-out baseline; they differ in
  how a response's tokens share its advantage (mean vs sum of the token log-prob gradients).
- Rows are grouped as `generate(num_return_sequences=k)` returns them: prompt p's k responses
  are rows p*k .. p*k + k - 1.
"""

from __future__ import annotations

from torch import Tensor

from beaver.algo.rewards import kl_k1


def sequence_kl(logp: Tensor, logp_ref: Tensor, mask: Tensor) -> Tensor:
    """(B,) k1 KL of each response: sum over its tokens of logp - logp_ref, (B, T) inputs."""
    return (kl_k1(logp, logp_ref) * mask.to(logp.dtype)).sum(dim=-1)


def leave_one_out(scores: Tensor, k: int) -> Tensor:
    """(B,) score minus the mean of the other k - 1 scores of the same prompt, B = prompts x k."""
    if k < 2:
        raise ValueError(f"leave-one-out needs k >= 2 samples per prompt, got {k}")
    if scores.shape[0] % k != 0:
        raise ValueError(f"{scores.shape[0]} scores do not split into groups of k = {k}")
    groups = scores.float().reshape(-1, k)  # (prompts, k)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
    return (groups - others).reshape(-1)


def scale_by_std(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    """(B,) advantages divided by their (unbiased) standard deviation; 0 stays 0.

    A single value, or a batch with no spread, is left as it is (nothing to scale by).
    """
    if advantages.numel() < 2:
        return advantages
    std = advantages.std()
    return advantages / (std + eps) if float(std) > eps else advantages


def rloo_stream(
    end_score: Tensor, seq_kl: Tensor, kl_weight: float, k: int, normalize: bool = True
) -> Tensor:
    """(B,) leave-one-out advantage of one stream: score (B,) + kl_weight * KL (B,), then the
    baseline, then (optionally) the std scaling. The reward stream takes kl_weight = -beta, the
    cost stream +beta."""
    adv = leave_one_out(end_score.float() + kl_weight * seq_kl.float(), k)
    return scale_by_std(adv) if normalize else adv


def per_token(advantages: Tensor, mask: Tensor) -> Tensor:
    """(B, T) the sequence advantage (B,) on every response token of `mask` (B, T), 0 elsewhere."""
    return advantages.float().unsqueeze(-1) * mask.float()
