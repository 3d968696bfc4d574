"""The vLLM rollout engine (`generation.engine: vllm`) on a tiny Llama: its greedy answers equal
HF `generate`'s, and after the actor's weights change and are pushed, they still do (a sync
that does nothing fails the second check), with an untied and a tied LM head (the toy world's
Llama ties it; vLLM's CPU backend kept a stale packed copy of a tied head after a reload).
Run by `make test-vllm` in its own venv."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from beaver.config.sections import GenerationCfg  # noqa: E402
from beaver.models.vllm_engine import VLLMSampler  # noqa: E402

EOS, PAD = 2, 0


def _tokenizer(tmp: Path) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models

    vocab = {f"t{i}": i for i in range(64)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t3"))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="t0", bos_token="t1", eos_token="t2", unk_token="t3"
    )


def _hf_greedy(
    model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, n: int
) -> torch.Tensor:
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
        eos_token_id=EOS, pad_token_id=PAD, temperature=None, top_p=None, top_k=None,
    )  # fmt: skip
    return out[:, ids.shape[1] :]


def _actor(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS, tie_word_embeddings=tied,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("tied", [False, True], ids=["untied-head", "tied-head"])
def test_greedy_matches_hf_before_and_after_a_push(tmp_path: Path, tied: bool) -> None:
    actor = _actor(tied)
    gen = GenerationCfg(max_new_tokens=12, temperature=0.0)
    sampler = VLLMSampler(actor, _tokenizer(tmp_path), gen, max_model_len=64, seed=0)
    ids = torch.tensor([[0, 0, 1, 5, 6, 7], [0, 0, 0, 0, 1, 9], [0, 1, 11, 12, 13, 14]])
    mask = (ids != 0).long()
    before = sampler.sample(ids, mask)
    hf = _hf_greedy(actor, ids, mask, 12)
    assert torch.equal(before, hf[:, : before.shape[1]])
    with torch.no_grad():  # a different policy: every weight moves
        for p in actor.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert not torch.equal(_hf_greedy(actor, ids, mask, 12), hf)  # else the test proves nothing
    stale = sampler.sample(ids, mask)
    assert torch.equal(stale, before)  # vLLM holds its own copy: nothing moved before the push
    seconds = sampler.push(actor)
    after = sampler.sample(ids, mask)
    hf_after = _hf_greedy(actor, ids, mask, 12)
    assert torch.equal(after, hf_after[:, : after.shape[1]])
    assert seconds < 30


def test_answers_are_drawn_independently_and_reproducibly(tmp_path: Path) -> None:
    """Every prompt's request has a seed of its own: with one seed for the whole batch, eight
    copies of a prompt drew the same random numbers and gave 2 distinct answers out of 16 (n=2:
    vLLM seeds a request's answers seed + j), and every batch's answers were correlated."""
    gen = GenerationCfg(max_new_tokens=12, temperature=1.0, num_return_sequences=2)
    sampler = VLLMSampler(_actor(tied=False), _tokenizer(tmp_path), gen, max_model_len=64, seed=0)
    ids = torch.tensor([[1, 5, 6, 7]] * 8)
    mask = torch.ones_like(ids)
    answers = sampler.sample(ids, mask, seed=123)
    assert answers.shape[0] == 16
    distinct = {tuple(row.tolist()) for row in answers}
    assert len(distinct) >= 15  # a random 64-token policy: two equal 12-token answers are rare
    assert torch.equal(sampler.sample(ids, mask, seed=123), answers)  # the seed decides them
