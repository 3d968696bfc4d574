"""The Rollout container: derived fields, sub-batches and device moves."""

import torch

from beaver.algo import Rollout


def _rollout() -> Rollout:
    return Rollout(
        prompt_ids=torch.tensor([[0, 5, 6], [7, 8, 9]]),
        prompt_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]),
        response_ids=torch.tensor([[3, 2, 0], [4, 4, 4]]),
        response_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]),
        has_eos=torch.tensor([True, False]),
        logp=torch.zeros(2, 3),
        ref_logp=torch.zeros(2, 3),
        reward=torch.tensor([1.0, 2.0]),
        values=torch.zeros(2, 3),
    )


def test_rollout_derived_fields() -> None:
    ro = _rollout()
    assert ro.batch_size == 2
    assert torch.equal(ro.input_ids[0], torch.tensor([0, 5, 6, 3, 2, 0]))
    assert torch.equal(ro.attention_mask[0], torch.tensor([0, 1, 1, 1, 1, 0]))
    assert torch.equal(ro.response_length, torch.tensor([2, 3]))
    assert ro.costs is None and ro.cost_values is None


def test_rollout_select_and_to() -> None:
    ro = _rollout()
    sub = ro.select(torch.tensor([1]))
    assert sub.batch_size == 1 and sub.reward.tolist() == [2.0] and sub.costs is None
    moved = ro.to("cpu")
    assert torch.equal(moved.values, ro.values)
