"""Reward- and cost-model losses with worked numbers."""

import math

import pytest
import torch

from beaver.algo import cost_loss, divergence_span, reward_loss_sequence, reward_loss_token


def nls(x: float) -> float:
    """-log sigmoid(x) = log(1 + exp(-x))."""
    return math.log1p(math.exp(-x))


def test_reward_loss_sequence_one_pair() -> None:
    # -log sig(1 - 0) = log(1 + e^-1) = 0.3132617
    out = reward_loss_sequence(torch.tensor([1.0]), torch.tensor([0.0]))
    assert out.loss.item() == pytest.approx(0.3132617, abs=1e-6)
    assert out.accuracy.item() == 1.0
    # reg 0.1: + 0.1 * (1^2 + 0^2) / 2 = 0.05 -> 0.3632617
    out = reward_loss_sequence(torch.tensor([1.0]), torch.tensor([0.0]), reg=0.1)
    assert out.loss.item() == pytest.approx(0.3632617, abs=1e-6)


def test_reward_loss_sequence_batch_mean_and_accuracy() -> None:
    # pairs (1, 0) and (0, 2): 0.3132617 and log(1 + e^2) = 2.1269280; mean 1.2200948
    out = reward_loss_sequence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert out.loss.item() == pytest.approx(1.2200948, abs=1e-6)
    assert out.accuracy.item() == 0.5


def test_reward_loss_sequence_gradient_direction() -> None:
    better = torch.tensor([0.0], requires_grad=True)
    worse = torch.tensor([0.0], requires_grad=True)
    reward_loss_sequence(better, worse).loss.backward()
    # d/dr_w of -log sig(r_w - r_l) at 0 = -(1 - sig(0)) = -0.5: raising r_w lowers the loss
    assert better.grad is not None and worse.grad is not None
    assert better.grad.item() == pytest.approx(-0.5)
    assert worse.grad.item() == pytest.approx(0.5)


def test_divergence_span() -> None:
    better_ids = torch.tensor([[7, 8, 9, 2, 0]])
    worse_ids = torch.tensor([[7, 8, 5, 6, 2]])
    better_mask = torch.tensor([[1, 1, 1, 1, 0]])  # ends at column 3
    worse_mask = torch.tensor([[1, 1, 1, 1, 1]])  # ends at column 4
    # first difference at column 2, later end at column 4 -> span 2..4
    span = divergence_span(better_ids, worse_ids, better_mask, worse_mask)
    assert torch.equal(span, torch.tensor([[0, 0, 1, 1, 1]]))


def test_divergence_span_pad_equals_eos_prefix() -> None:
    # pad == eos == 2: worse is "7 8 2 2" with the last 2 real; better is "7 8 2" then padding.
    # ids are equal everywhere; they diverge where only one is a real token: column 3
    ids = torch.tensor([[7, 8, 2, 2]])
    span = divergence_span(ids, ids, torch.tensor([[1, 1, 1, 0]]), torch.tensor([[1, 1, 1, 1]]))
    assert torch.equal(span, torch.tensor([[0, 0, 0, 1]]))


def test_divergence_span_rejects_identical_and_left_padded() -> None:
    ids = torch.tensor([[7, 8, 2], [7, 8, 2]])
    mask = torch.ones(2, 3, dtype=torch.long)
    other = torch.tensor([[7, 9, 2], [7, 8, 2]])
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        divergence_span(other, ids, mask, mask)
    with pytest.raises(ValueError, match="right-padded"):
        divergence_span(other, ids, torch.tensor([[0, 1, 1], [1, 1, 1]]), mask)


def test_reward_loss_token_by_hand() -> None:
    better_ids = torch.tensor([[7, 8, 9, 2, 0]])
    worse_ids = torch.tensor([[7, 8, 5, 6, 2]])
    better_mask = torch.tensor([[1, 1, 1, 1, 0]])
    worse_mask = torch.tensor([[1, 1, 1, 1, 1]])
    better_scores = torch.tensor([[0.0, 0.0, 1.0, 2.0, 3.0]])
    worse_scores = torch.tensor([[0.0, 0.0, 0.0, 2.0, 1.0]])
    # span 2..4, differences 1, 0, 2:
    # (log(1 + e^-1) + log 2 + log(1 + e^-2)) / 3 = (0.3132617 + 0.6931472 + 0.1269280) / 3 = 0.3777790
    out = reward_loss_token(
        better_scores, worse_scores, better_ids, worse_ids, better_mask, worse_mask
    )
    assert out.loss.item() == pytest.approx(0.3777790, abs=1e-6)
    # end scores: better at column 3 = 2.0, worse at column 4 = 1.0 -> correct
    assert out.accuracy.item() == 1.0
    # reg 0.1 adds 0.1 * mean over the span of (s_w^2 + s_l^2) / 2 = 0.1 * ((1+0)/2 + (4+4)/2 + (9+1)/2) / 3
    #   = 0.1 * (0.5 + 4 + 5) / 3 = 0.3166667
    out = reward_loss_token(
        better_scores, worse_scores, better_ids, worse_ids, better_mask, worse_mask, reg=0.1
    )
    assert out.loss.item() == pytest.approx(0.3777790 + 0.3166667, abs=1e-6)


