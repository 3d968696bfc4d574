"""The toy world's files (`beaver toyworld`), read by the same loaders as the real data.

The default path is `output/toyworld` (where `beaver toyworld` writes); a spec may name
another folder, or the file itself: `toyworld-sft:1.0:/tmp/world`.
"""

from __future__ import annotations

from typing import ClassVar

from beaver.data.sources.alpaca import AlpacaDataset
from beaver.data.sources.generic import JsonlDataset
from beaver.data.sources.safe_rlhf import SafeRLHFDataset

TOYWORLD_DIR = "output/toyworld"
_HINT = "Generate the toy world first: `beaver toyworld` (or name its folder in the spec)."


class ToyWorldSFT(AlpacaDataset):
    """`sft.json`: Alpaca rows."""

    NAME = "toyworld-sft"
    ALIASES: ClassVar[tuple[str, ...]] = ("toyworld/sft",)
    PATH = TOYWORLD_DIR
    FILE = "sft.json"
    HINT = _HINT


class ToyWorldPreference(SafeRLHFDataset):
    """`preference.jsonl`: PKU-SafeRLHF v1.0 rows (with harm categories and severity)."""

    NAME = "toyworld-preference"
    ALIASES: ClassVar[tuple[str, ...]] = ("toyworld/preference",)
    PATH = TOYWORLD_DIR
    FILE = "preference.jsonl"
    HINT = _HINT


class ToyWorldPreferenceTest(ToyWorldPreference):
    """`preference_test.jsonl`: held-out pairs (no label noise)."""

    NAME = "toyworld-preference-test"
    ALIASES = ("toyworld/preference-test", "toyworld/preference_test")
    FILE = "preference_test.jsonl"


class ToyWorldPrompts(JsonlDataset):
    """`prompts_train.jsonl`: RL prompts; `risky`, `topic`, `category` kept in `meta`."""

    NAME = "toyworld-prompts"
    ALIASES: ClassVar[tuple[str, ...]] = (
        "toyworld/prompts",
        "toyworld/prompts_train",
        "toyworld-prompts-train",
    )
    PATH = TOYWORLD_DIR
    FILE = "prompts_train.jsonl"
    HINT = _HINT
    USES_COLUMNS = False


class ToyWorldPromptsEval(ToyWorldPrompts):
    """`prompts_eval.jsonl`: held-out evaluation prompts."""

    NAME = "toyworld-prompts-eval"
    ALIASES = ("toyworld/prompts-eval", "toyworld/prompts_eval")
    FILE = "prompts_eval.jsonl"
