"""Sample responses for prompts with an HF causal LM: left padding, KV cache, `max_new_tokens`.

Shared by evaluation, chat and the PPO rollout. Prompts are strings (already formatted with the
prompt template) or token-id lists; they are left padded so every response starts at the same
column, and the model's `generate` derives position ids from the attention mask. A response ends
at its first EOS (kept in `response_ids`); `ended` says whether EOS came within the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from beaver.config.sections import GenerationCfg, SamplingCfg
from beaver.models.batching import pad_batch


@dataclass
class Generated:
    """One sampled response."""

    prompt_index: int
    """Index of its prompt in the input (num_return_sequences responses per prompt, in order)."""
    response_ids: list[int]
    """Response tokens up to and including the first EOS (no padding)."""
    text: str
    """Decoded response without special tokens, whitespace-stripped."""
    ended: bool
    """True if the response ended with EOS within `max_new_tokens`."""


def responses_per_prompt(gen: SamplingCfg) -> int:
    """`num_return_sequences` of a `GenerationCfg`; a plain `SamplingCfg` samples one."""
    return gen.num_return_sequences if isinstance(gen, GenerationCfg) else 1


def generation_kwargs(gen: SamplingCfg, tokenizer: Any) -> dict[str, Any]:
    """`model.generate` options from a sampling config; temperature 0 means greedy decoding."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": gen.max_new_tokens,
        "num_return_sequences": responses_per_prompt(gen),
        "repetition_penalty": gen.repetition_penalty,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "use_cache": True,
    }
    if gen.temperature == 0.0:
        return {**kwargs, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    # top_k=0 turns top-k off (a model's generation_config may otherwise bring its own 50)
    return {
        **kwargs,
        "do_sample": True,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "top_k": gen.top_k,
    }


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def left_padded(
    tokenizer: Any, prompts: Sequence[str] | Sequence[list[int]], add_special_tokens: bool = False
) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` (B, P), padded on the left."""
    if prompts and isinstance(prompts[0], str):
        rows = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    else:
        rows = [list(p) for p in prompts]
    ids, mask = pad_batch(rows, tokenizer.pad_token_id, "left")
    return {"input_ids": ids, "attention_mask": mask}


def cut_at_eos(tokens: list[int], eos_id: int) -> tuple[list[int], bool]:
    """Tokens up to and including the first EOS, and whether there was one."""
    if eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1], True
    return tokens, False


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[list[int]],
    gen: SamplingCfg,
    *,
    batch_size: int = 32,
    add_special_tokens: bool = False,
    synced_gpus: bool = False,
) -> list[Generated]:
    """Sample `responses_per_prompt(gen)` responses per prompt, in prompt order.

    `model` may be a DeepSpeed engine (its module is used). Pass `synced_gpus=True` under ZeRO-3
    with several ranks (every rank must call with the same number of batches). String prompts
    are tokenized without special tokens by default: templates already hold BOS when needed.
    """
    module = getattr(model, "module", model)
    device = next(module.parameters()).device
    kwargs = generation_kwargs(gen, tokenizer)
    n = responses_per_prompt(gen)
    eos = tokenizer.eos_token_id
    out: list[Generated] = []
    with _eval_mode(module):
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = {
                k: v.to(device)
                for k, v in left_padded(tokenizer, chunk, add_special_tokens).items()
            }
            ids = module.generate(**enc, **kwargs, synced_gpus=synced_gpus)  # type: ignore[operator]
            new = ids[:, enc["input_ids"].shape[1] :].tolist()  # (B * n, T)
            for row, tokens in enumerate(new):
                response, ended = cut_at_eos(tokens, eos)
                text = tokenizer.decode(response, skip_special_tokens=True).strip()
                prompt_index = start + row // n
                out.append(Generated(prompt_index, response, text, ended))
    return out


def eos_rate(outputs: Sequence[Generated]) -> float:
    """Share of responses that ended with EOS within the token limit."""
    return sum(o.ended for o in outputs) / max(len(outputs), 1)
