"""The base class every config section derives from.

`extra="forbid"` turns a typo into an error instead of a silently ignored key, and
`use_attribute_docstrings=True` makes the docstring under each field its one description
(shown by `--help` and in validation errors). `OutputDir` is the type of every `output_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _can_hold_a_folder(value: str) -> str:
    """Refuse an output folder that cannot be created: it, or the first existing folder above
    it, is a regular file."""
    path = Path(value).expanduser()
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                under = "" if existing == path else f", so {path} cannot be created under it"
                raise ValueError(f"{existing} is a file, not a folder{under}")
            break
    return value


OutputDir = Annotated[str, AfterValidator(_can_hold_a_folder)]
"""A folder a command writes to (created when missing)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)
