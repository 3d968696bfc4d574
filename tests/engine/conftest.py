"""The process group every engine test runs in (one process, gloo on CPU)."""

from __future__ import annotations

import os

import pytest

from beaver.engine import dist


@pytest.fixture(scope="session", autouse=True)
def _process_group() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dist.init_distributed()
