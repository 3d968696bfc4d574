"""Save a model (or the model inside a DeepSpeed engine) in HF format, safetensors.

Under ZeRO-3 every rank holds a shard of each parameter: `full_state_dict` gathers them one
parameter at a time onto rank 0 (so peak memory is the model on rank 0 plus one parameter), and
all ranks must call it. The folder is written as `<out>.tmp` and renamed into place, so a crash
never leaves a half-written model where a loader would look.

A model under a LoRA adapter (peft) is written twice: its adapter in PEFT format to `adapter/`
beside the model folder, and (by default) its base with the adapter merged in as a plain HF
model to the model folder, so that later stages, `beaver chat` and transformers load it as
before (`beaver.models.adapters`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
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


ADAPTER_DIR = "adapter"


def adapter_dir_of(model_dir: str | Path) -> Path:
    """Where the adapter of the model saved to `model_dir` goes: `adapter/` beside it."""
    return Path(model_dir).with_name(ADAPTER_DIR)


def _replace_folder(out: Path, fill: Callable[[Path], object]) -> None:
    """`fill(tmp)` writes the folder's files; then it replaces `out` in one rename."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def saved_folder(model: nn.Module, out_dir: str | Path, merged: bool = True) -> Path:
    """The folder `write_hf_folders` leaves for later stages to load: `out_dir`, or the adapter
    folder when an adapter model is saved without its merged copy."""
    from beaver.models.adapters import has_adapter

    return adapter_dir_of(out_dir) if has_adapter(model) and not merged else Path(out_dir)


def write_hf_folders(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    out_dir: str | Path,
    tokenizer: Any = None,
    merged: bool = True,
    extra: Callable[[Path], object] | None = None,
) -> Path:
    """Rank 0: write `model` holding `state` in HF format to `out_dir`, with the tokenizer and
    whatever `extra(folder)` adds. A peft model is written as its adapter (PEFT format) to
    `adapter/` beside `out_dir` and, when `merged`, as its base with the adapter merged in to
    `out_dir`. Returns `saved_folder`."""
    from beaver.models.adapters import has_adapter, merge_into_base, rebuild

    def write(folder: Path, hf_model: Any, hf_state: dict[str, torch.Tensor] | None) -> None:
        def fill(tmp: Path) -> None:
            hf_model.save_pretrained(str(tmp), state_dict=hf_state)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            if extra is not None:
                extra(tmp)

        _replace_folder(folder, fill)

    out = Path(out_dir)
    if not has_adapter(model):
        write(out, model, state)
        return out
    rebuilt = rebuild(model, state)
    write(adapter_dir_of(out), rebuilt, None)
    if merged:
        write(out, merge_into_base(rebuilt), None)
    return saved_folder(model, out, merged)


def save_hf(model_or_engine: Any, tokenizer: Any, out_dir: str | Path, merged: bool = True) -> Path:
    """Write model + tokenizer to `out_dir`, loadable by `AutoModelForCausalLM.from_pretrained`
    (a LoRA model: its adapter to `adapter/` beside it, and merged to `out_dir` when `merged`).

    Collective: every rank must call it (ZeRO-3 gathers). Returns the folder to load.
    """
    model = unwrap(model_or_engine)
    state = full_state_dict(model)
    if dist.is_main():
        assert state is not None
        write_hf_folders(model, state, out_dir, tokenizer, merged)
    dist.barrier()
    return saved_folder(model, out_dir, merged)
