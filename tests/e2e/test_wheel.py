"""What a pip user gets: the wheel, installed into a fresh virtualenv outside the repository, run
from an empty folder: the built-in configs, the toy world, a short SFT from a built-in config,
and `beaver demo --quick`. The wheel builds without a setuptools warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TORCH = os.environ.get("TORCH", "torch==2.13.0")  # the Makefile's pin: the local CPU wheel
# BEAVER_WHEEL_TEST_DEPS=install: install torch and every dependency into the fresh venv from the
# package index too (as a pip user does; 10+ minutes on a loaded 2-core machine).
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding torch and beaver's wheel (built from a clean copy of the tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.split()
    src = tmp / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    build = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w",
                  str(tmp / "dist"), "-v"], tmp)  # fmt: skip
    log = build.stdout + build.stderr
    warnings = [line for line in log.splitlines() if "Warning" in line or "deprecat" in line]
    assert not warnings, "\n".join(warnings)
    (wheel,) = (tmp / "dist").glob("beaver-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp)
    python = str(venv / "bin" / "python")
    if os.environ.get("BEAVER_WHEEL_TEST_DEPS") == "install":  # all from the package index
        _run([python, "-m", "pip", "install", "-q", TORCH], tmp, timeout=1800)
        _run([python, "-m", "pip", "install", "-q", str(wheel)], tmp, timeout=1800)
        return venv
    # Default: the dependencies are borrowed from this interpreter's site-packages (a plain path
    # in a .pth file: its own .pth files, beaver's editable finder among them, are not run), so
    # the test needs no index and minutes less; `pip check` still checks that the wheel's
    # requirements are met by what is visible.
    _run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp)
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
    here = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site.stdout.strip()) / "borrowed-deps.pth").write_text("\n".join(here) + "\n")
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    # (the fresh venv's own old setuptools may not suit torch's metadata: not beaver's concern)
    assert not [ln for ln in check.stdout.splitlines() if ln.startswith("beaver ")], check.stdout
    return venv


def test_a_pip_user_runs_configs_toyworld_sft_and_the_demo(installed: Path, tmp_path: Path) -> None:
    beaver = str(installed / "bin" / "beaver")
    here = tmp_path / "empty"
    here.mkdir()
    where = _run([str(installed / "bin" / "python"), "-c",
                  "import beaver.configs as c; print(c.__file__)"], here).stdout  # fmt: skip
    assert str(installed) in where and str(ROOT) not in where  # the wheel's copy, not the repo

    listed = _run([beaver, "configs"], here).stdout
    assert "toy/sft" in listed and "ppo-lag" in listed
    shown = _run([beaver, "sft", "--config", "toy/sft", "--print-config"], here).stdout
    assert "output_dir: output/demo/sft" in shown

    from beaver.demo import WORLD

    _run([beaver, "toyworld", "--config", "toy/toyworld", *WORLD.quick], here)
    assert (here / "output" / "demo" / "toyworld" / "model" / "config.json").is_file()
    _run([beaver, "sft", "--config", "toy/sft", "train.max_steps=8", "train.eval_strategy=no",
          "logging.log_every=1"], here)  # fmt: skip
    sft = here / "output" / "demo" / "sft"
    rows = [json.loads(line) for line in (sft / "metrics.jsonl").open()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # it learned
    assert (sft / "model" / "config.json").is_file()

    demo = _run([beaver, "demo", "--quick", "--output", "quick-demo"], here, timeout=900)
    assert "toy world: held-out prompts, ground-truth judge" in demo.stdout
    results = json.loads((here / "quick-demo" / "results.json").read_text())
    assert set(results) == {"sft", "ppo", "reward-shaping", "ppo-lag"}
