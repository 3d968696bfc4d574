"""The benchmark harness and its arithmetic (benchmarks/), without running a benchmark.

The harness is tested with sides whose steps take a known time on the pacer's clock (a fake
clock in the side's process, so the numbers do not depend on how exactly a loaded machine
sleeps): interleaving, block counts, throughput and the final peak-RSS message must come out
right. The FLOP model is checked
against a real Llama's parameter count, the trend check on curves that do and do not agree,
and the GPU script must refuse a machine without CUDA with a message.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from childenv import child_env

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402


class _FakeClock:
    """`time` for the harness in a side's process: `perf_counter` reads a number the side
    advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def sleepy_side(pacer: Any, seconds: float, units: float) -> None:
    """A 'training loop' whose steps take exactly `seconds` each on the pacer's clock and
    report a falling loss."""
    clock = _FakeClock()
    harness.time = clock  # type: ignore[assignment]  # this process only (a spawned side)
    pacer.mark = clock.now
    step = 0
    while True:
        clock.now += seconds
        step += 1
        pacer.step(units=units, loss=10.0 / step)


def test_interleave_times_blocks_and_reports_rss(tmp_path: Path) -> None:
    sides = [
        harness.Side("fast", sleepy_side, {"seconds": 0.01, "units": 5.0}),
        harness.Side("slow", sleepy_side, {"seconds": 0.04, "units": 5.0}),
    ]
    harness.interleave(sides, warmup_steps=2, block_steps=3, blocks=5, log_dir=tmp_path, prefix="t")
    fast, slow = sides
    for side in sides:
        assert len(side.warmup) == 2
        assert [len(b) for b in side.blocks] == [3] * 5
        assert side.peak_rss_mb > 1.0
        assert side.threads >= 1
    # 5 units per 10 ms step = 500/s; per 40 ms step = 125/s
    assert harness.throughput(fast).median == pytest.approx(500)
    assert harness.throughput(slow).median == pytest.approx(125)
    assert report.ratio(fast, slow)["median"] == pytest.approx(4.0)
    # the loss curve runs across warm-up and blocks without restarting
    assert harness.curve(fast)[:3] == [10.0, 5.0, 10.0 / 3]


def test_replicas_share_the_blocks(tmp_path: Path) -> None:
    side = harness.Side("a", sleepy_side, {"seconds": 0.01, "units": 1.0})
    harness.interleave(
        [side], warmup_steps=1, block_steps=2, blocks=4, log_dir=tmp_path, prefix="t", replicas=2
    )
    assert side.replica_of_block == [0, 1, 0, 1]
    assert len(side.blocks) == 4
    # the curve follows one process: warm-up step, then its two blocks of two steps
    assert harness.curve(side) == [10.0 / k for k in range(1, 6)]
    assert {p.name for p in tmp_path.iterdir()} == {"t-a-0.log", "t-a-1.log"}


def failing_side(pacer: Any) -> None:
    raise ValueError("broken side")


def test_interleave_reports_a_failing_side(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="broken side"):
        harness.interleave(
            [harness.Side("bad", failing_side)],
            warmup_steps=1,
            block_steps=1,
            blocks=1,
            log_dir=tmp_path,
            prefix="t",
        )


def test_body_params_match_a_real_llama() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    model = LlamaForCausalLM(config)
    linear = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name != "lm_head"
    )
    shape = machine.Shape.of(config)
    assert shape.body_params() == linear
    # forward per token: 2 x (blocks + LM head) + attention 4 L H S
    expected = 2 * (linear + 64 * 100) + 4 * 3 * 64 * 10
    assert shape.forward_per_token(10) == expected
    assert machine.train_flops(shape, 7, 10) == 3 * 7 * expected


def _side_with_curve(name: str, values: list[float]) -> harness.Side:
    side = harness.Side(name, sleepy_side)
    side.blocks = [[{"seconds": 1.0, "units": 1.0, "loss": v} for v in values]]
    side.replica_of_block = [0]
    return side


def test_trend_check_agrees_and_disagrees() -> None:
    a = _side_with_curve("a", [5.0, 4.0, 3.0, 2.5, 2.0])
    b = _side_with_curve("b", [5.1, 4.2, 3.1, 2.4, 2.1])
    assert report.check_trends([a, b], "down")["ok"]  # changes -3.0 and -3.0
    shifted = _side_with_curve("shifted", [6.0, 5.0, 4.2, 3.6, 3.4])  # -2.6: same trend
    assert report.check_trends([a, shifted], "down")["ok"]
    flat = _side_with_curve("flat", [5.0, 5.0, 5.0, 5.0, 5.0])
    assert not report.check_trends([a, flat], "down")["ok"]
    slow = _side_with_curve("slow", [5.0, 4.5, 4.2, 4.0, 3.9])  # -1.1 of -3.0
    assert not report.check_trends([a, slow], "down")["ok"]
    assert not report.check_trends([a, b], "up")["ok"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_gpu_script_refuses_a_cpu_machine() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    assert done.returncode != 0
    assert "needs a CUDA GPU" in done.stderr


@pytest.mark.slow
def test_gpu_script_runs_on_cpu_in_smoke_mode() -> None:
    # Earlier in-process tests leave this process's rendezvous (MASTER_PORT...) in the
    # environment, with its port still listening: the child must pick its own.
    rendezvous = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"}
    env = {k: v for k, v in os.environ.items() if k not in rendezvous}
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ppo_lag:" in done.stdout
    # the vLLM side: timed where vllm imports (tests/vllm_rollouts), else skipped with the reason
    if importlib.util.find_spec("vllm") is None:
        assert "ppo_lag_vllm: skipped: vllm does not import" in done.stdout


def test_cross_ratios_pair_each_beaver_side_with_each_peer_setting() -> None:
    def side(name: str, units: float) -> harness.Side:
        s = harness.Side(name, sleepy_side)
        s.blocks = [[{"seconds": 1.0, "units": units}] for _ in range(3)]
        return s

    sides = [side("beaver", 4.0), side("beaver-packed", 6.0), side("trl", 3.0)]
    sides.append(side("trl-padding-free", 2.0))
    cross = report.cross_ratios(sides, "beaver", "trl")
    # the default `trl` is the main peer (`ratios`), not a cross ratio
    assert set(cross) == {"beaver/trl-padding-free", "beaver-packed/trl-padding-free"}
    assert cross["beaver-packed/trl-padding-free"]["median"] == pytest.approx(3.0)
    assert cross["beaver/trl-padding-free"]["median"] == pytest.approx(2.0)
