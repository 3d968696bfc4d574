"""A folder that is not a model (or holds no tokenizer) gets a whole message saying what it
lacks, not the first line of transformers' list of what it tried; damaged weights, a pickle
that weights_only refuses and a missing folder that looks like a hub name are clear errors."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch
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


def _copy_model(toy_world: Path, to: Path) -> Path:
    shutil.copytree(toy_world / "model", to)
    return to


def test_a_truncated_safetensors_file_is_a_clear_error(tmp_path: Path, toy_world: Path) -> None:
    model = _copy_model(toy_world, tmp_path / "m")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    said = " ".join(beaver("chat", "-m", str(model)).output.split())
    assert f"cannot load model '{model}'" in said
    assert "a .safetensors file in it is damaged or incomplete" in said


class _Payload:
    """Unpickling this runs code (here only a marker file would be written)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_blocked_by_weights_only_is_a_clear_error(tmp_path: Path, toy_world: Path) -> None:
    from safetensors.torch import load_file

    model = _copy_model(toy_world, tmp_path / "m")
    state: dict[str, object] = dict(load_file(str(model / "model.safetensors")))
    state["payload"] = _Payload(tmp_path / "ran")
    torch.save(state, model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    said = " ".join(beaver("chat", "-m", str(model)).output.split())
    assert "its pickled weights file (.bin) holds more than tensors, so it was not loaded" in said
    assert "UnpicklingError" not in said
    assert not (tmp_path / "ran").exists()


def test_a_missing_relative_path_under_a_local_folder_is_not_sent_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `output/sft` looks like a hub name (one slash), but `output` is a folder here: with the
    # hub reachable it used to go through most of a minute of retries first.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "output").mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.monotonic()
    said = " ".join(beaver("chat", "-m", "output/sft").output.split())
    assert "models[0]: model folder not found: output/sft" in said
    assert time.monotonic() - start < 20


def test_a_missing_hub_like_name_offline_is_folder_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))  # an empty hub cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    said = " ".join(beaver("chat", "-m", "a/b").output.split())
    assert "models[0]: model folder not found: a/b" in said
    assert "HF_HUB_OFFLINE is set and the hub cache does not hold it either" in said
