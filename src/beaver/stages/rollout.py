"""Rollouts for PPO: sample responses, then score them with every model the update needs.

Shapes: B sequences, P prompt length (left padded, so every prompt ends at column P), T response
length (right padded after the first EOS). Log-probs and values are aligned with response
tokens: column t holds the quantity for response token t, computed from position P + t - 1.

Deviation from the reference: log-probs are taken from logits divided by the sampling
temperature, so that the "old" log-probs are those of the distribution actually sampled from
(otherwise the KL and the ratio are off whenever temperature != 1).

One pass less: when the actor samples from softmax(logits / T) itself (no top-k, top-p or
repetition penalty), the old log-probs are read from the scores `generate` drew each token from
instead of running the actor over the sequences again (`SampledLogprobs`). The first rollout of a
run checks them against that forward pass, because a model's `generation_config` may add logits
processors of its own (`min_new_tokens`, bad words, ...) that the loss does not apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from beaver.algo import (
    Rollout,
    apply_missing_eos_penalty,
    has_eos,
    logprobs_from_logits,
    masked_mean,
    response_mask,
    shaped_reward,
)
from beaver.config import GenerationCfg
from beaver.engine import dist
from beaver.models.adapters import adapter_disabled
from beaver.models.batching import pad_batch
from beaver.models.forward import (
    response_logprobs,
    response_values,
    score_output,
    score_sequences,
)
from beaver.models.generation import generation_kwargs
from beaver.models.saving import unwrap
from beaver.models.score import ScoreModel
from beaver.models.sources import TextScore

log = logging.getLogger(__name__)


def part_name(kind: str, constraint: str, constraints: int) -> str:
    """Engine name of a per-constraint model (`cost_model`, `cost_critic`): the kind alone when
    the run has one constraint (as before constraints were a list, so checkpoints of earlier runs
    resume), `kind.NAME` when it has several."""
    return kind if constraints == 1 else f"{kind}.{constraint}"


@dataclass(frozen=True)
class CostSource:
    """Where one constraint's cost comes from: the end score of a beaver cost model, or one
    category head's (`head`, its column in `category_end_scores`), or a source that reads text
    (`text`: a callable, a classifier, an HTTP endpoint; `beaver.models.sources`). Several
    sources may share one model; it is then run once per rollout."""

    name: str  # the constraint's name
    model: ScoreModel | nn.Module | None = None
    head: int | None = None  # None: the overall cost (in the normaliser's units)
    text: TextScore | None = None  # scores (prompts, decoded answers) instead of token ids


@dataclass(frozen=True)
class RewardTerm:
    """A score from a source that reads text, added to the reward model's with its weight."""

    name: str
    weight: float
    text: TextScore


@dataclass(frozen=True)
class RolloutModels:
    """Every model a rollout touches; engines or plain modules (both are called the same way)."""

    actor: nn.Module
    ref: nn.Module | None  # None: the actor (a peft model) with its adapter disabled
    reward_model: ScoreModel | nn.Module
    reward_critic: nn.Module | None = None  # None: critic-free (RLOO)
    cost_sources: tuple[CostSource, ...] = ()  # one per constraint, K in all
    cost_critics: tuple[nn.Module, ...] = ()  # one per constraint (ppo-lag), or none
    reward_terms: tuple[RewardTerm, ...] = ()  # added to the reward model's score

    def named(self) -> dict[str, nn.Module]:
        """Every distinct model held, by engine name (a model shared by sources counts once)."""
        out: dict[str, nn.Module] = {"actor": self.actor}
        if self.ref is not None:
            out["ref"] = self.ref
        out["reward_model"] = self.reward_model
        if self.reward_critic is not None:
            out["reward_critic"] = self.reward_critic
        k, seen = len(self.cost_sources), {id(m) for m in out.values()}
        for source in self.cost_sources:
            if source.model is not None and id(source.model) not in seen:
                seen.add(id(source.model))
                out[part_name("cost_model", source.name, k)] = source.model
        for source, critic in zip(self.cost_sources, self.cost_critics, strict=False):
            out[part_name("cost_critic", source.name, k)] = critic
        return out


