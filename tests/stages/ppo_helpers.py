"""Tiny in-process PPO models (plain modules, no engines) and rollout options for the rollout
and update tests."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

from beaver.config.sections import GenerationCfg
from beaver.models.score import ScoreModel
from beaver.stages.rollout import CostSource, RolloutModels, RolloutOptions

VOCAB, EOS = 48, 2


def _config(pad: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        pad_token_id=pad, bos_token_id=1, eos_token_id=EOS,
    )  # fmt: skip


def rollout_models(pad: int, cost: bool = True) -> RolloutModels:
    def lm(seed: int) -> LlamaForCausalLM:
        torch.manual_seed(seed)
        return LlamaForCausalLM(_config(pad)).eval()

    def score(seed: int, kind: Any) -> ScoreModel:
        torch.manual_seed(seed)
        model = ScoreModel(LlamaModel(_config(pad)), kind)
        torch.nn.init.normal_(model.score_head.weight, std=1.0)  # scores far from 0
        return model.eval()

    return RolloutModels(
        actor=lm(0), ref=lm(1), reward_model=score(2, "reward"), reward_critic=score(3, "critic"),
        cost_sources=(CostSource("cost", score(4, "cost")),) if cost else (),
        cost_critics=(score(5, "critic"),) if cost else (),
    )  # fmt: skip


def rollout_options(pad: int, temperature: float = 1.0, n: int = 1, **kw: Any) -> RolloutOptions:
    gen = GenerationCfg(max_new_tokens=8, temperature=temperature, num_return_sequences=n)
    return RolloutOptions(generation=gen, eos_token_id=EOS, pad_token_id=pad, **kw)


def prompts(pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three left-padded prompts of lengths 4, 2, 3."""
    rows = [[1, 5, 6, 7], [1, 9], [1, 11, 12]]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    return ids, mask
