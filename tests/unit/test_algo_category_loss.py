"""The per-category cost-head loss (`category_cost_loss`) with worked numbers."""

import math

import pytest
import torch

from beaver.algo import category_cost_loss

LOG2 = math.log(2.0)


def nls(x: float) -> float:
    """-log sigmoid(x) = log(1 + exp(-x))."""
    return math.log1p(math.exp(-x))


def test_zero_scores_count_the_pairs_that_order_each_head() -> None:
    # B = 2 pairs, H = 2 heads, every score 0, so every term is -log sig(0) = log 2.
    # Labels: safer answers flag nothing; unsafer answers flag head 0 in both pairs, head 1
    # in pair 1 only.
    zeros = torch.zeros(2, 2)
    safer = torch.tensor([[False, False], [False, False]])
    unsafer = torch.tensor([[True, False], [True, True]])
    out = category_cost_loss(zeros, zeros, safer, unsafer)
    # sign term per head: mean over the 4 answers of log 2 = log 2.
    # rank term: head 0 is ordered by 2 pairs -> 2 log 2 / B = log 2; head 1 by one -> log 2 / 2.
    # loss = mean(log 2 + log 2, log 2 + log 2 / 2) = 1.75 log 2
    assert out.loss.item() == pytest.approx(1.75 * LOG2, abs=1e-6)
    assert out.ranked_pairs.tolist() == [2.0, 1.0]
    assert out.ranked_right.tolist() == [0.0, 0.0]  # a tie is not right
    # score 0 counts as "not flagged": right on the 5 unflagged of the 8 (answer, head) cells
    assert out.sign_accuracy.tolist() == [0.5, 0.75]


def test_one_pair_one_head_with_scores() -> None:
    # safer c = -2 (not flagged), unsafer c = +1 (flagged):
    # sign = (-log sig(2) - log sig(1)) / 2; rank = -log sig(1 - (-2)) = -log sig(3)
    out = category_cost_loss(
        torch.tensor([[-2.0]]), torch.tensor([[1.0]]),
        torch.tensor([[False]]), torch.tensor([[True]]),
    )  # fmt: skip
    expected = (nls(2.0) + nls(1.0)) / 2 + nls(3.0)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.sign_accuracy.tolist() == [1.0]
    assert out.ranked_right.tolist() == [1.0] and out.ranked_pairs.tolist() == [1.0]
    # reg 0.1: + 0.1 * mean(4, 1) = 0.25
    reg = category_cost_loss(
        torch.tensor([[-2.0]]), torch.tensor([[1.0]]),
        torch.tensor([[False]]), torch.tensor([[True]]), reg=0.1,
    )  # fmt: skip
    assert reg.loss.item() == pytest.approx(expected + 0.25, abs=1e-6)


def test_the_category_order_may_be_opposite_to_the_overall_order() -> None:
    # The "safer" answer is flagged for violence (head 1), the "unsafer" one for crime (head 0):
    # the violence head must rise on the safer answer, whatever the overall order says.
    safer_heads = torch.zeros(1, 2, requires_grad=True)
    unsafer_heads = torch.zeros(1, 2, requires_grad=True)
    out = category_cost_loss(
        safer_heads, unsafer_heads, torch.tensor([[False, True]]), torch.tensor([[True, False]])
    )
    out.loss.backward()
    assert safer_heads.grad is not None and unsafer_heads.grad is not None
    assert safer_heads.grad[0, 1] < 0 < unsafer_heads.grad[0, 1]  # violence: safer up
    assert unsafer_heads.grad[0, 0] < 0 < safer_heads.grad[0, 0]  # crime: unsafer up


def test_agreeing_labels_add_no_ranking_term() -> None:
    # Both answers flagged for head 0: only the sign terms, -log sig(1) and -log sig(3).
    out = category_cost_loss(
        torch.tensor([[1.0]]), torch.tensor([[3.0]]),
        torch.tensor([[True]]), torch.tensor([[True]]),
    )  # fmt: skip
    assert out.loss.item() == pytest.approx((nls(1.0) + nls(3.0)) / 2, abs=1e-6)
    assert out.ranked_pairs.tolist() == [0.0]


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match=r"\(B, H\)"):
        category_cost_loss(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2).bool(), torch.zeros(2, 2).bool()
        )
