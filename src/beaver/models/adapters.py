"""LoRA adapters (peft) on the models a stage trains, and the adapter folders they are saved in.

- `add_adapter` wraps a loaded model in a `PeftModel`: the base weights frozen, low-rank matrices
  on `lora.target_modules` trainable. A score model gets it on its backbone only, so the score
  head stays outside the adapter and trains fully.
- An adapter folder (`adapter_config.json`, PEFT format) stands for the model it was trained
  into: `load_adapter_folder` loads its base (`base_model_name_or_path`) and merges the adapter.
  A stage that trains it with LoRA again adds a fresh adapter on top, so the PPO reference (the
  actor with its adapter disabled) is the model the user named.
- `rebuild` + `merge_into_base` turn a trained adapter model's full state dict (gathered on
  rank 0 under ZeRO-3) into the adapter alone and the base with the adapter merged in, on a copy
  of the model's structure built on the meta device: the live model is never changed, and the
  only new memory is the merged layers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from beaver.config.sections import LoraCfg, ModelCfg
from beaver.errors import UserError
from beaver.files import looks_local, read_json

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    """True for a PEFT adapter folder (as `beaver` writes to `<run>/adapter`)."""
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def has_adapter(model: nn.Module) -> bool:
    """Whether `model` (or a score model's backbone) is a peft model."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _source(name: str) -> str:
    """How an adapter names its base: an absolute path for a local folder (so a later stage finds
    it from any working directory), a hub name as is."""
    return str(Path(name).expanduser().resolve()) if looks_local(name) else name


def add_adapter(model: nn.Module, lora: LoraCfg, base: str, causal: bool) -> nn.Module:
    """`model` under a fresh LoRA adapter (its base weights frozen); `base` is where the base
    comes from, recorded in the adapter's config. `causal`: an LM with an output layer (which
    `all-linear` leaves out), else a backbone."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=TaskType.CAUSAL_LM if causal else None,
    )
    try:
        peft_model = get_peft_model(model, config)  # type: ignore[arg-type]
    except ValueError as err:  # peft: "Target modules {...} not found in the base model"
        raise UserError(f"lora.target_modules={lora.target_modules!r}: {err}") from None
    peft_model.peft_config["default"].base_model_name_or_path = _source(base)
    return peft_model


def adapter_base(folder: str | Path) -> str:
    """The base model an adapter folder was trained on."""
    path = Path(folder).expanduser() / ADAPTER_CONFIG
    base = read_json(path).get("base_model_name_or_path")
    if not base:
        raise UserError(
            f"{path} names no base_model_name_or_path: cannot tell which model it adapts"
        )
    return str(base)


def load_adapter_folder(base_model: nn.Module, folder: str | Path) -> nn.Module:
    """`base_model` with the adapter of `folder` merged in: a plain HF model again."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(base_model, str(Path(folder).expanduser()))
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        text = " ".join(str(err).split())
        raise UserError(f"cannot load the adapter in {folder} onto its base: {text}") from None
    merged = peft_model.merge_and_unload()
    for p in merged.parameters():  # peft froze the base; the stage decides what trains
        p.requires_grad_(True)
    return merged


def base_cfg(model_cfg: ModelCfg, folder: str | Path) -> ModelCfg:
    """A plain `ModelCfg` of the base of the adapter folder `folder` (tokenizer and
    trust_remote_code kept), checked to exist."""
    from beaver.models.loading import check_model_source

    base = adapter_base(folder)
    check_model_source(base, "base model", key=f"{folder}/{ADAPTER_CONFIG}")
    return ModelCfg(name_or_path=base, trust_remote_code=model_cfg.trust_remote_code)


def rebuild(model: nn.Module, state: dict[str, torch.Tensor]) -> Any:
    """A copy of the peft model `model` holding `state` (its full state dict, e.g. gathered
    under ZeRO-3), built on the meta device so that it takes `state`'s tensors without copying.

    Save its adapter (`save_pretrained`, PEFT format) first, then `merge_into_base` it: the
    merge replaces its adapter layers."""
    from peft import get_peft_model

    base = model.get_base_model()  # type: ignore[operator]
    with torch.device("meta"):
        skeleton = type(base)._from_config(base.config)
        config: Any = copy.deepcopy(model.peft_config["default"])  # type: ignore[index]
        rebuilt = get_peft_model(skeleton, config)
    rebuilt.load_state_dict(state, strict=True, assign=True)
    return rebuilt


def merge_into_base(rebuilt: Any) -> nn.Module:
    """The base of a `rebuild` copy with its adapter merged in: a plain HF model.

    `safe_merge` writes every merged weight into a new tensor, so the tensors `rebuild` took
    (the live model's own, without ZeRO-3) are never changed."""
    return rebuilt.merge_and_unload(safe_merge=True)  # type: ignore[no-any-return]


@contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[None]:
    """Run a peft model (or the engine around one) as its base: the PPO reference."""
    from beaver.models.saving import unwrap

    with unwrap(model).disable_adapter():  # type: ignore[operator]
        yield


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters of `model`, counted whole under ZeRO-3 partitioning."""
    trainable = total = 0
    for p in model.parameters():
        n = int(getattr(p, "ds_numel", p.numel()))
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total
