"""Errors that are the user's to fix.

A `UserError` is printed as one short paragraph (no traceback) and the process exits with code 2.
Everything else is a bug in beaver and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in a config, a file, a path or an argument; the message says what and where."""

    exit_code = 2
