"""`beaver demo`: the toy-world pipeline from the built-in toy configs (what `make demo` runs).

Each stage is a plain `beaver COMMAND --config ...` run in its own process, read top to bottom
in `ONLINE` and `OFFLINE`: the same commands a user types. The built-in configs write to
`output/demo/`; `--output DIR` writes to DIR instead: every `output/demo` path in them is
rewritten to DIR and the configs actually run are saved in `DIR/configs/` (rerun any stage by
hand with `beaver CMD --config DIR/configs/NAME.yaml`). The table at the end is
`beaver eval toyworld`'s own. `--quick` shrinks the world and every stage to a few steps: it
checks that the pipeline runs (a couple of minutes on 2 cores); it learns nothing to speak of.

`--offline` runs the offline methods instead of PPO and reward shaping: DPO, SafeDPO, SACPO and
P-SACPO from the same SFT model on the same preference pairs, PPO-Lag beside them, and a table
of each method's cost (wall time, training time, peak memory) after the judge's. It reuses the
world, SFT, reward and cost models of an earlier demo in the same folder when they are there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from beaver.config.builtin import builtin_or_error
from beaver.console import plain_console
from beaver.errors import UserError
from beaver.files import read_json, write_json

DEFAULT_DIR = "output/demo"
# `output/demo` where a path starts: alone, after a spec's `:`, never inside another name
_DEMO_PATH = re.compile(r"(?<![\w./-])output/demo(?=/|$)")


@dataclass(frozen=True)
class Stage:
    """One `beaver` command of the demo, with its built-in config."""

    title: str
    command: tuple[str, ...]
    config: str
    """Built-in config name; the run's folder is its `output_dir`."""
    quick: tuple[str, ...] = ()
    """Overrides of `--quick`: a tiny world, a few steps."""


_FEW = ("train.max_steps=3",)
_RL = ("train.max_steps=2", "ppo.rollout_batch_size=32")
WORLD = Stage(
    "toy world: datasets, tokenizer, tiny model, ground-truth judge",
    ("toyworld",),
    "toy/toyworld",
    (
        "num_sft=512",
        "num_preference=256",
        "num_preference_test=64",
        "num_rl_prompts=64",
        "num_eval_prompts=32",
        "model.hidden_size=32",
        "model.num_layers=1",
        "model.num_heads=2",
    ),
)
SFT = Stage(
    "SFT: the tiny model learns the world's language from the behaviour policy",
    ("sft",),
    "toy/sft",
    _FEW,
)
RM = Stage("reward model (helpfulness)", ("rm",), "toy/rm", _FEW)
CM = Stage("cost model (harm)", ("cm",), "toy/cm", _FEW)
PPO_LAG = Stage("PPO-Lagrangian: reward under a cost constraint", ("ppo-lag",), "toy/ppo-lag", _RL)
ONLINE = (
    WORLD, SFT, RM, CM,
    Stage("PPO: reward only", ("ppo",), "toy/ppo", _RL),
    Stage("reward shaping: R - lambda_fixed * C (baseline)", ("ppo-lag",),
          "toy/reward-shaping", _RL),
    PPO_LAG,
    Stage("evaluation of all four policies on held-out prompts by the ground-truth judge",
          ("eval", "toyworld"), "toy/eval"),
)  # fmt: skip
MERGE = Stage("P-SACPO: the linear merge of the DPO and SACPO models", ("merge",), "toy/p-sacpo")
OFFLINE = (
    PPO_LAG,
    Stage("DPO on helpfulness pairs (also SACPO's first step)", ("dpo",), "toy/dpo", _FEW),
    Stage("SafeDPO: the same pairs, safe answers first, with a safety margin", ("dpo",),
          "toy/safe-dpo", _FEW),
    Stage("SACPO: DPO on safety pairs from the DPO model", ("dpo",), "toy/sacpo", _FEW),
    MERGE,
    Stage("evaluation on held-out prompts by the ground-truth judge", ("eval", "toyworld"),
          "toy/eval-offline"),
)  # fmt: skip
# What a demo folder may hold: anything else means it is not one, and it is never deleted.
DEMO_ENTRIES = frozenset({"toyworld", "sft", "rm", "cm", "ppo", "reward-shaping", "ppo-lag",
                          "dpo", "safe-dpo", "sacpo", "p-sacpo", "offline", "configs",
                          "results.json", "responses.jsonl"})  # fmt: skip
