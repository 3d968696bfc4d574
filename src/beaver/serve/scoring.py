"""Score responses with a reward model and/or a cost model (arena, eval arena).

Each score model reads the conversation rendered with *its own* tokenizer and template (the
policy's tokenizer may differ: decode, then re-encode) exactly as it was trained on preference
pairs: `format_prompt` + answer + EOS (`beaver.data.templates.encode_answer`); its end score is
read at that EOS. Conventions (ALGORITHMS.md): higher reward is more helpful; cost > 0 is
unsafe, cost <= 0 safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from beaver.data.templates import Template, encode_answer, format_prompt, resolve_template
from beaver.models.score import ScoreModel
from beaver.serve.loading import inference_score_model, inference_tokenizer

Message = dict[str, str]


def is_safe(cost: float) -> bool:
    """cost <= 0 is safe (ALGORITHMS.md, conventions)."""
    return cost <= 0.0


@dataclass
class LoadedScoreModel:
    """A score model with its tokenizer and prompt format."""

    model: ScoreModel
    tokenizer: Any
    template: Template = "auto"
    normalize: bool = False

    @classmethod
    def load(
        cls, path: str, template: Template = "auto", trust: bool = False, normalize: bool = False
    ) -> LoadedScoreModel:
        tokenizer = inference_tokenizer(path, trust, side="right")
        return cls(inference_score_model(path, trust), tokenizer, template, normalize)

    def encode(self, messages: list[Message], response: str) -> list[int]:
        """Token ids of prompt + response + EOS, as in the score model's training pairs."""
        prompt = format_prompt(self.tokenizer, messages, self.template)
        resolved = resolve_template(self.tokenizer, self.template)
        return encode_answer(self.tokenizer, prompt, response.strip(), resolved)[0]

    @torch.no_grad()
    def score(
        self, conversations: Sequence[list[Message]], responses: Sequence[str], batch_size: int = 16
    ) -> list[float]:
        """(N,) end scores of `responses`, each answering the last user turn of its conversation."""
        encoded = [self.encode(c, r) for c, r in zip(conversations, responses, strict=True)]
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        scores: list[float] = []
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids in chunk)
            # right padding: the end score is read at the last real token, found from the mask
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in chunk], device=device)
            mask = torch.tensor(
                [[1] * len(s) + [0] * (width - len(s)) for s in chunk], device=device
            )
            end = self.model(ids, mask).end_scores  # (B,)
            if self.normalize:
                end = self.model.normalize(end)
            scores += [float(s) for s in end.float().cpu()]
        return scores


@dataclass
class Scorer:
    """An optional reward model and an optional cost model."""

    reward: LoadedScoreModel | None = None
    cost: LoadedScoreModel | None = None

    @classmethod
    def load(
        cls,
        reward_model: str | None,
        cost_model: str | None,
        template: Template = "auto",
        trust: bool = False,
        normalize: bool = False,
    ) -> Scorer:
        def one(path: str | None) -> LoadedScoreModel | None:
            return LoadedScoreModel.load(path, template, trust, normalize) if path else None

        return cls(one(reward_model), one(cost_model))

    @property
    def active(self) -> bool:
        return self.reward is not None or self.cost is not None

    def score(
        self, conversations: Sequence[list[Message]], responses: Sequence[str], batch_size: int = 16
    ) -> tuple[list[float] | None, list[float] | None]:
        """(rewards, costs), each None when that model is absent."""
        rewards = self.reward.score(conversations, responses, batch_size) if self.reward else None
        costs = self.cost.score(conversations, responses, batch_size) if self.cost else None
        return rewards, costs


def format_scores(reward: float | None, cost: float | None) -> str:
    """`reward +1.23 · cost -0.40 (safe)` for the terminal."""
    parts = []
    if reward is not None:
        parts.append(f"reward {reward:+.3f}")
    if cost is not None:
        parts.append(f"cost {cost:+.3f} ({'safe' if is_safe(cost) else 'UNSAFE'})")
    return " · ".join(parts)
