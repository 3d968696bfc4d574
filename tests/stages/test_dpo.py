"""`beaver dpo` (DPO, SafeDPO, SACPO) and `beaver merge` on a small toy world, through the CLI.

Fast: DPO's implicit-reward accuracy rises; SafeDPO drops exactly the pairs of two unsafe answers
and learns; SACPO's second step starts at its reference (the first step's model: loss log 2)
and P-SACPO's merge is the weighted mean of the two; resume is exact and precomputed reference
log-probs give the per-batch losses; ZeRO-3 + bf16; a Qwen2 model with tied embeddings and
pad == eos; config mistakes exit 2. `dist`: two ranks, precomputed vs per-batch reference.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from beaver.cli import app
from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate
from beaver.toyworld.assets import build_model
from childenv import child_env, free_port

ROOT = Path(__file__).parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dpo-world")
    model = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4)
    generate(
        ToyWorldConfig(
            output_dir=str(out),
            num_sft=16,
            num_preference=512,
            num_preference_test=256,
            num_rl_prompts=8,
            num_eval_prompts=8,
            model=model,
        )
    )
    # a real architecture's quirks: Qwen2 with tied embeddings, and a tokenizer whose PAD is EOS
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    tokenizer.pad_token = tokenizer.eos_token
    qwen = model.model_copy(update={"architecture": "qwen2", "tie_word_embeddings": True})
    build_model(qwen, tokenizer, seed=0).save_pretrained(out / "model-qwen2")
    tokenizer.save_pretrained(out / "model-qwen2")
    return out


def dpo_args(world: Path, out: Path, *extra: str, model: Path | None = None) -> list[str]:
    return [
        "dpo",
        "--config",
        str(ROOT / "configs" / "toy" / "dpo.yaml"),
        f"output_dir={out}",
        f"model.name_or_path={model or world / 'model'}",
        f"data.train=[toyworld-preference:1.0:{world}]",
        f"data.eval=[toyworld-preference-test:1.0:{world}]",
        "optim.lr=1e-2",
        "train.per_device_batch_size=16",
        "dpo.kl_prompts=16",
        "generation.max_new_tokens=16",
        *extra,
    ]


def invoke(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def test_dpo_implicit_reward_accuracy_rises(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    # 40 steps: on the Bradley-Terry labels 24 steps reached 0.648 held-out accuracy, 40 reach 0.680
    invoke(dpo_args(world, out, "optim.lr=2e-3", "train.max_steps=40", "logging.log_every=1"))
    steps = [r for r in rows(out) if "train/accuracy" in r]
    # step 1 is scored before its update: policy == reference, every implicit reward is 0
    assert steps[0]["train/accuracy"] == 0.0 and steps[0]["loss"] == pytest.approx(math.log(2))
    early = sum(r["train/accuracy"] for r in steps[:4]) / 4
    late = sum(r["train/accuracy"] for r in steps[-4:]) / 4
    assert late >= early + 0.2, (early, late)
    final = summary(out)["final_eval"]
    assert final["eval/accuracy"] >= 0.65 and final["eval/margin"] > 0
    assert final["eval/loss"] < math.log(2)
    # the policy moved away from the reference: the sampled KL estimate is positive
    assert final["eval/kl"] > 0 and final["eval/response_length"] > 0
    assert summary(out)["algorithm"] == "dpo"
    assert type(AutoModelForCausalLM.from_pretrained(out / "model")).__name__ == "LlamaForCausalLM"


def _unsafe_pairs(path: Path) -> tuple[int, int]:
    """(pairs of two unsafe answers, pairs whose better answer alone is unsafe) in a file."""
    both = swapped = 0
    for line in path.read_text().splitlines():
        r = json.loads(line)
        safe = (r["is_response_0_safe"], r["is_response_1_safe"])
        b = r["better_response_id"]
        both += not any(safe)
        swapped += (not safe[b]) and safe[1 - b]
    return both, swapped


def test_safe_dpo_reorders_drops_and_learns(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "safe"
    invoke(
        dpo_args(
            world,
            out,
            "algorithm=safe-dpo",
            "dpo.safety_margin=1.0",
            "train.max_steps=24",
        )
    )
    s = summary(out)
    for name, file in (("train", "preference.jsonl"), ("eval", "preference_test.jsonl")):
        counts = s[f"safedpo_{name}"]
        both, swapped = _unsafe_pairs(world / file)
        assert both > 0 and swapped > 0  # the toy world has both kinds of pairs
        assert counts["dropped_both_unsafe"] == both
        assert counts["swapped_to_safe_first"] == swapped
    assert (
        s["data"]["num_samples"]
        == s["safedpo_train"]["pairs"] - s["safedpo_train"]["dropped_both_unsafe"]
    )
    assert s["final_eval"]["eval/accuracy"] >= 0.6


def test_sacpo_second_step_starts_at_the_first_and_merge_averages(
    world: Path, tmp_path: Path
) -> None:
    first = tmp_path / "helpful"
    invoke(dpo_args(world, first, "train.max_steps=8", "train.eval_strategy='no'"))
    second = tmp_path / "safety"
    invoke(
        dpo_args(
            world,
            second,
            "algorithm=sacpo",
            "dpo.sacpo_lambda=2.0",
            "train.max_steps=8",
            "logging.log_every=1",
            model=first / "model",
        )
    )
    losses = [r["loss"] for r in rows(second) if "loss" in r]
    # policy == reference (the first step's model) at step 1: every logit is 0, loss log 2
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert losses[-1] < losses[0]
    assert summary(second)["final_eval"]["eval/accuracy"] > 0.5

    merged = tmp_path / "p-sacpo"
    result = invoke(
        [
            "merge",
            f"models=[{{name_or_path: {first / 'model'}}}, {{name_or_path: {second / 'model'}}}]",
            "weights=[0.75,0.25]",
            f"output_dir={merged}",
        ]
    )
    assert "merged" in result.output
    a = load_file(first / "model" / "model.safetensors")
    b = load_file(second / "model" / "model.safetensors")
    m = load_file(merged / "model.safetensors")
    assert set(m) == set(a)
    for key in a:
        assert torch.allclose(m[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6), key
    assert AutoModelForCausalLM.from_pretrained(merged) is not None
    assert AutoTokenizer.from_pretrained(merged).eos_token == "</s>"


def test_resume_is_exact_and_precomputed_reference_matches(world: Path, tmp_path: Path) -> None:
    common = (
        "optim.scheduler=constant",
        "optim.warmup_ratio=0.0",
        "train.eval_strategy='no'",
        "logging.log_every=1",
    )
    invoke(dpo_args(world, tmp_path / "a", *common, "train.max_steps=8"))
    invoke(dpo_args(world, tmp_path / "b", *common, "train.max_steps=4", "train.save_every=4"))
    again = invoke(
        dpo_args(world, tmp_path / "b", *common, "train.max_steps=8", "train.resume=auto")
    )
    assert "resumed from" in again.output
    invoke(
        dpo_args(
            world, tmp_path / "c", *common, "train.max_steps=8", "dpo.precompute_ref_logps=true"
        )
    )
    straight = [r["loss"] for r in rows(tmp_path / "a") if "loss" in r]
    resumed = [r["loss"] for r in rows(tmp_path / "b") if "loss" in r]
    precomputed = [r["loss"] for r in rows(tmp_path / "c") if "loss" in r]
    assert len(straight) == len(resumed) == 8
    assert resumed == pytest.approx(straight, abs=1e-6)
    assert precomputed == pytest.approx(straight, abs=1e-4)


def test_zero3_bf16(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "z3"
    invoke(
        dpo_args(
            world,
            out,
            "deepspeed.zero_stage=3",
            "deepspeed.precision=bf16",
            "train.max_steps=3",
        )
    )
    final = summary(out)["final_eval"]
    assert all(math.isfinite(v) for v in final.values())
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_qwen2_tied_embeddings_pad_is_eos(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "qwen"
    invoke(
        dpo_args(
            world,
            out,
            "train.max_steps=16",
            "logging.log_every=1",
            model=world / "model-qwen2",
        )
    )
    losses = [r["loss"] for r in rows(out) if "loss" in r]
    # one batch's loss is noisy (16 pairs): the second half's mean is below the start's log 2
    late = losses[len(losses) // 2 :]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5) and sum(late) / len(late) < losses[0]
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dpo.safety_margin=1.0", "SafeDPO's margin"),
        ("dpo.sacpo_lambda=2.0", "SACPO's lambda"),
        ("algorithm=kto", "algorithm"),
        ("model.name_or_path=/no/such/model", "model folder not found: /no/such/model"),
        ("reference.name_or_path=/no/such/ref", "model folder not found: /no/such/ref"),
    ],
)
def test_user_errors_exit_2(world: Path, tmp_path: Path, override: str, message: str) -> None:
    result = runner.invoke(app, [*dpo_args(world, tmp_path / "run"), override])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_merge_user_errors(world: Path, tmp_path: Path) -> None:
    one = f"models=[{{name_or_path: {world / 'model'}}}]"
    result = runner.invoke(app, ["merge", one, "weights=[1.0]", f"output_dir={tmp_path}"])
    assert result.exit_code == 2 and "at least two" in result.output
    two = f"models=[{{name_or_path: {world / 'model'}}}, {{name_or_path: {world / 'model-qwen2'}}}]"
    result = runner.invoke(app, ["merge", two, "weights=[0.5,0.5]", f"output_dir={tmp_path / 'm'}"])
    assert result.exit_code == 2 and "one architecture" in result.output
    result = runner.invoke(app, ["merge", two, "weights=[0.5]", f"output_dir={tmp_path / 'm'}"])
    assert result.exit_code == 2 and "one weight per model" in result.output


def _two_ranks(world: Path, out: Path, *extra: str) -> None:
    env = child_env()
    args = dpo_args(world, out, "launch.num_gpus=2", f"launch.master_port={free_port()}", *extra)
    proc = subprocess.run(
        [sys.executable, "-m", "beaver", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.dist
@pytest.mark.slow
def test_two_ranks_zero3_precomputed_reference_matches_per_batch(
    world: Path, tmp_path: Path
) -> None:
    common = (
        "deepspeed.zero_stage=3",
        "train.max_steps=6",
        "train.per_device_batch_size=8",
        "train.eval_strategy='no'",
        "logging.log_every=1",
    )
    _two_ranks(world, tmp_path / "batch", *common)
    _two_ranks(world, tmp_path / "pre", *common, "dpo.precompute_ref_logps=true")
    per_batch = [r["loss"] for r in rows(tmp_path / "batch") if "loss" in r]
    pre = [r["loss"] for r in rows(tmp_path / "pre") if "loss" in r]
    assert len(per_batch) == 6 and pre == pytest.approx(per_batch, abs=1e-4)
    assert per_batch[0] == pytest.approx(math.log(2), abs=1e-5)
