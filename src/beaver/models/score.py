"""The score model: a causal LM's backbone plus a linear head on every token.

Serves the reward model, the cost model and both PPO critics (ALGORITHMS.md, "Score model").
The head runs in fp32 whatever the backbone's precision, and the end score is read at the last
real token found from the attention mask, never from token ids (pad == eos is common).

A multi-head cost model (`beaver cm` with `score.heads`) keeps the one overall cost head, so it
is a cost model wherever one is expected, and adds `category_head`: Linear(hidden, H), one
score per harm category (`heads` names them), read with `category_end_scores`. A score model
loaded with `head=NAME` is a one-head model whose head is that category's (a critic for one
category's cost stream).

On disk a score model is an HF folder: the backbone (`save_pretrained`, loadable by plain
`transformers.AutoModel`), the tokenizer, `score_head.safetensors` (head weights and the
normaliser's statistics) and `score_config.json` (score type, normaliser kind, category heads). With a LoRA
backbone the adapter folder (`adapter/` beside it) holds the backbone's adapter, the head and the
score config; loaded, it is the backbone with the adapter merged plus the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from beaver.algo import Normalizer, ScoreKind, build_normalizer, gather_end_scores
from beaver.algo.masks import last_token_index, position_ids_from_attention_mask
from beaver.files import read_json, write_json
from beaver.models.packing import pack_for, packed_call, unpack

if TYPE_CHECKING:
    from beaver.engine.build import DeepSpeedSpec

NormalizerKind = Literal["none", "running", "ema"]
_NORMALIZER_CLASS = {"none": None, "running": "RunningMeanStd", "ema": "ExponentialMovingAverage"}
HEAD_FILE = "score_head.safetensors"
CONFIG_FILE = "score_config.json"


class FP32Linear(nn.Linear):
    """A linear layer that computes in fp32 whatever dtype its weights were cast to.

    Called as a module (not through `F.linear` on its weights) so that ZeRO-3 gathers its
    partitioned parameters in the forward hook, as for every other module.
    """

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.weight.float(), bias)


@dataclass(frozen=True)
class ScoreOutput:
    """scores: (B, L) fp32 score of every token; end_scores: (B,) fp32 at the last real token;
    category_end_scores: (B, H) fp32 of the H category heads at the last real token (None for
    a one-head model)."""

    scores: Tensor
    end_scores: Tensor
    category_end_scores: Tensor | None = None


class ScoreModel(nn.Module):
    """`backbone` (an HF base model returning `last_hidden_state`) + `Linear(hidden, 1)`, and
    `Linear(hidden, H)` for the H category `heads` of a multi-head cost model."""

    def __init__(
        self,
        backbone: nn.Module,
        score_type: ScoreKind,
        normalizer: NormalizerKind = "none",
        momentum: float = 0.9,
        heads: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = int(backbone.config.hidden_size)  # type: ignore[union-attr,arg-type]
        # Stored in the backbone's dtype (ZeRO flattens all parameters of an engine into
        # buffers of one dtype), computed in fp32 by FP32Linear.
        dtype = next(backbone.parameters()).dtype
        self.score_head = FP32Linear(hidden, 1, bias=True, dtype=dtype)
        self.heads: tuple[str, ...] = tuple(heads)
        self.category_head = (
            FP32Linear(hidden, len(self.heads), bias=True, dtype=dtype) if self.heads else None
        )
        self.score_type: ScoreKind = score_type
        self.normalizer_kind: NormalizerKind = normalizer
        self.momentum = momentum
        self.normalizer: Normalizer | None = build_normalizer(
            _NORMALIZER_CLASS[normalizer], momentum=momentum
        )

    @property
    def config(self) -> Any:
        """The backbone's HF config (DeepSpeed and generation helpers look for `.config`)."""
        return self.backbone.config

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, padding_free: bool = False
    ) -> ScoreOutput:
        """`padding_free`: the backbone runs on packed rows (`beaver.models.packing`), its
        hidden states put back in the padded layout, so every output is the padded one's."""
        if padding_free:
            packed = pack_for(self.backbone, input_ids, attention_mask)
            with packed_call(self.backbone, packed) as kwargs:
                hidden = self.backbone(**kwargs, use_cache=False).last_hidden_state
            hidden = unpack(packed, hidden)
        else:
            # Left padding must not shift positions: ids from the mask, not the column index.
            position_ids = position_ids_from_attention_mask(attention_mask)
            hidden = self.backbone(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
        scores = self.score_head(hidden).squeeze(-1)  # (B, L) fp32
        end = gather_end_scores(scores, attention_mask)
        if self.category_head is None:
            return ScoreOutput(scores=scores, end_scores=end)
        # only the last real token's hidden state: per-token category scores are not needed
        last = last_token_index(attention_mask)  # (B,)
        at_end = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, D)
        return ScoreOutput(scores, end, category_end_scores=self.category_head(at_end))

    def head_index(self, name: str) -> int:
        """The column of category head `name` in `category_end_scores`."""
        if name not in self.heads:
            have = f"its heads are {list(self.heads)}" if self.heads else "it has no category heads"
            raise ValueError(f"no category head {name!r}: {have}")
        return self.heads.index(name)

    def activation_checkpointing_enable(self, **kwargs: Any) -> None:
        """Recompute the backbone's activations in backward (the head is too small to matter)."""
        from beaver.engine.build import enable_activation_checkpointing

        enable_activation_checkpointing(self.backbone)

    def normalize(self, end_scores: Tensor) -> Tensor:
        """End scores in the normaliser's units (identity without a normaliser)."""
        if self.normalizer is None:
            return end_scores
        return self.normalizer.normalize(end_scores, self.score_type)

    def load_head_state(self, state: dict[str, Tensor]) -> None:
        head = {
            k.removeprefix("score_head."): v
            for k, v in state.items()
            if k.startswith("score_head.")
        }
        self.score_head.load_state_dict(head)
        if self.category_head is not None:
            self.category_head.load_state_dict(
                {
                    k.removeprefix("category_head."): v
                    for k, v in state.items()
                    if k.startswith("category_head.")
                }
            )
        if self.normalizer is not None:
            norm = {
                k.removeprefix("normalizer."): v
                for k, v in state.items()
                if k.startswith("normalizer.")
            }
            if norm:
                self.normalizer.load_state_dict(norm)


