"""The base class every config section derives from.

`extra="forbid"` turns a typo into an error instead of a silently ignored key, and
`use_attribute_docstrings=True` makes the docstring under each field its one description
(shown by `--help` and in validation errors).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)
