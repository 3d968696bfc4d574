"""Custom datasets: registered by `data.imports` or the `beaver.datasets` entry point group."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datahelpers import write_jsonl

from beaver.config import DataCfg
from beaver.data import RawDataset, RawSample, get_dataset_class, make_datasets, plugins, register
from beaver.data.raw import _REGISTRY
from beaver.errors import UserError


def test_custom_module_via_data_imports(
    custom_dataset_module: Callable[..., str], tok_chat: Any
) -> None:
    module = custom_dataset_module("my-qa")
    with pytest.raises(UserError, match=r"Unknown dataset 'my-qa'"):
        make_datasets("supervised", DataCfg(train=["my-qa"]), tok_chat)
    cfg = DataCfg(train=["my-qa"], imports=[module])
    train, _ = make_datasets("supervised", cfg, tok_chat)
    assert len(train) == 3
    assert train.samples[0].dataset == "my-qa"
    assert train.samples[0].input == "how is the garden"
    # aliases work too, with a proportion
    train, _ = make_datasets(
        "supervised", DataCfg(train=["my-qa-alias:2"], imports=[module]), tok_chat
    )
    assert len(train) == 6


def test_custom_bad_row_names_the_field(
    custom_dataset_module: Callable[..., str], tok_chat: Any
) -> None:
    module = custom_dataset_module("my-bad", rows=[{"question": "hi"}])
    with pytest.raises(UserError, match=r"Dataset 'my-bad'.*row 1: field `reply` is missing"):
        make_datasets("supervised", DataCfg(train=["my-bad"], imports=[module]), tok_chat)


def test_import_by_file_path(tmp_path: Path, tok_chat: Any) -> None:
    data = write_jsonl(tmp_path / "rows.jsonl", [{"q": "hello", "a": "fine"}])
    code = (
        "from beaver.data import RawDataset, RawSample\n"
        "class FileData(RawDataset):\n"
        "    NAME = 'file-data'\n"
        "    def convert(self, row):\n"
        "        return RawSample(input=row['q'], answer=row['a'])\n"
    )
    (tmp_path / "file_data.py").write_text(code)
    cfg = DataCfg(train=[f"file-data:1:{data}"], imports=[str(tmp_path / "file_data.py")])
    assert len(make_datasets("supervised", cfg, tok_chat)[0]) == 1


def test_missing_import_is_a_clear_error(tok_chat: Any) -> None:
    with pytest.raises(UserError, match=r"module 'no_such_pkg\.data' not found"):
        make_datasets(
            "supervised", DataCfg(train=["alpaca"], imports=["no_such_pkg.data"]), tok_chat
        )


def test_reference_style_dataset_with_its_own_getitem(tok_chat: Any) -> None:
    class RefStyle(RawDataset):
        """As written for safe-rlhf: __init__(path), __getitem__, __len__."""

        NAME = "test-ref-style"

        def __init__(self, path: str | None = None) -> None:
            self.data = [{"prompt": "hello", "answer": "fine"}, {"prompt": "hello"}]

        def __getitem__(self, index: int) -> RawSample:
            data = self.data[index]
            return RawSample(input=data["prompt"], answer=data["answer"])

        def __len__(self) -> int:
            return len(self.data)

    try:
        with pytest.raises(UserError, match="row 2: field `answer` is missing"):
            make_datasets("supervised", DataCfg(train=["test-ref-style"]), tok_chat)
        with pytest.warns(UserWarning, match="skipped 1 bad row"):
            train, _ = make_datasets(
                "supervised", DataCfg(train=["test-ref-style"], on_bad_row="skip"), tok_chat
            )
        assert len(train) == 1 and train.stats.skipped_bad_rows == 1
    finally:
        _REGISTRY.pop("test-ref-style")


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(
        UserError,
        match=r"'alpaca' .* is already registered by "
        r"beaver\.data\.sources\.alpaca\.AlpacaDataset",
    ):

        class Clash(RawDataset):
            NAME = "alpaca"

    class Fresh(RawDataset):
        NAME = "test-fresh"
        ALIASES = ("test-fresh-alias",)

    try:
        with pytest.raises(UserError, match="'test-fresh-alias'"):
            register(
                type("Other", (RawDataset,), {"__module__": "elsewhere"}),
                name="test-other",
                aliases=["test-fresh-alias"],
            )
        assert "test-other" not in _REGISTRY  # nothing half-registered
    finally:
        _REGISTRY.pop("test-fresh")
        _REGISTRY.pop("test-fresh-alias")


def test_reimporting_a_module_is_not_a_clash(custom_dataset_module: Callable[..., str]) -> None:
    module = custom_dataset_module("my-reload")
    first = importlib.import_module(module)
    importlib.reload(first)
    assert get_dataset_class("my-reload").__module__ == module


def test_entry_points_register_datasets(
    custom_dataset_module: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tok_chat: Any
) -> None:
    module = custom_dataset_module("my-plugin")

    class EntryPoint:
        name, value = "my-plugin", module

        def load(self) -> Any:
            return importlib.import_module(module)

    class Broken(EntryPoint):
        name, value = "broken", "broken_pkg:data"

        def load(self) -> Any:
            raise ImportError("broken_pkg is not installed")

    monkeypatch.setattr(plugins, "entry_points", lambda group: [Broken(), EntryPoint()])
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr("beaver.data.raw._LOAD_FAILURES", [])
    with pytest.warns(UserWarning, match="'broken'"):
        train, _ = make_datasets("supervised", DataCfg(train=["my-plugin"]), tok_chat)
    assert len(train) == 3
    with pytest.raises(UserError, match="plugins that failed to load: broken"):
        get_dataset_class("nothing-like-this")
