"""Save a model (or the model inside a DeepSpeed engine) in HF format, safetensors.

Under ZeRO-3 every rank holds a shard of each parameter: `full_state_dict` gathers them one
parameter at a time onto rank 0 (so peak memory is the model on rank 0 plus one parameter), and
all ranks must call it. The folder is written as `<out>.tmp` and renamed into place, so a crash
never leaves a half-written model where a loader would look.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from beaver.engine import dist


def unwrap(model_or_engine: Any) -> nn.Module:
    """The HF module inside a DeepSpeed engine (or the module itself)."""
    return getattr(model_or_engine, "module", model_or_engine)


def _is_partitioned(p: torch.Tensor) -> bool:
    return hasattr(p, "ds_id")


@torch.no_grad()
def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The full CPU state dict on rank 0 (None elsewhere); collective under ZeRO-3.

    Tied parameters (e.g. input and output embeddings) map to one tensor under both names, so
    transformers' tied-weight handling sees them as shared.
    """
    keys = set(model.state_dict().keys())
    gathered: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) not in gathered:
            if _is_partitioned(param):
                import deepspeed

                with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                    gathered[id(param)] = param.detach().cpu().clone() if dist.is_main() else param
            else:
                gathered[id(param)] = param.detach().cpu()
        if name in keys:
            state[name] = gathered[id(param)]
    for name, buf in model.named_buffers():
        if name in keys:
            state[name] = buf.detach().cpu()
    return state if dist.is_main() else None


def save_hf(model_or_engine: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Write model + tokenizer to `out_dir`, loadable by `AutoModelForCausalLM.from_pretrained`.

    Collective: every rank must call it (ZeRO-3 gathers). Returns `out_dir`.
    """
    model = unwrap(model_or_engine)
    out = Path(out_dir)
    state = full_state_dict(model)
    if dist.is_main():
        assert state is not None
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp), state_dict=state)  # type: ignore[operator]
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        old = out.with_name(out.name + ".old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return out
