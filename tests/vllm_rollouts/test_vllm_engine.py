"""The vLLM rollout engine (`generation.engine: vllm`) on a tiny Llama: its greedy answers equal
HF `generate`'s, and after the actor's weights change and are pushed, they still do (a sync
that does nothing fails the second check). Run by `make test-vllm` in its own venv."""

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


def test_greedy_matches_hf_before_and_after_a_push(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS, tie_word_embeddings=False,
    )  # fmt: skip
    actor = LlamaForCausalLM(config).eval()
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
