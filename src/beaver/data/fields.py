"""Read typed fields out of a row; each helper raises `BadRow` naming the column.

Rows come from JSON, CSV (strings only), Parquet or the hub, so booleans may arrive as
`true`, `1` or `"True"` and lists of turns as JSON text; these helpers accept those spellings
and nothing looser.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from beaver.data.raw import BadRow

_MISSING = object()
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def get(row: Mapping[str, Any], key: str) -> Any:
    """The value of `key`; a missing key or a null value is a `BadRow`."""
    value = row.get(key, _MISSING) if isinstance(row, Mapping) else _MISSING
    if value is _MISSING:
        raise BadRow(key, "is missing")
    if value is None:
        raise BadRow(key, "is null")
    return value


def get_str(row: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    """A string field (`optional`: missing or null gives None)."""
    if optional and row.get(key) is None:
        return None
    value = get(row, key)
    if not isinstance(value, str):
        raise BadRow(key, f"must be a string, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRow(key, f"must be true or false, got {type(value).__name__} {str(value)[:40]!r}")


def get_bool(row: Mapping[str, Any], key: str, *, optional: bool = False) -> bool | None:
    """A boolean field: true/false, 0/1, or their strings (CSV)."""
    if optional and row.get(key) is None:
        return None
    return to_bool(key, get(row, key))


def get_int(
    row: Mapping[str, Any],
    key: str,
    *,
    optional: bool = False,
    choices: tuple[int, ...] | None = None,
) -> int | None:
    """An integer field (also from a string or a whole float), optionally one of `choices`."""
    if optional and row.get(key) is None:
        return None
    value = get(row, key)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is None:
        raise BadRow(key, f"must be an integer, got {type(value).__name__} {str(value)[:40]!r}")
    if choices is not None and number not in choices:
        raise BadRow(key, f"must be one of {list(choices)}, got {number}")
    return number


def get_list(row: Mapping[str, Any], key: str, *, optional: bool = False) -> list[Any] | None:
    """A list field (a JSON list in a string is accepted, for CSV)."""
    if optional and row.get(key) is None:
        return None
    value = get(row, key)
    if isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if not isinstance(value, list | tuple):
        raise BadRow(key, f"must be a list, got {type(value).__name__} {str(value)[:40]!r}")
    return list(value)


def get_str_list(row: Mapping[str, Any], key: str, *, optional: bool = False) -> list[str] | None:
    """A non-empty list of strings."""
    value = get_list(row, key, optional=optional)
    if value is None:
        return None
    if not value:
        raise BadRow(key, "is an empty list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRow(f"{key}[{i}]", f"must be a string, got {type(item).__name__}")
    return value


def harm_categories(row: Mapping[str, Any], key: str) -> list[str] | None:
    """Harm categories: a {category: flagged} dict (PKU-SafeRLHF v1.0) or a list of names."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, Mapping):
        return sorted(str(k) for k, flagged in value.items() if to_bool(f"{key}.{k}", flagged))
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRow(
        key,
        f"must be a {{category: true/false}} mapping or a list of names, "
        f"got {type(value).__name__}",
    )


def scalar_meta(row: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    """The row's other scalar columns (str, int, float, bool, None), kept as metadata."""
    return {
        k: v
        for k, v in row.items()
        if k not in used and (v is None or isinstance(v, str | int | float | bool))
    }
