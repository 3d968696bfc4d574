"""Resumable checkpoints of one or several DeepSpeed engines plus any extra state.

Layout under the checkpoint root (`<output_dir>/checkpoints`):

    step-00000100/
        <engine name>/ds/...      DeepSpeed's own files (module, optimiser, scheduler; per rank)
        rank-00000.pt             per rank: RNG states + the caller's `extra_state`
        meta.json                 rank 0: the caller's `meta` (progress), world size; written last
    latest                        text: the name of the newest complete checkpoint

Crash safety: every rank writes into `.tmp-step-...`; only when all ranks are done does rank 0
rename it into place, then replace `latest` (write tmp + `os.replace`). A kill at any moment
leaves either the old or the new checkpoint complete; loaders ignore `.tmp-*` folders, and a
folder without `meta.json` is never used.

Files beaver writes itself load with `torch.load(weights_only=True)` or JSON; DeepSpeed loads its
own. Multi-node runs need the run folder on a shared file system (as DeepSpeed's do).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from beaver.engine import dist
from beaver.engine.seed import rng_state, set_rng_state
from beaver.errors import UserError

LATEST = "latest"
META = "meta.json"
_DS_TAG = "ds"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def _rank_file(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank:05d}.pt"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    root: str | Path,
    step: int,
    engines: dict[str, Any],
    extra_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Save every engine, this rank's RNG + `extra_state`, and rank 0's `meta`; collective.

    `extra_state` holds plain data and tensors (it is reloaded with weights_only=True), e.g. the
    Lagrange controller's state_dict; `meta` must be JSON (e.g. the loop's progress).
    Returns the checkpoint folder.
    """
    root = Path(root)
    name = checkpoint_name(step)
    final, tmp = root / name, root / f".tmp-{name}"
    if dist.is_main():
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    for engine_name, engine in engines.items():
        engine.save_checkpoint(str(tmp / engine_name), tag=_DS_TAG, save_latest=False)
    torch.save({"rng": rng_state(), "extra": extra_state or {}}, _rank_file(tmp, dist.rank()))
    dist.barrier()  # every rank's files are in tmp
    if dist.is_main():
        record = {
            "step": step,
            "world_size": dist.world_size(),
            "engines": sorted(engines),
            **(meta or {}),
        }
        _write_text_atomic(tmp / META, json.dumps(record, indent=2) + "\n")
        _publish(tmp, final)
        _write_text_atomic(root / LATEST, name + "\n")
        if keep_last:
            prune(root, keep_last)
    dist.barrier()
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished tmp folder into place (moving an older one of the same name aside)."""
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first (partial `.tmp-*` ones ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if p.is_dir() and (p / META).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint `latest` names, or the newest complete one if the pointer is missing/stale."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named.name.startswith("step-") and (named / META).is_file():
            return named
    found = complete_checkpoints(root)
    return found[-1] if found else None


def prune(root: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints (never the `latest` one), and
    leftovers of interrupted saves."""
    root = Path(root)
    keep = set(complete_checkpoints(root)[-keep_last:])
    current = latest_checkpoint(root)
    for p in complete_checkpoints(root):
        if p not in keep and p != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in list(root.glob(".tmp-*")) + list(root.glob(".old-*")):
        shutil.rmtree(p, ignore_errors=True)


def resolve_resume(resume: str | None, root: str | Path) -> Path | None:
    """The checkpoint to resume from: `auto` -> latest under `root` (None if there is none);
    a path -> that checkpoint, or the latest inside it (a run folder or a checkpoint root)."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(root)
    path = Path(resume)
    if (path / META).is_file():
        return path
    for candidate in (path, path / "checkpoints"):
        found = latest_checkpoint(candidate)
        if found is not None:
            return found
    raise UserError(
        f"train.resume={resume!r}: no complete checkpoint there (a checkpoint folder "
        f"holds {META}; a run folder holds checkpoints/{LATEST})."
    )


def load_checkpoint(
    folder: str | Path,
    engines: dict[str, Any],
    load_optimizer: bool = True,
    restore_rng: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load every engine and this rank's RNG; returns (meta, extra_state). Collective."""
    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    if meta["world_size"] != dist.world_size():
        raise UserError(
            f"Checkpoint {folder} was written by {meta['world_size']} ranks; resume it "
            f"with the same number (got {dist.world_size()}): ZeRO state is per rank."
        )
    missing = sorted(set(meta["engines"]) ^ set(engines))
    if missing:
        raise UserError(
            f"Checkpoint {folder} holds engines {meta['engines']}, this run has {sorted(engines)}."
        )
    for name, engine in engines.items():
        path, _ = engine.load_checkpoint(
            str(folder / name),
            tag=_DS_TAG,
            load_optimizer_states=load_optimizer,
            load_lr_scheduler_states=load_optimizer,
        )
        if path is None:
            raise UserError(f"Checkpoint {folder}: DeepSpeed could not load engine {name!r}.")
    state = torch.load(_rank_file(folder, dist.rank()), map_location="cpu", weights_only=True)
    if restore_rng:
        set_rng_state(state["rng"])
    return meta, state["extra"]
