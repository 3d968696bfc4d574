"""The PPO rollout, in process on tiny models: log-probs and values aligned with the response
tokens (at temperature != 1 too), pad == eos, several responses per prompt, end scores read at
the last real token, reward shaping R - lambda C, and re-tokenisation for a score model with a
different tokenizer."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from beaver.algo import response_mask
from beaver.config.sections import GenerationCfg
from beaver.stages import rollout as rollout_mod
from beaver.stages.rollout import (
    SampledLogprobs,
    collect_rollout,
    make_retokenizer,
    score_responses,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from engine_helpers import tiny_tokenizer
from ppo_helpers import EOS, VOCAB, prompts, rollout_models, rollout_options


def _real(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ids[mask.bool()].unsqueeze(0)


def _assert_each_token_scored_alone(models: Any, ro: Any, temperature: float) -> None:
    """The rollout's log-probs, values and rewards are those of each sequence run alone."""
    full = torch.cat([ro.prompt_ids, ro.response_ids], 1)
    full_mask = torch.cat([ro.prompt_mask, ro.response_mask], 1)
    for b in range(ro.batch_size):
        # each sequence alone, without padding: positions can not be shifted by it
        seq = _real(full[b], full_mask[b])
        start = int(ro.prompt_mask[b].sum())
        logits = models.actor(input_ids=seq).logits[0] / temperature
        values = models.reward_critic(seq, torch.ones_like(seq)).scores[0]
        for t in range(int(ro.response_mask[b].sum())):
            token = int(ro.response_ids[b, t])
            expected = torch.log_softmax(logits[start + t - 1], -1)[token]
            assert ro.logp[b, t] == pytest.approx(float(expected), abs=1e-4)
            assert ro.values[b, t] == pytest.approx(float(values[start + t - 1]), abs=1e-4)
        end = models.reward_model(seq, torch.ones_like(seq)).end_scores[0]
        assert ro.reward[b] == pytest.approx(float(end), abs=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_and_values_are_those_of_each_response_token(temperature: float) -> None:
    torch.manual_seed(0)
    models, (ids, mask) = rollout_models(pad=0), prompts(pad=0)
    ro, _ = collect_rollout(models, ids, mask, rollout_options(0, temperature))
    _assert_each_token_scored_alone(models, ro, temperature)
    assert ro.prompt_ids.shape[1] == ids.shape[1]


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_old_logprobs_from_the_sampling_scores_are_the_actors(temperature: float) -> None:
    torch.manual_seed(0)
    models, (ids, mask) = rollout_models(pad=0), prompts(pad=0)
    opts = rollout_options(0, temperature, n=2 if temperature > 0 else 1)
    opts = replace(opts, sampled_logprobs=SampledLogprobs.for_sampling(opts.generation))
    calls = _count_actor_passes(models.actor)
    collect_rollout(models, ids, mask, opts)  # the check: sampled and forward both computed
    assert opts.sampled_logprobs.state == "on"
    checked = calls[0]
    ro, _ = collect_rollout(models, ids, mask, opts)
    # one actor pass less than the checked rollout (generate's passes are the same)
    assert calls[0] - checked == checked - 1
    _assert_each_token_scored_alone(models, ro, temperature if temperature > 0 else 1.0)


def _count_actor_passes(actor: torch.nn.Module) -> list[int]:
    """A counter of the actor's forward passes over more than one position (not decode steps)."""
    calls = [0]

    def hook(module: Any, args: Any, kwargs: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls[0] += int(ids is not None and ids.shape[1] > 1 and not kwargs.get("past_key_values"))

    actor.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_sampling_that_reshapes_the_distribution_keeps_the_forward_pass() -> None:
    # top-k changes the distribution sampled from: the loss's log-probs are not the sampling ones
    assert SampledLogprobs.for_sampling(GenerationCfg(top_k=5)).state == "off"
    assert SampledLogprobs.for_sampling(GenerationCfg(top_p=0.9)).state == "off"
    assert SampledLogprobs.for_sampling(GenerationCfg(repetition_penalty=1.2)).state == "off"
    assert SampledLogprobs.for_sampling(GenerationCfg(), enabled=False).state == "off"
    # a logits processor of the model's own generation_config is caught by the first check
    torch.manual_seed(0)
    models, (ids, mask) = rollout_models(pad=0), prompts(pad=0)
    models.actor.generation_config.suppress_tokens = list(range(10, 40))
    opts = rollout_options(0)
    opts = replace(opts, sampled_logprobs=SampledLogprobs.for_sampling(opts.generation))
    ro, _ = collect_rollout(models, ids, mask, opts)
    assert opts.sampled_logprobs.state == "off"
    _assert_each_token_scored_alone(models, ro, 1.0)


def _fixed_responses(monkeypatch: pytest.MonkeyPatch, responses: torch.Tensor) -> None:
    """Sampling replaced by fixed responses (what `generate` returns: padded after EOS)."""

    def sample(actor: Any, prompt_ids: Any, prompt_mask: Any, opts: Any, **_: Any) -> Any:
        return prompt_ids, prompt_mask, responses, None

    monkeypatch.setattr(rollout_mod, "sample_with_logprobs", sample)


def test_pad_equal_to_eos_ends_each_response_at_its_first_eos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pad == eos (Llama-3, Qwen): after the first EOS every token is EOS again, as padding.
    models, (ids, mask) = rollout_models(pad=EOS), prompts(pad=EOS)
    responses = torch.tensor([[7, 8, EOS, EOS, EOS], [9, EOS, EOS, EOS, EOS], [10, 11, 12, 13, 14]])
    _fixed_responses(monkeypatch, responses)
    ro, _ = collect_rollout(models, ids, mask, rollout_options(EOS))
    assert ro.response_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert ro.has_eos.tolist() == [True, True, False]
    for b, length in enumerate((3, 2, 5)):
        seq = torch.cat([_real(ids[b], mask[b])[0], responses[b, :length]]).unsqueeze(0)
        ones = torch.ones_like(seq)
        # the score is read at the first EOS, not at the last EOS of the padding
        assert ro.reward[b] == pytest.approx(
            float(models.reward_model(seq, ones).end_scores[0]), abs=1e-4
        )
        assert ro.costs is not None and ro.costs.shape == (3, 1)
        assert ro.costs[b, 0] == pytest.approx(
            float(models.cost_sources[0].model(seq, ones).end_scores[0]),
            abs=1e-4,  # type: ignore[misc]
        )


def test_sampling_with_pad_equal_to_eos_pads_with_eos_after_the_first_one() -> None:
    torch.manual_seed(0)
    models, (ids, mask) = rollout_models(pad=EOS, cost=False), prompts(pad=EOS)
    with torch.no_grad():  # make EOS likely, so that some responses end early
        models.actor.lm_head.weight[EOS] += 3 * models.actor.lm_head.weight.norm(dim=1).mean()
    ro, _ = collect_rollout(models, ids, mask, rollout_options(EOS, n=4))
    assert torch.equal(ro.response_mask, response_mask(ro.response_ids, EOS).to(ro.response_mask))
    for b in range(ro.batch_size):
        length = int(ro.response_mask[b].sum())
        assert (ro.response_ids[b, length:] == EOS).all()
        if ro.has_eos[b]:
            assert int(ro.response_ids[b, length - 1]) == EOS
            assert (ro.response_ids[b, : length - 1] != EOS).all()
    assert ro.has_eos.float().mean() > 0.2  # the case is exercised


def test_several_responses_per_prompt_repeat_each_prompt_in_order() -> None:
    torch.manual_seed(0)
    models, (ids, mask) = rollout_models(pad=0, cost=False), prompts(pad=0)
    ro, _ = collect_rollout(models, ids, mask, rollout_options(0, n=3))
    assert ro.batch_size == 9
    assert torch.equal(ro.prompt_ids, ids.repeat_interleave(3, dim=0))
    assert torch.equal(ro.prompt_mask, mask.repeat_interleave(3, dim=0))
    assert ro.logp.shape == ro.response_ids.shape == ro.values.shape


def test_reward_shaping_subtracts_lambda_times_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    models, (ids, mask) = rollout_models(pad=0), prompts(pad=0)
    responses = torch.tensor([[7, EOS, 0], [8, 9, EOS], [10, 11, 12]])
    full_ids = torch.cat([ids, responses], 1)
    full_mask = torch.cat([mask, response_mask(responses, EOS).to(mask)], 1)
    ended = torch.tensor([True, True, False])
    plain, cost = score_responses(models, full_ids, full_mask, ended, rollout_options(0))
    shaped, cost2 = score_responses(
        models,
        full_ids,
        full_mask,
        ended,
        rollout_options(0, lambda_fixed=0.5, missing_eos_penalty=1.5),
    )
    assert cost is not None and cost2 is not None and torch.equal(cost, cost2)
    assert cost.abs().min() > 1e-3  # the subtraction is visible
    penalty = torch.tensor([0.0, 0.0, 1.5])
    assert cost.shape == (3, 1)  # (B, K): one column per cost source
    assert torch.allclose(shaped, plain - penalty - 0.5 * cost[:, 0], atol=1e-6)


def _other_tokenizer() -> Any:
    """A word-level tokenizer with the same words at other ids, and its own EOS and PAD."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[EOS]", "<bos>"] + [f"t{i}" for i in range(VOCAB - 1, 2, -1)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="t3"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="[EOS]", pad_token="[PAD]", bos_token="<bos>",
        unk_token="t3",
    )  # fmt: skip


def test_retokenizer_maps_sequences_into_the_score_tokenizer() -> None:
    src, dst = tiny_tokenizer(), _other_tokenizer()
    assert make_retokenizer(src, tiny_tokenizer()) is None  # same vocabulary: nothing to do
    retokenize = make_retokenizer(src, dst)
    ids = torch.tensor([[0, 1, 5, 6, 7, 2], [1, 9, 10, 2, 0, 0]])  # left pad, then right pad
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    out_ids, out_mask = retokenize(ids, mask)
    eos, pad = dst.eos_token_id, dst.pad_token_id
    expected = [
        [dst.convert_tokens_to_ids(f"t{i}") for i in row] + [eos] for row in ([5, 6, 7], [9, 10])
    ]
    assert out_ids.tolist() == [expected[0], expected[1] + [pad]]
    assert out_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert dst.decode(out_ids[0]).split() == ["t5", "t6", "t7", "[EOS]"]


def test_score_models_read_the_retokenized_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    models, (ids, mask) = rollout_models(pad=0, cost=False), prompts(pad=0)
    seen: list[torch.Tensor] = []

    def retokenize(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        seen.append(input_ids)
        return input_ids[:, -4:], attention_mask[:, -4:]  # another "tokenisation"

    responses = torch.tensor([[7, EOS], [8, EOS], [9, EOS]])
    full = torch.cat([ids, responses], 1)
    fmask = torch.cat([mask, torch.ones_like(responses)], 1)
    ended = torch.ones(3, dtype=torch.bool)
    reward, _ = score_responses(models, full, fmask, ended, rollout_options(0), retokenize)
    direct = models.reward_model(full[:, -4:], fmask[:, -4:]).end_scores
    assert len(seen) == 1 and torch.allclose(reward, direct, atol=1e-6)
    untouched, _ = score_responses(models, full, fmask, ended, rollout_options(0))
    assert not torch.allclose(untouched, reward)


def test_cost_sources_read_the_overall_cost_or_one_category_head() -> None:
    # One multi-head cost model behind three constraints: overall, head "b", head "a"; it runs
    # once and each column is the score its source names, read at the last real token.
    from dataclasses import replace

    from ppo_helpers import _config
    from transformers import LlamaModel

    from beaver.models.score import ScoreModel
    from beaver.stages.rollout import CostSource

    torch.manual_seed(7)
    cm = ScoreModel(LlamaModel(_config(0)), "cost", heads=("a", "b")).eval()
    torch.nn.init.normal_(cm.category_head.weight, std=1.0)  # type: ignore[union-attr]
    sources = (CostSource("all", cm), CostSource("b", cm, 1), CostSource("a", cm, 0))
    models = replace(rollout_models(pad=0), cost_sources=sources, cost_critics=())
    calls = []
    cm.register_forward_hook(lambda *args: calls.append(1))
    ids, mask = prompts(pad=0)
    ended = torch.tensor([True, True, True])
    _, costs = score_responses(models, ids, mask, ended, rollout_options(0))
    assert costs is not None and costs.shape == (3, 3) and len(calls) == 1
    with torch.no_grad():
        out = cm(ids, mask)
    assert torch.allclose(costs[:, 0], out.end_scores)
    assert torch.allclose(costs[:, 1], out.category_end_scores[:, 1])
    assert torch.allclose(costs[:, 2], out.category_end_scores[:, 0])
    assert not torch.allclose(costs[:, 1], costs[:, 2])  # two heads, two costs


def test_padding_free_scoring_gives_the_padded_rollout() -> None:
    # Every scoring pass (actor, reference, reward, cost, both critics) on packed rows: the same
    # rollout as padded, and the passes really ran on fewer rows than sequences.
    models, (ids, mask) = rollout_models(pad=0), prompts(pad=0)
    rows: list[int] = []
    models.reward_model.backbone.register_forward_pre_hook(  # type: ignore[union-attr]
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    opts = rollout_options(0, 1.0, n=2)

    def rollout(padding_free: bool) -> Any:
        torch.manual_seed(3)
        return collect_rollout(models, ids, mask, replace(opts, padding_free=padding_free))[0]

    padded, packed = rollout(False), rollout(True)
    assert rows[0] == 6 and rows[1] < 6  # six sequences; packed, two or more share a row
    assert torch.equal(padded.response_ids, packed.response_ids)
    real = padded.response_mask.bool()  # past a response's EOS the packed pass gives zeros
    for name in ("logp", "ref_logp", "values"):
        a, b = getattr(padded, name), getattr(packed, name)
        assert torch.allclose(a[real], b[real], atol=1e-5), name
    assert torch.allclose(padded.cost_values[:, 0][real], packed.cost_values[:, 0][real], atol=1e-5)
    assert torch.allclose(padded.reward, packed.reward, atol=1e-5)
    assert torch.allclose(padded.costs, packed.costs, atol=1e-5)