def saved_heads(path: str | Path) -> tuple[str, ...] | None:
    """The category heads a saved score model has (`score_config.json`), None when `path` is not
    a score-model folder (read before anything loads, to check a constraint's `head`)."""
    folder = Path(path)
    if not is_score_model_dir(folder):
        return None
    return tuple(read_json(folder / CONFIG_FILE).get("heads", ()))


def is_score_model_dir(path: str | Path) -> bool:
    """True for a folder written by `save_score_model`."""
    return (Path(path) / CONFIG_FILE).is_file()


def head_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Head weights (fp32) and normaliser statistics out of a full score-model state dict."""
    return {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in state.items()
        if k.startswith(("score_head.", "category_head.", "normalizer."))
    }


def save_score_model(
    model: ScoreModel,
    out_dir: str | Path,
    tokenizer: Any = None,
    state: dict[str, Tensor] | None = None,
    merged: bool = True,
) -> Path:
    """Write backbone (HF format), head + normaliser and score config into `out_dir` (rank 0).

    `state` is the model's full state dict when the caller gathered it (ZeRO-3); by default the
    model's own. A LoRA backbone goes to `adapter/` beside `out_dir` (with the head), and merged
    into `out_dir` when `merged`. Returns the folder to load.
    """
    from beaver.models.saving import write_hf_folders

    state = model.state_dict() if state is None else state
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    meta = {
        "score_type": model.score_type,
        "normalizer": model.normalizer_kind,
        "momentum": model.momentum,
        "hidden_size": int(model.score_head.in_features),
        "heads": list(model.heads),
    }

    def head(folder: Path) -> None:
        save_file(head_state(state), str(folder / HEAD_FILE))
        write_json(folder / CONFIG_FILE, meta)

    return write_hf_folders(model.backbone, backbone, out_dir, tokenizer, merged, extra=head)


def score_model_from_backbone(
    backbone: nn.Module,
    path: str | Path,
    score_type: ScoreKind | None = None,
    normalizer: NormalizerKind = "none",
    momentum: float = 0.9,
    heads: Sequence[str] = (),
    head: str | None = None,
) -> ScoreModel:
    """Wrap a loaded backbone; restore head(s) and normaliser when `path` holds a score model.

    From a plain causal LM (e.g. the SFT model) the head starts fresh with `score_type` (and
    fresh category `heads`). A critic loaded from a reward model keeps the trained head but may
    change `score_type`. `head`: one category head of a multi-head model becomes the one head of
    a one-head model (its weights copied; the other heads left out).
    """
    folder = Path(path)
    if is_score_model_dir(folder):
        meta = read_json(folder / CONFIG_FILE)
        saved = tuple(meta.get("heads", ()))
        model = ScoreModel(
            backbone,
            score_type or meta["score_type"],
            meta["normalizer"],
            meta.get("momentum", momentum),
            heads=saved,
        )
        model.load_head_state(load_file(str(folder / HEAD_FILE)))
        return model if head is None else one_head(model, head)
    if head is not None:
        raise ValueError(f"{folder} is not a score model, so it has no category head {head!r}")
    if score_type is None:
        raise ValueError(f"{folder} is not a score model; say which score_type to start")
    return ScoreModel(backbone, score_type, normalizer, momentum, heads=heads)


def one_head(model: ScoreModel, head: str) -> ScoreModel:
    """`model` with category head `head` as its one head (the overall head and the other
    category heads dropped)."""
    k = model.head_index(head)
    assert model.category_head is not None
    with torch.no_grad():
        model.score_head.weight.copy_(model.category_head.weight[k : k + 1])
        model.score_head.bias.copy_(model.category_head.bias[k : k + 1])
    model.category_head, model.heads = None, ()
    return model


def load_score_model(
    model_cfg: Any,
    dtype: torch.dtype,
    score_type: ScoreKind | None = None,
    normalizer: NormalizerKind = "none",
    momentum: float = 0.9,
    deepspeed: DeepSpeedSpec | None = None,
    trainable: bool = False,
    heads: Sequence[str] = (),
    head: str | None = None,
) -> ScoreModel:
    """A score model from a `ModelCfg`: a saved score model (head restored), or a fresh head on
    any causal LM's backbone (`score_type` required then). Partitioned when `deepspeed` is
    ZeRO-3. A model the stage trains (`trainable`) with `lora` enabled gets a LoRA adapter on its
    backbone; the head stays outside it and trains fully. `heads`: category heads of a fresh
    multi-head cost model; `head`: load one category head of a multi-head model as the head."""
    from transformers import AutoModel

    from beaver.models.loading import load_pretrained

    backbone = load_pretrained(AutoModel, model_cfg, dtype, deepspeed, trainable)
    return score_model_from_backbone(
        backbone, model_cfg.name_or_path, score_type, normalizer, momentum, heads, head
    )
