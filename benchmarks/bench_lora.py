"""PPO-Lag with every weight trained vs with LoRA adapters, on a model of a real size.

The model: a randomly initialised Llama with SmolLM2-135M's shape (30 layers, hidden 576, 9
heads, 3 KV heads, intermediate 1536, vocabulary 49152, tied embeddings: 134.5M parameters),
built from its config (no download), with the toy world's tokenizer for the text. Its backbone
with fresh heads serves as reward and cost model, so the run holds six models of that size:
actor, reference, reward model, cost model, reward critic, cost critic.

- full: every weight of the actor and both critics trains; the reference is a second copy.
- lora: LoRA (r 16, all linear layers) on the actor and both critics (the score heads train
  fully); the reference is the actor with its adapter disabled, no second copy.

Each side is one `beaver ppo-lag` process (peak memory is per process, so the sides never share
a peak) of a few PPO-Lag iterations of 8 toy-world prompts, 16 sampled tokens (a random model
never samples EOS, so every response has 16 on both sides), fp32, ZeRO 0, on one thread. The
sides alternate (full, lora, full, lora, ...) for `--repeats` rounds; reported: peak RSS
(`peak_rss_mb` of summary.json), trained / total parameters, models held, and episodes/s: per
iteration, episodes / (generate + score + train seconds of its metrics row), the median of the
iterations after the first (warm-up), then the median over rounds; with the LoRA / full ratios
and the bar (LoRA peak RSS <= 0.6x the full run's). About 3.5 minutes per round on 2 cores at
load 2 (the full side's peak is about 8.2 GB).

    python benchmarks/bench_lora.py [--repeats 1] [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import machine
import prepare
import report

WORK = prepare.WORK / "lora"
SHAPE = {  # SmolLM2-135M (HuggingFaceTB/SmolLM2-135M config.json)
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
}
ROLLOUT, NEW_TOKENS, MAX_LENGTH = 8, 16, 48
LORA = ["enabled=true", "r=16", "alpha=32", "target_modules=all-linear"]
PHASES = ("time/generate", "time/score", "time/train")  # one iteration's wall time, split
BAR = 0.6  # LoRA peak memory at most this share of the full run's


def build_models() -> Path:
    """The 135M-shaped policy, and reward / cost models on its backbone (fresh heads)."""
    import torch
    from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from beaver.models.score import ScoreModel, save_score_model

    if (WORK / "cm" / "score_config.json").exists():
        return WORK
    world = prepare.world()
    tokenizer = AutoTokenizer.from_pretrained(world / "model")
    torch.manual_seed(0)
    config = LlamaConfig(
        **SHAPE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(WORK / "policy")
    tokenizer.save_pretrained(WORK / "policy")
    for name, kind in (("rm", "reward"), ("cm", "cost")):
        backbone = AutoModel.from_pretrained(WORK / "policy")
        save_score_model(ScoreModel(backbone, kind), WORK / name, tokenizer)  # type: ignore[arg-type]
    return WORK


def run_side(side: str, steps: int, round_: int, threads: int) -> dict[str, Any]:
    """One `beaver ppo-lag` process; its summary's memory, parameters and speed."""
    out = WORK / "runs" / f"{side}-{round_}"
    shutil.rmtree(out, ignore_errors=True)
    args = [
        "ppo-lag",
        "--config",
        "configs/toy/ppo-lag.yaml",
        f"output_dir={out}",
        f"actor.name_or_path={WORK / 'policy'}",
        f"reward_model.name_or_path={WORK / 'rm'}",
        f"cost_model.name_or_path={WORK / 'cm'}",
        f"reward_critic.name_or_path={WORK / 'rm'}",
        f"cost_critic.name_or_path={WORK / 'cm'}",
        f"data.train=[toyworld-prompts:1.0:{prepare.WORLD}]",
        f"data.max_length={MAX_LENGTH}",
        f"generation.max_new_tokens={NEW_TOKENS}",
        f"ppo.rollout_batch_size={ROLLOUT}",
        f"train.per_device_batch_size={ROLLOUT}",
        f"train.max_steps={steps}",
        "lagrange.target_unsafe_share=null",
        "logging.log_every=1",
        *prepare.COMMON,
    ]
    if side == "lora":
        args += [f"{m}.lora.{o}" for m in ("actor", "reward_critic", "cost_critic") for o in LORA]
    log = WORK / "logs" / f"{side}-{round_}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    with log.open("w") as f:
        done = subprocess.run(
            [sys.executable, "-m", "beaver", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=prepare.ROOT,
            env=env,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the {side} side failed; see {log}")
    s = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(out, ignore_errors=True)  # two copies of a 135M model per run
    per_iteration = iteration_rates(rows, ROLLOUT)
    return {
        "peak_rss_mb": s["peak_rss_mb"],
        "episodes_per_s": statistics.median(per_iteration[1:] or per_iteration),
        "episodes_per_s_iterations": per_iteration,
        "trainable_parameters": sum(s["trainable_parameters"].values()),
        "parameters": s["parameters"],
        "models_held": s["models_held"],
        "wall_seconds": s["wall_seconds"],
    }


def iteration_rates(rows: list[dict[str, Any]], episodes: int) -> list[float]:
    """Episodes/s of each PPO-Lag iteration (one metrics row per step, `logging.log_every=1`):
    `episodes` over the seconds of its generate, score and train phases."""
    steps = [r for r in rows if PHASES[0] in r]
    return [round(episodes / sum(r[k] for k in PHASES), 4) for r in steps]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1, help="rounds of (full, lora)")
    p.add_argument("--steps", type=int, default=5, help="iterations per run (the first warms up)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")))
    a = p.parse_args()
    report.use_threads(a.threads)
    start, load = time.time(), [os.getloadavg()[0]]
    build_models()
    runs: dict[str, list[dict[str, Any]]] = {"full": [], "lora": []}
    for round_ in range(a.repeats):
        for side in runs:
            print(f"== round {round_ + 1}: {side}", flush=True)
            runs[side].append(run_side(side, a.steps, round_, a.threads))
    load.append(os.getloadavg()[0])

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    keys = ("peak_rss_mb", "episodes_per_s", "trainable_parameters", "parameters", "models_held")
    sides = {side: {k: med(side, k) for k in keys} for side in runs}
    result = {
        "benchmark": "lora",
        "machine": machine.describe(),
        "model": {"shape": "SmolLM2-135M", **SHAPE},
        "workload": {"rollout": ROLLOUT, "new_tokens": NEW_TOKENS, "steps": a.steps},
        "rounds": a.repeats,
        "sides": sides,
        "runs": runs,
        "ratios": {k: sides["lora"][k] / sides["full"][k] for k in keys},
        "bar": {
            "max_peak_rss_ratio": BAR,
            "met": sides["lora"]["peak_rss_mb"] <= BAR * sides["full"]["peak_rss_mb"],
        },
        "load_avg_1m": load,
        "seconds": round(time.time() - start, 1),
    }
    report.write("lora", result)
    print(text(result))


