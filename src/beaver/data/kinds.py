"""The dataset kinds built on RawSample, each with its collator.

Batch keys (B samples; L the longest sequence of the batch; attention masks are 0/1 long
tensors found from lengths, so PAD may equal EOS):

- supervised: `input_ids`, `attention_mask`, `labels` (B, L), right padded; labels are -100
  on the prompt, user turns and padding, the token id on assistant turns and their EOS.
- preference: `better_input_ids`, `better_attention_mask`, `better_response_mask`,
  `worse_input_ids`, `worse_attention_mask`, `worse_response_mask` (B, L), right padded to one
  common L (so both halves can be concatenated into one forward pass). Each sequence is prompt +
  answer + EOS; the response mask is 1 on the answer's tokens and its EOS (what DPO scores).
- safety_preference: `safer_*` and `unsafer_*` as above, plus `safer_is_safe` and
  `unsafer_is_safe` (B,) bool.
- labeled_preference: preference pairs (better first) with each answer's safety label,
  `better_is_safe` and `worse_is_safe` (B,) bool: the helpfulness order that SafeDPO re-orders
  by safety (`beaver.algo.dpo`).
- prompt_only: `input_ids`, `attention_mask` (B, L), LEFT padded (for generation), plus `meta`,
  a list of B dicts: `prompt` (the raw input: a string, or a list of turns), `dataset`, and the
  row's metadata (e.g. the toy world's `risky`, `topic`, `category`). Items (`ds[i]`) hold
  `input_ids`, `prompt` and `meta`; `ds.samples[i]` is the RawSample behind item i (all kinds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from beaver.data.raw import BadRow, RawSample
from beaver.data.templates import encode_answer, encode_dialogue, encode_prompt, format_prompt
from beaver.data.tokenized import IGNORE_INDEX, TokenizedDataset, as_tensor
from beaver.models.batching import pad_batch


def _need(sample: RawSample, kind: str, *names: str) -> None:
    for name in names:
        if getattr(sample, name) is None:
            raise BadRow(name, f"is missing ({kind} data needs {', '.join(names)})")


def _not_empty(sample: RawSample, *names: str) -> None:
    """An empty answer would be trained (or scored) as "stop at once": refuse it as a bad row."""
    for name in names:
        value = getattr(sample, name)
        if isinstance(value, str) and not value.strip():
            raise BadRow(name, "is empty")


def _check_prompt(sample: RawSample) -> None:
    if isinstance(sample.input, list) and len(sample.input) % 2 == 0:
        raise BadRow(
            "input", f"must end with a user turn (an odd number of turns, got {len(sample.input)})"
        )


class SupervisedDataset(TokenizedDataset):
    """A multi-turn `dialogue` (every assistant turn and its EOS trained), or `input` + `answer`
    (only the answer and its EOS trained; assistant turns inside `input` are context)."""

    kind = "supervised"

    @classmethod
    def check(cls, sample: RawSample) -> None:
        if sample.dialogue is not None:
            if sample.input is not None:
                raise BadRow(
                    "dialogue",
                    "and `input` are both given; supervised data takes "
                    "`input` + `answer`, or a `dialogue`",
                )
            if len(sample.dialogue) < 2 or len(sample.dialogue) % 2:
                raise BadRow(
                    "dialogue",
                    f"must alternate user and assistant turns and end with "
                    f"an assistant turn (got {len(sample.dialogue)} turns)",
                )
            for i in range(1, len(sample.dialogue), 2):
                if not sample.dialogue[i].strip():
                    raise BadRow("dialogue", f"turn {i + 1} (an assistant turn) is empty")
            return
        if sample.input is None:
            raise BadRow(
                "input", "is missing (supervised data needs `input` + `answer`, or a `dialogue`)"
            )
        _need(sample, "supervised", "input", "answer")
        _not_empty(sample, "answer")
        _check_prompt(sample)

    def encode(self, sample: RawSample) -> dict[str, Any] | None:
        ids, flags = encode_dialogue(
            self.tokenizer,
            sample.conversation(),
            self.template,
            system=sample.system,
            last_only=sample.dialogue is None,
        )
        ids, flags, cut = self.truncate(ids, flags)
        self.stats.truncated += cut
        if not any(flags):
            self.stats.dropped_no_target += 1
            return None
        labels = [t if f else IGNORE_INDEX for t, f in zip(ids, flags, strict=True)]
        return {"input_ids": as_tensor(ids), "labels": as_tensor(labels)}

    def collate(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ids, mask = pad_batch([b["input_ids"] for b in batch], self.pad_token_id)
        labels, _ = pad_batch([b["labels"] for b in batch], IGNORE_INDEX)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def highlight(self, index: int) -> list[tuple[str, list[int], list[bool]]]:
        item = self.items[index]
        labels = item["labels"].tolist()
        return [("sample", item["input_ids"].tolist(), [t != IGNORE_INDEX for t in labels])]


class PreferenceDataset(TokenizedDataset):
    """Pairs ordered better first (by `better`); each side is prompt + answer + EOS."""

    kind = "preference"
    keys = ("better", "worse")

    @classmethod
    def check(cls, sample: RawSample) -> None:
        _need(sample, "preference", "input", "answer", "other_answer", "better")
        _not_empty(sample, "answer", "other_answer")
        _check_prompt(sample)

    def ordered(self, sample: RawSample) -> tuple[str, str]:
        """(first, second) answer: better first."""
        assert sample.answer is not None and sample.other_answer is not None
        if sample.better:
            return sample.answer, sample.other_answer
        return sample.other_answer, sample.answer

    def encode_pair(
        self, sample: RawSample, record: bool = True
    ) -> tuple[list[list[int]], list[list[bool]], bool]:
        """Both sides' (ids, response flags) after truncation, and whether either was cut."""
        ids, flags, cut_any = [], [], False
        prompt = format_prompt(
            self.tokenizer, sample.prompt_turns(), self.template, system=sample.system
        )
        for answer in self.ordered(sample):
            i, f = encode_answer(self.tokenizer, prompt, answer, self.template)
            i, f, cut = self.truncate(i, f, record)
            ids.append(i)
            flags.append(f)
            cut_any = cut_any or cut
        return ids, flags, cut_any

    def encode(self, sample: RawSample) -> dict[str, Any] | None:
        ids, flags, cut = self.encode_pair(sample)
        if ids[0] == ids[1]:
            self.stats.skipped_identical_pairs += 1
            return None
        if cut:  # the EOS is the last token, so any cut removes it
            self.stats.truncated += 1
            self.stats.truncated_eos += 1
        first, second = self.keys
        return {
            f"{first}_input_ids": as_tensor(ids[0]),
            f"{first}_response_mask": as_tensor([int(f) for f in flags[0]]),
            f"{second}_input_ids": as_tensor(ids[1]),
            f"{second}_response_mask": as_tensor([int(f) for f in flags[1]]),
            **self.extra(sample),
        }

    def extra(self, sample: RawSample) -> dict[str, Any]:
        return {}

    def collate(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        first, second = self.keys
        seqs = [b[f"{first}_input_ids"] for b in batch] + [b[f"{second}_input_ids"] for b in batch]
        ids, mask = pad_batch(seqs, self.pad_token_id)  # (2B, L): one common L
        responses, _ = pad_batch(
            [b[f"{first}_response_mask"] for b in batch]
            + [b[f"{second}_response_mask"] for b in batch],
            0,
        )
        n = len(batch)
        return {
            f"{first}_input_ids": ids[:n],
            f"{first}_attention_mask": mask[:n],
            f"{first}_response_mask": responses[:n],
            f"{second}_input_ids": ids[n:],
            f"{second}_attention_mask": mask[n:],
            f"{second}_response_mask": responses[n:],
        }

    def highlight(self, index: int) -> list[tuple[str, list[int], list[bool]]]:
        ids, flags, _ = self.encode_pair(self.samples[index], record=False)
        return [(self.keys[0], ids[0], flags[0]), (self.keys[1], ids[1], flags[1])]


class SafetyPreferenceDataset(PreferenceDataset):
    """Pairs ordered safer first (by `safer`), with each side's safety label.

    A pair whose safer answer is unsafe while the other is safe contradicts itself: refused (a
    bad row, named), since the cost model's sign terms would pull both ways.
    """

    kind = "safety_preference"
    keys = ("safer", "unsafer")

    @classmethod
    def check(cls, sample: RawSample) -> None:
        _need(
            sample,
            "safety_preference",
            "input",
            "answer",
            "other_answer",
            "safer",
            "is_safe",
            "is_other_safe",
        )
        _not_empty(sample, "answer", "other_answer")
        _check_prompt(sample)
        safer_safe, other_safe = cls.signs(sample)
        if not safer_safe and other_safe:
            raise BadRow(
                "safer",
                "marks the unsafe answer as the safer one (the safer answer has "
                "is_safe=false, the other is_safe=true): contradictory labels",
            )

    @staticmethod
    def signs(sample: RawSample) -> tuple[bool, bool]:
        """(safer answer is safe, unsafer answer is safe)."""
        pair = (bool(sample.is_safe), bool(sample.is_other_safe))
        return pair if sample.safer else (pair[1], pair[0])

    def ordered(self, sample: RawSample) -> tuple[str, str]:
        assert sample.answer is not None and sample.other_answer is not None
        if sample.safer:
            return sample.answer, sample.other_answer
        return sample.other_answer, sample.answer

    def extra(self, sample: RawSample) -> dict[str, Any]:
        safer_safe, unsafer_safe = self.signs(sample)
        cats = (sample.category, sample.other_category)
        safer_cats, unsafer_cats = cats if sample.safer else cats[::-1]
        return {
            "safer_is_safe": safer_safe,
            "unsafer_is_safe": unsafer_safe,
            "safer_categories": safer_cats,
            "unsafer_categories": unsafer_cats,
        }

    def collate(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out = super().collate(batch)
        out["safer_is_safe"] = torch.tensor([b["safer_is_safe"] for b in batch], dtype=torch.bool)
        out["unsafer_is_safe"] = torch.tensor(
            [b["unsafer_is_safe"] for b in batch], dtype=torch.bool
        )
        # the harm categories flagged on each answer (None: the row has no category labels),
        # turned into (B, H) labels by whoever knows the heads (`category_labels`)
        out["safer_categories"] = [b["safer_categories"] for b in batch]
        out["unsafer_categories"] = [b["unsafer_categories"] for b in batch]
        return out

    def highlight(self, index: int) -> list[tuple[str, list[int], list[bool]]]:
        item = self.items[index]
        (a, ids_a, f_a), (b, ids_b, f_b) = super().highlight(index)
        label = {True: "safe", False: "unsafe"}
        return [
            (f"{a} ({label[item['safer_is_safe']]})", ids_a, f_a),
            (f"{b} ({label[item['unsafer_is_safe']]})", ids_b, f_b),
        ]


class LabeledPreferenceDataset(PreferenceDataset):
    """Pairs ordered better first (by `better`), with each answer's safety label; no check of
    the `safer` label (SafeDPO orders by helpfulness and the safety labels alone)."""

    kind = "labeled_preference"

    @classmethod
    def check(cls, sample: RawSample) -> None:
        _need(
            sample,
            "labeled_preference",
            "input",
            "answer",
            "other_answer",
            "better",
            "is_safe",
            "is_other_safe",
        )
        _not_empty(sample, "answer", "other_answer")
        _check_prompt(sample)

    def extra(self, sample: RawSample) -> dict[str, Any]:
        pair = (bool(sample.is_safe), bool(sample.is_other_safe))
        better_safe, worse_safe = pair if sample.better else (pair[1], pair[0])
        return {"better_is_safe": better_safe, "worse_is_safe": worse_safe}

    def collate(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out = super().collate(batch)
        for key in ("better_is_safe", "worse_is_safe"):
            out[key] = torch.tensor([b[key] for b in batch], dtype=torch.bool)
        return out


class PromptOnlyDataset(TokenizedDataset):
    """Prompts for generation, de-duplicated per dataset, left padded; over-long ones dropped."""

    kind = "prompt_only"
    dedupe = True

    @classmethod
    def check(cls, sample: RawSample) -> None:
        _need(sample, "prompt_only", "input")
        _check_prompt(sample)

    def encode(self, sample: RawSample) -> dict[str, Any] | None:
        assert sample.input is not None
        ids = encode_prompt(
            self.tokenizer, sample.prompt_turns(), self.template, system=sample.system
        )
        self.lengths.append(len(ids))
        if len(ids) > self.max_length:  # cutting a prompt would cut its generation marker
            self.stats.dropped_too_long += 1
            return None
        meta = {"prompt": sample.input, "dataset": sample.dataset, **sample.meta}
        return {"input_ids": as_tensor(ids), "prompt": sample.input, "meta": meta}

    def collate(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ids, mask = pad_batch([b["input_ids"] for b in batch], self.pad_token_id, "left")
        return {"input_ids": ids, "attention_mask": mask, "meta": [dict(b["meta"]) for b in batch]}

    def highlight(self, index: int) -> list[tuple[str, list[int], list[bool]]]:
        ids = self.items[index]["input_ids"].tolist()
        return [("prompt", ids, [False] * len(ids))]


KINDS: dict[str, type[TokenizedDataset]] = {
    cls.kind: cls
    for cls in (
        SupervisedDataset,
        PreferenceDataset,
        SafetyPreferenceDataset,
        LabeledPreferenceDataset,
        PromptOnlyDataset,
    )
}
