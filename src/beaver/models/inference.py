"""Models for inference (chat, arena, evaluation): on the best device, in eval mode.

Thin wrappers over `beaver.models.loading` (which turns a user's mistake into a `UserError`):
the device is CUDA when present (bf16 when the GPU supports it, else fp16) or the CPU (fp32),
unless the caller names one. Score heads compute in fp32 whatever the backbone's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from beaver.config.sections import ModelCfg
from beaver.errors import UserError
from beaver.models.loading import (
    Role,
    check_model_source,
    check_role,
    load_causal_lm,
    load_tokenizer,
)
from beaver.models.score import ScoreModel, is_score_model_dir, load_score_model


def pick_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _quiet() -> None:
    """No weight-loading progress bar per model: it would drown a chat."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def inference_tokenizer(model: ModelCfg, side: str = "left") -> Any:
    """The model's tokenizer (left padding suits batched generation)."""
    return load_tokenizer(model, side)


def inference_lm(model: ModelCfg, device: torch.device | None = None) -> nn.Module:
    """A causal LM in eval mode on `device` (default `pick_device()`)."""
    _quiet()
    device = device or pick_device()
    return load_causal_lm(model, pick_dtype(device)).to(device).eval()


def inference_score_model(
    model: ModelCfg,
    device: torch.device | None = None,
    role: Role | None = None,
    key: str | None = None,
) -> ScoreModel:
    """A score model written by `beaver rm` / `beaver cm`, in eval mode on `device`; with a
    `role` (`reward`, `cost`) one of that kind only (`key` names the config key)."""
    check_model_source(model.name_or_path, "score model", key)
    if role is not None:
        check_role(model.name_or_path, role, key)
    if not is_score_model_dir(model.name_or_path):
        raise UserError(
            f"{model.name_or_path} is not a beaver score model (it has no score_config.json): "
            "train one with `beaver rm` or `beaver cm`"
        )
    _quiet()
    device = device or pick_device()
    return load_score_model(model, pick_dtype(device)).to(device).eval()