def samples_from_policy(gen: GenerationCfg) -> bool:
    """True when sampling draws from softmax(logits / T) as the PPO loss reads it: no top-k,
    top-p or repetition penalty reshapes the distribution (greedy decoding included)."""
    return gen.top_p == 1.0 and gen.top_k == 0 and gen.repetition_penalty == 1.0


@dataclass
class SampledLogprobs:
    """Whether a run takes its old log-probs from the sampling scores: `unchecked` until the
    first rollout compares them with the actor's forward pass, then `on` or `off` for the run.
    The check is repeated after a resume (same config, same verdict), and its rollout already
    uses the sampled log-probs when they pass, so resumed runs stay exact."""

    # Mean |difference| per response token allowed: KV-cached decoding and one forward over the
    # sequence round differently (~1e-6 in fp32); a logits processor moves log-probs by >> 1e-2.
    TOLERANCE = 1e-3
    state: str = "unchecked"  # unchecked | on | off

    @classmethod
    def for_sampling(cls, gen: GenerationCfg, enabled: bool = True) -> SampledLogprobs:
        return cls("unchecked" if enabled and samples_from_policy(gen) else "off")

    def verdict(self, sampled: Tensor, forward: Tensor, mask: Tensor) -> bool:
        """Decide on the first rollout (the same on every rank); True: use `sampled`."""
        gap = float(masked_mean((sampled - forward).abs(), mask))
        gap = dist.reduce_values({"gap": gap}, "max")["gap"]
        self.state = "on" if gap <= self.TOLERANCE else "off"
        if self.state == "off":
            log.warning(
                "old log-probs: the sampling scores differ from the actor's forward pass by "
                "%.3g per token (the model's generation_config adds logits processors?); "
                "recomputing them with a forward pass for this run",
                gap,
            )
        return self.state == "on"


@dataclass(frozen=True)
class RolloutOptions:
    """How responses are sampled and end scores adjusted."""

    generation: GenerationCfg
    eos_token_id: int
    pad_token_id: int
    missing_eos_penalty: float = 0.0
    lambda_fixed: float | None = None  # reward shaping: R - lambda_fixed * C
    decode: Any = None  # response ids (B, T) + mask -> texts, for sources that read text
    synced_gpus: bool = False  # ZeRO-3 over several ranks: all ranks step generate() together
    # old log-probs from the sampling scores (the stage sets it from `ppo.logprobs_from_sampling`)
    sampled_logprobs: SampledLogprobs = field(default_factory=lambda: SampledLogprobs("off"))
    sampler: Any = None  # generation.engine=vllm: the VLLMSampler (beaver.models.vllm_engine)
    padding_free: bool = False  # every scoring pass on packed rows (`train.padding_free`)


@dataclass(frozen=True)
class _TokenIds:
    """The two ids `generation_kwargs` reads from a tokenizer."""

    eos_token_id: int
    pad_token_id: int


@torch.no_grad()
def sample_responses(
    actor: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, opts: RolloutOptions
) -> tuple[Tensor, Tensor, Tensor]:
    """Generate with the KV cache. Returns prompt ids/mask repeated per sample (B, P) and
    response ids (B, T), B = prompts x num_return_sequences."""
    prompt_ids, prompt_mask, response_ids, _ = sample_with_logprobs(
        actor, prompt_ids, prompt_mask, opts, with_logprobs=False
    )
    return prompt_ids, prompt_mask, response_ids


