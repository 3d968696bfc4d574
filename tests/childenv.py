"""The environment of every child process a test starts: the test process's rendezvous
variables removed (a process group of the tests sets MASTER_PORT, RANK, ...: a child that
inherits them joins or collides with it), offline hub and logger; and a free port for a child
that launches ranks of its own."""

from __future__ import annotations

import os
import socket

RENDEZVOUS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "CROSS_RANK",
    "CROSS_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
)


def child_env(**extra: str) -> dict[str, str]:
    """`os.environ` without the rendezvous variables, offline, one thread per process, plus
    `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port free right now (for `launch.master_port` of a multi-rank child)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
