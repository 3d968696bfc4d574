"""Re-launch the current `beaver` command through the DeepSpeed launcher when asked.

`beaver sft ... launch.num_gpus=2` (or `launch.hostfile=H`) becomes
`python -m deepspeed.launcher.runner --num_gpus 2 ... --no_local_rank --module beaver sft ...`
with the `launch.*` overrides removed and `launch.num_gpus=0 launch.hostfile=null` appended, so a
child never re-launches (even when the YAML file sets `launch:`). Users may also call the
launcher themselves: `deepspeed --num_gpus N --module beaver sft ...` (the CLI drops the
`--local_rank=N` argument the launcher appends).

On CPU every rank gets `OMP_NUM_THREADS=1` (unless set): ranks that each use every core run up
to 10x slower (PLATFORM.md).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys

import torch

from beaver.config.sections import LaunchCfg
from beaver.engine import dist
from beaver.errors import UserError

_LAUNCH_OVERRIDE = re.compile(r"^launch\.[A-Za-z_]+=")


def wants_launcher(launch: LaunchCfg) -> bool:
    return (launch.num_gpus > 0 or launch.hostfile is not None) and not dist.under_launcher()


def launcher_command(launch: LaunchCfg, argv: list[str]) -> list[str]:
    """The DeepSpeed launcher command that runs `beaver <argv>` on every rank."""
    cmd = [sys.executable, "-u", "-m", "deepspeed.launcher.runner"]
    if launch.hostfile is not None:
        if not os.path.isfile(launch.hostfile):
            raise UserError(f"launch.hostfile={launch.hostfile!r} does not exist.")
        cmd += ["--hostfile", launch.hostfile, "--num_nodes", str(launch.num_nodes)]
    if launch.num_gpus > 0:
        cmd += ["--num_gpus", str(launch.num_gpus)]
    cmd += ["--master_port", str(launch.master_port)]
    if launch.master_addr:
        cmd += ["--master_addr", launch.master_addr]
    child_args = [a for a in argv if not _LAUNCH_OVERRIDE.match(a)]
    cmd += [
        "--no_local_rank",
        "--module",
        "beaver",
        *child_args,
        "launch.num_gpus=0",
        "launch.hostfile=null",
    ]
    return cmd


def launcher_env() -> dict[str, str]:
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def relaunch_if_requested(launch: LaunchCfg, argv: list[str] | None = None) -> None:
    """Run this command through the launcher and exit with its code, if `launch` asks for it."""
    if not wants_launcher(launch):
        return
    cmd = launcher_command(launch, list(sys.argv[1:] if argv is None else argv))
    print(f"beaver: launching {shlex.join(cmd)}", flush=True)
    child = subprocess.Popen(cmd, env=launcher_env())
    try:
        code = child.wait()
    except KeyboardInterrupt:  # the launcher got the same Ctrl-C; let it stop its ranks
        child.send_signal(signal.SIGINT)
        code = child.wait()
    raise SystemExit(code)
