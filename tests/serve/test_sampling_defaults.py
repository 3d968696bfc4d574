"""Sampling defaults of chat and the pairwise evaluations: an option the config leaves unset is
the model's own (its generation_config, when that sets do_sample), else beaver's default (chat:
temperature 0.7, top-p 0.9; evaluations: greedy). Checked where it matters: the options that
reach the model's `generate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import GenerationConfig, GenerationMixin
from typer.testing import CliRunner

from beaver.cli import app
from beaver.config.evaluation import CHAT_SAMPLING, ModelSamplingCfg
from beaver.models.generation import model_sampling, resolve_sampling

runner = CliRunner()


@pytest.fixture
def generate_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every `generate` call (the real generate still runs)."""
    calls: list[dict[str, Any]] = []
    real = GenerationMixin.generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({k: kwargs.get(k) for k in ("do_sample", "temperature", "top_p", "top_k")})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    return calls


@pytest.fixture
def sampling_model(toy_world: Path, tmp_path: Path) -> Path:
    """The toy model with a generation_config.json that asks for sampling, as chat models do."""
    out = tmp_path / "sampling-model"
    shutil.copytree(toy_world / "model", out)
    config = json.loads((out / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=0.5, top_p=0.8, top_k=20)
    (out / "generation_config.json").write_text(json.dumps(config))
    return out


def test_model_sampling_reads_only_a_config_that_sets_do_sample() -> None:
    assert model_sampling(None) == {}
    assert model_sampling(GenerationConfig(bos_token_id=1, eos_token_id=2)) == {}
    assert model_sampling(GenerationConfig(do_sample=False)) == {"temperature": 0.0}
    # transformers' own defaults (1, 1, 50) where a sampling config leaves one out
    got = model_sampling(GenerationConfig(do_sample=True, temperature=0.6))
    assert got == {"temperature": 0.6, "top_p": 1.0, "top_k": 50}


def test_explicit_options_win_then_the_model_then_the_fallback() -> None:
    class Model:
        generation_config = GenerationConfig(do_sample=True, temperature=0.5, top_p=0.8, top_k=20)

    gen, source = resolve_sampling(ModelSamplingCfg(temperature=0.3), Model(), CHAT_SAMPLING)
    assert (gen.temperature, gen.top_p, gen.top_k) == (0.3, 0.8, 20)
    assert source == "the model's generation_config"
    Model.generation_config = GenerationConfig()
    gen, source = resolve_sampling(ModelSamplingCfg(), Model(), CHAT_SAMPLING)
    assert (gen.temperature, gen.top_p, gen.top_k) == (0.7, 0.9, 0)
    assert source == "beaver's defaults"


def _chat(*args: str) -> str:
    result = runner.invoke(app, ["chat", *args, "generation.max_new_tokens=3"], input="hi\n")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the console wraps long lines


def test_chat_without_a_config_samples_with_beavers_chat_defaults(
    toy_world: Path, generate_calls: list[dict[str, Any]]
) -> None:
    out = _chat("--model", str(toy_world / "model"))
    assert generate_calls == [{"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}]
    assert "temperature 0.7, top-p 0.9" in out and "beaver's defaults" in out


def test_chat_samples_as_the_models_generation_config_says(
    sampling_model: Path, generate_calls: list[dict[str, Any]]
) -> None:
    _chat("--model", str(sampling_model))
    assert generate_calls == [{"do_sample": True, "temperature": 0.5, "top_p": 0.8, "top_k": 20}]
    generate_calls.clear()
    _chat("--model", str(sampling_model), "generation.temperature=0.3", "generation.top_k=0")
    assert generate_calls == [{"do_sample": True, "temperature": 0.3, "top_p": 0.8, "top_k": 0}]


def test_eval_arena_is_greedy_unless_the_model_samples(
    toy_world: Path, sampling_model: Path, tmp_path: Path, generate_calls: list[dict[str, Any]]
) -> None:
    args = [
        "eval", "arena", f"red_model={toy_world / 'model'}", f"blue_model={sampling_model}",
        f"prompts={toy_world / 'prompts_eval.jsonl'}", "max_prompts=2",
        "generation.max_new_tokens=3", f"output_dir={tmp_path / 'arena'}",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    red, blue = generate_calls
    assert red["do_sample"] is False
    assert blue == {"do_sample": True, "temperature": 0.5, "top_p": 0.8, "top_k": 20}


def test_help_says_where_the_sampling_comes_from() -> None:
    for command in (["chat"], ["arena"], ["eval", "arena"], ["eval", "gpt4"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0 and "generation_config" in result.output, command
    chat = runner.invoke(app, ["chat", "--help"], env={"COLUMNS": "300"}).output
    assert "temperature 0.7" in chat and "top-p 0.9" in chat
