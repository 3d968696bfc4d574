"""DPO, SafeDPO and SACPO math, and linear merging, with worked numbers.

Throughout: -log sigma(z) = log(1 + e^-z); log(1 + e^-1) = 0.3132617, log(1 + e^-0.2) = 0.5981389,
log 2 = 0.6931472, and log(1 + e^z) = z + log(1 + e^-z).
"""

import pytest
import torch

from beaver.algo import dpo_loss, linear_merge, sacpo_beta, safedpo_pairs, safety_margin


def t(*x: float) -> torch.Tensor:
    return torch.tensor(x)


# One pair: the policy raised y_w by 1 nat over the reference (-1 vs -2) and lowered y_l by 1
# (-3 vs -2), so (logp_w - ref_w) - (logp_l - ref_l) = 1 - (-1) = 2.
PAIR = (t(-1.0), t(-3.0), t(-2.0), t(-2.0))


def test_dpo_loss_beta() -> None:
    # beta 0.5: z = 0.5 * 2 = 1 -> log(1 + e^-1) = 0.3132617; rewards h_w = 0.5, h_l = -0.5
    out = dpo_loss(*PAIR, beta=0.5)
    assert out.loss.item() == pytest.approx(0.3132617, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)
    assert out.accuracy.item() == 1.0
    # beta 0.1: z = 0.2 -> log(1 + e^-0.2) = 0.5981389
    assert dpo_loss(*PAIR, beta=0.1).loss.item() == pytest.approx(0.5981389, abs=1e-6)


def test_dpo_loss_at_the_reference_is_log_2() -> None:
    # policy == reference: z = 0 whatever beta, loss log 2, rewards 0, accuracy 0 (0 > 0 is false)
    same = t(-4.0, -1.0)
    out = dpo_loss(same, same, same, same, beta=0.3)
    assert out.loss.item() == pytest.approx(0.6931472, abs=1e-6)
    assert out.accuracy.item() == 0.0


def test_dpo_loss_batch_mean_and_accuracy() -> None:
    # pair 1 as PAIR (z = 1 at beta 0.5: 0.3132617); pair 2 the other way round (z = -1:
    # log(1 + e^1) = 1.3132617); mean 0.8132617, accuracy 1/2
    out = dpo_loss(t(-1.0, -3.0), t(-3.0, -1.0), t(-2.0, -2.0), t(-2.0, -2.0), beta=0.5)
    assert out.loss.item() == pytest.approx(0.8132617, abs=1e-6)
    assert out.accuracy.item() == 0.5


def test_label_smoothing() -> None:
    # eps 0.25 at z = 1: 0.75 * log(1 + e^-1) + 0.25 * log(1 + e^1)
    #   = 0.75 * 0.3132617 + 0.25 * 1.3132617 = 0.5632617
    out = dpo_loss(*PAIR, beta=0.5, label_smoothing=0.25)
    assert out.loss.item() == pytest.approx(0.5632617, abs=1e-6)
    # eps 0 is plain DPO
    assert dpo_loss(*PAIR, beta=0.5, label_smoothing=0.0).loss.item() == pytest.approx(0.3132617)


def test_label_smoothing_gradient() -> None:
    # dL/dz = -(1 - eps)(1 - sigma(z)) + eps * sigma(z); at z = 0: -0.5 + eps. With beta 1 and
    # z = logp_w (all else 0): eps 0 -> -0.5, eps 0.2 -> -0.3, eps 0.5 -> 0 (the conservative
    # loss stops pushing where sigma(z) = 1 - eps).
    for eps, grad in ((0.0, -0.5), (0.2, -0.3), (0.5, 0.0)):
        w = torch.zeros(1, requires_grad=True)
        zero = torch.zeros(1)
        dpo_loss(w, zero, zero, zero, beta=1.0, label_smoothing=eps).loss.backward()
        assert w.grad is not None and w.grad.item() == pytest.approx(grad, abs=1e-6)


