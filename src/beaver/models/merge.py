"""`beaver merge`: linear merge of causal LMs of one architecture into a plain HF model.

P-SACPO (Wachi et al. 2024): theta = (1 - q) theta_r + q theta_g, where theta_r is the
helpfulness-aligned model (`beaver dpo`, SACPO's first step) and theta_g the safety-aligned one
(`beaver dpo algorithm=sacpo` started from theta_r). The sum is `beaver.algo.linear_merge`,
taken one model at a time; the first model's config and tokenizer go with the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from beaver.algo import linear_merge
from beaver.config.dpo import MergeConfig
from beaver.config.sections import ModelCfg
from beaver.errors import UserError
from beaver.models.loading import dtype_of, load_causal_lm, load_tokenizer
from beaver.models.saving import save_hf


def run(cfg: MergeConfig) -> Path:
    first = cfg.models[0]
    model = load_causal_lm(first, torch.float32)  # the merged weights are written into it
    dtype = _saved_dtype(first) if cfg.dtype == "auto" else dtype_of(cfg.dtype)
    tokenizer = load_tokenizer(first)
    arch = type(model).__name__

    def states() -> Iterator[dict[str, Tensor]]:
        yield model.state_dict()
        for other in cfg.models[1:]:
            m = load_causal_lm(other, torch.float32)
            if type(m).__name__ != arch:
                raise UserError(
                    f"cannot merge {other.name_or_path} ({type(m).__name__}) into "
                    f"{first.name_or_path} ({arch}): one architecture only"
                )
            yield m.state_dict()
            del m

    try:
        merged = linear_merge(states(), cfg.weights)
    except ValueError as err:
        raise UserError(f"cannot merge {[m.name_or_path for m in cfg.models]}: {err}") from None
    model.load_state_dict(merged)
    model.to(dtype)
    out = save_hf(model, tokenizer, Path(cfg.output_dir))
    weights = ", ".join(
        f"{w:g} x {m.name_or_path}" for w, m in zip(cfg.weights, cfg.models, strict=True)
    )
    print(f"merged {weights} -> {out}")
    return out


def _saved_dtype(model_cfg: ModelCfg) -> torch.dtype:
    """The dtype a model folder was saved in (loading in fp32 overwrites it in the config)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        str(Path(model_cfg.name_or_path).expanduser()),
        trust_remote_code=model_cfg.trust_remote_code,
    )
    saved = getattr(config, "dtype", None)
    return saved if isinstance(saved, torch.dtype) else torch.float32
