"""vLLM rollouts: episodes/s of `beaver ppo` with `generation.engine=vllm` against the same run
with the HF engine (`generate` on the actor), split into generation / scoring / training and the
weight push.

Both sides are bench_ppo's beaver side (same config, same models, same prompts; one rollout of
64 prompts x up to 40 sampled tokens, one PPO epoch in two micro-batches), differing only in
`generation.engine`. Work differs in one pass: with HF the old log-probs come from the sampling
scores, with vLLM the actor recomputes them (vLLM's own log-probs are not the training model's),
so the vLLM side's scoring holds one actor forward more. `push_s` is the in-place reload of the
actor's weights into vLLM before every rollout; `first_step_s` the first step with everything
before it (imports, model loads, and for vLLM building its engine).

Runs in the vLLM venv (`make bench-vllm`; the main venv has no vLLM). Result:
benchmarks/results/vllm.json.

    python benchmarks/bench_vllm.py [--blocks 15] [--block-steps 1] [--threads 1]
"""

from __future__ import annotations

import os
from typing import Any

import bench_ppo
import machine
import prepare
import report
from harness import Side, interleave

VLLM = ("generation.engine=vllm",)


def main() -> dict[str, Any]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in the side's process
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    a = report.bench_args(__doc__, blocks=15, block_steps=1, warmup_steps=2)
    prepare.score_model("rm")
    prepare.clean_runs()
    peak, load_start = machine.gemm_peak_flops(), os.getloadavg()
    kwargs = {"steps": a.steps, "algorithm": "ppo"}
    sides = interleave(
        [
            Side("beaver-ppo-hf", bench_ppo.beaver_side, kwargs),
            Side("beaver-ppo-vllm", bench_ppo.beaver_side, {**kwargs, "extra": VLLM}),
        ],
        warmup_steps=a.warmup_steps,
        block_steps=a.block_steps,
        blocks=a.blocks,
        log_dir=prepare.WORK / "logs",
        prefix="vllm",
    )
    shape, prompt = bench_ppo.policy_shape()
    flops = {  # vLLM: the old log-probs from one more actor pass
        "beaver-ppo-hf": machine.ppo_episode_flops(shape, prompt, bench_ppo.NEW_TOKENS, 1, 2, 1),
        "beaver-ppo-vllm": machine.ppo_episode_flops(shape, prompt, bench_ppo.NEW_TOKENS, 2, 2, 1),
    }
    result = report.assemble(
        "vllm",
        sides,
        flops_per_unit=flops,
        unit="episodes/s",
        peer="beaver-ppo-hf",
        peak=peak,
        workload=bench_ppo.workload(prompt),
        load_average={"start": load_start, "end": os.getloadavg()},
        split={s.name: bench_ppo.split(s) for s in sides},
        first_step_s={s.name: round(s.warmup[0]["seconds"], 1) for s in sides},
        trend=report.check_trends(sides, "up", metric="reward"),
    )
    report.write("vllm", result)
    report.print_result(result)
    return result


if __name__ == "__main__":
    main()
