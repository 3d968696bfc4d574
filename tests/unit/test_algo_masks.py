"""Masks: masked mean, positions, end tokens and the response mask (left/right padding, pad == eos)."""

import torch

from beaver.algo import (
    gather_end_scores,
    has_eos,
    last_token_index,
    masked_mean,
    position_ids_from_attention_mask,
    response_mask,
)


def test_masked_mean_is_per_sequence_then_batch() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # row means: (1 + 2) / 2 = 1.5 and 4 / 1 = 4; batch mean (1.5 + 4) / 2 = 2.75
    # (a flat token mean would give (1 + 2 + 4) / 3 = 2.333)
    assert torch.allclose(masked_mean(x, mask), torch.tensor(2.75))
    assert torch.allclose(masked_mean(x, mask, dim=-1), torch.tensor([1.5, 4.0]))


def test_masked_mean_empty_rows_do_not_give_nan() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # second row empty: left out, so the result is row 1's mean 1.5
    assert torch.allclose(masked_mean(x, torch.tensor([[1, 1, 0], [0, 0, 0]])), torch.tensor(1.5))
    # all empty: 0, not NaN
    assert masked_mean(x, torch.zeros(2, 3)).item() == 0.0
    assert torch.equal(masked_mean(x, torch.zeros(2, 3), dim=-1), torch.zeros(2))


def test_masked_mean_1d() -> None:
    # (B,) values: sum(x * m) / sum(m) = (1 + 3) / 2 = 2
    assert masked_mean(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 0, 1])).item() == 2.0


def test_masked_mean_gradient_flows_only_through_mask() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    masked_mean(x, torch.tensor([[1, 1, 0]])).backward()
    # d/dx of (x0 + x1) / 2 = [0.5, 0.5, 0]
    assert x.grad is not None
    assert torch.allclose(x.grad, torch.tensor([[0.5, 0.5, 0.0]]))


def test_position_ids_ignore_left_padding() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    expected = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 2, 2]])
    assert torch.equal(position_ids_from_attention_mask(mask), expected)


def test_last_token_index_left_and_right_padding() -> None:
    mask = torch.tensor(
        [
            [1, 1, 1, 0, 0],  # right padded: last real token at 2
            [0, 0, 1, 1, 1],  # left padded: 4
            [0, 1, 1, 0, 0],  # both: 2
            [1, 1, 1, 1, 1],  # none: 4
        ]
    )
    assert torch.equal(last_token_index(mask), torch.tensor([2, 4, 2, 4]))


def test_gather_end_scores_reads_last_real_token() -> None:
    scores = torch.arange(10.0).reshape(2, 5)  # row 0: 0..4, row 1: 5..9
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    # row 0 ends at column 2 -> 2.0; row 1 ends at column 4 -> 9.0
    assert torch.equal(gather_end_scores(scores, mask), torch.tensor([2.0, 9.0]))


def test_response_mask_up_to_first_eos_with_pad() -> None:
    eos, pad = 2, 0
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 2]])
    assert torch.equal(
        response_mask(ids, eos, pad), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    )


def test_response_mask_pad_equals_eos() -> None:
    eos = pad = 2
    ids = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 2]])
    # the first EOS counts, the padding EOS tokens after it do not
    assert torch.equal(response_mask(ids, eos, pad), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]))
    assert torch.equal(has_eos(ids, eos), torch.tensor([True, True]))


def test_response_mask_no_eos_and_empty_response() -> None:
    eos = 2
    ids = torch.tensor([[5, 6, 7], [2, 2, 2]])
    # no EOS: all 3 tokens count; empty response (EOS first): the EOS token alone is kept
    assert torch.equal(response_mask(ids, eos), torch.tensor([[1, 1, 1], [1, 0, 0]]))
    assert torch.equal(has_eos(ids, eos), torch.tensor([False, True]))


def test_response_mask_tokens_after_eos_ignored_whatever_they_are() -> None:
    ids = torch.tensor([[5, 2, 9, 2, 9]])
    assert torch.equal(response_mask(ids, 2), torch.tensor([[1, 1, 0, 0, 0]]))


def test_response_mask_several_eos_ids() -> None:
    ids = torch.tensor([[5, 9, 7, 0], [5, 6, 2, 0]])
    mask = response_mask(ids, [2, 9], pad_token_id=0)
    assert torch.equal(mask, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]))
    assert torch.equal(has_eos(ids, [2, 9]), torch.tensor([True, True]))


def test_response_mask_pad_before_eos_ends_response_exclusive() -> None:
    # pad (0) != eos (2): generation stopped without EOS, padding after it does not count
    ids = torch.tensor([[5, 6, 0, 0]])
    assert torch.equal(response_mask(ids, 2, pad_token_id=0), torch.tensor([[1, 1, 0, 0]]))
    assert not bool(has_eos(ids, 2)[0])
