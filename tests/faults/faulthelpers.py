"""Helpers of the fault suite (a module of its own: `conftest` is a name every folder has)."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from beaver.cli import app

runner = CliRunner()


def beaver(*args: str, env: dict[str, str] | None = None, code: int = 2) -> Any:
    """Run `beaver ARGS` in-process; assert the exit code and that no traceback was printed."""
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code == 2:  # a user's mistake ends in SystemExit, never in an exception of beaver's
        assert isinstance(result.exception, SystemExit), result.exception
    return result
