"""The inference layer: one padding routine, end scores and response log-probs that do not
depend on padding, on randomly initialised models built from real architectures' configs
(Qwen2 with pad == eos, Llama with tied embeddings), no download."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2Model

from beaver.models.batching import pad_batch, padded_batches
from beaver.models.forward import response_logprobs, score_sequences, score_token_lists
from beaver.models.score import ScoreModel

EOS = 2  # also the pad id below: padding is found from the mask, never from ids


def test_pad_batch_right_and_left_by_hand() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_value=EOS)
    assert ids.tolist() == [[5, 6, 7], [8, 2, 2]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], EOS, "left")
    assert ids.tolist() == [[5, 6, 7], [2, 2, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == mask.dtype == torch.long
    # batches of 2, each as wide as its own longest sequence: widths 3 and 1
    widths = [ids.shape[1] for ids, _ in padded_batches([[1, 2, 3], [4], [5]], 2, EOS)]
    assert widths == [3, 1]


def _qwen_score_model() -> ScoreModel:
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=EOS, eos_token_id=EOS,
    )  # fmt: skip
    return ScoreModel(Qwen2Model(cfg), "reward", normalizer="running").eval()


def test_end_scores_do_not_depend_on_padding_or_batching() -> None:
    model = _qwen_score_model()
    seqs = [[5, 9, 11, EOS], [7, EOS], [3, 4, 5, 6, 8, EOS]]  # each ends with EOS == pad
    alone = torch.cat([score_token_lists(model, [s], EOS) for s in seqs])
    together = score_token_lists(model, seqs, EOS, batch_size=2)  # right padded, 2 batches
    ids, mask = pad_batch(seqs, EOS, "left")
    with torch.no_grad():
        left = score_sequences(model, ids, mask)  # left padded: positions from the mask
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(left, alone, rtol=1e-5, atol=1e-5)
    # normalised: (x - mu) / (sigma + 1e-8) with the normaliser's statistics
    model.normalizer.update(torch.tensor([1.0, 3.0]))  # type: ignore[union-attr]  # mu 2, sigma 1
    normed = score_token_lists(model, seqs, EOS, normalize=True)
    torch.testing.assert_close(normed, (alone - 2.0) / (1.0 + 1e-8), rtol=1e-5, atol=1e-5)


def test_response_logprobs_with_left_padded_prompts_match_unpadded() -> None:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, tie_word_embeddings=True, pad_token_id=EOS, eos_token_id=EOS,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    prompts, responses = [[5, 6, 7], [8]], [[9, 10], [11, 12]]
    p_ids, p_mask = pad_batch(prompts, EOS, "left")
    ids = torch.cat([p_ids, torch.tensor(responses)], dim=1)
    mask = torch.cat([p_mask, torch.ones(2, 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        batched, logits = response_logprobs(model, ids, mask, prompt_len=3, temperature=0.5)
        for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            one = torch.tensor([prompt + response])
            alone, _ = response_logprobs(model, one, torch.ones_like(one), len(prompt), 0.5)
            torch.testing.assert_close(batched[row], alone[0], rtol=1e-4, atol=1e-5)
    # log-probs are fp32, of the temperature-scaled distribution the logits hold
    assert batched.dtype == torch.float32 and logits.shape == (2, 2, 40)
    expected = torch.log_softmax(logits[0, 0], -1)[9]
    torch.testing.assert_close(batched[0, 0], expected)
