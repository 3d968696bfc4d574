"""The benchmarks' shared workload, built once and cached in benchmarks/.work/.

- `world`: a toy world (4k SFT samples, 4k preference pairs, 512 RL prompts) with the default
  tiny Llama (hidden 128, 4 layers, 0.7M parameters): the SFT benchmark starts from its random
  model, as a real SFT run does;
- `sft`: that model after a short beaver SFT (2 epochs), the policy of the PPO and generation
  benchmarks and the backbone of the reward-model benchmark;
- `rm` / `cm`: reward and cost models trained briefly on it (PPO scores with them).

Each step runs the `beaver` CLI in a subprocess (its log next to the artifact) and is skipped when
its output exists. `python benchmarks/prepare.py` builds everything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

WORK = Path(__file__).resolve().parent / ".work"
ROOT = Path(__file__).resolve().parent.parent
WORLD = WORK / "world"
SFT_MODEL = WORK / "sft" / "model"
RM_MODEL = WORK / "rm" / "model"
CM_MODEL = WORK / "cm" / "model"

COMMON = ["deepspeed.zero_stage=0", "deepspeed.precision=fp32", "logging.backend=none"]


def run_dir(name: str) -> Path:
    """A fresh output folder for one benchmark process (`runs/<name>-<pid>`): replicas of a
    side run at the same time and must not share one. Old ones are removed by `clean_runs`."""
    out = WORK / "runs" / f"{name}-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    return out


def clean_runs() -> None:
    """Remove the run folders of earlier benchmark processes (called before a benchmark)."""
    shutil.rmtree(WORK / "runs", ignore_errors=True)


def _beaver(args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "beaver", *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    if done.returncode != 0:
        raise RuntimeError(f"`beaver {' '.join(args[:1])}` failed; see {log}")


def world() -> Path:
    if not (WORLD / "model" / "config.json").exists():
        overrides = [
            f"output_dir={WORLD}",
            "num_sft=4000",
            "num_preference=4000",
            "num_preference_test=256",
            "num_rl_prompts=512",
            "num_eval_prompts=64",
        ]
        _beaver(["toyworld", *overrides], WORK / "logs" / "prepare-world.log")
    return WORLD


def sft_model() -> Path:
    world()
    if not (SFT_MODEL / "config.json").exists():
        overrides = [
            f"output_dir={SFT_MODEL.parent}",
            f"model.name_or_path={WORLD / 'model'}",
            f"data.train=[toyworld-sft:1.0:{WORLD}]",
            "train.epochs=2",
            "train.eval_strategy='no'",
            *COMMON,
        ]
        _beaver(
            ["sft", "--config", "configs/toy/sft.yaml", *overrides],
            WORK / "logs" / "prepare-sft.log",
        )
    return SFT_MODEL


def score_model(kind: str) -> Path:
    """The reward (`rm`) or cost (`cm`) model on the SFT backbone."""
    sft_model()
    out = RM_MODEL if kind == "rm" else CM_MODEL
    if not (out / "score_config.json").exists():
        overrides = [
            f"output_dir={out.parent}",
            f"model.name_or_path={SFT_MODEL}",
            f"data.train=[toyworld-preference:1.0:{WORLD}]",
            f"data.eval=[toyworld-preference-test:1.0:{WORLD}]",
            *COMMON,
        ]
        _beaver(
            [kind, "--config", f"configs/toy/{kind}.yaml", *overrides],
            WORK / "logs" / f"prepare-{kind}.log",
        )
    return out


if __name__ == "__main__":
    import report

    report.use_threads(int(os.environ.get("BENCH_THREADS", "1")))
    for path in (world(), sft_model(), score_model("rm"), score_model("cm")):
        print(path)