@torch.no_grad()
def sample_with_logprobs(
    actor: nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    opts: RolloutOptions,
    with_logprobs: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """`sample_responses`, plus (B, T) fp32 log-probs of each response token under the scores
    it was drawn from (after `generate`'s logits processors; None unless `with_logprobs`)."""
    gen = opts.generation
    n = gen.num_return_sequences
    if opts.sampler is not None:  # vLLM; its seed from the global RNG, which checkpoints keep
        seed = int(torch.randint(2**31, ()))
        responses = opts.sampler.sample(prompt_ids, prompt_mask, seed=seed)
        repeated = prompt_ids.repeat_interleave(n, 0), prompt_mask.repeat_interleave(n, 0)
        return *repeated, responses, None  # log-probs from the training model
    kwargs = generation_kwargs(gen, _TokenIds(opts.eos_token_id, opts.pad_token_id))
    out = unwrap(actor).generate(  # type: ignore[operator]
        input_ids=prompt_ids, attention_mask=prompt_mask, synced_gpus=opts.synced_gpus,
        return_dict_in_generate=True, output_scores=with_logprobs, **kwargs,
    )  # fmt: skip
    response_ids = out.sequences[:, prompt_ids.shape[1] :]
    logp = None
    if with_logprobs:  # one (B, V) step at a time: no (B, T, V) copy
        steps = [
            logprobs_from_logits(scores[:, None], response_ids[:, t, None])
            for t, scores in enumerate(out.scores)
        ]
        logp = torch.cat(steps, dim=1)
    return (
        prompt_ids.repeat_interleave(n, dim=0),
        prompt_mask.repeat_interleave(n, dim=0),
        response_ids,
        logp,
    )


def score_responses(
    models: RolloutModels,
    input_ids: Tensor,
    attention_mask: Tensor,
    ended: Tensor,
    opts: RolloutOptions,
    retokenize: Any = None,
    texts: Callable[[], tuple[list[str], list[str]]] | None = None,
    stats: dict[str, float] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """(B,) rewards (reward terms added, missing-EOS penalty and any fixed cost weight applied)
    and (B, K) costs, one column per cost source (None without one), in the score models'
    normaliser units. `texts()` gives (prompts, answers) as text for the sources that read text;
    `stats` receives each reward term's mean score (`rollout/reward_term/NAME`)."""
    ids, mask = (
        (input_ids, attention_mask) if retokenize is None else retokenize(input_ids, attention_mask)
    )
    as_text: list[tuple[list[str], list[str]]] = []  # decoded once, if a source reads text

    def read(source: TextScore) -> Tensor:  # (B,) fp32
        if not as_text:
            assert texts is not None, "a text source needs the rollout's texts"
            as_text.append(texts())
        return source(*as_text[0]).to(ids.device).float()

    packed = opts.padding_free
    reward = score_sequences(models.reward_model, ids, mask, normalize=True, padding_free=packed)
    for term in models.reward_terms:
        score = read(term.text)
        reward = reward + term.weight * score
        if stats is not None:
            stats[f"rollout/reward_term/{term.name}"] = float(score.mean())
    reward = apply_missing_eos_penalty(reward, ended, opts.missing_eos_penalty)
    if not models.cost_sources:
        return reward, None
    scored: dict[int, Any] = {}  # one forward per distinct model
    for source in models.cost_sources:
        if source.model is not None and id(source.model) not in scored:
            scored[id(source.model)] = score_output(source.model, ids, mask, packed)

    def cost_of(source: CostSource) -> Tensor:  # (B,) fp32
        if source.text is not None:
            return read(source.text)
        out = scored[id(source.model)]
        if source.head is not None:
            return out.category_end_scores[:, source.head].float()
        return unwrap(source.model).normalize(out.end_scores).float()  # type: ignore[operator]

    costs = torch.stack([cost_of(s) for s in models.cost_sources], dim=1)  # (B, K)
    if opts.lambda_fixed is not None:  # reward shaping: one cost source
        reward = shaped_reward(reward, costs[:, 0], opts.lambda_fixed)
    return reward, costs


@torch.no_grad()
def collect_rollout(
    models: RolloutModels,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    opts: RolloutOptions,
    retokenize: Any = None,
    prompts: list[str] | None = None,
) -> tuple[Rollout, dict[str, float]]:
    """Sample responses for a left-padded prompt batch and compute everything PPO needs.

    Returns the rollout and its stats: the wall-time split (`time/generate`, `time/score`) and
    each reward term's mean score.
    `retokenize(input_ids, attention_mask) -> (ids, mask)` maps sequences into the score
    models' tokenizer when it differs from the actor's (None: same tokenizer). `prompts`: the
    raw prompt texts, for cost sources that read text (with `opts.decode` for the answers).
    """
    start = time.perf_counter()
    for m in (models.actor, models.ref, models.reward_critic, *models.cost_critics):
        if m is not None:
            m.eval()
    reuse = opts.sampled_logprobs
    prompt_ids, prompt_mask, response_ids, sampled_logp = sample_with_logprobs(
        models.actor, prompt_ids, prompt_mask, opts, with_logprobs=reuse.state != "off"
    )
    generated = time.perf_counter()
    resp_mask = response_mask(response_ids, opts.eos_token_id).to(prompt_mask.dtype)
    ended = has_eos(response_ids, opts.eos_token_id)
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, resp_mask], dim=1)
    plen, temperature = prompt_ids.shape[1], opts.generation.temperature

    def logprobs_of(model: nn.Module) -> Tensor:  # (B, T) fp32
        return response_logprobs(
            model, input_ids, attention_mask, plen, temperature, opts.padding_free
        )[0]

    if sampled_logp is not None and reuse.state == "on":
        logp = sampled_logp
    else:
        logp = logprobs_of(models.actor)
        if sampled_logp is not None and reuse.verdict(sampled_logp, logp, resp_mask):
            logp = sampled_logp
    if models.ref is None:
        with adapter_disabled(models.actor):
            ref_logp = logprobs_of(models.actor)
    else:
        ref_logp = logprobs_of(models.ref)
    n = opts.generation.num_return_sequences

    def texts() -> tuple[list[str], list[str]]:  # raw prompts (one per answer), decoded answers
        if prompts is None or opts.decode is None:
            raise ValueError("a cost source that reads text needs the prompts and opts.decode")
        return [p for p in prompts for _ in range(n)], opts.decode(response_ids, resp_mask)

    stats: dict[str, float] = {}
    reward, costs = score_responses(
        models, input_ids, attention_mask, ended, opts, retokenize, texts, stats
    )

    def values_of(critic: nn.Module | None) -> Tensor | None:  # None: no critic, no values
        if critic is None:
            return None
        return response_values(critic, input_ids, attention_mask, plen, opts.padding_free).float()

    values = values_of(models.reward_critic)
    cost_values = [values_of(c) for c in models.cost_critics]  # K x (B, T)

    rollout = Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=resp_mask,
        has_eos=ended,
        logp=logp,
        ref_logp=ref_logp,
        reward=reward,
        values=values,
        costs=costs,
        cost_values=torch.stack(cost_values, dim=1) if cost_values else None,  # type: ignore[arg-type]
    )
    scored = time.perf_counter()
    stats.update({"time/generate": generated - start, "time/score": scored - generated})
    return rollout, stats


def make_decoder(tokenizer: Any) -> Callable[[Tensor, Tensor], list[str]]:
    """Response ids (B, T) and their mask -> the answers as text (special tokens, EOS included,
    left out), for cost sources that read text."""

    def decode(response_ids: Tensor, mask: Tensor) -> list[str]:
        rows = [ids[m.bool()].tolist() for ids, m in zip(response_ids, mask, strict=True)]
        return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]

    return decode


def make_retokenizer(src_tokenizer: Any, dst_tokenizer: Any) -> Any:
    """None when both tokenizers share a vocabulary, else a function that decodes the actor's
    sequences and re-encodes them (with the score tokenizer's EOS) for the score models."""
    if src_tokenizer.get_vocab() == dst_tokenizer.get_vocab():
        return None

    def retokenize(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        texts = [
            src_tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            + dst_tokenizer.eos_token
            for ids, mask in zip(input_ids, attention_mask, strict=True)
        ]
        rows = dst_tokenizer(texts, add_special_tokens=False)["input_ids"]
        ids, mask = pad_batch(rows, dst_tokenizer.pad_token_id)  # right padded
        return ids.to(input_ids.device), mask.to(input_ids.device)

    return retokenize
