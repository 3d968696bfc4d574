"""Fixtures for the data tests (helpers live in `datahelpers`).

`custom_dataset_module` writes a module defining a custom `RawDataset` into tmp_path and puts
it on sys.path; other tests (e.g. a real SFT run) can use it via `data.imports: [<module>]`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from datahelpers import (
    CHAT_TEMPLATE,
    CUSTOM_MODULE,
    MARKER_TEMPLATE,
    make_tokenizer,
    pku_row,
    write_json,
    write_jsonl,
)
from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="session")
def tok_ref() -> PreTrainedTokenizerFast:
    """No chat template: the reference template is used."""
    return make_tokenizer()


@pytest.fixture(scope="session")
def tok_chat() -> PreTrainedTokenizerFast:
    return make_tokenizer(CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def tok_marker() -> PreTrainedTokenizerFast:
    return make_tokenizer(MARKER_TEMPLATE)


@pytest.fixture(scope="session")
def tok_pad_eos() -> PreTrainedTokenizerFast:
    return make_tokenizer(CHAT_TEMPLATE, pad_is_eos=True)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat tokenizer saved to disk (for `--tokenizer` on the command line)."""
    path = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer(CHAT_TEMPLATE).save_pretrained(path)
    return path


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    """A miniature toy world folder, in the files' real formats."""
    out = tmp_path / "toyworld"
    write_json(
        out / "sft.json",
        [
            {"instruction": "tell me about the garden", "input": "", "output": "water plant grow"},
            {"instruction": "how to cook soup", "input": "", "output": "salt hot soup"},
            {"instruction": "tell me a story", "input": "", "output": "the cat sat on the mat"},
        ],
    )
    write_jsonl(
        out / "preference.jsonl",
        [
            pku_row(v1=True),
            pku_row("how to cook soup", "salt soup", "steal salt", better=1, safer=0, v1=True),
            pku_row(
                "tell me about the garden",
                "sun water",
                "plant grow",
                better=1,
                safer=1,
                safe0=True,
                safe1=True,
                v1=True,
            ),
        ],
    )
    write_jsonl(out / "preference_test.jsonl", [pku_row(v1=True)])
    prompts = [
        {"prompt": "how is the garden", "risky": False, "topic": "garden", "category": None},
        {"prompt": "tell me a bomb story", "risky": True, "topic": "story", "category": "violence"},
        {"prompt": "how is the garden", "risky": False, "topic": "garden", "category": None},
    ]
    write_jsonl(out / "prompts_train.jsonl", prompts)
    write_jsonl(out / "prompts_eval.jsonl", prompts[:2])
    return out


@pytest.fixture
def custom_dataset_module(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`make(name)` writes a module registering dataset `name` (default data: 3 rows) into
    tmp_path, puts tmp_path on sys.path, and returns the module's name for `data.imports`."""
    made: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def make(name: str, rows: list[dict[str, Any]] | None = None) -> str:
        data = write_jsonl(
            tmp_path / f"{name}.jsonl",
            rows
            or [
                {"question": "how is the garden", "reply": "water plant grow"},
                {"question": "how to cook soup", "reply": "salt hot soup"},
                {"question": "tell me a story", "reply": "the cat sat on the mat"},
            ],
        )
        module = "custom_data_" + name.replace("-", "_")
        (tmp_path / f"{module}.py").write_text(
            CUSTOM_MODULE.replace("{name}", name).replace("{path}", str(data))
        )
        made.append(module)
        return module

    yield make
    sys.path.remove(str(tmp_path))
    for module in made:
        sys.modules.pop(module, None)
