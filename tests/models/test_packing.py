"""Padding-free batches: the packing plan and layout by hand, then packed == padded for every
training loss (SFT, the score models' pairwise losses, DPO, the PPO actor and critic) and its
gradients, within 1e-5, on a tiny Llama and on a Qwen2-shaped model with tied embeddings and
grouped key/value heads (randomly initialised from real architectures' configs, no download),
each with sdpa attention (the whole batch in one row, varlen attention) and eager attention
(bounded rows, the block-diagonal mask)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
)

from beaver.algo import critic_loss, ppo_actor_loss
from beaver.algo.dpo import dpo_loss
from beaver.config.stages import ScoreCfg
from beaver.models.batching import pad_batch
from beaver.models.forward import response_logprobs, response_values, score_sequences
from beaver.models.packing import (
    VARLEN,
    causal_lm_logits,
    first_fit_decreasing,
    one_row_attention,
    pack,
    unpack,
)
from beaver.models.pairs import pair_forward
from beaver.models.score import ScoreModel
from beaver.stages.dpo import pair_logps
from beaver.stages.score import pair_loss
from beaver.stages.sft import IGNORE_INDEX, sft_loss

PAD, VOCAB = 0, 40
TOL = {"rtol": 1e-5, "atol": 1e-5}
ATTN = ["sdpa", "eager"]  # sdpa: one varlen row; eager: bounded rows and the mask


def test_first_fit_decreasing_by_hand() -> None:
    # longest first: 0 (3) opens bin 0, 2 (2) opens bin 1, 3 (2) fills bin 1, 1 (1) fills bin 0
    assert first_fit_decreasing([3, 1, 2, 2], capacity=4) == [[0, 1], [2, 3]]
    assert first_fit_decreasing([2, 2, 2], capacity=2) == [[0], [1], [2]]
    assert first_fit_decreasing([], capacity=3) == []
    with pytest.raises(ValueError, match="5 tokens does not fit rows of 4"):
        first_fit_decreasing([5, 1], capacity=4)


def test_pack_and_unpack_by_hand_left_and_right_padding() -> None:
    # right padded: lengths 3 and 1; rows of the padded width (3) cannot share, rows of 4 can
    ids = torch.tensor([[5, 6, 7], [8, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    p = pack(ids, mask, capacity=3)
    assert p.input_ids.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert p.position_ids.tolist() == [[0, 1, 2], [0, 0, 1]]  # the tail restarts at 0 too
    p = pack(ids, mask)  # default: rows of twice the padded width
    assert p.input_ids.tolist() == [[5, 6, 7, 8]] and p.position_ids.tolist() == [[0, 1, 2, 0]]
    assert p.real_tokens == 4 and p.seq_lens == (3, 1)  # one row: its sequences' lengths
    # left padded, three sequences 1, 2, 2 into rows of 3: [2-long + 1-long], [2-long]
    ids = torch.tensor([[PAD, 9, 10], [PAD, PAD, 11], [PAD, 12, 13]])
    mask = (ids != PAD).long()
    p = pack(ids, mask, capacity=3)
    assert p.input_ids.tolist() == [[9, 10, 11], [12, 13, PAD]]
    assert p.position_ids.tolist() == [[0, 1, 0], [0, 1, 0]]
    # outputs back in the padded layout, zeros at the padding; per-token extra dims kept
    out = p.input_ids.float().unsqueeze(-1).expand(-1, -1, 2) * 10
    back = unpack(p, out)
    assert back.shape == (3, 3, 2)
    assert back[..., 0].tolist() == [[0, 90, 100], [0, 0, 110], [0, 120, 130]]


# -- models ------------------------------------------------------------------------------------


def _llama_lm(attn: str = "sdpa") -> nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        pad_token_id=PAD,
    )  # fmt: skip
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg)


def _qwen_cfg(attn: str = "sdpa") -> Qwen2Config:
    return Qwen2Config(
        attn_implementation=attn,
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        pad_token_id=PAD, max_position_embeddings=64,
    )  # fmt: skip


def _qwen_lm(attn: str = "sdpa") -> nn.Module:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(_qwen_cfg(attn))


def _score(backbone: str, kind: str = "reward", attn: str = "sdpa") -> ScoreModel:
    torch.manual_seed(1)
    if backbone == "llama":
        base: nn.Module = LlamaModel(_llama_lm(attn).config)
    else:
        base = Qwen2Model(_qwen_cfg(attn))
    model = ScoreModel(base, kind)  # type: ignore[arg-type]
    nn.init.normal_(model.score_head.weight, std=1.0)
    return model


def test_one_row_only_where_the_attention_allows_it(tmp_path: Path) -> None:
    # sdpa switches to varlen (and saves as a plain checkpoint: the name is not written);
    # eager, and a sliding window (Mistral's), keep bounded rows and their own attention
    lm = _llama_lm("sdpa")
    assert one_row_attention(lm) == "varlen" and lm.config._attn_implementation == VARLEN
    lm.save_pretrained(tmp_path)
    assert VARLEN not in (tmp_path / "config.json").read_text()
    assert one_row_attention(_llama_lm("eager")) is None
    cfg = MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, sliding_window=4,
    )  # fmt: skip
    windowed = MistralForCausalLM(cfg)
    assert one_row_attention(windowed) is None and cfg._attn_implementation == "sdpa"
    ids, mask = pad_batch(SEQS, PAD)
    with torch.no_grad():  # the bounded rows give the padded logits for a windowed model too
        torch.testing.assert_close(
            causal_lm_logits(windowed, ids, mask, padding_free=True)[mask.bool()],
            causal_lm_logits(windowed, ids, mask, padding_free=False)[mask.bool()],
            **TOL,
        )


LMS: dict[str, Callable[[str], nn.Module]] = {"llama": _llama_lm, "qwen2-tied": _qwen_lm}


def _loss_and_grads(model: nn.Module, loss_fn: Callable[[], Tensor]) -> tuple[Tensor, dict]:
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _shares_rows(ids: Tensor, mask: Tensor) -> None:
    """The batch packs into fewer rows than it has sequences (the comparison is not vacuous)."""
    assert pack(ids, mask).input_ids.shape[0] < ids.shape[0]


def _rows_seen(model: nn.Module) -> list[int]:
    """The number of rows of every forward of `model` (a score model: of its backbone)."""
    rows: list[int] = []
    target = getattr(model, "backbone", model)
    target.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    return rows


def _assert_same(model: nn.Module, loss_of: Callable[[bool], Tensor], attn: str) -> None:
    """loss_of(padding_free) packed and padded: equal losses and equal gradients of every
    parameter (and the same parameters receive one); packed, sdpa runs one varlen row."""
    rows = _rows_seen(model)
    padded, g_padded = _loss_and_grads(model, lambda: loss_of(False))
    n_padded = len(rows)
    packed, g_packed = _loss_and_grads(model, lambda: loss_of(True))
    config = getattr(model, "backbone", model).config
    if attn == "sdpa":
        assert set(rows[n_padded:]) == {1} and config._attn_implementation == VARLEN
    else:
        assert max(rows[n_padded:]) > 1 and config._attn_implementation == "eager"
    torch.testing.assert_close(packed, padded, **TOL)
    assert g_packed.keys() == g_padded.keys() and g_padded
    for name, grad in g_padded.items():
        torch.testing.assert_close(g_packed[name], grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")
    assert any(float(g.abs().sum()) > 0 for g in g_padded.values())


SEQS = [[1, 5, 6, 7, 8, 9, 2], [1, 11, 2], [1, 12, 13, 14, 2], [1, 15, 16, 2]]


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("arch", list(LMS))
def test_sft_loss_and_gradients_packed_equal_padded(arch: str, attn: str) -> None:
    model = LMS[arch](attn)
    ids, mask = pad_batch(SEQS, PAD)
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    _shares_rows(ids, mask)
    labels[:, :2] = IGNORE_INDEX  # the prompt is not trained

    def loss_of(packed: bool) -> Tensor:
        return sft_loss(causal_lm_logits(model, ids, mask, padding_free=packed), labels)

    _assert_same(model, loss_of, attn)


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_pairwise_score_loss_and_gradients_packed_equal_padded(arch: str, attn: str) -> None:
    model = _score(arch, attn=attn)
    better, better_mask = pad_batch(SEQS[:2], PAD)
    worse, worse_mask = pad_batch(SEQS[2:], PAD)
    width = max(better.shape[1], worse.shape[1])  # the collator pads both halves to one width
    pad = lambda t: nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    batch = {
        "better_input_ids": pad(better), "better_attention_mask": pad(better_mask),
        "worse_input_ids": pad(worse), "worse_attention_mask": pad(worse_mask),
    }  # fmt: skip
    score = ScoreCfg()  # the sequence loss: the token-wise one reads scores on padding

    def loss_of(packed: bool) -> Tensor:
        return pair_loss(pair_forward(model, batch, "reward", packed), batch, "reward", score)[0]

    _assert_same(model, loss_of, attn)
    with torch.no_grad():  # the end scores (rollout scoring) too, left padded
        ids, mask = pad_batch(SEQS, PAD, "left")
        torch.testing.assert_close(
            score_sequences(model, ids, mask, padding_free=True),
            score_sequences(model, ids, mask),
            **TOL,
        )


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("arch", list(LMS))
def test_dpo_loss_and_gradients_packed_equal_padded(arch: str, attn: str) -> None:
    policy, ref = LMS[arch](attn), LMS[arch](attn)
    for p in ref.parameters():
        p.requires_grad_(False)
    ids, mask = pad_batch(SEQS, PAD)
    answer = mask.clone()
    answer[:, :2] = 0
    batch = {
        "better_input_ids": ids[:2], "better_attention_mask": mask[:2],
        "better_response_mask": answer[:2], "worse_input_ids": ids[2:],
        "worse_attention_mask": mask[2:], "worse_response_mask": answer[2:],
    }  # fmt: skip
    keys = ("better", "worse")

    def loss_of(packed: bool) -> Tensor:
        logps = pair_logps(policy, batch, keys, packed)
        with torch.no_grad():
            ref_logps = pair_logps(ref, batch, keys, packed)
        return dpo_loss(logps[:, 0], logps[:, 1], ref_logps[:, 0], ref_logps[:, 1], 0.1).loss

    _assert_same(policy, loss_of, attn)


def _rollout_batch() -> tuple[Tensor, Tensor, Tensor, int]:
    """Left-padded prompts + right-padded responses, as a rollout holds them."""
    prompts, p_mask = pad_batch([[1, 5, 6], [1, 7], [1], [1, 8, 9]], PAD, "left")
    responses, r_mask = pad_batch([[10, 11, 2], [12, 2], [13, 14, 15, 16], [17]], PAD)
    ids, mask = torch.cat([prompts, responses], dim=1), torch.cat([p_mask, r_mask], dim=1)
    _shares_rows(ids, mask)
    return ids, mask, r_mask, prompts.shape[1]


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("arch", list(LMS))
def test_ppo_actor_loss_and_gradients_packed_equal_padded(arch: str, attn: str) -> None:
    actor = LMS[arch](attn)
    ids, mask, r_mask, plen = _rollout_batch()
    torch.manual_seed(2)
    old_logp = -torch.rand(r_mask.shape) * 4
    advantages = torch.randn(r_mask.shape)

    def loss_of(packed: bool) -> Tensor:
        logp, _ = response_logprobs(actor, ids, mask, plen, 0.7, padding_free=packed)
        return ppo_actor_loss(logp, old_logp, advantages, r_mask).loss

    _assert_same(actor, loss_of, attn)


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_ppo_critic_loss_and_gradients_packed_equal_padded(arch: str, attn: str) -> None:
    critic = _score(arch, "critic", attn)
    ids, mask, r_mask, plen = _rollout_batch()
    torch.manual_seed(3)
    old_values, returns = torch.randn(r_mask.shape), torch.randn(r_mask.shape)

    def loss_of(packed: bool) -> Tensor:
        values = response_values(critic, ids, mask, plen, padding_free=packed)
        return critic_loss(values, old_values, returns, r_mask)

    _assert_same(critic, loss_of, attn)
