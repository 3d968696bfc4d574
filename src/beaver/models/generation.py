"""Sample responses for prompts with an HF causal LM: left padding, KV cache, `max_new_tokens`.

Shared by evaluation, chat and the PPO rollout. Prompts are strings (already formatted with the
prompt template) or token-id lists; they are left padded so every response starts at the same
column, and the model's `generate` derives position ids from the attention mask. A response ends
at its first EOS (kept in `response_ids`); `ended` says whether EOS came within the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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


SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
# transformers' own values where a generation_config that samples leaves one unset
_HF_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}


def model_sampling(generation_config: Any) -> dict[str, Any]:
    """The sampling a model's `generation_config` asks for, as beaver's fields; empty when it
    does not set `do_sample` (a config transformers derived from the model's own config says
    nothing about sampling). `do_sample: false` is greedy (temperature 0); `true` samples with
    its temperature, top-p and top-k, transformers' defaults (1, 1, 50) where it leaves one out.
    """
    diff = generation_config.to_diff_dict() if generation_config is not None else {}
    if "do_sample" not in diff:
        return {}
    if not diff["do_sample"]:
        return {"temperature": 0.0}
    return {k: diff[k] if diff.get(k) is not None else _HF_SAMPLING[k] for k in SAMPLING_FIELDS}


def resolve_sampling(
    gen: Any, model: nn.Module, fallback: Mapping[str, Any]
) -> tuple[SamplingCfg, str]:
    """The sampling options to use with `model`: each option set in `gen` (a config whose
    `temperature`, `top_p`, `top_k` may be None) as given, the others from the model's
    `generation_config` when it sets sampling options, else from `fallback` (the command's
    defaults); and a few words saying where the unset ones came from."""
    module = getattr(model, "module", model)
    own = model_sampling(getattr(module, "generation_config", None))
    base, source = (
        (own, "the model's generation_config") if own else (fallback, "beaver's defaults")
    )
    given = {k: getattr(gen, k) for k in SAMPLING_FIELDS if getattr(gen, k) is not None}
    if len(given) == len(SAMPLING_FIELDS):
        source = "the config"
    values = {**fallback, **base, **given}
    cfg = SamplingCfg(
        max_new_tokens=gen.max_new_tokens, repetition_penalty=gen.repetition_penalty, **values
    )
    return cfg, source


def describe_sampling(gen: SamplingCfg) -> str:
    """`temperature 0.7, top-p 0.9, top-k 0` (or `greedy`), for a status line."""
    if gen.temperature == 0.0:
        return "greedy"
    return f"temperature {gen.temperature:g}, top-p {gen.top_p:g}, top-k {gen.top_k}"


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
