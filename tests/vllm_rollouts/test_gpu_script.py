"""benchmarks/gpu.py's vLLM side (PPO-Lag with `generation.engine=vllm`), run by its
`--cpu-smoke` on the CPU build of vLLM: the GPU run takes the same code path, and no GPU is
needed to find out that it breaks. A test of the script, not a measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from childenv import child_env

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

BENCH = Path(__file__).parents[2] / "benchmarks"


def test_gpu_script_smoke_times_ppo_lag_with_vllm_rollouts() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((BENCH / ".work" / "gpu-smoke.json").read_text())
    hf, vllm = result["ppo_lag"], result["ppo_lag_vllm"]
    assert (hf["engine"], vllm["engine"]) == ("hf", "vllm")
    assert vllm["median"] > 0 and vllm["over_hf"] > 0
    assert set(vllm["split_seconds"]) == {"generate", "score", "train", "push"}
    assert vllm["response_length"] > 0
