"""Custom datasets: modules named in `data.imports`, and the `beaver.datasets` entry points.

A module that defines a `RawDataset` subclass with a `NAME` registers it when imported, so
naming the module is enough:

    data:
      imports: [my_pkg.my_data]          # or a file: [./my_data.py]
      train: ["my-dataset:1.0:/data/mine.jsonl"]

A package can instead declare the entry point once, and beaver imports it on first use:

    [project.entry-points."beaver.datasets"]
    my-dataset = "my_pkg.my_data"
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from beaver.errors import UserError

ENTRY_POINT_GROUP = "beaver.datasets"
_entry_points_loaded = False


def import_modules(modules: Iterable[str]) -> None:
    """Import each module (dotted name, or a path to a `.py` file); errors name the module."""
    from beaver.data.raw import _ensure_builtins

    _ensure_builtins()  # built-in names first, so a clash blames the custom class
    for name in modules:
        if name.endswith(".py"):
            _import_file(Path(name).expanduser())
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                raise UserError(
                    f"data.imports: module {name!r} not found (is it installed or on "
                    f"PYTHONPATH? a file is named with its .py path)"
                ) from None
            raise UserError(f"data.imports: importing {name!r} failed: {err}") from err
        except ImportError as err:
            raise UserError(f"data.imports: importing {name!r} failed: {err}") from err


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"data.imports: file {path} not found")
    module_name = f"beaver_user_data_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"data.imports: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


def load_entry_points() -> None:
    """Import every `beaver.datasets` entry point once; a broken one warns and is named later."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from beaver.data.raw import _LOAD_FAILURES

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as err:  # a third-party plugin: report it, keep the others usable
            _LOAD_FAILURES.append(f"{ep.name} = {ep.value}: {type(err).__name__}: {err}")
            warnings.warn(
                f"beaver.datasets entry point {ep.name!r} ({ep.value}) failed to load: {err}",
                stacklevel=2,
            )