def test_margin_is_subtracted_from_the_logit() -> None:
    # z = 1 - Delta: Delta 1 -> z = 0 -> log 2; Delta 0 -> 0.3132617; a margin only on pair 2
    # leaves pair 1 alone: mean(0.3132617, log(1 + e^1) = 1.3132617 with z = 1 - 2) = 0.8132617
    assert dpo_loss(*PAIR, beta=0.5, margin=t(1.0)).loss.item() == pytest.approx(0.6931472)
    assert dpo_loss(*PAIR, beta=0.5, margin=t(0.0)).loss.item() == pytest.approx(0.3132617)
    two = dpo_loss(t(-1.0, -1.0), t(-3.0, -3.0), t(-2.0, -2.0), t(-2.0, -2.0), 0.5, margin=t(0, 2))
    assert two.loss.item() == pytest.approx(0.8132617, abs=1e-6)
    # the margin raises the loss and the push: dL/dz = -(1 - sigma(1 - Delta)), larger for Delta > 0
    assert two.accuracy.item() == 1.0  # accuracy reads the implicit rewards, not the margin


def test_safedpo_transformation_on_all_four_combinations() -> None:
    # rows: (better safe, worse safe) = (safe, safe), (safe, unsafe), (unsafe, safe), (unsafe, unsafe)
    better_safe = torch.tensor([True, True, False, False])
    worse_safe = torch.tensor([True, False, True, False])
    p = safedpo_pairs(better_safe, worse_safe)
    # keep the helpfulness order while the better answer is safe; swap when only the worse one is
    assert p.swap.tolist() == [False, False, True, False]
    # both unsafe: dropped
    assert p.keep.tolist() == [True, True, True, False]
    # after T the chosen answer of every kept pair is safe
    assert p.chosen_unsafe.tolist() == [False, False, False, True]
    assert p.rejected_unsafe.tolist() == [False, True, True, True]
    # the margin (h_l - h_w) * Delta: Delta on both safe-vs-unsafe pairs, 0 on safe-vs-safe and on
    # the dropped pair (1 - 1)
    margin = safety_margin(p.chosen_unsafe, p.rejected_unsafe, delta=2.0)
    assert margin.tolist() == [0.0, 2.0, 2.0, 0.0]


def test_safety_margin_sign() -> None:
    # (h_l - h_w) * Delta is negative for an unsafe chosen answer over a safe one (T never yields
    # one; the formula is the paper's)
    assert safety_margin(t(1.0).bool(), t(0.0).bool(), 3.0).item() == -3.0


def test_sacpo_beta() -> None:
    # the safety step's beta / lambda: 0.1 / 4 = 0.025 (line/sacpo's smallest setting at lambda 10:
    # 0.01)
    assert sacpo_beta(0.1, 4.0) == pytest.approx(0.025)
    assert sacpo_beta(0.1, 10.0) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="lambda"):
        sacpo_beta(0.1, 0.0)


def test_linear_merge() -> None:
    # q = 0.25: 0.75 * theta_r + 0.25 * theta_g: w = (0.75 + 0.75, 1.5 + 1.5) = (1.5, 3.0),
    # b = 0.25 * 2 = 0.5; the integer buffer is equal in both and kept; dtype follows model 0
    r = {"w": t(1.0, 2.0).bfloat16(), "b": t(0.0).bfloat16(), "n": torch.tensor([7])}
    g = {"w": t(3.0, 6.0).bfloat16(), "b": t(2.0).bfloat16(), "n": torch.tensor([7])}
    merged = linear_merge(iter([r, g]), [0.75, 0.25])
    assert merged["w"].tolist() == [1.5, 3.0] and merged["b"].item() == 0.5
    assert merged["w"].dtype == torch.bfloat16 and merged["n"].tolist() == [7]
    # weights (1, 0) return model 0
    assert torch.equal(linear_merge([r, g], [1.0, 0.0])["w"], r["w"])


def test_linear_merge_refuses_mismatched_models() -> None:
    a = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="shape"):
        linear_merge([a, {"w": torch.zeros(3)}], [0.5, 0.5])
    with pytest.raises(ValueError, match="other weights"):
        linear_merge([a, {"v": torch.zeros(2)}], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights"):
        linear_merge([a, a, a], [0.5, 0.5])
    with pytest.raises(ValueError, match="differs"):
        linear_merge([{"n": torch.tensor([1])}, {"n": torch.tensor([2])}], [0.5, 0.5])
