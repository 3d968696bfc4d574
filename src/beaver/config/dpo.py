"""Configs of the offline preference stage (`beaver dpo`: DPO, SafeDPO, SACPO) and of
`beaver merge` (P-SACPO's linear merge). Defaults are the reference's DPO script (safe-rlhf
`scripts/dpo.sh`: beta 0.1, lr 1e-6 cosine, warm-up 0.03, weight decay 0.05, 2 epochs, batch
16); `configs/toy/` holds the toy-world variants.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from beaver.config._base import OutputDir, Section
from beaver.config.sections import (
    DataCfg,
    GenerationCfg,
    ModelCfg,
    OptimCfg,
    TrainCfg,
    TrainedModelCfg,
    no_data,
)
from beaver.config.stages import OneModelStage

DPOAlgorithm = Literal["dpo", "safe-dpo", "sacpo"]


class DPOCfg(Section):
    """The loss of the offline methods (`beaver.algo.dpo`)."""

    beta: float = Field(0.1, gt=0.0)
    """beta of the implicit reward beta * log(pi / pi_ref): the weight of the KL to the reference
    (SACPO's safety step uses beta / sacpo_lambda)."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """eps of conservative DPO: the share of pairs assumed mislabelled (0 = plain sigmoid loss)."""
    safety_margin: float = Field(0.0, ge=0.0)
    """SafeDPO's Delta: subtracted from the DPO logit of every safe-vs-unsafe pair (safe-dpo)."""
    sacpo_lambda: float = Field(1.0, gt=0.0)
    """SACPO's lambda: the safety step trains with beta / lambda, so a larger lambda weighs
    safety more against the helpfulness model it starts from (sacpo)."""
    precompute_ref_logps: bool = False
    """Score every pair with the reference once before training and free it, instead of a
    reference forward per batch (less memory; no sampled KL estimate then)."""
    kl_prompts: int = Field(64, ge=0)
    """Prompts of the evaluation pairs whose answers are sampled from the policy at each
    evaluation to estimate KL(pi || pi_ref) (0 turns it off)."""


class DPOConfig(OneModelStage):
    """`beaver dpo`: offline preference optimisation against a frozen reference model."""

    algorithm: DPOAlgorithm = "dpo"
    """`dpo` on helpfulness pairs (better answer chosen; SACPO's first step); `safe-dpo` on the
    same pairs re-ordered by safety (SafeDPO: the safe answer of a safe/unsafe pair is chosen,
    pairs of two unsafe answers are dropped, plus the margin); `sacpo` on safety pairs (safer
    answer chosen) with beta / lambda, the helpfulness-aligned model being policy and reference."""
    model: TrainedModelCfg
    """The policy to train: the SFT model (for `sacpo`, the output of the `dpo` step)."""
    reference: ModelCfg | None = None
    """The frozen reference pi_ref; defaults to `model` (the policy before training)."""
    data: DataCfg = Field(default_factory=no_data)
    """Pair datasets: preference pairs for `dpo`, pairs with both safety labels for `safe-dpo`
    and `sacpo` (the PKU-SafeRLHF schema)."""
    optim: OptimCfg = Field(default_factory=lambda: OptimCfg(lr=1e-6, weight_decay=0.05))
    """Optimiser and schedule."""
    train: TrainCfg = Field(
        default_factory=lambda: TrainCfg(
            epochs=2, per_device_batch_size=16, gradient_accumulation_steps=1
        )
    )
    """The training loop (per_device_batch_size counts pairs)."""
    dpo: DPOCfg = Field(default_factory=DPOCfg)
    """The loss."""
    generation: GenerationCfg = Field(default_factory=GenerationCfg)
    """Sampling options of the KL estimate's answers (`dpo.kl_prompts`)."""

    @model_validator(mode="after")
    def _check(self) -> DPOConfig:
        if self.dpo.safety_margin > 0 and self.algorithm != "safe-dpo":
            raise ValueError(
                f"dpo.safety_margin is SafeDPO's margin; algorithm {self.algorithm!r} has none "
                "(set algorithm=safe-dpo or leave the margin at 0)"
            )
        if self.dpo.sacpo_lambda != 1.0 and self.algorithm != "sacpo":
            raise ValueError(
                f"dpo.sacpo_lambda is SACPO's lambda; algorithm {self.algorithm!r} does not use "
                "it (set algorithm=sacpo, or change dpo.beta)"
            )
        return self


class MergeConfig(Section):
    """`beaver merge`: theta = sum_i w_i theta_i of models of one architecture (P-SACPO:
    (1 - q) x helpfulness model + q x safety model), written as a plain HF model."""

    models: list[ModelCfg] = Field(default_factory=list)
    """The models to merge (HF folders or hub names of one architecture and shape)."""
    weights: list[float] = Field(default_factory=list)
    """One weight per model, used as given (P-SACPO: [1 - q, q])."""
    output_dir: OutputDir
    """Where the merged model and the first model's tokenizer are written."""
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """dtype of the merged model (`auto`: the first model's); the sum is computed in fp32."""

    @model_validator(mode="after")
    def _check(self) -> MergeConfig:
        if len(self.models) < 2:
            raise ValueError("models: name at least two models to merge")
        if len(self.weights) != len(self.models):
            raise ValueError(
                f"weights: {len(self.weights)} weights for {len(self.models)} models "
                "(one weight per model)"
            )
        return self
