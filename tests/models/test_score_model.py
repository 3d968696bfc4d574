"""Score model: end score at the EOS token with pad == eos, left and right padding; save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModel, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

from beaver.models.score import (
    ScoreModel,
    is_score_model_dir,
    save_score_model,
    score_model_from_backbone,
)

WORDS = ["<eos>", "<unk>", "the", "cat", "sat", "on", "mat", "a", "dog"]


def _tokenizer(padding_side: str) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose pad token IS its eos token (as Llama-3 and Qwen ship)."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<eos>",
        pad_token="<eos>",
        unk_token="<unk>",
        padding_side=padding_side,
    )


def _model(seed: int = 0, normalizer: str = "none") -> ScoreModel:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    return ScoreModel(LlamaModel(cfg), "reward", normalizer).eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["left", "right"])
def test_end_score_is_read_at_eos_not_padding(side: str) -> None:
    tok = _tokenizer(side)
    assert tok.pad_token_id == tok.eos_token_id
    texts = ["the cat sat on the mat<eos>", "a dog<eos>"]
    batch = tok([t.replace("<eos>", " <eos>") for t in texts], padding=True, return_tensors="pt")
    model = _model()
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"])
        # Each sequence alone, unpadded: its score at its own final (EOS) token.
        for i, text in enumerate(texts):
            ids = tok(text.replace("<eos>", " <eos>"), return_tensors="pt")
            alone = model(ids["input_ids"], ids["attention_mask"]).end_scores
            assert out.end_scores[i].item() == pytest.approx(alone.item(), abs=1e-5)
    # The short row is padded with eos ids; reading the *last* eos id would hit padding (right)
    # or the final column would be its real eos (left) — either way the mask decides.
    short = batch["attention_mask"][1]
    assert short.sum() < short.numel()


def test_scores_are_fp32_under_bf16() -> None:
    model = _model().to(torch.bfloat16)
    ids = torch.tensor([[2, 3, 4, 0]])
    out = model(ids, torch.ones_like(ids))
    assert out.scores.dtype == torch.float32 and out.end_scores.shape == (1,)


def test_save_and_reload_keeps_head_and_normaliser(tmp_path: Path) -> None:
    model = _model(normalizer="running")
    assert model.normalizer is not None
    model.normalizer.update(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    save_score_model(model, tmp_path, tokenizer=_tokenizer("right"))
    assert is_score_model_dir(tmp_path)
    reloaded = score_model_from_backbone(AutoModel.from_pretrained(tmp_path), tmp_path).eval()
    ids = torch.tensor([[2, 3, 4, 0]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.allclose(
            model(ids, mask).end_scores, reloaded(ids, mask).end_scores, atol=1e-6
        )
    assert reloaded.normalizer is not None
    assert reloaded.normalizer.mean.item() == pytest.approx(3.0)
    assert reloaded.score_type == "reward"
    # A critic starts from the reward model's head under another score type.
    critic = score_model_from_backbone(AutoModel.from_pretrained(tmp_path), tmp_path, "critic")
    assert critic.score_type == "critic"
    assert torch.equal(critic.score_head.weight, reloaded.score_head.weight)


def test_plain_causal_lm_needs_a_score_type(tmp_path: Path) -> None:
    backbone = _model().backbone
    backbone.save_pretrained(tmp_path)  # type: ignore[operator]
    with pytest.raises(ValueError, match="score_type"):
        score_model_from_backbone(AutoModel.from_pretrained(tmp_path), tmp_path)