def test_reward_loss_token_averages_per_pair() -> None:
    # pair 0: span of 1 token with difference 0 -> log 2; pair 1: span of 2 tokens, differences 1, 1
    # -> log(1 + e^-1) = 0.3132617. Per-pair mean, then batch mean: (0.6931472 + 0.3132617) / 2
    ids_b = torch.tensor([[1, 2, 3], [1, 4, 5]])
    ids_w = torch.tensor([[1, 2, 9], [1, 6, 7]])
    mask = torch.ones(2, 3, dtype=torch.long)
    sb = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    sw = torch.zeros(2, 3)
    out = reward_loss_token(sb, sw, ids_b, ids_w, mask, mask)
    assert out.loss.item() == pytest.approx((math.log(2) + nls(1.0)) / 2, abs=1e-6)


def test_cost_loss_worked_example() -> None:
    # safer: c_s = -1, safe (y_s = -1); unsafer: c_u = 2, unsafe (y_u = +1)
    # -log sig(2 - (-1)) - log sig(-1 * -1) - log sig(1 * 2)
    #   = log(1+e^-3) + log(1+e^-1) + log(1+e^-2) = 0.0485874 + 0.3132617 + 0.1269280 = 0.4887771
    out = cost_loss(
        torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([True]), torch.tensor([False])
    )
    assert out.loss.item() == pytest.approx(0.4887771, abs=1e-6)
    assert out.accuracy.item() == 1.0 and out.sign_accuracy.item() == 1.0
    # reg 0.1: mean(c^2) over both answers = (1 + 4) / 2 = 2.5 -> + 0.25
    out = cost_loss(
        torch.tensor([-1.0]),
        torch.tensor([2.0]),
        torch.tensor([True]),
        torch.tensor([False]),
        reg=0.1,
    )
    assert out.loss.item() == pytest.approx(0.7387771, abs=1e-6)


def test_cost_loss_wrong_order_and_wrong_signs() -> None:
    # pair 0 as above (0.4887771, all right).
    # pair 1: safer c_s = 0.5 labelled safe, unsafer c_u = -1 labelled unsafe: everything wrong
    #   log(1+e^1.5) + log(1+e^0.5) + log(1+e^1) = 1.7014132 + 0.9740770 + 1.3132617 = 3.9887519
    # mean = (0.4887771 + 3.9887519) / 2 = 2.2387645
    # accuracy: pair 0 c_u > c_s, pair 1 not -> 0.5
    # sign accuracy over 4 answers: pair 0 both right; 0.5 > 0 but safe, -1 <= 0 but unsafe -> 2/4
    out = cost_loss(
        torch.tensor([-1.0, 0.5]),
        torch.tensor([2.0, -1.0]),
        torch.tensor([True, True]),
        torch.tensor([False, False]),
    )
    assert out.loss.item() == pytest.approx(2.2387645, abs=1e-6)
    assert out.accuracy.item() == 0.5
    assert out.sign_accuracy.item() == 0.5


def test_cost_loss_both_safe_or_both_unsafe_pairs() -> None:
    # both safe (y = -1 for both), c_s = -2, c_u = -1: order -log sig(-1 - -2) = -log sig(1);
    # signs -log sig(-1 * -2) = -log sig(2) and -log sig(-1 * -1) = -log sig(1)
    out = cost_loss(
        torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([True]), torch.tensor([True])
    )
    assert out.loss.item() == pytest.approx(nls(1.0) + nls(2.0) + nls(1.0), abs=1e-6)
    # both unsafe: c_s = 1, c_u = 3: order -log sig(2); signs -log sig(1), -log sig(3)
    out = cost_loss(
        torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([False]), torch.tensor([False])
    )
    assert out.loss.item() == pytest.approx(nls(2.0) + nls(1.0) + nls(3.0), abs=1e-6)


def test_cost_loss_rejects_flipped_labels_naming_the_row() -> None:
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        cost_loss(
            torch.zeros(2),
            torch.zeros(2),
            torch.tensor([True, False]),  # row 1: "safer" answer unsafe ...
            torch.tensor([False, True]),  # ... while the other is safe
        )
