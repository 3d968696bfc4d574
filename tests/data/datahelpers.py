"""Helpers for the data tests: tiny word-level tokenizers and writers of small files in each
upstream schema. (A module of its own, not conftest.py, so `from datahelpers import ...` cannot
pick up another directory's conftest.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
WORDS = (  # noqa: SIM905 (a word list reads best as text)
    "BEGINNING OF CONVERSATION : USER ASSISTANT hello world how are you i am fine thanks "
    "what is the cat dog sat on mat tell me a story about bomb steal help no sorry can not "
    "with that good bad yes water plant grow sun garden cook soup salt hot cold first "
    "second third question answer please explain more again bye system be nice"
).split()

# Ends every assistant turn with EOS (as the toy world's template does).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|> {{ m['content'] }} "
    "{% elif m['role'] == 'user' %}<|user|> {{ m['content'] }} "
    "{% else %}<|assistant|> {{ m['content'] }} {{ eos_token }} {% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
# Ends assistant turns with a marker that is not EOS (like Llama-3 base tokenizers).
MARKER_TEMPLATE = CHAT_TEMPLATE.replace("{{ eos_token }}", "<|end|>")


def make_tokenizer(
    chat_template: str | None = None, pad_is_eos: bool = False, padding_side: str = "right"
) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>" if pad_is_eos else "<pad>",
        padding_side=padding_side,
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"],
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def pku_row(
    prompt: str = "how is the garden",
    r0: str = "water plant",
    r1: str = "bomb",
    better: int = 0,
    safer: int = 0,
    safe0: bool = True,
    safe1: bool = False,
    v1: bool = False,
) -> dict[str, Any]:
    """A PKU-SafeRLHF row; `v1` adds the v1.0 harm category and severity columns."""
    row: dict[str, Any] = {
        "prompt": prompt,
        "response_0": r0,
        "response_1": r1,
        "is_response_0_safe": safe0,
        "is_response_1_safe": safe1,
        "better_response_id": better,
        "safer_response_id": safer,
    }
    if v1:
        row.update(
            {
                "prompt_source": "test",
                "response_0_source": "a",
                "response_1_source": "b",
                "response_0_harm_category": {"Violence": not safe0, "Privacy": False},
                "response_1_harm_category": {"Violence": not safe1, "Privacy": not safe1},
                "response_0_severity_level": 0 if safe0 else 2,
                "response_1_severity_level": 0 if safe1 else 3,
            }
        )
    return row


CUSTOM_MODULE = '''
from beaver.data import RawDataset, RawSample
from beaver.data.fields import get_str


class QADataset(RawDataset):
    """Rows {"question", "reply"} in a JSON-lines file."""

    NAME = "{name}"
    ALIASES = ("{name}-alias",)
    PATH = "{path}"

    def convert(self, row):
        return RawSample(input=get_str(row, "question"), answer=get_str(row, "reply"))
'''
