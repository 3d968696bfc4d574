"""Anthropic's Helpful and Harmless (hh-rlhf) conversations, as dialogues or preference pairs.

Two row formats are read, row by row:
- Anthropic's raw format (`Anthropic/hh-rlhf`): `chosen` and `rejected` are whole transcripts,
  `\\n\\nHuman: ...\\n\\nAssistant: ...`, identical up to the last assistant turn;
- the processed format (`PKU-Alignment/processed-hh-rlhf`, the default source, as in the
  reference): `context` is a list of `{role, text}` turns, `chosen` / `rejected` one
  `{role, text}` answer each.
Names and aliases follow the reference (`hh-rlhf-helpful-preference/train`, `hh-dialogue`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from beaver.data.conversations import assistant_text, parse_messages, parse_transcript, split_pair
from beaver.data.fields import get
from beaver.data.raw import RawDataset, RawSample


def hh_pair(row: Mapping[str, Any]) -> tuple[list[str], str, str]:
    """(prompt turns, chosen answer, rejected answer) from a raw or processed hh-rlhf row."""
    if "context" in row:
        _, context, last = parse_messages("context", get(row, "context"))
        if last != "user":
            context.append("")  # an empty user turn keeps the alternation (rare in the data)
        return (
            context,
            assistant_text("chosen", get(row, "chosen")),
            assistant_text("rejected", get(row, "rejected")),
        )
    chosen = parse_transcript("chosen", get(row, "chosen"))
    rejected = parse_transcript("rejected", get(row, "rejected"))
    return split_pair("chosen", chosen, "rejected", rejected)


class HhRLHFDialogue(RawDataset):
    """The chosen conversations, for supervised training."""

    NAME = "hh-rlhf-dialogue"
    ALIASES: ClassVar[tuple[str, ...]] = ("hh-dialogue",)
    PATH = "PKU-Alignment/processed-hh-rlhf"

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        prompt, chosen, _ = hh_pair(row)
        return RawSample(dialogue=[*prompt, chosen])


class HhRLHFHarmlessDialogue(HhRLHFDialogue):
    NAME = "hh-rlhf-harmless-dialogue"
    ALIASES = (
        "hh-rlhf-dialogue/harmless-base",
        "hh-harmless-dialogue",
        "hh-dialogue/harmless-base",
    )
    DATA_DIR = "harmless-base"


class HhRLHFHelpfulDialogue(HhRLHFDialogue):
    NAME = "hh-rlhf-helpful-dialogue"
    ALIASES = ("hh-rlhf-dialogue/helpful-base", "hh-helpful-dialogue", "hh-dialogue/helpful-base")
    DATA_DIR = "helpful-base"


class HhRLHFPreference(RawDataset):
    """Pairs: `answer` is the chosen (better) one. No safety labels."""

    NAME = "hh-rlhf-preference/train"
    ALIASES: ClassVar[tuple[str, ...]] = (
        "hh-rlhf-preference",
        "hh-preference",
        "hh-preference/train",
    )
    PATH = "PKU-Alignment/processed-hh-rlhf"

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        prompt, chosen, rejected = hh_pair(row)
        return RawSample(input=prompt, answer=chosen, other_answer=rejected, better=True)


class HhRLHFPreferenceTest(HhRLHFPreference):
    NAME = "hh-rlhf-preference/test"
    ALIASES = ("hh-preference/test",)
    SPLIT = "test"


class HhRLHFHarmlessPreferenceTrain(HhRLHFPreference):
    NAME = "hh-rlhf-harmless-preference/train"
    ALIASES = (
        "hh-rlhf-preference/harmless-base/train",
        "hh-harmless-preference/train",
        "hh-preference/harmless-base/train",
    )
    DATA_DIR = "harmless-base"


class HhRLHFHarmlessPreferenceTest(HhRLHFPreference):
    NAME = "hh-rlhf-harmless-preference/test"
    ALIASES = (
        "hh-rlhf-preference/harmless-base/test",
        "hh-harmless-preference/test",
        "hh-preference/harmless-base/test",
    )
    DATA_DIR = "harmless-base"
    SPLIT = "test"


class HhRLHFHelpfulPreferenceTrain(HhRLHFPreference):
    NAME = "hh-rlhf-helpful-preference/train"
    ALIASES = (
        "hh-rlhf-preference/helpful-base/train",
        "hh-helpful-preference/train",
        "hh-preference/helpful-base/train",
    )
    DATA_DIR = "helpful-base"


class HhRLHFHelpfulPreferenceTest(HhRLHFPreference):
    NAME = "hh-rlhf-helpful-preference/test"
    ALIASES = (
        "hh-rlhf-preference/helpful-base/test",
        "hh-helpful-preference/test",
        "hh-preference/helpful-base/test",
    )
    DATA_DIR = "helpful-base"
    SPLIT = "test"
