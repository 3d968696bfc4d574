"""A whole toy-world PPO run learns the same with vLLM rollouts as with HF `generate`.

`beaver demo`'s pipeline (its stages and built-in configs, `beaver.demo`) on a smaller world,
the one the benchmarks use: toy world (4k SFT samples, 4k preference pairs, 512 RL prompts, the
default 128 x 4 Llama with its tied LM head), SFT (2 epochs), reward model (1 epoch), then the
built-in `toy/ppo` config for STEPS rollouts of 64 prompts, once with `generation.engine=hf` and
once with `vllm`, same seed.

The answers differ (vLLM and HF draw from their own RNGs), so the curves are compared as two
samples of one random process, with tolerances from the spread of HF against HF:

- learning: mean reward of the last K rollouts minus that of the first K, for each engine, at
  least MIN_RISE;
- agreement: |difference of the last-K means| at most END_TOL, and the per-rollout mean
  |difference| at most CURVE_TOL.

Measured on 2026-12-02 (2 shared cores, load 2.0-2.4; `measure_spread()`: each engine with
seeds 1, 2, 3, 20 rollouts each, K = 5):

- rise: HF 1.12, 1.09, 1.29; vLLM 0.97, 1.07, 1.04 (MIN_RISE 0.6: about half the smallest);
- last-5 means |diff|: HF seed pairs 0.20, 0.02, 0.18; HF vs vLLM at the same seed 0.06, 0.02,
  0.11 (END_TOL 0.4: twice the largest HF-vs-HF);
- per-rollout mean |diff|: HF seed pairs 0.22, 0.20, 0.23; HF vs vLLM 0.15, 0.14, 0.20
  (CURVE_TOL 0.45: twice the largest HF-vs-HF).

The tolerances stay well under the rise, and a vLLM engine whose policy is not the actor's
fails them: before the two fixes in `beaver.models.vllm_engine` (a stale tied LM head; one seed
shared by the whole batch) the vLLM run's last-5 mean was 0.76 from HF's and its per-rollout
difference 0.71 (with only the head fixed: 1.10 and 0.80; both fixed: 0.09 and 0.16), on the
benchmarks' world of the same sizes with the default seed 42.
Run by `make test-vllm` (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

from beaver import demo  # noqa: E402
from beaver.report.plots import read_metrics  # noqa: E402
from childenv import RENDEZVOUS  # noqa: E402

STEPS, K, SEED = 20, 5, 1
MIN_RISE, END_TOL, CURVE_TOL = 0.6, 0.4, 0.45

WORLD = ("num_sft=4000", "num_preference=4000", "num_preference_test=128")
WORLD += ("num_rl_prompts=512", "num_eval_prompts=32")
SFT = ("train.epochs=2", "train.eval_strategy='no'")
RM = ("train.eval_strategy='no'",)
PPO = next(s for s in demo.ONLINE if s.config == "toy/ppo")


def run_stage(stage: demo.Stage, out: Path, overrides: tuple[str, ...]) -> None:
    """The demo's stage with `overrides`, in a `beaver` process that does not inherit the
    rendezvous variables (RANK, WORLD_SIZE, ...) an in-process vLLM engine of an earlier test
    leaves in this process's environment."""
    with pytest.MonkeyPatch.context() as env:
        for key in RENDEZVOUS:
            env.delenv(key, raising=False)
        demo.run_stage(replace(stage, quick=overrides), out, "", quick=True)


def build_models(out: Path) -> Path:
    """World, SFT and reward model through the demo's own stages (each a `beaver` process)."""
    for stage, overrides in ((demo.WORLD, WORLD), (demo.SFT, SFT), (demo.RM, RM)):
        run_stage(stage, out, overrides)
    return out


def reward_curve(out: Path, engine: str, seed: int) -> list[float]:
    """`rollout/reward` of every rollout of the demo's PPO config with `engine`."""
    run = out / f"ppo-{engine}-{seed}"
    overrides = (f"output_dir={run}", f"train.max_steps={STEPS}", f"train.seed={seed}")
    run_stage(PPO, out, (*overrides, f"generation.engine={engine}"))
    return [row["rollout/reward"] for row in read_metrics(run / "metrics.jsonl")]


def rise(curve: list[float]) -> float:
    return statistics.fmean(curve[-K:]) - statistics.fmean(curve[:K])


def end_gap(a: list[float], b: list[float]) -> float:
    return abs(statistics.fmean(a[-K:]) - statistics.fmean(b[-K:]))


def curve_gap(a: list[float], b: list[float]) -> float:
    return statistics.fmean(abs(x - y) for x, y in zip(a, b, strict=True))


def measure_spread(out: Path, seeds: tuple[int, ...] = (1, 2, 3)) -> dict[str, list[float]]:
    """The numbers of the module docstring (not a test: about 8 minutes): each engine with
    each seed; HF against HF over seed pairs, HF against vLLM at the same seed."""
    hf = [reward_curve(out, "hf", s) for s in seeds]
    vllm = [reward_curve(out, "vllm", s) for s in seeds]
    pairs = list(itertools.combinations(hf, 2))
    same_seed = list(zip(hf, vllm, strict=True))
    return {
        "hf": hf,
        "vllm": vllm,
        "rises_hf": [rise(c) for c in hf],
        "rises_vllm": [rise(c) for c in vllm],
        "end_hf": [end_gap(a, b) for a, b in pairs],
        "end_hv": [end_gap(a, b) for a, b in same_seed],
        "curve_hf": [curve_gap(a, b) for a, b in pairs],
        "curve_hv": [curve_gap(a, b) for a, b in same_seed],
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models(tmp_path_factory.mktemp("vllm-curve"))


def test_vllm_rollouts_learn_as_hf_rollouts_do(models: Path) -> None:
    hf = reward_curve(models, "hf", SEED)
    vllm = reward_curve(models, "vllm", SEED)
    assert len(hf) == len(vllm) == STEPS
    summary = f"hf {[round(x, 2) for x in hf]}\nvllm {[round(x, 2) for x in vllm]}"
    assert rise(hf) >= MIN_RISE, summary
    assert rise(vllm) >= MIN_RISE, summary
    assert end_gap(hf, vllm) <= END_TOL, summary
    assert curve_gap(hf, vllm) <= CURVE_TOL, summary