OFFLINE_RUNS = ("ppo-lag", "dpo", "safe-dpo", "sacpo", "p-sacpo", "offline")

console = plain_console()


def rewrite_paths(value: Any, out: str) -> Any:
    """Every `output/demo` path in a config (also inside dataset specs) moved to `out`."""
    if isinstance(value, dict):
        return {k: rewrite_paths(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_paths(v, out) for v in value]
    if isinstance(value, str):
        return _DEMO_PATH.sub(lambda _: out, value)
    return value


def stage_config(stage: Stage, out: Path) -> Path:
    """Write the stage's built-in config, its paths moved to `out`, to `out/configs/`."""
    src = builtin_or_error(stage.config)
    cfg = rewrite_paths(yaml.safe_load(src.read_text()), out.as_posix())
    path = out / "configs" / f"{stage.config.rsplit('/', 1)[-1]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# beaver demo: the built-in config {stage.config}, writing to {out.as_posix()}\n"
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


def run_dir(stage: Stage, out: Path) -> Path:
    """The folder a stage writes (its config's `output_dir`)."""
    cfg = yaml.safe_load((out / "configs" / f"{stage.config.rsplit('/', 1)[-1]}.yaml").read_text())
    return Path(cfg["output_dir"])


def clear(out: Path, entries: tuple[str, ...] | None = None) -> None:
    """Remove an earlier demo's runs (all, or `entries`); a folder holding anything a demo does
    not write is refused, never deleted."""
    if not out.exists():
        return
    if not out.is_dir() or not {p.name for p in out.iterdir()} <= DEMO_ENTRIES:
        raise UserError(
            f"{out} holds files that are not an earlier demo's; choose an empty or new folder "
            "with --output DIR"
        )
    for name in entries if entries is not None else sorted(DEMO_ENTRIES):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def run_stage(stage: Stage, out: Path, step: str, quick: bool) -> float:
    """Run one stage as `python -m beaver ...`; its wall seconds. A failed stage stops the demo."""
    console.print(f"\n== {step} {stage.title}".replace("==  ", "== "))
    config = stage_config(stage, out)
    args = [sys.executable, "-m", "beaver", *stage.command, "--config", str(config)]
    args += list(stage.quick) if quick else []
    start = time.perf_counter()
    done = subprocess.run(args, check=False)
    if done.returncode != 0:
        err = UserError(
            f"demo stage `beaver {' '.join(stage.command)}` ({stage.config}) failed with exit "
            f"code {done.returncode} (its message is above); its config: {config}"
        )
        err.exit_code = done.returncode  # the stage's own code
        raise err
    return time.perf_counter() - start


def _environment() -> None:
    """Offline hub, offline wandb, one intra-op thread: the toy models' matrices are too small
    to gain from a second one, and two threads slow down up to 10x whenever anything else
    shares the cores (measured on 2 cores). Values already set are kept."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("WANDB_MODE", "offline"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("OMP_NUM_THREADS", "1")):  # fmt: skip
        os.environ.setdefault(key, value)


def run(output: str | Path = DEFAULT_DIR, offline: bool = False, quick: bool = False) -> None:
    """The demo: the online pipeline, or (`offline`) the offline methods beside PPO-Lag."""
    _environment()
    out, start = Path(output), time.perf_counter()
    if offline:
        run_offline(out, quick)
        return
    clear(out)  # a fresh run (stages refuse to mix with an earlier run's checkpoints)
    for i, stage in enumerate(ONLINE, start=1):
        step = f"{i}/{len(ONLINE) - 1}" if i < len(ONLINE) else ""
        run_stage(stage, out, step, quick)
    console.print(
        f"\ndemo finished in {time.perf_counter() - start:.0f} s; results: "
        f"{out / 'results.json'}, PPO-Lag's lambda and cost: {out / 'ppo-lag' / 'training.png'}"
    )


def _have_model(stage: Stage, out: Path) -> bool:
    stage_config(stage, out)
    return (run_dir(stage, out) / "model" / "config.json").is_file()


def run_offline(out: Path, quick: bool) -> None:
    """The offline methods and PPO-Lag from the same SFT, reward and cost models."""
    start = time.perf_counter()
    clear(out, OFFLINE_RUNS)
    if not _have_model(SFT, out):
        clear(out)
        run_stage(WORLD, out, "", quick)
        run_stage(SFT, out, "", quick)
    for stage in (RM, CM):
        if not _have_model(stage, out):
            shutil.rmtree(run_dir(stage, out), ignore_errors=True)
            run_stage(stage, out, "", quick)
    seconds = {}
    for i, stage in enumerate(OFFLINE, start=1):
        seconds[stage.config] = run_stage(stage, out, f"{i}/{len(OFFLINE)}", quick)
    text = cost_table(out, seconds[MERGE.config])
    console.print(text, end="")
    console.print(
        f"\noffline demo finished in {time.perf_counter() - start:.0f} s; table: "
        f"{out / 'offline' / 'table.md'}"
    )


# policy -> the runs whose training it needed (beyond the SFT model every method starts from)
RUNS: dict[str, list[str]] = {
    "sft": [],
    "ppo-lag": ["ppo-lag"],
    "dpo": ["dpo"],
    "safe-dpo": ["safe-dpo"],
    "sacpo": ["dpo", "sacpo"],
    "p-sacpo": ["dpo", "sacpo"],
}
# PPO-Lag also needs its reward and cost models; shown in their own column
PREREQ = {"ppo-lag": ["rm", "cm"]}


def cost_table(demo: Path, merge_s: float) -> str:
    """The offline demo's cost of each evaluated policy, as a Markdown table; also written to
    `<demo>/offline/table.md` and `timings.json`. The judge's numbers are the evaluation's own
    table (`<demo>/offline/results.json`). SACPO's cost includes its first step (the DPO run it
    starts from); P-SACPO's is SACPO's plus the merge."""
    policies = list(read_json(demo / "offline" / "results.json"))
    rows, timings = [], {}
    for policy in policies:
        runs = RUNS.get(policy, [policy] if (demo / policy / "summary.json").is_file() else [])
        s = [read_json(demo / run / "summary.json") for run in runs]
        train = sum(x["train_seconds"] for x in s)
        wall = sum(x["wall_seconds"] for x in s) + (merge_s if policy == "p-sacpo" else 0.0)
        peak = max((x["peak_rss_mb"] for x in s), default=0.0)
        prereq = sum(read_json(demo / r / "summary.json")["wall_seconds"]
                     for r in PREREQ.get(policy, []))  # fmt: skip
        timings[policy] = {"runs": runs, "train_seconds": round(train, 1),
                           "wall_seconds": round(wall, 1), "peak_rss_mb": peak,
                           "reward_and_cost_models_wall_seconds": round(prereq, 1)}  # fmt: skip
        cost = [f"{train:.0f}", f"{wall:.0f}", f"{prereq:.0f}" if prereq else "-", f"{peak:.0f}"]
        rows.append([policy, *(cost if runs else ["-"] * 4)])
    head = ["policy", "training s", "wall s", "RM + CM wall s", "peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if timings.get("ppo-lag", {}).get("train_seconds") and "safe-dpo" in timings:
        ratio = timings["safe-dpo"]["train_seconds"] / timings["ppo-lag"]["train_seconds"]
        lines += ["", f"SafeDPO training time / PPO-Lag's RL training time: {ratio:.2f}"]
        timings["safe_dpo_over_ppo_lag_train"] = {"ratio": round(ratio, 3)}
    text = "\n".join(lines) + "\n"
    (demo / "offline" / "table.md").write_text(text)
    write_json(demo / "offline" / "timings.json", timings)
    return text
