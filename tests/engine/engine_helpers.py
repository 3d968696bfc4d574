"""Tiny models, a learnable synthetic dataset and an in-process trainer for the engine tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import LlamaConfig, LlamaForCausalLM

from beaver.config.sections import DeepSpeedCfg, LoggingCfg, OptimCfg, TrainCfg
from beaver.engine.build import init_engine, make_ds_config
from beaver.engine.data import make_loader
from beaver.engine.loop import LoopResult, StepResult, train_loop
from beaver.engine.tracking import MetricsLogger
from beaver.stages.sft import sft_step

VOCAB = 48
PAD = 0


@dataclass
class Stats:
    num_samples: int
    truncated: int = 0


class CountingDataset(Dataset[dict[str, torch.Tensor]]):
    """Sequences `a, a+d, a+2d, ...` (d = 1 or 2, wrapped below VOCAB) in the supervised format.

    The first 3 tokens are the prompt (labels -100); the rest is learnable from the prompt, so
    the loss falls fast. Collation pads on the right like `beaver.data`.
    """

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.rows = []
        for _ in range(n):
            start = int(torch.randint(1, VOCAB, (1,), generator=g))
            step = 1 + int(torch.rand(1, generator=g) < 0.25)  # mostly +1: a bigram to learn
            length = int(torch.randint(6, 14, (1,), generator=g))
            ids = [1 + (start + i * step) % (VOCAB - 1) for i in range(length)]
            self.rows.append(torch.tensor(ids))
        self.stats = Stats(num_samples=n)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.rows[i]
        labels = ids.clone()
        labels[:3] = -100
        return {"input_ids": ids, "labels": labels}

    def collate(self, batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        out = {
            "input_ids": torch.full((len(batch), width), PAD),
            "labels": torch.full((len(batch), width), -100),
            "attention_mask": torch.zeros((len(batch), width), dtype=torch.long),
        }
        for r, b in enumerate(batch):
            n = len(b["input_ids"])
            out["input_ids"][r, :n] = b["input_ids"]
            out["labels"][r, :n] = b["labels"]
            out["attention_mask"][r, :n] = 1
        return out


def tiny_llama(seed: int = 0, dropout: float = 0.0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        attention_dropout=dropout,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(cfg)


@dataclass
class Trainer:
    """One in-process training run of the tiny model through the real engine and loop."""

    engine: Any
    loader: Any
    train: TrainCfg
    logger: MetricsLogger
    losses: list[float]
    optim: OptimCfg

    def run(
        self,
        stop_at: int,
        ckpt_dir: Path,
        resume_from: Path | None = None,
        step_fn: Callable[[Any, list[Any]], StepResult] | None = None,
        **kwargs: Any,
    ) -> LoopResult:
        fn = step_fn or sft_step

        def step(batches: list[Any]) -> StepResult:
            out = fn(self.engine, batches)
            self.losses.append(out.loss)
            return out

        return train_loop(
            step,
            self.loader,
            {"model": self.engine},
            train=self.train,
            checkpoint_dir=ckpt_dir,
            logger=self.logger,
            total_steps=stop_at,
            batches_per_step=self.train.gradient_accumulation_steps,
            resume_from=resume_from,
            **{"optim": {"model": ("optim", self.optim)}, **kwargs},
        )


def make_trainer(
    run_dir: Path,
    *,
    zero: int = 0,
    total: int = 8,
    dropout: float = 0.1,
    lr: float = 1e-2,
    n: int = 64,
    optim: dict[str, Any] | None = None,
    **train_kwargs: Any,
) -> Trainer:
    """Engine + loader + logger; the schedule is built for `total` steps (cosine, warm-up;
    `optim` overrides these settings)."""
    train = TrainCfg(
        per_device_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=total,
        eval_strategy="no",
        seed=7,
        **train_kwargs,
    )
    defaults = {"lr": lr, "weight_decay": 0.01, "warmup_ratio": 0.25, "clip_grad_norm": 1.0}
    settings = OptimCfg.model_validate({**defaults, **(optim or {})})
    ds_config = make_ds_config(DeepSpeedCfg(zero_stage=zero, precision="fp32"), train, settings)
    engine = init_engine(tiny_llama(0, dropout), ds_config, settings, total)
    loader = make_loader(
        CountingDataset(n), train.per_device_batch_size, shuffle=True, seed=train.seed
    )
    logger = MetricsLogger(run_dir, LoggingCfg(backend="none", log_every=100), {})
    return Trainer(engine, loader, train, logger, [], settings)


def tiny_tokenizer(eos: bool = True, pad: bool = True) -> Any:
    """A word-level tokenizer over the model's VOCAB ids: <pad>=0, <bos>=1, <eos>=2, t3..t47."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<bos>", "<eos>"] + [f"t{i}" for i in range(3, VOCAB)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="t3"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special: dict[str, str] = {"bos_token": "<bos>", "unk_token": "t3"}
    if eos:
        special["eos_token"] = "<eos>"
    if pad:
        special["pad_token"] = "<pad>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def save_tiny_model(path: Path, eos: bool = True, pad: bool = True) -> Path:
    """A tiny Llama + tokenizer folder in HF format."""
    tiny_llama(0).save_pretrained(path)
    tiny_tokenizer(eos, pad).save_pretrained(path)
    return path
