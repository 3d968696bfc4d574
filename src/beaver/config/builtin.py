"""The configs that ship with beaver, found by name: `--config toy/sft`, `beaver configs`.

They are the repository's `configs/` folder, installed as the package `beaver.configs` (a wheel
holds a copy under `beaver/configs/`; an editable install maps the package onto the checkout's
folder, so there is one copy to edit). `--config X` means the file X when there is one, else the
built-in config of that name: `toy/sft`, `toy/sft.yaml` and `configs/toy/sft.yaml` name the same
one, so the commands written for a checkout work unchanged from any folder. Paths inside the
configs (`output/demo/...`) stay relative to the folder the command runs in.
"""

from __future__ import annotations

import difflib
import shutil
from importlib import resources
from pathlib import Path

from beaver.errors import UserError

SUFFIX = ".yaml"


def configs_root() -> Path:
    """The folder holding the built-in configs (inside the installed package or the checkout)."""
    root = resources.files("beaver.configs")
    return Path(str(root))


def builtin_names() -> list[str]:
    """Every built-in config as `NAME` (relative path without `.yaml`), sorted."""
    root = configs_root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*" + SUFFIX))


def _normalise(name: str) -> str:
    name = name.replace("\\", "/").strip("/")
    name = name.removeprefix("./").removeprefix("configs/")
    return name.removesuffix(SUFFIX)


def find_builtin(name: str) -> Path | None:
    """The file of built-in config `name` (`.yaml` and a leading `configs/` optional), or None."""
    key = _normalise(name)
    return configs_root() / f"{key}{SUFFIX}" if key in builtin_names() else None


def close_names(name: str, n: int = 5) -> list[str]:
    """Built-in names that look like `name`: near spellings, then names sharing its last part."""
    key, names = _normalise(name), builtin_names()
    close = difflib.get_close_matches(key, names, n=n, cutoff=0.5)
    leaf = key.rsplit("/", 1)[-1]
    close += [m for m in names if m.rsplit("/", 1)[-1] == leaf and m not in close]
    return close[:n]


def _not_found(name: str) -> UserError:
    close = close_names(name)
    hint = f"; built-in configs with a similar name: {', '.join(close)}" if close else ""
    return UserError(
        f"Config file not found: {name} (neither a file nor a built-in config{hint}; "
        "`beaver configs` lists the built-in ones)"
    )


def resolve_config(path: str | Path) -> Path:
    """`path` when it is a file, else the built-in config of that name; a `UserError` naming
    the close built-in names when it is neither."""
    p = Path(path)
    if p.is_file():
        return p
    found = find_builtin(str(path))
    if found is None:
        raise _not_found(str(path))
    return found


def builtin_or_error(name: str) -> Path:
    """The built-in config `name` (never a local file): for `beaver configs show` / `copy`."""
    found = find_builtin(name)
    if found is None:
        raise _not_found(name)
    return found


def copy_builtin(name: str, dest: str | Path | None = None, force: bool = False) -> Path:
    """Copy built-in config `name` to `dest` (a file, or a folder to copy into; default: the
    current folder, as `<last part of the name>.yaml`); an existing file is kept unless `force`."""
    src = builtin_or_error(name)
    target = Path(dest) if dest is not None else Path(src.name)
    if target.is_dir():
        target = target / src.name
    if target.exists() and not force:
        raise UserError(f"{target} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target


def describe(name: str) -> str:
    """The first line of a built-in config's header comment (what it is for), or ''."""
    path = builtin_or_error(name)
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            return ""
        text = line.lstrip("#").strip()
        if text:
            return text
    return ""
