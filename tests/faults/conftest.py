"""Fixtures of the fault suite: a small toy world, the engine's process group, and a CLI runner
that fails a test on any Python traceback (a user's mistake never shows one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]
# The engine tests' tiny trainer and the evaluation tests' fake judge are shared helpers.
for folder in ("engine", "eval"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))


@pytest.fixture(scope="session")
def process_group() -> None:
    """One process group (gloo on CPU) for the tests that build DeepSpeed engines."""
    import os

    from beaver.engine import dist

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dist.init_distributed()


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated toy world (tokenizer with a chat template, random tiny model)."""
    from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate

    out = tmp_path_factory.getbasetemp() / "toyworld-faults"
    if not (out / "model" / "config.json").is_file():
        generate(
            ToyWorldConfig(
                output_dir=str(out),
                num_sft=16,
                num_preference=10,
                num_preference_test=5,
                num_rl_prompts=10,
                num_eval_prompts=10,
                model=ToyModelConfig(hidden_size=32, num_layers=1, num_heads=2),
            )
        )
    return out


@pytest.fixture(scope="session")
def score_models(toy_world: Path) -> dict[str, Path]:
    """An (untrained) reward model and cost model on the toy world's backbone, with its
    tokenizer: what `beaver rm` / `beaver cm` write, without the training."""
    import shutil

    from transformers import AutoModel

    from beaver.models.score import ScoreModel, save_score_model

    out = {}
    for kind in ("reward", "cost"):
        folder = toy_world / f"{kind}-model"
        if not (folder / "score_config.json").is_file():
            backbone = AutoModel.from_pretrained(toy_world / "model")
            save_score_model(ScoreModel(backbone, kind), folder)  # type: ignore[arg-type]
            for f in (toy_world / "model").iterdir():
                if f.name.startswith("tokenizer") or "template" in f.name:
                    shutil.copy(f, folder / f.name)
        out[kind] = folder
    return out
