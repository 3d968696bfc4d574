"""The toy world's tokenizer and tiny causal LM, built offline and saved as HF checkpoints.

The tokenizer is word-level over the world's fixed vocabulary (a few hundred tokens), so every
word the world writes is one token and nothing is ever <unk>. It adds no BOS on its own: then
`tokenizer(text)` and `apply_chat_template(..., tokenize=True)` give the same ids and no path
doubles a BOS. EOS is appended by the chat template after each assistant turn; PAD is a distinct
token (code must still not assume pad != eos, as real tokenizers often share them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from beaver.config.toyworld import ToyModelConfig
from beaver.toyworld.language import DEFAULT_WORLD, PUNCTUATION, TEMPLATE_WORDS, World

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)

# The reference (safe-rlhf) template, as a chat template:
#   BEGINNING OF CONVERSATION: USER: {u1} ASSISTANT: {a1}</s> USER: {u2} ASSISTANT:
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first %}BEGINNING OF CONVERSATION:{% endif %}"
    "{% if message['role'] == 'user' %} USER: {{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %} ASSISTANT: {{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('the toy world chat template knows only the user and "
    "assistant roles, got ' + message['role']) }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)


def token_list(world: World = DEFAULT_WORLD) -> list[str]:
    """Specials, punctuation, then every word (template words included), sorted: stable ids."""
    return [*SPECIAL_TOKENS, *PUNCTUATION, *sorted(set(world.vocabulary) | set(TEMPLATE_WORDS))]


def build_tokenizer(
    world: World = DEFAULT_WORLD, model_max_length: int = 256
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over the world's vocabulary, with the chat template."""
    vocab = {tok: i for i, tok in enumerate(token_list(world))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    # No decoder: tokens are joined by single spaces, so decode(encode(x)) == x for world text.
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )


def model_config(cfg: ToyModelConfig, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The transformers config for `cfg.architecture`, with the tokenizer's special ids."""
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size or 2 * cfg.hidden_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if cfg.architecture == "llama":
        return LlamaConfig(**common, num_key_value_heads=cfg.num_heads)
    if cfg.architecture == "qwen2":
        return Qwen2Config(**common, num_key_value_heads=cfg.num_heads, use_sliding_window=False)
    if cfg.architecture == "gpt_neox":
        return GPTNeoXConfig(**common)
    raise ValueError(f"unknown architecture {cfg.architecture!r}")


def build_model(
    cfg: ToyModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int
) -> PreTrainedModel:
    """A randomly initialised fp32 causal LM; the seed fixes its weights, global RNG untouched."""
    config = model_config(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def save_assets(
    cfg: ToyModelConfig, seed: int, output_dir: Path, world: World = DEFAULT_WORLD
) -> tuple[int, int]:
    """Write `tokenizer/` and `model/` (a complete checkpoint: weights plus tokenizer).

    Returns (vocabulary size, parameter count).
    """
    tokenizer = build_tokenizer(world, model_max_length=cfg.max_position_embeddings)
    tokenizer.save_pretrained(output_dir / "tokenizer")
    model = build_model(cfg, tokenizer, seed)
    model.save_pretrained(output_dir / "model")
    tokenizer.save_pretrained(output_dir / "model")
    return len(tokenizer), count_parameters(model)
