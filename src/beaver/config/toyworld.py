"""Config of the toy world generator (`beaver.toyworld.generate`).

Every size, share and the tiny model's shape live here; the language itself is a constant in
`beaver.toyworld.language`, so the seed changes what is sampled, never what words mean.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from beaver.config._base import OutputDir, Section

Share = Annotated[float, Field(ge=0.0, le=1.0)]
"""A probability or a share of a split, in [0, 1]."""


def _check_mix(section: Section) -> None:
    """A behaviour mix is a probability distribution over response styles."""
    total = sum(float(v) for v in section.model_dump().values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"{type(section).__name__} shares must sum to 1, got {total:.6f}")


class RiskyMixConfig(Section):
    """How the behaviour policy answers risky prompts (shares summing to 1)."""

    harmful: Share = 0.5
    """Share of compliant answers that use harmful words (unsafe, most helpful)."""
    refusal: Share = 0.15
    """Share of refusals (safe, unhelpful)."""
    redirect: Share = 0.2
    """Share of safe redirects that give on-topic advice instead (safe, medium helpfulness)."""
    rambling: Share = 0.15
    """Share of fluent off-topic answers (safe, unhelpful)."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> RiskyMixConfig:
        _check_mix(self)
        return self


class BenignMixConfig(Section):
    """How the behaviour policy answers benign prompts (shares summing to 1)."""

    helpful: Share = 0.75
    """Share of on-topic answers (quality still varies: off-topic words slip in)."""
    rambling: Share = 0.15
    """Share of fluent off-topic answers."""
    refusal: Share = 0.05
    """Share of needless refusals of harmless requests."""
    harmful: Share = 0.05
    """Share of gratuitously harmful answers (harm nobody asked for: unsafe and less helpful);
    in preference pairs only, as SFT demonstrations are curated."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> BenignMixConfig:
        _check_mix(self)
        return self


class ToyModelConfig(Section):
    """The tiny randomly initialised causal LM written to `output_dir/model`."""

    architecture: Literal["llama", "qwen2", "gpt_neox"] = "llama"
    """transformers architecture; qwen2 and gpt_neox let tests cover a second model family."""
    hidden_size: int = Field(default=128, ge=8)
    """Width of the residual stream."""
    num_layers: int = Field(default=4, ge=1)
    """Number of transformer blocks."""
    num_heads: int = Field(default=4, ge=1)
    """Attention heads (no grouped-query attention: key/value heads = heads)."""
    intermediate_size: int | None = Field(default=None, ge=1)
    """MLP width; None means 2 x hidden_size."""
    max_position_embeddings: int = Field(default=256, ge=16)
    """Longest sequence (prompt + response) the model supports."""
    tie_word_embeddings: bool = True
    """Share input and output embeddings (fewer parameters; the vocabulary is tiny anyway)."""

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ToyModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        return self


class ToyWorldConfig(Section):
    """Generate the toy world: data files, a tokenizer and a tiny model, all from one seed."""

    output_dir: OutputDir = "output/toyworld"
    """Folder that receives the data files, `tokenizer/` and `model/`."""
    seed: int = 0
    """Drives every random draw; the same seed writes byte-identical files."""
    num_sft: int = Field(default=15000, ge=1)
    """Alpaca-format SFT samples in `sft.json` (behaviour-policy answers)."""
    num_preference: int = Field(default=15000, ge=1)
    """PKU-SafeRLHF-format training pairs in `preference.jsonl`."""
    num_preference_test: int = Field(default=1000, ge=1)
    """Held-out pairs with clean labels in `preference_test.jsonl` (prompts unseen in training)."""
    num_rl_prompts: int = Field(default=1536, ge=1)
    """Distinct RL training prompts in `prompts_train.jsonl`."""
    num_eval_prompts: int = Field(default=384, ge=1)
    """Distinct held-out evaluation prompts in `prompts_eval.jsonl`, disjoint from all training."""
    risky_share: Share = 1 / 3
    """Share of prompts that ask for something harmful (exact per split, rounded)."""
    rl_risky_share: Share | None = None
    """Risky share of the RL prompts only; None uses `risky_share` (1.0 mimics PKU-SafeRLHF)."""
    label_temperature: float = Field(default=0.035, ge=0.0)
    """Annotator noise of `better_response_id` in training pairs, Bradley-Terry: the more
    helpful answer is labelled better with probability sigmoid(gap / T), gap its margin by the
    judge, so the labels carry how much better it is. 0.035 flips about 3% of the pairs (close
    ones often, clear ones almost never); 0 gives the judge's order. Held-out pairs stay clean."""
    label_noise: float = Field(default=0.0, ge=0.0, le=0.5)
    """Chance to flip any training label regardless of its margin, on top of the above."""
    risky_mix: RiskyMixConfig = RiskyMixConfig()
    """Behaviour policy on risky prompts."""
    benign_mix: BenignMixConfig = BenignMixConfig()
    """Behaviour policy on benign prompts."""
    model: ToyModelConfig = ToyModelConfig()
    """Shape of the tiny model."""
