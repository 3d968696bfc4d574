"""What DPO reads from pair data: the answer's tokens (response mask) and, for SafeDPO,
helpfulness pairs carrying both safety labels (`labeled_preference`)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from beaver.data import LabeledPreferenceDataset, PreferenceDataset, RawSample
from beaver.data.loading import DataWarning


@pytest.mark.parametrize("fixture", ["tok_chat", "tok_pad_eos", "tok_ref"])
def test_response_mask_covers_the_answer_and_its_eos(fixture: str, request: Any) -> None:
    tok = request.getfixturevalue(fixture)
    samples = [RawSample(input="hello", answer="good thanks", other_answer="bad", better=True)]
    ds = PreferenceDataset(samples, tok)
    batch = ds.collate([ds[0]])
    for side, answer in (("better", ["good", "thanks"]), ("worse", ["bad"])):
        ids, mask = batch[f"{side}_input_ids"][0], batch[f"{side}_response_mask"][0]
        real = batch[f"{side}_attention_mask"][0].bool()
        answer_tokens = tok.convert_ids_to_tokens(ids[mask.bool()])
        assert answer_tokens == [*answer, tok.eos_token]  # the answer + EOS, nothing else
        assert not mask[~real].any()  # never on padding (pad may equal EOS)
        assert mask.dtype == torch.long


def test_truncated_pair_keeps_its_response_flags(tok_ref: Any) -> None:
    samples = [
        RawSample(input="hello", answer="i am fine thanks " * 4, other_answer="no", better=True)
    ]
    with pytest.warns(DataWarning):
        ds = PreferenceDataset(samples, tok_ref, max_length=14)
    item = ds[0]
    assert len(item["better_response_mask"]) == len(item["better_input_ids"]) == 14
    assert item["better_response_mask"][-1] == 1  # the cut answer is still scored


def test_labeled_preference_orders_better_first_with_both_labels(tok_chat: Any) -> None:
    samples = [
        # better = the other answer (unsafe); the first answer is the safe one
        RawSample(
            input="hello",
            answer="sorry",
            other_answer="bomb",
            better=False,
            safer=True,
            is_safe=True,
            is_other_safe=False,
        ),
        # contradictory `safer` label (safer is the unsafe one): irrelevant here, not refused
        RawSample(
            input="hello",
            answer="good",
            other_answer="bad",
            better=True,
            safer=False,
            is_safe=True,
            is_other_safe=False,
        ),
    ]
    ds = LabeledPreferenceDataset(samples, tok_chat)
    batch = ds.collate([ds[0], ds[1]])
    assert "bomb" in tok_chat.convert_ids_to_tokens(batch["better_input_ids"][0])
    assert batch["better_is_safe"].tolist() == [False, True]
    assert batch["worse_is_safe"].tolist() == [True, False]
    assert batch["better_is_safe"].dtype == torch.bool
    assert {"better_response_mask", "worse_response_mask"} <= set(batch)
