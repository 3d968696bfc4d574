"""Resume is exact: 2N steps straight == N steps, save, resume in a fresh engine, N more steps.

fp32 on CPU, dropout on (so the RNG state must travel too), gradient accumulation 2, a cosine
schedule with warm-up, weight decay and clipping, and a step count that crosses an epoch
boundary (64 samples / (4 x 2) = 8 steps per epoch; N = 6).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import make_trainer

from beaver.engine.checkpoint import latest_checkpoint

N = 6


@pytest.mark.parametrize("zero", [0, 2, 3])
def test_resume_matches_straight_run(tmp_path: Path, zero: int) -> None:
    straight = make_trainer(tmp_path / "a", zero=zero, total=2 * N)
    straight.run(2 * N, tmp_path / "a" / "ckpt")

    first = make_trainer(tmp_path / "b", zero=zero, total=2 * N)
    result = first.run(N, tmp_path / "b" / "ckpt")
    assert result.checkpoint == latest_checkpoint(tmp_path / "b" / "ckpt")
    # A fresh engine and a different global RNG state: everything must come from the checkpoint.
    second = make_trainer(tmp_path / "c", zero=zero, total=2 * N)
    resumed = second.run(2 * N, tmp_path / "b" / "ckpt", resume_from=result.checkpoint)

    assert resumed.progress.step == 2 * N and resumed.progress.epoch == 1
    assert len(straight.losses) == 2 * N and len(first.losses) == len(second.losses) == N
    diffs = [abs(a - b) for a, b in zip(straight.losses, first.losses + second.losses, strict=True)]
    assert max(diffs) < 1e-6, diffs
    assert straight.losses[-1] < straight.losses[0] - 0.3  # and it learned something


def test_resume_restores_lr_and_data_position(tmp_path: Path) -> None:
    first = make_trainer(tmp_path, total=10)
    result = first.run(5, tmp_path / "ckpt")
    lr_at_save = first.engine.get_lr()[0]
    second = make_trainer(tmp_path / "fresh", total=10)
    assert second.engine.get_lr()[0] != lr_at_save
    resumed = second.run(5, tmp_path / "ckpt", resume_from=result.checkpoint)  # nothing left
    assert resumed.progress.step == 5 and second.losses == []
    assert second.engine.get_lr()[0] == pytest.approx(lr_at_save)
    assert resumed.progress.batches_done == 5 * 2  # 5 steps x 2 micro-batches into epoch 0
