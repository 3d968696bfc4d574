"""A user's own RawDataset, registered by `data.imports`, trains a model in a real SFT run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from beaver.cli import app
from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate


def test_custom_dataset_in_a_real_sft_run(
    custom_dataset_module: Callable[..., str], tmp_path: Path
) -> None:
    rows = [
        {"question": f"how is the garden {i}", "reply": "water the soil and the seeds ."}
        for i in range(32)
    ]
    module = custom_dataset_module("my-garden-qa", rows)
    world = tmp_path / "world"
    generate(
        ToyWorldConfig(
            output_dir=str(world),
            num_sft=8,
            num_preference=4,
            num_preference_test=4,
            num_rl_prompts=4,
            num_eval_prompts=4,
            model=ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4),
        )
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "sft",
            "--config",
            "configs/toy/sft.yaml",
            f"output_dir={out}",
            f"model.name_or_path={world / 'model'}",
            f"data.imports=[{module}]",
            "data.train=[my-garden-qa]",
            "data.eval_split=0",
            "train.eval_strategy=no",
            "train.per_device_batch_size=8",
            "train.epochs=4",
            "logging.backend=none",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    losses = [
        json.loads(line)["loss"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert len(losses) == 16 and losses[-1] < losses[0]  # it trained on the custom rows
    assert (out / "model" / "model.safetensors").is_file()
