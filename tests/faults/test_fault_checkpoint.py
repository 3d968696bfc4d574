"""Checkpoint faults: a full disk during a save, a damaged newest checkpoint, an interrupted
prune, a killed run's metrics rows, and an output folder under a regular file."""

from __future__ import annotations

import json
import resource
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import make_trainer
from faulthelpers import beaver

from beaver.config.sections import LoggingCfg
from beaver.engine import checkpoint as ckpt
from beaver.engine.loop import StepResult
from beaver.engine.tracking import MetricsLogger
from beaver.errors import UserError
from beaver.stages.sft import sft_step

pytestmark = pytest.mark.usefixtures("process_group")


@contextmanager
def files_capped_at(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes of a file fail (EFBIG), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, keep the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_disk_during_a_save_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    t = make_trainer(tmp_path, total=4, save_every=2)
    cap = files_capped_at(32 * 1024)  # the model file is about 300 KiB

    def step(engine: Any, batches: list[Any]) -> StepResult:
        if len(t.losses) == 3:  # the disk fills up during step 4, before its save
            cap.__enter__()
        return sft_step(engine, batches)

    try:
        with pytest.raises(UserError) as err:
            t.run(4, root, step_fn=step)
    finally:
        cap.__exit__(None, None, None)
    message = str(err.value)
    assert f"cannot write checkpoint step-00000004 to {root}" in message
    assert "MiB free" in message and "step-00000002 is intact" in message
    assert "train.resume=auto" in message
    assert not (root / ".tmp-step-00000004").exists()  # the partial save gave its space back
    assert ckpt.latest_checkpoint(root) == root / "step-00000002"


@pytest.mark.parametrize("damaged", ["model/ds/mp_rank_00_model_states.pt", "rank-00000.pt"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, damaged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    straight = make_trainer(tmp_path / "a", total=6)
    straight.run(6, tmp_path / "a" / "ckpt")
    root = tmp_path / "b" / "ckpt"
    first = make_trainer(tmp_path / "b", total=6, save_every=2)
    first.run(4, root)  # step-2 and step-4
    broken = root / "step-00000004" / damaged
    broken.write_bytes(broken.read_bytes()[:1000])  # cut short
    resumed = make_trainer(tmp_path / "c", total=6, resume="auto")
    result = resumed.run(6, root, resume_from=ckpt.resolve_resume("auto", root))
    out = " ".join(capsys.readouterr().out.split())
    assert f"warning: checkpoint {root / 'step-00000004'} is damaged" in out
    assert f"resumed from {root / 'step-00000002'} at step 2" in out
    assert result.progress.step == 6 and len(resumed.losses) == 4
    combined = first.losses[:2] + resumed.losses  # exactly the straight run from step 2 on
    assert max(abs(a - b) for a, b in zip(straight.losses, combined, strict=True)) < 1e-6


def test_a_damaged_checkpoint_named_by_the_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    make_trainer(tmp_path, total=4, save_every=2).run(4, root)
    (root / "step-00000004" / "rank-00000.pt").write_bytes(b"not a checkpoint")
    named = str(root / "step-00000004")
    t = make_trainer(tmp_path / "b", total=4, resume=named)
    with pytest.raises(UserError, match="is damaged") as err:
        t.run(4, root, resume_from=named)
    assert "step-00000002" in str(err.value) and "train.resume=auto" in str(err.value)


def test_an_interrupted_prune_leaves_no_half_deleted_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ckpt"
    make_trainer(tmp_path, total=3, save_every=1, keep_last=5).run(3, root)
    real_rmtree = shutil.rmtree

    def killed_midway(path: Any, *args: Any, **kwargs: Any) -> None:
        for meta in Path(path).glob("meta.json"):
            meta.unlink()  # the delete got this far
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.prune(root, keep_last=2)
    monkeypatch.setattr(ckpt.shutil, "rmtree", real_rmtree)
    assert not (root / "step-00000001").exists()  # out of sight: an `.old-*` folder
    ckpt.prune(root, keep_last=2)  # the next save's prune clears it
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000002", "step-00000003"]


def test_a_half_deleted_folder_left_by_an_older_prune_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    make_trainer(tmp_path, total=3, save_every=1, keep_last=5).run(3, root)
    (root / "step-00000001" / "meta.json").unlink()  # what an interrupted rmtree left
    ckpt.prune(root, keep_last=5)
    assert not (root / "step-00000001").exists()


def test_a_resumed_run_logs_each_step_once(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    t = make_trainer(tmp_path, total=6, save_every=2)
    t.logger = MetricsLogger(tmp_path, LoggingCfg(backend="none", log_every=1), {})

    def killed_in_step_6(engine: Any, batches: list[Any]) -> StepResult:
        if len(t.losses) == 5:
            raise KeyboardInterrupt  # a kill: steps 1-5 logged, the last checkpoint at step 4
        return sft_step(engine, batches)

    with pytest.raises(KeyboardInterrupt):
        t.run(6, root, step_fn=killed_in_step_6)
    t.logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # and a line cut short by the kill
    resumed = make_trainer(tmp_path / "b", total=6, resume="auto")
    resumed.logger = MetricsLogger(tmp_path, LoggingCfg(backend="none", log_every=1), {})
    resumed.run(6, root, resume_from=ckpt.latest_checkpoint(root))
    resumed.logger.close()
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_output_dir_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = beaver("sft", "--config", "configs/toy/sft.yaml", f"output_dir={blocker}/run")
    assert "`output_dir`" in out.output and f"{blocker} is a file, not a folder" in out.output
    out = beaver("eval", "gpt4", "red_model=m", "blue_model=n", f"output_dir={blocker}")
    assert f"{blocker} is a file, not a folder" in out.output
