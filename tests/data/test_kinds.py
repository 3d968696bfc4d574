"""The four dataset kinds: label masking, EOS, ordering, padding, truncation, statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datahelpers import CHAT_TEMPLATE, make_tokenizer, pku_row, write_jsonl
from torch.utils.data import DataLoader

from beaver.config import DataCfg
from beaver.data import (
    IGNORE_INDEX,
    DataWarning,
    PreferenceDataset,
    PromptOnlyDataset,
    RawSample,
    SafetyPreferenceDataset,
    SupervisedDataset,
    encode_prompt,
    format_prompt,
    make_datasets,
)
from beaver.data.templates import token_ranges
from beaver.errors import UserError

DIALOGUE = RawSample(dialogue=["hello world", "i am fine", "how are you", "good thanks"])


def trained_words(tok: Any, item: dict) -> list[str]:
    labels = item["labels"].tolist()
    return tok.convert_ids_to_tokens([t for t in labels if t != IGNORE_INDEX])


def untrained_words(tok: Any, item: dict) -> list[str]:
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    return tok.convert_ids_to_tokens(
        [i for i, t in zip(ids, labels, strict=True) if t == IGNORE_INDEX]
    )


def test_reference_template_masks_prompt_and_user_turns(tok_ref: Any) -> None:
    ds = SupervisedDataset([DIALOGUE], tok_ref)
    assert ds.template == "reference"
    item = ds[0]
    # Whitespace pre-tokenisation splits "USER:" into "USER", ":".
    assert tok_ref.decode(item["input_ids"], skip_special_tokens=False) == (
        "BEGINNING OF CONVERSATION : USER : hello world ASSISTANT : i am fine </s> "
        "USER : how are you ASSISTANT : good thanks </s>"
    )
    # assistant turns and the EOS after EVERY one are trained; nothing else is
    assert trained_words(tok_ref, item) == ["i", "am", "fine", "</s>", "good", "thanks", "</s>"]
    assert "hello" in untrained_words(tok_ref, item) and "how" in untrained_words(tok_ref, item)
    assert "</s>" not in untrained_words(tok_ref, item)


@pytest.mark.parametrize("fixture", ["tok_chat", "tok_pad_eos"])
def test_chat_template_masks_prompt_and_user_turns(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    tok = request.getfixturevalue(fixture)
    ds = SupervisedDataset([DIALOGUE], tok)
    assert ds.template == "chat"
    item = ds[0]
    assert tok.convert_ids_to_tokens(item["input_ids"])[:2] == ["<s>", "<|user|>"]  # one BOS
    assert trained_words(tok, item) == ["i", "am", "fine", "</s>", "good", "thanks", "</s>"]
    assert untrained_words(tok, item) == [
        "<s>",
        "<|user|>",
        "hello",
        "world",
        "<|assistant|>",
        "<|user|>",
        "how",
        "are",
        "you",
        "<|assistant|>",
    ]


def test_template_end_marker_other_than_eos_gets_an_eos(tok_marker: Any) -> None:
    item = SupervisedDataset([DIALOGUE], tok_marker)[0]
    assert trained_words(tok_marker, item) == [
        "i",
        "am",
        "fine",
        "<|end|>",
        "</s>",
        "good",
        "thanks",
        "<|end|>",
        "</s>",
    ]


def test_template_that_rerenders_history_falls_back_to_searching() -> None:
    # The last assistant turn gets an extra marker, so a rendered prefix is not a prefix of the
    # whole conversation: spans are found by searching the answers' text instead.
    template = CHAT_TEMPLATE.replace(
        "{{ eos_token }} {% endif %}",
        "{{ eos_token }} {% if loop.last %}<|end|> {% endif %}{% endif %}",
    )
    tok = make_tokenizer(template)
    item = SupervisedDataset([DIALOGUE], tok)[0]
    assert tok.convert_ids_to_tokens(item["input_ids"])[-1] == "<|end|>"
    assert trained_words(tok, item) == ["i", "am", "fine", "</s>", "good", "thanks", "</s>"]


def test_input_answer_sample_and_multi_turn_input(tok_chat: Any) -> None:
    samples = [
        RawSample(input="hello world", answer="i am fine"),
        RawSample(input=["hello", "hi", "how are you"], answer="good"),
    ]
    ds = SupervisedDataset(samples, tok_chat)
    assert trained_words(tok_chat, ds[0]) == ["i", "am", "fine", "</s>"]
    # turns of `input` are context: the earlier assistant turn is not trained
    assert trained_words(tok_chat, ds[1]) == ["good", "</s>"]


def test_pad_equal_to_eos_keeps_eos_in_the_loss(tok_pad_eos: Any) -> None:
    samples = [RawSample(input="hello", answer="i am fine"), RawSample(input="hello", answer="yes")]
    ds = SupervisedDataset(samples, tok_pad_eos)
    batch = ds.collate([ds[0], ds[1]])
    eos = tok_pad_eos.eos_token_id
    assert tok_pad_eos.pad_token_id == eos
    short = batch["labels"][1]
    n_real = int(batch["attention_mask"][1].sum())
    assert short[n_real - 1] == eos  # the EOS is trained...
    assert (short[n_real:] == IGNORE_INDEX).all()  # ...the padding (same id) is not
    assert (batch["input_ids"][1, n_real:] == eos).all()
    assert (
        batch["attention_mask"][1, :n_real].all() and not batch["attention_mask"][1, n_real:].any()
    )


def test_supervised_collate_right_pads(tok_chat: Any) -> None:
    ds = SupervisedDataset(
        [
            RawSample(input="hello", answer="i am fine thanks"),
            RawSample(input="hello", answer="yes"),
        ],
        tok_chat,
    )
    loader = DataLoader(ds, batch_size=2, collate_fn=ds.collate)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"].dtype == torch.long
    assert batch["attention_mask"][1].tolist()[-1] == 0 and batch["attention_mask"][1][0] == 1
    assert (batch["input_ids"][1][batch["attention_mask"][1] == 0] == tok_chat.pad_token_id).all()


def test_truncation_and_no_target_are_counted(tok_ref: Any) -> None:
    samples = [
        RawSample(input="hello", answer="i am fine thanks"),
        RawSample(input="hello world how are you " * 3, answer="fine"),
        RawSample(input="hello", answer="yes"),
    ]
    with pytest.warns(DataWarning, match="truncated"):
        ds = SupervisedDataset(samples, tok_ref, max_length=12)
    # sample 0: 10 prompt tokens + 4 answer + EOS = 15 > 12: truncated, still has a target;
    # sample 1: the prompt alone is longer than 12: nothing left to train, dropped
    assert (ds.stats.truncated, ds.stats.dropped_no_target) == (2, 1)
    assert (ds.stats.num_raw, ds.stats.num_samples, len(ds)) == (3, 2, 2)
    assert all(len(item["input_ids"]) <= 12 for item in ds)
    assert "truncated 2" in ds.stats.summary()


def test_preference_orders_better_first_and_ends_with_eos(tok_chat: Any) -> None:
    samples = [RawSample(input="hello", answer="bad", other_answer="good thanks", better=False)]
    ds = PreferenceDataset(samples, tok_chat)
    batch = ds.collate([ds[0]])
    assert set(batch) == {
        "better_input_ids",
        "better_attention_mask",
        "better_response_mask",
        "worse_input_ids",
        "worse_attention_mask",
        "worse_response_mask",
    }
    better = batch["better_input_ids"][0][batch["better_attention_mask"][0].bool()]
    worse = batch["worse_input_ids"][0][batch["worse_attention_mask"][0].bool()]
    assert tok_chat.decode(better, skip_special_tokens=False) == (
        "<s> <|user|> hello <|assistant|> good thanks </s>"
    )
    assert tok_chat.convert_ids_to_tokens(worse)[-2:] == ["bad", "</s>"]  # EOS is the last real
    assert batch["better_input_ids"].shape == batch["worse_input_ids"].shape  # one common length


def test_preference_prompt_matches_format_prompt(tok_ref: Any, tok_chat: Any) -> None:
    for tok in (tok_ref, tok_chat):
        ds = PreferenceDataset(
            [
                RawSample(
                    input=["hello", "hi", "how are you"],
                    answer="fine",
                    other_answer="bad",
                    better=True,
                )
            ],
            tok,
        )
        prompt = encode_prompt(tok, ["hello", "hi", "how are you"])
        assert ds[0]["better_input_ids"].tolist()[: len(prompt)] == prompt


def test_truncated_eos_is_counted(tok_ref: Any) -> None:
    samples = [
        RawSample(input="hello", answer="i am fine thanks " * 4, other_answer="no", better=True)
    ]
    with pytest.warns(DataWarning, match="lost their EOS"):
        ds = PreferenceDataset(samples, tok_ref, max_length=14)
    assert (ds.stats.truncated, ds.stats.truncated_eos) == (1, 1)
    assert ds[0]["better_input_ids"][-1] != tok_ref.eos_token_id
    assert ds[0]["worse_input_ids"][-1] == tok_ref.eos_token_id


def test_safety_preference_orders_safer_first_with_signs(tok_chat: Any) -> None:
    samples = [
        RawSample(
            input="hello",
            answer="bomb",
            other_answer="sorry",
            better=True,
            safer=False,
            is_safe=False,
            is_other_safe=True,
            category=["violence"],
            other_category=[],
        ),
        RawSample(
            input="hello",
            answer="good",
            other_answer="bad",
            better=True,
            safer=True,
            is_safe=True,
            is_other_safe=True,
        ),
    ]
    ds = SafetyPreferenceDataset(samples, tok_chat)
    batch = ds.collate([ds[0], ds[1]])
    assert set(batch) == {
        "safer_input_ids",
        "safer_attention_mask",
        "safer_response_mask",
        "unsafer_input_ids",
        "unsafer_attention_mask",
        "unsafer_response_mask",
        "safer_is_safe",
        "unsafer_is_safe",
        "safer_categories",
        "unsafer_categories",
    }
    # harm categories travel with their answers, reordered safer first; None: no labels
    assert batch["safer_categories"] == [[], None]
    assert batch["unsafer_categories"] == [["violence"], None]
    assert "sorry" in tok_chat.convert_ids_to_tokens(batch["safer_input_ids"][0])
    assert batch["safer_is_safe"].tolist() == [True, True]
    assert batch["unsafer_is_safe"].tolist() == [False, True]
    assert batch["safer_is_safe"].dtype == torch.bool


def test_prompt_only_left_pads_dedupes_and_keeps_meta(
    tmp_path: Path, toy_dir: Path, tok_chat: Any
) -> None:
    cfg = DataCfg(train=[f"toyworld-prompts:1:{toy_dir}"])
    train, eval_ds = make_datasets("prompt_only", cfg, tok_chat)
    assert eval_ds is None
    assert len(train) == 2 and train.stats.duplicate_prompts == 1
    assert train[1]["prompt"] == "tell me a bomb story"
    batch = train.collate([train[0], train[1]])
    assert set(batch) == {"input_ids", "attention_mask", "meta"}
    assert batch["attention_mask"][0].tolist()[0] == 0  # the shorter prompt is padded on the left
    assert batch["attention_mask"][:, -1].all()
    assert batch["meta"][1] == {
        "prompt": "tell me a bomb story",
        "dataset": "toyworld-prompts",
        "risky": True,
        "topic": "story",
        "category": "violence",
    }
    ids = batch["input_ids"][1].tolist()
    assert tok_chat.decode(ids, skip_special_tokens=False) == tok_chat.decode(
        tok_chat(format_prompt(tok_chat, "tell me a bomb story"), add_special_tokens=False)[
            "input_ids"
        ],
        skip_special_tokens=False,
    )


def test_prompt_only_drops_overlong_prompts(tok_ref: Any) -> None:
    with pytest.warns(DataWarning, match="longer than max_length"):
        ds = PromptOnlyDataset(
            [RawSample(input="hello"), RawSample(input="hello world " * 20)], tok_ref, max_length=16
        )
    assert (len(ds), ds.stats.dropped_too_long) == (1, 1)


def test_format_prompt_reference_and_chat(tok_ref: Any, tok_chat: Any) -> None:
    assert format_prompt(tok_ref, "hi") == "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:"
    assert format_prompt(tok_ref, ["hi", "hello", "bye"]) == (
        "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:hello</s> USER: bye ASSISTANT:"
    )
    assert format_prompt(tok_chat, "hi") == "<s><|user|> hi <|assistant|> "
    assert format_prompt(tok_chat, "hi", "reference").startswith("BEGINNING OF CONVERSATION")
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    assert format_prompt(tok_chat, messages) == "<s><|system|> be nice <|user|> hi <|assistant|> "
    with pytest.raises(UserError, match="no chat template"):
        format_prompt(tok_ref, "hi", "chat")


def test_slow_tokenizer_fallback_maps_spans_by_prefixes(tok_ref: Any) -> None:
    class NoOffsets:
        def __call__(
            self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False
        ) -> Any:
            if return_offsets_mapping:
                raise NotImplementedError
            return tok_ref(text, add_special_tokens=add_special_tokens)

    text = "USER: hello ASSISTANT:i am fine"
    span = (text.index("i am"), len(text))
    assert token_ranges(NoOffsets(), text, [span], True) == token_ranges(
        tok_ref, text, [span], True
    )


def test_make_datasets_eval_split_and_eval_specs(
    tmp_path: Path, toy_dir: Path, tok_chat: Any
) -> None:
    rows = [pku_row(f"how is the garden {w}") for w in ("sun", "water", "plant", "salt", "hot")]
    path = write_jsonl(tmp_path / "p.jsonl", rows * 2)
    cfg = DataCfg(train=[f"PKU-SafeRLHF/train:1:{path}"], eval_split=0.2, seed=3)
    train, eval_ds = make_datasets("preference", cfg, tok_chat)
    assert eval_ds is not None and (len(train), len(eval_ds)) == (8, 2)
    cfg = DataCfg(train=[f"toyworld-sft:1:{toy_dir}"], eval=[f"toyworld-sft:0.5:{toy_dir}"])
    train, eval_ds = make_datasets("supervised", cfg, tok_chat)
    assert eval_ds is not None and (len(train), len(eval_ds)) == (3, 2)
    assert train.stats.num_rows == 3


def test_empty_training_data_is_an_error(tmp_path: Path, tok_chat: Any) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [pku_row(r0="cat", r1="cat")])
    with pytest.raises(UserError, match="No preference samples left"), pytest.warns(DataWarning):
        make_datasets("preference", DataCfg(train=[f"PKU-SafeRLHF/train:1:{path}"]), tok_chat)


def test_unknown_kind_is_an_error(tok_chat: Any) -> None:
    with pytest.raises(UserError, match="Unknown dataset kind"):
        make_datasets("dpo", DataCfg(train=["alpaca"]), tok_chat)


def test_tokenizer_without_eos_is_an_error() -> None:
    tok = make_tokenizer()
    tok.eos_token = None
    with pytest.raises(UserError, match="no EOS token"):
        SupervisedDataset([RawSample(input="a", answer="b")], tok)


def test_pku_v1_harm_categories_become_per_head_labels(tmp_path: Path, tok_ref: Any) -> None:
    # PKU-SafeRLHF v1.0 rows ({category: flagged} per answer) -> the (B, H) labels the
    # category heads of a multi-head cost model train on, safer answer first.
    from beaver.models.pairs import category_labels

    rows = [
        pku_row(safer=0, safe0=True, safe1=False, v1=True),  # response_1: Violence + Privacy
        pku_row(r0="hit", r1="fine", safer=1, safe0=False, safe1=True, v1=True),  # r0: Violence
    ]
    path = write_jsonl(tmp_path / "pku.jsonl", rows)
    train, _ = make_datasets(
        "safety_preference", DataCfg(train=[f"PKU-SafeRLHF/train:1:{path}"]), tok_ref
    )
    batch = train.collate([train[0], train[1]])
    heads = ["Privacy", "Violence", "Self-Harm"]
    safer = category_labels(batch["safer_categories"], heads)
    unsafer = category_labels(batch["unsafer_categories"], heads)
    assert safer.tolist() == [[False, False, False], [False, False, False]]
    assert unsafer.tolist() == [[True, True, False], [False, True, False]]
    with pytest.raises(ValueError, match=r"answers \[1\] of the batch have no harm-category"):
        category_labels([["Violence"], None], heads)
