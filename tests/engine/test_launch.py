"""Re-launching through the DeepSpeed launcher: the command, the environment, when it happens.
(The two-rank run itself is `tests/stages/test_sft.py::test_two_cpu_ranks_through_the_launcher`.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from beaver.config.sections import LaunchCfg
from beaver.engine import dist
from beaver.engine.launch import launcher_command, launcher_env, relaunch_if_requested
from beaver.errors import UserError

ARGV = [
    "sft",
    "--config",
    "launch.yaml",
    "launch.num_gpus=2",
    "optim.lr=1e-3",
    "launch.master_port=1234",
]


def _clean_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")


def test_command_strips_launch_overrides_and_disables_relaunch() -> None:
    cmd = launcher_command(LaunchCfg(num_gpus=2, master_port=29555), ARGV)
    assert cmd[:4] == [sys.executable, "-u", "-m", "deepspeed.launcher.runner"]
    joined = " ".join(cmd)
    assert "--num_gpus 2" in joined and "--master_port 29555" in joined
    assert "--hostfile" not in joined and "--master_addr" not in joined
    tail = cmd[cmd.index("--module") :]
    assert tail == [
        "--module",
        "beaver",
        "sft",
        "--config",
        "launch.yaml",
        "optim.lr=1e-3",
        "launch.num_gpus=0",
        "launch.hostfile=null",
    ]
    assert "--no_local_rank" in cmd


def test_multi_node_command(tmp_path: Path) -> None:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    cfg = LaunchCfg(hostfile=str(hostfile), num_nodes=2, master_addr="node1")
    joined = " ".join(launcher_command(cfg, ["sft"]))
    assert f"--hostfile {hostfile} --num_nodes 2" in joined and "--master_addr node1" in joined
    assert "--num_gpus" not in joined  # every slot of the hostfile
    with pytest.raises(UserError, match="does not exist"):
        launcher_command(LaunchCfg(hostfile=str(tmp_path / "missing")), ["sft"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only environment settings")
def test_cpu_ranks_get_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = launcher_env()
    assert env["OMP_NUM_THREADS"] == "1" and env["DS_ACCELERATOR"] == "cpu"
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert launcher_env()["OMP_NUM_THREADS"] == "4"  # the user's choice wins


def test_relaunch_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class FakeChild:
        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            calls.append(cmd)

        def wait(self) -> int:
            return 3

    monkeypatch.setattr("beaver.engine.launch.subprocess.Popen", FakeChild)
    _clean_launcher_env(monkeypatch)
    relaunch_if_requested(LaunchCfg(), ARGV)  # num_gpus 0, no hostfile: stays in-process
    assert calls == []
    with pytest.raises(SystemExit) as exit_info:
        relaunch_if_requested(LaunchCfg(num_gpus=2), ARGV)
    assert exit_info.value.code == 3 and len(calls) == 1  # the launcher's exit code
    monkeypatch.setenv("LOCAL_SIZE", "2")  # already a rank under the launcher: never again
    assert dist.under_launcher()
    relaunch_if_requested(LaunchCfg(num_gpus=2), ARGV)
    assert len(calls) == 1
