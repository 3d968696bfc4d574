"""Fixtures of the evaluation tests: a fake OpenAI-compatible judge on 127.0.0.1, a toy world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from judge_fake import FakeJudge


@pytest.fixture
def fake_judge() -> Iterator[FakeJudge]:
    judge = FakeJudge()
    yield judge
    judge.close()


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated toy world (tokenizer, random tiny model, prompt files)."""
    from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate

    out = tmp_path_factory.getbasetemp() / "toyworld-eval"
    if not (out / "model" / "config.json").is_file():
        generate(
            ToyWorldConfig(
                output_dir=str(out),
                num_sft=10,
                num_preference=10,
                num_preference_test=5,
                num_rl_prompts=10,
                num_eval_prompts=12,
                model=ToyModelConfig(hidden_size=32, num_layers=1, num_heads=2),
            )
        )
    return out
