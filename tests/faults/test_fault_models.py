"""A folder that is not a model (or holds no tokenizer) gets a whole message saying what it
lacks, not the first line of transformers' list of what it tried."""

from __future__ import annotations

import shutil
from pathlib import Path

from faulthelpers import beaver


def test_an_empty_folder_is_not_a_tokenizer(tmp_path: Path) -> None:
    out = beaver("chat", "-m", str(tmp_path))
    message = " ".join(out.output.split())
    assert f"{tmp_path} is not a tokenizer folder in HF format" in message
    assert "tokenizer.json or tokenizer_config.json" in message


def test_a_tokenizer_folder_is_not_a_model(tmp_path: Path, toy_world: Path) -> None:
    shutil.copytree(toy_world / "tokenizer", tmp_path / "tok")
    out = beaver("chat", "-m", str(tmp_path / "tok"))
    message = " ".join(out.output.split())
    assert (
        f"{tmp_path / 'tok'} is not a model folder in HF format (it has no config.json)" in message
    )
