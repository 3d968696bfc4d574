"""Critic-free (RLOO) advantages, by hand."""

import pytest
import torch

from beaver.algo import (
    combined_advantage,
    leave_one_out,
    per_token,
    rloo_stream,
    scale_by_std,
    sequence_kl,
)


def test_leave_one_out_two_prompts_of_three() -> None:
    # prompt 0: scores 1, 2, 6 -> baselines (2 + 6) / 2 = 4, (1 + 6) / 2 = 3.5, (1 + 2) / 2 = 1.5
    #   advantages 1 - 4 = -3, 2 - 3.5 = -1.5, 6 - 1.5 = 4.5 (= 3/2 x (score - mean 3))
    # prompt 1: scores 0, 0, 3 -> baselines 1.5, 1.5, 0 -> -1.5, -1.5, 3
    out = leave_one_out(torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), k=3)
    assert out.tolist() == pytest.approx([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    # every group's advantages sum to 0
    assert out.reshape(2, 3).sum(dim=1).tolist() == pytest.approx([0.0, 0.0])


def test_leave_one_out_k2_is_the_difference() -> None:
    # k = 2: A_0 = R_0 - R_1, A_1 = R_1 - R_0
    assert leave_one_out(torch.tensor([5.0, 2.0]), k=2).tolist() == [3.0, -3.0]


def test_leave_one_out_refuses_bad_groups() -> None:
    with pytest.raises(ValueError, match="k >= 2"):
        leave_one_out(torch.tensor([1.0, 2.0]), k=1)
    with pytest.raises(ValueError, match="groups of k = 2"):
        leave_one_out(torch.tensor([1.0, 2.0, 3.0]), k=2)


def test_scale_by_std() -> None:
    # values -3, -1.5, 4.5, -1.5, -1.5, 3: mean 0, squares 9 + 2.25 + 20.25 + 2.25 + 2.25 + 9
    # = 45, unbiased var 45 / 5 = 9, std 3 -> divided by 3
    adv = torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    assert scale_by_std(adv).tolist() == pytest.approx([-1.0, -0.5, 1.5, -0.5, -0.5, 1.0])
    # no spread: left as it is (all 0 stays 0, not NaN)
    assert scale_by_std(torch.zeros(4)).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_sequence_kl_sums_k1_over_the_response() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # row 0: 0.5 - 1 + 0 = -0.5; row 1: 0.5 + 0.5, the masked -8 left out = 1
    assert sequence_kl(logp, ref, mask).tolist() == pytest.approx([-0.5, 1.0])


def test_rloo_stream_folds_the_kl_in_before_the_baseline() -> None:
    # reward stream (kl_weight = -beta = -0.5): scores 3, 1 with KL 2, 0 -> 3 - 1 = 2, 1 - 0 = 1
    # k = 2: advantages 2 - 1 = 1 and -1
    reward, kl = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 0.0])
    assert rloo_stream(reward, kl, -0.5, k=2, normalize=False).tolist() == [1.0, -1.0]
    # cost stream (+beta): 3 + 1 = 4, 1 + 0 = 1 -> 3, -3
    assert rloo_stream(reward, kl, 0.5, k=2, normalize=False).tolist() == [3.0, -3.0]
    # normalised: [3, -3] has unbiased std sqrt(18) -> +-3 / sqrt(18) = +-1 / sqrt(2)
    half = 2**-0.5
    assert rloo_stream(reward, kl, 0.5, k=2).tolist() == pytest.approx([half, -half])


def test_rloo_lag_with_lambda_0_is_rloo_and_keeps_the_kl_weight() -> None:
    # Unnormalised, the combination of the two streams is the leave-one-out advantage of
    # (R - lambda C) / (1 + lambda) - beta KL: check it for lambda 0 and lambda 3.
    reward = torch.tensor([1.0, 4.0, 2.0, 0.0])
    cost = torch.tensor([2.0, -1.0, 0.5, 0.5])
    kl = torch.tensor([0.2, 1.0, 0.0, 0.4])
    beta, k = 0.1, 2
    a_r = rloo_stream(reward, kl, -beta, k, normalize=False)
    a_c = rloo_stream(cost, kl, beta, k, normalize=False)
    assert torch.equal(combined_advantage(a_r, a_c, 0.0), a_r)  # lambda 0: plain RLOO
    lam = 3.0
    # by hand, prompt 0: shaped = (R - 3C) / 4 - 0.1 KL = (1 - 6)/4 - 0.02 = -1.27,
    #   (4 + 3)/4 - 0.1 = 1.65 -> A = -1.27 - 1.65 = -2.92, +2.92
    # prompt 1: (2 - 1.5)/4 - 0 = 0.125, (0 - 1.5)/4 - 0.04 = -0.415 -> 0.54, -0.54
    expected = [-2.92, 2.92, 0.54, -0.54]
    assert combined_advantage(a_r, a_c, lam).tolist() == pytest.approx(expected)


def test_per_token_broadcasts_over_the_response_only() -> None:
    out = per_token(torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert out.tolist() == [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]
