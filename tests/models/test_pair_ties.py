"""A tie is not a right answer: a constant score model has pairwise accuracy 0, not 100%,
in the evaluation metrics and in the training losses' accuracies alike; a cost of exactly 0
is predicted safe."""

from __future__ import annotations

import pytest
import torch

from beaver.algo import cost_loss, reward_loss_sequence
from beaver.models.pairs import PairScores, pair_metrics


def test_ties_count_as_wrong_in_pair_metrics() -> None:
    same = torch.zeros(4)
    assert pair_metrics(PairScores(same, same.clone()), "reward")["accuracy"] == 0.0
    safe = torch.tensor([1, 1, 0, 1])
    cost = pair_metrics(PairScores(same, same.clone(), safe, torch.zeros(4)), "cost")
    assert cost["accuracy"] == 0.0 and cost["accuracy_mixed_safety"] == 0.0
    # a: safe x3 + one unsafe, b: all unsafe; all costs 0 = predicted safe: right on the 3 safe
    assert cost["sign_accuracy"] == 3 / 8
    # one pair right, one tied, one wrong: 1/3
    mixed = PairScores(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 1.0]))
    assert pair_metrics(mixed, "reward")["accuracy"] == pytest.approx(1 / 3)
    assert pair_metrics(mixed, "cost")["accuracy"] == pytest.approx(
        1 / 3
    )  # b > a on the last pair only


def test_ties_count_as_wrong_in_the_losses_accuracies() -> None:
    tied = torch.ones(2)
    assert reward_loss_sequence(tied, tied.clone()).accuracy.item() == 0.0
    out = cost_loss(
        tied, tied.clone(),
        safer_is_safe=torch.tensor([True, True]), unsafer_is_safe=torch.tensor([False, False]),
    )  # fmt: skip
    assert out.accuracy.item() == 0.0
