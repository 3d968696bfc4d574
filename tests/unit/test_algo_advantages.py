"""GAE, whitening and the PPO-Lag combined advantage, by hand."""

import pytest
import torch

from beaver.algo import combined_advantage, combined_advantage_multi, gae, whiten

REWARDS = torch.tensor([[0.0, 0.0, 1.0]])
VALUES = torch.tensor([[0.5, 0.6, 0.7]])
FULL = torch.ones(1, 3)


def test_gae_gamma_1() -> None:
    # gamma 1, lam 0.95, V after the end = 0
    # t=2: delta = 1 + 0 - 0.7 = 0.3;   A2 = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1; A1 = 0.1 + 0.95 * 0.3 = 0.385
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1; A0 = 0.1 + 0.95 * 0.385 = 0.46575
    # returns = A + V = [0.96575, 0.985, 1.0]
    out = gae(REWARDS, VALUES, FULL, gamma=1.0, lam=0.95)
    assert out.advantages[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert out.returns[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])


def test_gae_gamma_09() -> None:
    # gamma 0.9, lam 0.95 (gamma * lam = 0.855)
    # t=2: delta = 1 - 0.7 = 0.3;               A2 = 0.3
    # t=1: delta = 0.9 * 0.7 - 0.6 = 0.03;      A1 = 0.03 + 0.855 * 0.3 = 0.2865
    # t=0: delta = 0.9 * 0.6 - 0.5 = 0.04;      A0 = 0.04 + 0.855 * 0.2865 = 0.2849575
    out = gae(REWARDS, VALUES, FULL, gamma=0.9, lam=0.95)
    assert out.advantages[0].tolist() == pytest.approx([0.2849575, 0.2865, 0.3])
    assert out.returns[0].tolist() == pytest.approx([0.7849575, 0.8865, 1.0])


def test_gae_masked_tail_gets_zero_and_bootstraps_zero() -> None:
    # column 2 is padding (its reward 5 and value 9 must not leak in)
    # t=1: delta = 1 + 0 - 0.6 = 0.4; A1 = 0.4
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1; A0 = 0.1 + 0.95 * 0.4 = 0.48
    out = gae(
        torch.tensor([[0.0, 1.0, 5.0]]),
        torch.tensor([[0.5, 0.6, 9.0]]),
        torch.tensor([[1, 1, 0]]),
        gamma=1.0,
        lam=0.95,
    )
    assert out.advantages[0].tolist() == pytest.approx([0.48, 0.4, 0.0])
    assert out.returns[0].tolist() == pytest.approx([0.98, 1.0, 0.0])


def test_gae_lam_1_gamma_1_is_monte_carlo() -> None:
    # A_t = sum_{k >= t} r_k - V_t: [1 - 0.5, 1 - 0.6, 1 - 0.7]
    out = gae(REWARDS, VALUES, FULL, gamma=1.0, lam=1.0)
    assert out.advantages[0].tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert out.returns[0].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_gae_no_grad_and_fp32() -> None:
    values = VALUES.clone().bfloat16().requires_grad_(True)
    out = gae(REWARDS.bfloat16(), values, FULL)
    assert out.advantages.dtype == torch.float32 and not out.advantages.requires_grad


def test_whiten() -> None:
    # masked values 1, 2, 3: mean 2, unbiased var 1 -> [-1, 0, 1]; padding stays 0
    out = whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]]))
    assert out[0].tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    # shift_mean=False keeps the mean: [1, 2, 3]
    out = whiten(
        torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]]), shift_mean=False
    )
    assert out[0].tolist() == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-6)


def test_combined_advantage() -> None:
    adv_r = torch.tensor([[1.0, -2.0]])
    adv_c = torch.tensor([[3.0, 4.0]])
    # lambda 0: A_r exactly (PPO-Lag with lambda 0 is PPO)
    assert torch.equal(combined_advantage(adv_r, adv_c, 0.0), adv_r)
    # lambda 1: (A_r - A_c) / 2 = [(1 - 3) / 2, (-2 - 4) / 2] = [-1, -3]
    assert torch.allclose(combined_advantage(adv_r, adv_c, 1.0), torch.tensor([[-1.0, -3.0]]))
    # lambda 3: (1 - 9) / 4 = -2, (-2 - 12) / 4 = -3.5
    assert torch.allclose(combined_advantage(adv_r, adv_c, 3.0), torch.tensor([[-2.0, -3.5]]))


def test_combined_advantage_detaches_tensor_lambda() -> None:
    lam = torch.tensor(1.0, requires_grad=True)
    out = combined_advantage(torch.ones(1, 2), torch.ones(1, 2), lam)
    assert not out.requires_grad


def test_combined_advantage_multi() -> None:
    adv_r = torch.tensor([[1.0, -2.0]])
    adv_c1 = torch.tensor([[3.0, 4.0]])
    adv_c2 = torch.tensor([[-1.0, 2.0]])
    # every lambda 0: A_r exactly (PPO)
    assert torch.equal(combined_advantage_multi(adv_r, [adv_c1, adv_c2], [0.0, 0.0]), adv_r)
    # one constraint: today's formula (lambda 3: [-2, -3.5])
    one = combined_advantage_multi(adv_r, [adv_c1], [3.0])
    assert torch.allclose(one, combined_advantage(adv_r, adv_c1, 3.0))
    # lambdas 1 and 2: (A_r - A_c1 - 2 A_c2) / 4
    #   token 0: (1 - 3 + 2) / 4 = 0; token 1: (-2 - 4 - 4) / 4 = -2.5
    two = combined_advantage_multi(adv_r, [adv_c1, adv_c2], [1.0, torch.tensor(2.0)])
    assert torch.allclose(two, torch.tensor([[0.0, -2.5]]))
    with pytest.raises(ValueError, match="2 cost advantages but 1 multipliers"):
        combined_advantage_multi(adv_r, [adv_c1, adv_c2], [1.0])