def text(r: dict[str, Any]) -> str:
    """The side-by-side table."""
    f, lo, q = r["sides"]["full"], r["sides"]["lora"], r["ratios"]
    rows = [
        ("peak RSS (MiB)", f"{f['peak_rss_mb']:.0f}", f"{lo['peak_rss_mb']:.0f}", q["peak_rss_mb"]),
        (
            "trained parameters",
            f"{f['trainable_parameters']:,.0f}",
            f"{lo['trainable_parameters']:,.0f}",
            q["trainable_parameters"],
        ),
        ("parameters held", f"{f['parameters']:,.0f}", f"{lo['parameters']:,.0f}", q["parameters"]),
        ("models held", f"{f['models_held']:.0f}", f"{lo['models_held']:.0f}", q["models_held"]),
        (
            "episodes/s",
            f"{f['episodes_per_s']:.3f}",
            f"{lo['episodes_per_s']:.3f}",
            q["episodes_per_s"],
        ),
    ]
    lines = [
        f"PPO-Lag full vs LoRA, SmolLM2-135M shape, {r['rounds']} round(s) of "
        f"{r['workload']['steps']} iterations x {r['workload']['rollout']} episodes; load "
        f"{r['load_avg_1m'][0]:.1f} -> {r['load_avg_1m'][1]:.1f}",
        "",
        "| | full | LoRA | LoRA / full |",
        "|---|---|---|---|",
        *(f"| {name} | {a} | {b} | {ratio:.3f}x |" for name, a, b, ratio in rows),
        "",
        f"Bar: LoRA peak RSS <= {r['bar']['max_peak_rss_ratio']}x the full run's: "
        + ("met" if r["bar"]["met"] else "NOT met")
        + f" ({q['peak_rss_mb']:.3f}x). episodes/s: median of the iterations after the first.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
