"""Running a model over token sequences: end scores, response log-probs, critic values.

Training (rollouts, the score stage's evaluation), evaluation and chat all call these, so a
sequence is scored and its log-probs read the same way everywhere. Models may be DeepSpeed
engines or plain modules (both are called the same way).

Shapes: B sequences of L = P + T tokens, P the prompt length (left padded, so every prompt ends
at column P), T the response length (right padded). Response quantities are aligned with the
response tokens: column t holds the value for response token t, computed at position P + t - 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from beaver.algo import logprobs_from_logits, position_ids_from_attention_mask
from beaver.models.batching import TokenIds, padded_batches
from beaver.models.packing import causal_lm_logits
from beaver.models.saving import unwrap


def score_output(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, padding_free: bool = False
) -> Any:
    """A score model's (or engine's) `ScoreOutput`, on packed rows when `padding_free`."""
    # the keyword only when set: any score model (or engine around one) takes the padded call
    if padding_free:
        return model(input_ids=input_ids, attention_mask=attention_mask, padding_free=True)
    return model(input_ids=input_ids, attention_mask=attention_mask)


def score_sequences(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    normalize: bool = False,
    padding_free: bool = False,
) -> Tensor:
    """(B,) fp32 end scores of a score model at each sequence's last real token (padding on
    either side); `normalize`: in the normaliser's units (reward (x - mu) / sigma, cost
    x / sigma; identity without a normaliser); `padding_free`: computed on packed rows."""
    scores = score_output(model, input_ids, attention_mask, padding_free).end_scores
    if normalize:
        scores = unwrap(model).normalize(scores)  # type: ignore[operator]
    return scores.float()


@torch.no_grad()
def score_token_lists(
    model: nn.Module,
    sequences: Sequence[TokenIds],
    pad_token_id: int,
    *,
    normalize: bool = False,
    batch_size: int = 64,
) -> Tensor:
    """(N,) fp32 end scores (on the CPU) of token sequences, each prompt + response + EOS,
    scored `batch_size` at a time, right padded, on the model's device."""
    device = next(unwrap(model).parameters()).device
    scores = [
        score_sequences(model, ids.to(device), mask.to(device), normalize=normalize).cpu()
        for ids, mask in padded_batches(sequences, batch_size, pad_token_id)
    ]
    return torch.cat(scores) if scores else torch.empty(0)


def response_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_len: int,
    temperature: float = 1.0,
    padding_free: bool = False,
) -> tuple[Tensor, Tensor]:
    """(B, T) fp32 log-probs of the tokens from column `prompt_len` on, and the (B, T, V)
    logits they came from (divided by `temperature` when it is neither 0 nor 1, so that they
    are the distribution sampled from). Positions come from the mask: left padding does not
    shift them. `padding_free`: computed on packed rows (logits 0 at the padding)."""
    if padding_free:
        logits = causal_lm_logits(model, input_ids, attention_mask, padding_free=True)
    else:
        position_ids = position_ids_from_attention_mask(attention_mask)
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).logits
    logits = logits[:, prompt_len - 1 : -1]  # position P + t - 1 predicts response token t
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return logprobs_from_logits(logits, input_ids[:, prompt_len:]), logits


def response_values(
    critic: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_len: int,
    padding_free: bool = False,
) -> Tensor:
    """(B, T) critic values aligned with the response tokens (from position P + t - 1);
    `padding_free`: computed on packed rows."""
    scores = score_output(critic, input_ids, attention_mask, padding_free).scores  # (B, P + T)
    return scores[:, prompt_len - 1 : -1]
