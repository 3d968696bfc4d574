"""Clipped PPO actor loss and clipped critic loss with worked numbers."""

import math

import pytest
import torch

from beaver.algo import critic_loss, ppo_actor_loss, sequence_actor_loss


def test_actor_loss_ratio_one_is_minus_mean_advantage() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    adv = torch.tensor([[1.0, -2.0, 3.0]])
    mask = torch.tensor([[1, 1, 0]])
    # ratio 1 everywhere: loss = -masked_mean(A) = -(1 - 2) / 2 = 0.5
    out = ppo_actor_loss(logp, logp.clone(), adv, mask, clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.5)
    assert out.clip_fraction.item() == 0.0
    assert out.approx_kl.item() == pytest.approx(0.0)


def test_actor_loss_clipping() -> None:
    old = torch.zeros(1, 2)
    logp = torch.full((1, 2), math.log(1.5), requires_grad=True)  # ratio 1.5
    adv = torch.tensor([[1.0, -1.0]])
    # token 0 (A = +1): min(1.5 * 1, 1.2 * 1) = 1.2 (clipped, no gradient)
    # token 1 (A = -1): min(-1.5, -1.2) = -1.5 (unclipped)
    # loss = -(1.2 - 1.5) / 2 = 0.15; clip fraction 1/2
    # approx KL (k3) = (1.5 - 1) - ln 1.5 = 0.0945349
    out = ppo_actor_loss(logp, old, adv, torch.ones(1, 2), clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.15, abs=1e-6)
    assert out.clip_fraction.item() == 0.5
    assert out.approx_kl.item() == pytest.approx(0.0945349, abs=1e-6)
    out.loss.backward()
    # d loss / d logp_1 = -(1/2) * ratio * A = -(1/2) * 1.5 * (-1) = 0.75; clipped token: 0
    assert logp.grad is not None
    assert logp.grad[0].tolist() == pytest.approx([0.0, 0.75])


def test_critic_loss_clipped_numbers() -> None:
    returns = torch.tensor([[2.0, 2.0]])
    mask = torch.ones(1, 2)
    # token 0: V = 1, V_old = 0 -> V_clip = 1: (1 - 2)^2 = 1
    # token 1: V = 10, V_old = 0 -> V_clip = 5: max((10-2)^2, (5-2)^2) = 64
    # 0.5 * (1 + 64) / 2 = 16.25
    loss = critic_loss(torch.tensor([[1.0, 10.0]]), torch.zeros(1, 2), returns, mask, 5.0)
    assert loss.item() == pytest.approx(16.25)
    # token 0 with V_old = 10: V_clip = 5, max((1-2)^2, (5-2)^2) = 9 -> 0.5 * (9 + 64) / 2 = 18.25
    old = torch.tensor([[10.0, 0.0]])
    loss = critic_loss(torch.tensor([[1.0, 10.0]]), old, returns, mask, 5.0)
    assert loss.item() == pytest.approx(18.25)


def test_critic_loss_respects_mask() -> None:
    # only token 0 counts: 0.5 * (1 - 2)^2 = 0.5
    loss = critic_loss(
        torch.tensor([[1.0, 10.0]]),
        torch.zeros(1, 2),
        torch.tensor([[2.0, 2.0]]),
        torch.tensor([[1, 0]]),
        5.0,
    )
    assert loss.item() == pytest.approx(0.5)


def test_actor_loss_clips_at_the_lower_bound() -> None:
    old = torch.zeros(1, 2)
    logp = torch.full((1, 2), math.log(0.5), requires_grad=True)  # ratio 0.5 < 1 - 0.2
    adv = torch.tensor([[1.0, -1.0]])
    # token 0 (A = +1): min(0.5 * 1, 0.8 * 1) = 0.5 (unclipped: the pessimistic term)
    # token 1 (A = -1): min(0.5 * -1, 0.8 * -1) = -0.8 (clipped at 1 - eps, no gradient)
    # loss = -(0.5 - 0.8) / 2 = 0.15; clip fraction 1/2
    # approx KL (k3) = (0.5 - 1) - ln 0.5 = 0.1931472
    out = ppo_actor_loss(logp, old, adv, torch.ones(1, 2), clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.15, abs=1e-6)
    assert out.clip_fraction.item() == 0.5
    assert out.approx_kl.item() == pytest.approx(0.1931472, abs=1e-6)
    out.loss.backward()
    # d loss / d logp_0 = -(1/2) * ratio * A = -(1/2) * 0.5 * 1 = -0.25; clipped token: 0
    assert logp.grad is not None
    assert logp.grad[0].tolist() == pytest.approx([-0.25, 0.0])


def test_sequence_actor_loss_one_ratio_per_response() -> None:
    old = torch.zeros(2, 3)
    # row 0: two tokens of log-ratio ln 1.5 / 2 each -> sequence ratio 1.5; row 1: ratio 1
    half = math.log(1.5) / 2
    logp = torch.tensor([[half, half, 7.0], [0.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # the 7.0 is padding and must not count
    adv = torch.tensor([[1.0, 1.0, 0.0], [-2.0, -2.0, -2.0]])  # one value per row on its mask
    # row 0 (A = +1): min(1.5, 1.2) = 1.2, clipped; row 1 (A = -2): min(-2, -2) = -2
    # loss = -(1.2 - 2) / 2 = 0.4; clip fraction 1/2; k3 KL = ((1.5 - 1) - ln 1.5 + 0) / 2
    out = sequence_actor_loss(logp, old, adv, mask, clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.4, abs=1e-6)
    assert out.clip_fraction.item() == 0.5
    assert out.approx_kl.item() == pytest.approx(0.0945349 / 2, abs=1e-6)
    out.loss.backward()
    # row 0 is clipped: no gradient. row 1: d/d logp_t of -(1/2) * ratio * A with ratio = exp(sum_t logp_t) = 1: -(1/2)(-2) = 1
    # on each of its tokens (REINFORCE on the sequence log-prob: not divided by its length)
    assert logp.grad is not None
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
