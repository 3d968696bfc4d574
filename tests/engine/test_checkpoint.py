"""Checkpoints: layout, keep-last pruning, the `latest` pointer, and crash safety.

The kill -9 tests run a training subprocess that is SIGKILLed in the middle of its second save
(once while DeepSpeed writes, once after every file is written but before the rename): the
first checkpoint must stay the one found and it must load and resume.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from engine_helpers import make_trainer

from beaver.engine import checkpoint as ckpt
from beaver.errors import UserError
from childenv import child_env

ENGINE_TESTS = Path(__file__).parent


def test_layout_pointer_and_keep_last(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    t = make_trainer(tmp_path, total=5, save_every=1, keep_last=2)
    result = t.run(5, root)
    names = sorted(p.name for p in root.iterdir())
    assert names == ["latest", "step-00000004", "step-00000005"]
    assert (root / "latest").read_text().strip() == "step-00000005"
    assert ckpt.latest_checkpoint(root) == result.checkpoint == root / "step-00000005"
    meta = json.loads((root / "step-00000005" / "meta.json").read_text())
    assert meta["step"] == 5 and meta["world_size"] == 1 and meta["engines"] == ["model"]
    assert meta["progress"]["step"] == 5
    # beaver's own per-rank file loads without pickle of arbitrary objects
    state = torch.load(root / "step-00000005" / "rank-00000.pt", weights_only=True)
    assert set(state) == {"rng", "extra"}


def test_partial_tmp_folder_and_stale_pointer_are_ignored(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    t = make_trainer(tmp_path, total=2, save_every=1, keep_last=5)
    t.run(2, root)
    (root / ".tmp-step-00000003" / "model").mkdir(parents=True)  # a save that never finished
    (root / "step-00000009").mkdir()  # a folder without meta.json is never complete
    assert ckpt.latest_checkpoint(root) == root / "step-00000002"
    (root / "latest").write_text("step-00000042\n")  # pointer to a folder that is gone
    assert ckpt.latest_checkpoint(root) == root / "step-00000002"
    (root / "latest").unlink()
    assert ckpt.latest_checkpoint(root) == root / "step-00000002"
    assert [p.name for p in ckpt.complete_checkpoints(root)] == ["step-00000001", "step-00000002"]


def test_resolve_resume(tmp_path: Path) -> None:
    root = tmp_path / "run" / "checkpoints"
    assert ckpt.resolve_resume(None, root) is None
    assert ckpt.resolve_resume("auto", root) is None  # nothing yet: a fresh start
    t = make_trainer(tmp_path, total=1)
    result = t.run(1, root)
    assert ckpt.resolve_resume("auto", root) == result.checkpoint
    assert ckpt.resolve_resume(str(tmp_path / "run"), root) == result.checkpoint
    assert ckpt.resolve_resume(str(result.checkpoint), root) == result.checkpoint
    with pytest.raises(UserError, match="no complete checkpoint"):
        ckpt.resolve_resume(str(tmp_path / "nowhere"), root)


def test_extra_state_round_trip(tmp_path: Path) -> None:
    class Counter:
        def __init__(self) -> None:
            self.value, self.window = 0, [0.5]

        def state_dict(self) -> dict[str, object]:
            return {"value": self.value, "window": list(self.window), "t": torch.ones(2)}

        def load_state_dict(self, state: dict[str, object]) -> None:
            self.value, self.window = state["value"], state["window"]  # type: ignore[assignment]

    counter = Counter()
    counter.value, counter.window = 5, [1.0, 2.0]
    make_trainer(tmp_path, total=3).run(3, tmp_path / "ckpt", stateful={"counter": counter})
    restored = Counter()
    t2 = make_trainer(tmp_path / "b", total=3)
    t2.run(
        3,
        tmp_path / "ckpt",
        resume_from=ckpt.latest_checkpoint(tmp_path / "ckpt"),
        stateful={"counter": restored},
    )
    assert restored.value == 5 and restored.window == [1.0, 2.0]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from beaver.engine import checkpoint, dist
    dist.init_distributed()
    from engine_helpers import make_trainer

    mode, run_dir = sys.argv[1], Path(sys.argv[2])
    saves = []
    real_publish, real_save = checkpoint._publish, checkpoint.torch.save

    def publish(tmp, final):
        if final.name == "step-00000002" and mode == "before_rename":
            os.kill(os.getpid(), signal.SIGKILL)
        real_publish(tmp, final)

    def save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        if "step-00000002" in str(path) and mode == "mid_write":
            os.kill(os.getpid(), signal.SIGKILL)  # after DeepSpeed's first file of this save

    checkpoint._publish = publish
    checkpoint.torch.save = save
    t = make_trainer(run_dir, total=4, save_every=1, keep_last=3)
    t.run(4, run_dir / "ckpt")
""")


@pytest.mark.parametrize("mode", ["mid_write", "before_rename"])
def test_kill9_during_save_keeps_previous_checkpoint(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT.format(tests=str(ENGINE_TESTS)))
    env = child_env()
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    root = tmp_path / "ckpt"
    assert (root / ".tmp-step-00000002").is_dir()  # the interrupted save
    assert not (root / "step-00000002").exists()
    assert ckpt.latest_checkpoint(root) == root / "step-00000001"

    t = make_trainer(tmp_path / "resumed", total=4)
    result = t.run(4, root, resume_from=ckpt.latest_checkpoint(root))
    assert len(t.losses) == 3 and result.progress.step == 4
    assert not list(root.glob(".tmp-*"))  # the next save cleaned the leftovers


def test_several_engines_and_extra_state(tmp_path: Path) -> None:
    """A PPO-like checkpoint: actor + critic engines, per-rank extra state with tensors."""
    actor, critic = make_trainer(tmp_path / "a"), make_trainer(tmp_path / "c", lr=1e-3)
    actor.run(2, tmp_path / "warm-a")
    critic.run(1, tmp_path / "warm-c")
    engines = {"actor": actor.engine, "critic": critic.engine}
    extra = {"lagrange": {"log_lambda": 0.25, "window": [1.0, -2.0]}, "mean": torch.ones(3)}
    saved = ckpt.save_checkpoint(tmp_path / "ckpt", 7, engines, extra, {"note": "x"}, keep_last=2)
    expected = {n: [p.detach().clone() for p in e.module.parameters()] for n, e in engines.items()}
    fresh = {
        "actor": make_trainer(tmp_path / "f1").engine,
        "critic": make_trainer(tmp_path / "f2", lr=1e-3).engine,
    }
    meta, loaded = ckpt.load_checkpoint(saved, fresh)
    assert meta["step"] == 7 and meta["note"] == "x" and meta["engines"] == ["actor", "critic"]
    assert loaded["lagrange"] == extra["lagrange"] and torch.equal(loaded["mean"], torch.ones(3))
    for name, engine in fresh.items():
        params = list(engine.module.parameters())
        assert all(torch.equal(a, b) for a, b in zip(expected[name], params, strict=True))
    with pytest.raises(UserError, match="holds engines"):
        ckpt.load_checkpoint(saved, {"actor": fresh["actor"]})
