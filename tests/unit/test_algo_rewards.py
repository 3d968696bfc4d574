"""KL estimators, KL-shaped reward/cost streams, missing-EOS penalty and reward shaping."""

import pytest
import torch

from beaver.algo import (
    apply_missing_eos_penalty,
    kl_k1,
    kl_k3,
    shaped_reward,
    token_costs,
    token_rewards,
)


def test_kl_estimators_by_hand() -> None:
    logp = torch.tensor([[-1.0, -1.0]])
    ref = torch.tensor([[-2.0, -1.0]])
    # k1 = logp - ref = [1, 0]
    assert torch.equal(kl_k1(logp, ref), torch.tensor([[1.0, 0.0]]))
    # k3 with r = ref - logp = [-1, 0]: e^-1 - (-1) - 1 = 0.3678794; e^0 - 0 - 1 = 0
    assert torch.allclose(kl_k3(logp, ref), torch.tensor([[0.3678794, 0.0]]))


# logp - ref = [1, 0, 0.5, -1]; the last column is padding
LOGP = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
REF = torch.tensor([[-2.0, -1.0, -1.5, 0.0]])
MASK = torch.tensor([[1, 1, 1, 0]])


def test_token_rewards_kl_shaping_and_end_score() -> None:
    # -0.1 * kl = [-0.1, 0, -0.05, (masked)]; R = 3 added at the last response token (column 2)
    out = token_rewards(torch.tensor([3.0]), LOGP, REF, MASK, beta=0.1, clip=50.0)
    assert torch.allclose(out, torch.tensor([[-0.1, 0.0, 2.95, 0.0]]))


def test_token_costs_share_the_stream_with_opposite_kl_sign() -> None:
    # +0.1 * kl = [0.1, 0, 0.05, (masked)]; C = -2 at column 2 -> -1.95
    out = token_costs(torch.tensor([-2.0]), LOGP, REF, MASK, beta=0.1, clip=50.0)
    assert torch.allclose(out, torch.tensor([[0.1, 0.0, -1.95, 0.0]]))


def test_token_rewards_clipping() -> None:
    # 100 - 0.05 = 99.95 clipped to 50; -100 - 0.05 clipped to -50
    out = token_rewards(torch.tensor([100.0]), LOGP, REF, MASK, beta=0.1, clip=50.0)
    assert out[0, 2].item() == 50.0
    out = token_rewards(torch.tensor([-100.0]), LOGP, REF, MASK, beta=0.1, clip=50.0)
    assert out[0, 2].item() == -50.0


def test_end_score_placed_per_row_for_different_lengths() -> None:
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])  # empty response (EOS only); full length
    out = token_rewards(torch.tensor([1.0, 2.0]), logp, logp, mask, beta=0.1)
    assert torch.equal(out, torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]))


def test_effective_kl_weight_is_beta_for_any_lambda() -> None:
    # (r - lambda * c) / (1 + lambda) on KL-only streams = (-b kl - lambda b kl) / (1 + lambda) = -b kl
    zero = torch.zeros(1)
    r = token_rewards(zero, LOGP, REF, MASK, beta=0.1)
    c = token_costs(zero, LOGP, REF, MASK, beta=0.1)
    lam = 3.0
    assert torch.allclose((r - lam * c) / (1 + lam), r)


def test_missing_eos_penalty() -> None:
    out = apply_missing_eos_penalty(
        torch.tensor([1.0, 2.0]), torch.tensor([True, False]), penalty=3.0
    )
    # only the response without EOS loses 3: [1, 2 - 3]
    assert torch.equal(out, torch.tensor([1.0, -1.0]))


def test_shaped_reward() -> None:
    # R' = R - 0.5 * C = [1 - 1, 0 + 1]
    out = shaped_reward(torch.tensor([1.0, 0.0]), torch.tensor([2.0, -2.0]), 0.5)
    assert out.tolist() == pytest.approx([0.0, 1.0])
