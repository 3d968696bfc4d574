"""Process group set-up and the few collectives the loop and the stages need.

One process without a launcher works: the rendezvous variables get single-process defaults (on a
free port, so concurrent runs on one machine do not collide) and DeepSpeed starts gloo on CPU.
Under a launcher (`deepspeed`, `torchrun`) the variables are already set and only read.

[beaver] Multi-process CPU runs sometimes abort at interpreter exit after training finished
(PLATFORM.md: "terminate called without an active exception"); `finish()` ends each rank with a
barrier, flushed output and `os._exit`.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import warnings
from typing import NoReturn

import torch
import torch.distributed as tdist

log = logging.getLogger(__name__)


def under_launcher() -> bool:
    """True when a launcher started this process.

    The deepspeed launcher sets LOCAL_SIZE, torchrun LOCAL_WORLD_SIZE; the single-process defaults
    below set neither (they may leak into subprocesses of a test, which must not count).
    """
    env = os.environ
    return "LOCAL_SIZE" in env or "LOCAL_WORLD_SIZE" in env or int(env.get("WORLD_SIZE", "1")) > 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _set_single_process_env() -> None:
    """Rendezvous defaults for one process; without them DeepSpeed falls back to mpi4py."""
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def _cpu_threads_per_rank() -> None:
    """Under a launcher on CPU, ranks that each use every core run up to 10x slower (PLATFORM.md)."""
    if torch.cuda.is_available() or "OMP_NUM_THREADS" in os.environ:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", "1")))
    if local > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def init_distributed() -> None:
    """Start the process group once per process (gloo on CPU, nccl on GPU)."""
    if tdist.is_available() and tdist.is_initialized():
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if under_launcher():
        _cpu_threads_per_rank()
    else:
        _set_single_process_env()
    import deepspeed

    # `import deepspeed.comm.torch as m` would bind the real torch (an attribute of deepspeed.comm)
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    if int(os.environ["WORLD_SIZE"]) == 1 and hasattr(ds_torch, "build_shm_op"):
        # The shared-memory allreduce op is a ~30 s JIT build on first use and useless for one rank.
        ds_torch.build_shm_op = lambda: None  # type: ignore[attr-defined]
    _quiet_deepspeed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())


def _quiet_deepspeed() -> None:
    """DeepSpeed logs its whole config at INFO on every rank; keep its warnings only."""
    if os.environ.get("BEAVER_DEBUG"):
        return
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)
    # DeepSpeed still calls all_gather_into_tensor / reduce_scatter_tensor; torch warns per call
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed\..*")


def rank() -> int:
    return tdist.get_rank() if tdist.is_initialized() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return (
        tdist.get_world_size() if tdist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))
    )


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def barrier() -> None:
    if tdist.is_initialized() and world_size() > 1:
        tdist.barrier()


def reduce_values(values: dict[str, float], op: str = "mean") -> dict[str, float]:
    """Reduce a dict of scalars over ranks in one collective (every rank must pass the same keys)."""
    if not values or world_size() == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device())
    reduce_op = tdist.ReduceOp.MAX if op == "max" else tdist.ReduceOp.SUM
    tdist.all_reduce(t, op=reduce_op)
    if op == "mean":
        t /= world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def gather(x: torch.Tensor) -> torch.Tensor:
    """`x` (N, ...) of every rank, concatenated in rank order along dim 0; every rank must pass
    the same shape (the resumable sampler pads each rank to the same number of samples)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    tdist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def finish(exit_code: int = 0) -> None:
    """End the run: in a multi-process run, barrier + flush + `os._exit` (see module docstring).

    A single process returns (or exits with `exit_code` when it is not 0), so in-process callers
    such as tests keep running.
    """
    multi = tdist.is_initialized() and world_size() > 1
    if multi:
        barrier()
        _flush_and_exit(exit_code)
    if exit_code:
        sys.stdout.flush()
        sys.exit(exit_code)


def _flush_and_exit(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
