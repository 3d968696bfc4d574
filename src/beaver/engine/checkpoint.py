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
folder without `meta.json` is never used. Pruning renames a folder to `.old-*` before deleting
it, so an interrupted prune leaves nothing that looks like a checkpoint.

Faults: a write that fails (a full disk, a quota) removes the partial folder and stops with a
`UserError` naming the folder and the free space, the previous checkpoint intact. A checkpoint
with a damaged file (truncated, overwritten) is reported and, unless the user named that very
checkpoint, the newest older complete one is loaded instead (`load_intact`).

Files beaver writes itself load with `torch.load(weights_only=True)` or JSON; DeepSpeed loads its
own. Multi-node runs need the run folder on a shared file system (as DeepSpeed's do).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from beaver.engine import dist
from beaver.engine.seed import rng_state, set_rng_state
from beaver.errors import UserError

LATEST = "latest"
META = "meta.json"
_DS_TAG = "ds"


class DamagedCheckpoint(UserError):
    """A file of a complete checkpoint cannot be read."""


@contextmanager
def disk_errors(what: str, folder: Path, advice: str = "run again") -> Iterator[None]:
    """Turn a failed write (full disk, quota, permissions) into a `UserError` about `folder`.

    torch's writer reports a full disk as a bare `RuntimeError` ("basic_ios::clear: iostream
    error", "file write failed"), so RuntimeErrors about writing count too.
    """
    try:
        yield
    except (OSError, RuntimeError) as err:
        chain = [err]  # torch re-raises a failed write as "unexpected pos" while closing the file
        while chain[-1].__context__ is not None and len(chain) < 8:
            chain.append(chain[-1].__context__)  # type: ignore[arg-type]
        texts = [(str(e).strip() or type(e).__name__).splitlines()[0] for e in chain]
        words = ("write", "iostream", "space", "quota")
        about_writing = [t for t in texts if any(w in t.lower() for w in words)]
        if isinstance(err, RuntimeError) and not about_writing:
            raise
        denied = isinstance(err, PermissionError)
        fix = (
            "Make it writable (or choose another output_dir)"
            if denied
            else f"{_free_space(folder)} Free some space (or choose an output_dir on another disk)"
        )
        raise UserError(
            f"cannot write {what} to {folder}: {(about_writing or texts)[-1]}. {fix} and {advice}."
        ) from None


def finished_advice(result: Any) -> str:
    """What to do when the final model of a finished run cannot be written."""
    return (
        f"resume with train.resume=auto: training is done and saved in {result.checkpoint}, "
        "so only the model is written"
    )


def _free_space(folder: Path) -> str:
    for path in (folder, *folder.parents):
        if path.exists():
            free = shutil.disk_usage(path).free / 2**20
            return f"The disk holding {path} has {free:.0f} MiB free."
    return ""


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
    failure: UserError | None = None
    previous = latest_checkpoint(root)
    advice = (
        f"resume with train.resume=auto (the previous checkpoint {previous.name} is intact)"
        if previous is not None
        else "run again"
    )
    try:
        with disk_errors(f"checkpoint {name}", root, advice):
            for engine_name, engine in engines.items():
                engine.save_checkpoint(str(tmp / engine_name), tag=_DS_TAG, save_latest=False)
            torch.save(
                {"rng": rng_state(), "extra": extra_state or {}}, _rank_file(tmp, dist.rank())
            )
    except UserError as err:
        failure = err
    # every rank's files are in tmp, or some rank failed: all ranks learn it and stop together
    if dist.reduce_values({"failed": float(failure is not None)}, "max")["failed"] > 0:
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)  # give the space back
        raise failure or UserError(f"another rank could not write checkpoint {name}; {advice}.")
    if dist.is_main():
        record = {
            "step": step,
            "world_size": dist.world_size(),
            "engines": sorted(engines),
            **(meta or {}),
        }
        with disk_errors(f"checkpoint {name}", root, advice):  # small files, rank 0 only
            _write_text_atomic(tmp / META, json.dumps(record, indent=2) + "\n")
        _publish(tmp, final)
        with disk_errors(f"checkpoint {name}", root, "resume with train.resume=auto"):
            _write_text_atomic(root / LATEST, name + "\n")  # (a stale pointer is ignored)
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
            _delete(p)
    # `step-*` without meta.json: left by an interrupted delete of an older version
    newest = current.name if current is not None else ""
    for p in root.glob("step-*"):
        if p.is_dir() and not (p / META).is_file() and p.name < newest:
            _delete(p)
    for p in list(root.glob(".tmp-*")) + list(root.glob(".old-*")):
        shutil.rmtree(p, ignore_errors=True)


def _delete(folder: Path) -> None:
    """Rename out of sight first (atomic), then delete: a kill midway leaves an `.old-*`."""
    old = folder.with_name(f".old-{folder.name}")
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, old)
    shutil.rmtree(old, ignore_errors=True)


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` is one checkpoint folder (not a run folder or a checkpoint root)."""
    return (Path(path) / META).is_file()


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
    """Load every engine and this rank's RNG; returns (meta, extra_state). Collective.

    Raises `DamagedCheckpoint` when a file cannot be read."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as err:
        raise DamagedCheckpoint(f"{folder / META}: {err}") from None
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
    try:
        for name, engine in engines.items():
            path, _ = engine.load_checkpoint(
                str(folder / name),
                tag=_DS_TAG,
                load_optimizer_states=load_optimizer,
                load_lr_scheduler_states=load_optimizer,
            )
            if path is None:
                raise DamagedCheckpoint(f"{folder / name}: DeepSpeed found no checkpoint there")
        state = torch.load(_rank_file(folder, dist.rank()), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as err:
        # torch's reader: "PytorchStreamReader failed reading zip archive", "unexpected EOF"...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DamagedCheckpoint(f"{folder}: {type(err).__name__}: {first}") from None
    if restore_rng:
        set_rng_state(state["rng"])
    return meta, state["extra"]


def load_intact(
    folder: str | Path,
    engines: dict[str, Any],
    say: Callable[[str], None],
    fallback: bool = True,
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """`load_checkpoint(folder)`, or, when one of its files is damaged (on any rank) and
    `fallback` is on, of the newest older complete checkpoint beside it, saying so.
    Returns (meta, extra_state, the folder loaded). Collective."""
    folder = Path(folder)
    candidates = [folder]
    if fallback:
        older = [p for p in complete_checkpoints(folder.parent) if p.name < folder.name]
        candidates += older[::-1]
    problem = ""
    for candidate in candidates:
        try:
            loaded: tuple[dict[str, Any], dict[str, Any]] | None = load_checkpoint(
                candidate, engines
            )
        except DamagedCheckpoint as err:
            loaded, problem = None, str(err)
        # every rank must load the same checkpoint
        if dist.reduce_values({"bad": float(loaded is None)}, "max")["bad"] == 0:
            assert loaded is not None
            return (*loaded, candidate)
        say(f"warning: checkpoint {candidate} is damaged ({problem or 'on another rank'})")
    if fallback:
        advice = "no older complete checkpoint is left; start a fresh run (train.resume unset)"
    else:
        others = [p.name for p in complete_checkpoints(folder.parent) if p != folder]
        advice = (
            f"resume from another one ({', '.join(others)}) or with train.resume=auto, which "
            "falls back to the newest intact one"
            if others
            else "no other checkpoint is there; start a fresh run"
        )
    raise DamagedCheckpoint(f"cannot resume: checkpoint {folder} is damaged ({problem}); {advice}.")
