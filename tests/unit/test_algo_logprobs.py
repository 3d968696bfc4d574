"""Log-probs and entropies in fp32, checked against hand-computed softmax values."""

import math

import torch

from beaver.algo import entropy_from_logits, logprobs_from_logits, shifted_logprobs


def _logits_from_probs() -> torch.Tensor:
    # every position has probabilities [0.1, 0.2, 0.3, 0.4] (logits = log(k), softmax = k / 10)
    base = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    return base.expand(2, 3, 4).clone()


def test_logprobs_by_hand() -> None:
    logits = _logits_from_probs()  # (2, 3, 4)
    labels = torch.tensor([[0, 1, 2], [3, 3, 0]])
    expected = torch.log(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.4, 0.1]]))
    out = logprobs_from_logits(logits, labels)
    assert out.shape == (2, 3) and out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-6)


def test_logprobs_match_log_softmax() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4) * 3
    labels = torch.randint(0, 4, (2, 3))
    manual = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logprobs_from_logits(logits, labels), manual, atol=1e-6)


def test_half_precision_input_gives_fp32_output() -> None:
    torch.manual_seed(0)
    logits = (torch.randn(2, 3, 4) * 3).half()
    labels = torch.randint(0, 4, (2, 3))
    out = logprobs_from_logits(logits, labels)
    assert out.dtype == torch.float32
    ref = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(out, ref, atol=1e-6)
    assert entropy_from_logits(logits.bfloat16()).dtype == torch.float32


def test_large_half_logits_do_not_overflow() -> None:
    # e^20 = 4.9e8 overflows fp16 (max 65504): a naive fp16 softmax gives inf / NaN
    logits = torch.tensor([[[20.0, 20.0, 0.0, 0.0]]], dtype=torch.float16)
    out = logprobs_from_logits(logits, torch.tensor([[0]]))
    # two equal maxima, the rest e^-20 ~ 2e-9: log(1/2) = -0.6931472
    assert torch.allclose(out, torch.tensor([[-math.log(2.0)]]), atol=1e-5)


def test_shifted_logprobs_aligns_token_t_plus_1_with_logits_t() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    out = shifted_logprobs(logits, ids)
    assert out.shape == (2, 4)
    # column 0 scores ids[:, 1] with the logits at position 0
    manual = torch.log_softmax(logits[:, 0], dim=-1).gather(-1, ids[:, 1:2]).squeeze(-1)
    assert torch.allclose(out[:, 0], manual, atol=1e-6)


def test_entropy_by_hand() -> None:
    # uniform over 4: log 4 = 1.386294; p = [.1, .2, .3, .4]:
    # -(.1 ln .1 + .2 ln .2 + .3 ln .3 + .4 ln .4) = .230259 + .321888 + .361192 + .366516 = 1.279854
    uniform = torch.zeros(1, 1, 4)
    assert torch.allclose(entropy_from_logits(uniform), torch.tensor([[math.log(4.0)]]))
    out = entropy_from_logits(_logits_from_probs())
    assert out.shape == (2, 3)
    assert torch.allclose(out, torch.full((2, 3), 1.279854), atol=1e-5)
