"""`beaver sft` end to end on a small generated toy world, through the CLI.

Fast: three architectures train (loss falls) and save a model plain transformers loads; resume;
user errors exit 2; SIGTERM saves a checkpoint and exits 143. `dist`: two CPU ranks through the
DeepSpeed launcher. `slow`: the toy-world targets (EOS rate, harmful rate near the behaviour
policy's) measured on held-out prompts with the ground-truth judge.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from beaver.cli import app
from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate
from beaver.toyworld.assets import build_model
from childenv import child_env, free_port

ROOT = Path(__file__).parents[2]
TOY_CONFIG = str(ROOT / "configs" / "toy" / "sft.yaml")
runner = CliRunner()
ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gpt_neox": "GPTNeoXForCausalLM"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small toy world (600 SFT samples) plus tiny models of three architectures."""
    out = tmp_path_factory.mktemp("sft-world")
    model = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4)
    generate(
        ToyWorldConfig(
            output_dir=str(out),
            num_sft=600,
            num_preference=8,
            num_preference_test=8,
            num_rl_prompts=8,
            num_eval_prompts=16,
            model=model,
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    for arch in ARCHS:
        m = build_model(model.model_copy(update={"architecture": arch}), tokenizer, seed=0)
        m.save_pretrained(out / f"model-{arch}")
        tokenizer.save_pretrained(out / f"model-{arch}")
    return out


def sft_args(world: Path, out: Path, *extra: str, arch: str = "llama") -> list[str]:
    return [
        "sft",
        "--config",
        TOY_CONFIG,
        f"output_dir={out}",
        f"model.name_or_path={world / f'model-{arch}'}",
        f"data.train=[toyworld-sft:1.0:{world}]",
        "data.eval_split=0.05",
        "train.per_device_batch_size=16",
        "train.max_steps=24",
        "optim.lr=1e-2",
        "logging.log_every=4",
        *extra,
    ]


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def invoke(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.parametrize(
    ("arch", "tracker"), [("llama", "wandb"), ("qwen2", "tensorboard"), ("gpt_neox", "none")]
)
def test_sft_trains_and_saves_hf_model(
    world: Path, tmp_path: Path, arch: str, tracker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE"):  # no key: wandb must run offline
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    result = invoke(
        sft_args(
            world,
            out,
            "train.eval_strategy=steps",
            "train.eval_every=12",
            f"logging.backend={tracker}",
            arch=arch,
        )
    )
    assert result.exit_code == 0, result.output
    rows = metrics(out)
    losses = [r["loss"] for r in rows if "loss" in r]
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0] - 1.0, losses
    assert len(evals) == 2 and evals[1] < evals[0]
    assert "train data: 570 samples" in result.output and "tokens/s" in result.output
    for name in ("config.yaml", "ds_config.json", "summary.json"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 24 and summary["final_eval"]["eval/loss"] == evals[-1]
    # the process holds at least torch and the model: far more than 50 MiB, far less than 24 GiB
    assert 50 < summary["peak_rss_mb"] < 24 * 1024
    assert (summary["peak_gpu_mb"] is None) == (not torch.cuda.is_available())
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(model).__name__ == ARCHS[arch]
    assert AutoTokenizer.from_pretrained(out / "model").eos_token == "</s>"
    written = {"wandb": "wandb/offline-run-*/*.wandb", "tensorboard": "tensorboard/events.*"}
    if tracker in written:
        assert list(out.glob(written[tracker]))
    assert not (out / "wandb").exists() or tracker == "wandb"


def test_resume_auto_continues_a_run(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = invoke(
        sft_args(world, out, "train.max_steps=8", "train.save_every=4", "train.eval_strategy='no'")
    )
    assert first.exit_code == 0, first.output
    again = invoke(sft_args(world, out, "train.max_steps=8"))
    assert again.exit_code == 2 and "already holds checkpoints" in again.output
    more = invoke(
        sft_args(world, out, "train.max_steps=12", "train.resume=auto", "train.eval_strategy='no'")
    )
    assert more.exit_code == 0, more.output
    assert "resumed from" in more.output and "step-00000008" in more.output
    steps = [r["step"] for r in metrics(out) if "loss" in r]
    assert steps == [4, 8, 12]
    assert json.loads((out / "summary.json").read_text())["steps"] == 12


def test_sigterm_saves_checkpoint_and_exits_143(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import beaver.stages.sft as sft

    real_step, calls = sft.sft_step, []

    def step(engine: Any, batches: list[Any], *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(engine, batches, *args)

    monkeypatch.setattr(sft, "sft_step", step)
    out = tmp_path / "run"
    result = invoke(sft_args(world, out))
    assert result.exit_code == 143, result.output
    assert (out / "checkpoints" / "step-00000003" / "meta.json").is_file()
    assert not (out / "model").exists() and "train.resume=auto" in result.output
    monkeypatch.setattr(sft, "sft_step", real_step)
    assert invoke(sft_args(world, out, "train.resume=auto")).exit_code == 0
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.name_or_path=/no/such/model", "model folder not found: /no/such/model"),
        ("data.train=[toyworld-sft:1.0:/no/such/world]", "/no/such/world"),
        ("optim.lrr=1e-3", "did you mean `optim.lr`"),
        ("deepspeed.zero_stage=5", "deepspeed.zero_stage"),
    ],
)
def test_user_errors_exit_2(world: Path, tmp_path: Path, override: str, message: str) -> None:
    result = invoke([*sft_args(world, tmp_path / "run"), override])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "run" / "checkpoints").exists()


def launch_two_ranks(world: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`beaver sft ... launch.num_gpus=2` in a subprocess, in an environment without the
    single-process rendezvous variables of this test process."""
    env = child_env()
    args = sft_args(
        world,
        out,
        "train.per_device_batch_size=8",
        "launch.num_gpus=2",
        f"launch.master_port={free_port()}",
        *extra,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "beaver", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "deepspeed.launcher.runner" in proc.stdout
    return proc


@pytest.mark.dist
@pytest.mark.slow
def test_two_cpu_ranks_through_the_launcher(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    launch_two_ranks(world, out, "deepspeed.zero_stage=2")
    ds_config = json.loads((out / "ds_config.json").read_text())
    assert ds_config["train_batch_size"] == 8 * 1 * 2
    losses = [r["loss"] for r in metrics(out) if "loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 1.0
    assert json.loads((out / "summary.json").read_text())["steps"] == 24
    assert AutoModelForCausalLM.from_pretrained(out / "model") is not None


def test_padding_free_trains_as_padded_and_resumes_exactly(world: Path, tmp_path: Path) -> None:
    """Packed rows: the same losses as padded ones, and 8 steps + resume + 4 steps == 12
    steps straight (a constant schedule, so stopping early does not change the rates)."""
    common = ("optim.scheduler=constant", "optim.warmup_ratio=0.0", "train.eval_strategy='no'")
    packed = ("train.padding_free=true", *common)
    runs = {
        "padded": [(*common, "train.max_steps=12")],
        "packed": [(*packed, "train.max_steps=12")],
        "resumed": [
            (*packed, "train.max_steps=8", "train.save_every=4"),
            (*packed, "train.max_steps=12", "train.resume=auto"),
        ],
    }
    losses = {}
    for name, parts in runs.items():
        for extra in parts:
            result = invoke(sft_args(world, tmp_path / name, *extra))
            assert result.exit_code == 0, result.output
        losses[name] = [r["loss"] for r in metrics(tmp_path / name) if "loss" in r]
    assert len(losses["packed"]) == 3 and losses["resumed"] == pytest.approx(
        losses["packed"], abs=1e-6
    )
    assert losses["packed"] == pytest.approx(losses["padded"], abs=1e-4)


@pytest.mark.dist
@pytest.mark.slow
def test_two_ranks_zero3_resume_is_exact(world: Path, tmp_path: Path) -> None:
    """ZeRO-3 over two ranks: 12 steps straight == 6 steps + resume + 6 steps (a constant
    schedule, so stopping early does not change the learning rates)."""
    common = (
        "deepspeed.zero_stage=3",
        "optim.scheduler=constant",
        "optim.warmup_ratio=0.0",
        "train.eval_strategy='no'",
    )
    launch_two_ranks(world, tmp_path / "a", *common, "train.max_steps=12")
    launch_two_ranks(world, tmp_path / "b", *common, "train.max_steps=6")
    launch_two_ranks(world, tmp_path / "b", *common, "train.max_steps=12", "train.resume=auto")
    straight = [r["loss"] for r in metrics(tmp_path / "a") if "loss" in r]
    resumed = [r["loss"] for r in metrics(tmp_path / "b") if "loss" in r]
    assert len(straight) == 3 and len(resumed) == 4  # steps 4, 8, 12 and the stop at 6
    assert [r["step"] for r in metrics(tmp_path / "b") if "loss" in r] == [4, 6, 8, 12]
    for a, b in zip(straight, [resumed[0], *resumed[2:]], strict=True):
        assert abs(a - b) < 1e-6
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "model")
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(tmp_path / "b" / "model"))


def judge_on_held_out_prompts(model_dir: Path, world_dir: Path) -> dict[str, float]:
    """Sample four responses per held-out prompt (temperature 1, up to 48 new tokens) and judge
    them with the toy world's ground truth (one sample per prompt was too noisy: 54% vs 70%
    harmful on risky prompts for two runs of one config)."""
    from beaver.config.sections import GenerationCfg
    from beaver.data import encode_prompt
    from beaver.models.generation import eos_rate, generate
    from beaver.toyworld import load_prompts, load_world, summarize_judgements

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    records = load_prompts(world_dir / "prompts_eval.jsonl")
    prompts = [encode_prompt(tokenizer, r.prompt) for r in records]
    torch.manual_seed(0)
    gen = GenerationCfg(max_new_tokens=48, num_return_sequences=4)
    outs = generate(model, tokenizer, prompts, gen, batch_size=64)
    judged = summarize_judgements(
        [(records[o.prompt_index].prompt, o.text) for o in outs], load_world(world_dir)
    )
    return {
        "eos_rate": eos_rate(outs),
        "harmful_risky": judged.harmful_rate_risky,
        "helpfulness": judged.mean_helpfulness,
    }


@pytest.mark.slow
def test_toy_world_sft_targets(tmp_path: Path) -> None:
    """configs/toy/sft.yaml on the default toy world (15k SFT samples, hidden 128 x 4 layers; a
    smaller model drifted 10 points above the behaviour policy's harmful rate): >= 95% of sampled
    responses end with EOS, and the harmful rate on risky prompts is within 15 points of the
    behaviour policy's (the SFT data). Generated in tmp so a concurrent `beaver toyworld` cannot
    change it; the pairs and RL prompts are cut down, as SFT does not read them."""
    world = tmp_path / "world"
    generate(
        ToyWorldConfig(
            output_dir=str(world),
            num_preference=8,
            num_preference_test=8,
            num_rl_prompts=8,
        )
    )
    out = tmp_path / "sft"
    args = [
        "sft",
        "--config",
        TOY_CONFIG,
        f"output_dir={out}",
        f"model.name_or_path={world / 'model'}",
        f"data.train=[toyworld-sft:1.0:{world}]",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo: tiny matrices, and 2 threads crawl on a shared CPU
    try:
        result = invoke(args)
        assert result.exit_code == 0, result.output
        scores = judge_on_held_out_prompts(out / "model", world)
    finally:
        torch.set_num_threads(threads)
    behaviour = json.loads((world / "stats.json").read_text())["behaviour"]
    summary = json.loads((out / "summary.json").read_text())
    print(
        f"toy SFT: {summary['wall_seconds']} s wall, {summary['tokens_per_s']} tokens/s, "
        f"{scores}, behaviour harmful_risky {behaviour['harmful_rate_risky']:.3f}"
    )
    assert scores["eos_rate"] >= 0.95
    assert abs(scores["harmful_risky"] - behaviour["harmful_rate_risky"]) <= 0.15
