"""The environment of every child process a test starts: the test process's rendezvous
variables removed (a process group of the tests sets MASTER_PORT, RANK, ...: a child that
inherits them joins or collides with it), offline hub and logger; a free port for a child
that launches ranks of its own; and the Ctrl-C of a terminal for a child a test types into."""

from __future__ import annotations

import os
import signal
import socket

RENDEZVOUS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_SIZE",
    "LOCAL_WORLD_SIZE",  # torchrun; also left behind by an in-process vLLM engine
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


def terminal_signals() -> None:
    """`preexec_fn` of a child that a test drives as a user at a terminal would: SIGINT (and
    SIGQUIT) at their defaults, as a shell gives them to a foreground program.

    Why: a test run started in the background by a non-interactive shell (`make test &` in a
    script, a CI step, a job runner) starts with SIGINT ignored, an ignored signal stays ignored
    across fork and exec, and Python installs its KeyboardInterrupt handler only where SIGINT
    was at its default. The child then never sees the Ctrl-C the test types.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
