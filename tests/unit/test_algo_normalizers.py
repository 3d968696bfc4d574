"""Score normalizers: Chan merge, EMA, normalize kinds, state_dict round trip, fp32 buffers."""

import pytest
import torch

from beaver.algo import ExponentialMovingAverage, RunningMeanStd, build_normalizer


def test_running_mean_std_by_hand() -> None:
    norm = RunningMeanStd()
    norm.update(torch.tensor([1.0, 2.0, 3.0]))
    # mean 2, population var (1 + 0 + 1) / 3 = 2/3
    assert norm.mean.item() == pytest.approx(2.0)
    assert norm.var.item() == pytest.approx(2.0 / 3.0)
    norm.update(torch.tensor([4.0, 5.0, 6.0, 7.0, 8.0]))
    # all of 1..8: mean 4.5, var (2*(3.5^2 + 2.5^2 + 1.5^2 + 0.5^2)) / 8 = 42 / 8 = 5.25
    assert norm.mean.item() == pytest.approx(4.5)
    assert norm.var.item() == pytest.approx(5.25)
    assert int(norm.count) == 8


def test_running_mean_std_merge_equals_concatenation() -> None:
    torch.manual_seed(0)
    a, b, c = torch.randn(7) * 3 + 1, torch.randn(13) - 2, torch.randn(1)
    norm = RunningMeanStd()
    for batch in (a, b, c):
        norm.update(batch)
    everything = torch.cat([a, b, c])
    assert torch.allclose(norm.mean, everything.mean(), atol=1e-5)
    assert torch.allclose(norm.var, everything.var(unbiased=False), atol=1e-5)
    norm.update(torch.tensor([]))  # empty batch: no change, no NaN
    assert int(norm.count) == 21 and not torch.isnan(norm.mean)


def test_exponential_moving_average_by_hand() -> None:
    ema = ExponentialMovingAverage(momentum=0.9)
    ema.update(torch.tensor([1.0, 3.0]))  # first batch sets: mean 2, var 1
    assert ema.mean.item() == pytest.approx(2.0) and ema.var.item() == pytest.approx(1.0)
    ema.update(torch.tensor([4.0, 4.0]))
    # mean 0.9 * 2 + 0.1 * 4 = 2.2; var 0.9 * 1 + 0.1 * 0 = 0.9
    assert ema.mean.item() == pytest.approx(2.2) and ema.var.item() == pytest.approx(0.9)


def test_normalize_kinds() -> None:
    norm = RunningMeanStd()
    norm.update(torch.tensor([0.0, 4.0]))  # mean 2, var 4, std 2
    x = torch.tensor([6.0, -2.0])
    # reward: (x - 2) / 2 = [2, -2]; cost: x / 2 = [3, -1] (sign kept); critic: identity
    assert torch.allclose(norm.normalize(x, "reward"), torch.tensor([2.0, -2.0]))
    assert torch.allclose(norm.normalize(x, "cost"), torch.tensor([3.0, -1.0]))
    assert torch.equal(norm.normalize(x, "critic"), x)
    with pytest.raises(ValueError, match="unknown score kind"):
        norm.normalize(x, "value")  # type: ignore[arg-type]


def test_state_dict_round_trip() -> None:
    norm = ExponentialMovingAverage(momentum=0.5)
    norm.update(torch.tensor([1.0, 5.0]))
    norm.update(torch.tensor([2.0]))
    state = norm.state_dict()
    assert set(state) == {"mean", "var", "count"}
    fresh = ExponentialMovingAverage(momentum=0.5)
    fresh.load_state_dict(state)
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(fresh, name), getattr(norm, name))
    x = torch.tensor([3.0])
    assert torch.equal(fresh.normalize(x, "reward"), norm.normalize(x, "reward"))


def test_buffers_stay_fp32_when_cast() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), RunningMeanStd())
    model.bfloat16()
    norm = model[1]
    assert isinstance(norm, RunningMeanStd)
    assert model[0].weight.dtype == torch.bfloat16
    assert norm.mean.dtype == torch.float32 and norm.var.dtype == torch.float32
    assert norm.count.dtype == torch.long
    norm.update(torch.tensor([1.0, 2.0], dtype=torch.bfloat16))
    assert norm.mean.item() == pytest.approx(1.5)


def test_build_normalizer() -> None:
    assert build_normalizer(None) is None
    assert isinstance(build_normalizer("RunningMeanStd"), RunningMeanStd)
    ema = build_normalizer("ExponentialMovingAverage", momentum=0.8)
    assert isinstance(ema, ExponentialMovingAverage) and ema.momentum == 0.8
    with pytest.raises(ValueError, match="unknown normalizer_type"):
        build_normalizer("Batch")
