"""Models for inference: causal LMs, tokenizers and score models on the best device, in eval mode.

Thin wrappers over `beaver.models.loading` (which turns a user's mistake into a `UserError`):
a model path becomes a `ModelCfg`, the device is CUDA when present (bf16 when the GPU supports
it, else fp16) or the CPU (fp32). Score heads stay fp32 whatever the backbone's dtype.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from beaver.config import ModelCfg
from beaver.errors import UserError
from beaver.models.loading import check_model_source, load_causal_lm, load_tokenizer
from beaver.models.score import ScoreModel, is_score_model_dir, load_score_model


def pick_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def check_models(**paths: str | None) -> None:
    """Refuse, before anything loads, a local model path that is missing; the message names the
    config key (`red_model`, `models`...). Hub names (`org/name`) pass through."""
    for key, path in paths.items():
        if path is None:
            continue
        local = path.startswith((".", "/", "~")) or path.count("/") > 1
        if local and not Path(path).expanduser().exists():
            raise UserError(f"{key}: model folder not found: {path}")


def _quiet() -> None:
    """No weight-loading progress bar per model: it would drown the chat."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def inference_tokenizer(path: str, trust_remote_code: bool = False, side: str = "left") -> Any:
    """The tokenizer of a model folder or hub name (left padding suits batched generation)."""
    return load_tokenizer(ModelCfg(name_or_path=path, trust_remote_code=trust_remote_code), side)


def inference_lm(path: str, trust_remote_code: bool = False) -> nn.Module:
    """A causal LM in eval mode on `pick_device()`."""
    _quiet()
    device = pick_device()
    cfg = ModelCfg(name_or_path=path, trust_remote_code=trust_remote_code)
    return load_causal_lm(cfg, pick_dtype(device)).to(device).eval()


def inference_score_model(path: str, trust_remote_code: bool = False) -> ScoreModel:
    """A score model written by `beaver rm` / `beaver cm`, in eval mode on `pick_device()`."""
    check_model_source(path, "score model")
    if not is_score_model_dir(path):
        raise UserError(
            f"{path} is not a score model (it has no score_config.json): train one with "
            "`beaver rm` or `beaver cm`"
        )
    _quiet()
    device = pick_device()
    cfg = ModelCfg(name_or_path=path, trust_remote_code=trust_remote_code)
    return load_score_model(cfg, pick_dtype(device)).to(device).eval()


def short_name(name: str) -> str:
    """A label for a model path: its last two parts (`toyworld/model`)."""
    parts = Path(name.rstrip("/")).parts
    return "/".join(parts[-2:]) if parts else name


def unique_labels(names: list[str]) -> list[str]:
    """Short labels, numbered when two would be equal."""
    labels = [short_name(n) for n in names]
    return [f"{lab} #{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
