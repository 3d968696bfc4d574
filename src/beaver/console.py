"""The Rich consoles beaver prints to: text is printed as given, never read as markup.

Text from data rows, paths, error messages and chat users can hold `[/INST]`, `[draft]` or
`:smile:`; a console with markup on would raise `MarkupError` on the first, silently delete the
second and turn the third into an emoji. So every console comes from `plain_console()` (markup,
emoji codes and highlighting off: a `str` prints verbatim), and beaver's own styling is given as
`rich.text.Text` (e.g. `Text.assemble(("error: ", "bold red"), message)`), never parsed from a
string. Rich still parses plain strings in a few places whatever the console says (a `Panel`
title, a `status` spinner's text, a `Progress` column with markup): those get `Text` too.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from rich.console import Console


def plain_console(stderr: bool = False, **kwargs: Any) -> Console:
    """A console that prints strings verbatim (no markup, no emoji codes, no highlighting)."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, **kwargs)


def plain_warnings() -> None:
    """Print beaver's data warnings as one line, `warning: ...`, once (on rank 0 only), without
    Python's file name and source line; other warnings keep Python's format. For the command
    line: a program importing beaver keeps its own warning display."""
    from beaver.data.loading import DataWarning

    python_format = warnings.formatwarning

    def formatwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: Any = None,
    ) -> str:
        if not issubclass(category, DataWarning):
            return python_format(message, category, filename, lineno, line)
        return f"warning: {message}\n" if os.environ.get("RANK", "0") == "0" else ""

    warnings.formatwarning = formatwarning
