"""Fixtures of the chat tests: a small toy world and score models on its backbone."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated toy world (tokenizer with a chat template, random tiny model)."""
    from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate

    out = tmp_path_factory.getbasetemp() / "toyworld-serve"
    if not (out / "model" / "config.json").is_file():
        generate(
            ToyWorldConfig(
                output_dir=str(out),
                num_sft=10,
                num_preference=10,
                num_preference_test=5,
                num_rl_prompts=10,
                num_eval_prompts=10,
                model=ToyModelConfig(hidden_size=32, num_layers=1, num_heads=2),
            )
        )
    return out


@pytest.fixture(scope="session")
def score_models(toy_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained reward and cost models (fresh heads on the toy backbone)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from beaver.models.score import save_score_model, score_model_from_backbone

    out = tmp_path_factory.mktemp("score-models")
    tok = AutoTokenizer.from_pretrained(toy_world / "model")
    for kind, seed in (("reward", 0), ("cost", 1)):
        torch.manual_seed(seed)
        backbone = AutoModel.from_pretrained(toy_world / "model")
        model = score_model_from_backbone(backbone, toy_world / "model", score_type=kind)
        save_score_model(model, out / kind, tok)
    return {"reward": out / "reward", "cost": out / "cost"}
