"""Built-in configs: `--config NAME` finds the packaged configs, `beaver configs` lists, shows and
copies them, and the demo's path rewriting (run from an empty folder, as a pip user would)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from beaver.cli import app
from beaver.config.builtin import builtin_names, configs_root, resolve_config
from beaver.demo import OFFLINE, ONLINE, clear, rewrite_paths, stage_config
from beaver.errors import UserError

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def test_the_packaged_configs_are_the_repository_folder() -> None:
    # An editable install maps beaver.configs onto configs/ itself: one copy, nothing to sync.
    assert configs_root().resolve() == (ROOT / "configs").resolve()
    shipped = sorted(p.relative_to(ROOT / "configs").with_suffix("").as_posix()
                     for p in (ROOT / "configs").rglob("*.yaml"))  # fmt: skip
    assert builtin_names() == shipped
    assert {"sft", "ppo-lag", "toy/sft", "toy/toyworld", "toy/sweeps/methods"} <= set(shipped)


def test_a_name_resolves_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    want = (ROOT / "configs" / "toy" / "sft.yaml").resolve()
    for name in ("toy/sft", "toy/sft.yaml", "configs/toy/sft.yaml"):
        assert resolve_config(name).resolve() == want
    result = runner.invoke(app, ["sft", "--config", "toy/sft", "--print-config"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["output_dir"] == "output/demo/sft"  # relative to here
    result = runner.invoke(app, ["ppo-lag", "--config", "ppo-lag", "--print-config"])
    assert result.exit_code == 0, result.output


def test_a_file_wins_over_a_built_in_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "sft.yaml").write_text(
        "output_dir: mine\nmodel: m\ndata: {train: [alpaca]}\n"
    )
    assert resolve_config("toy/sft.yaml") == Path("toy/sft.yaml")
    result = runner.invoke(app, ["sft", "--config", "toy/sft.yaml", "--print-config"])
    assert yaml.safe_load(result.output)["output_dir"] == "mine"


def test_an_unknown_name_lists_close_built_in_names(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sft", "--config", "toy/sfft", "--print-config"])
    assert result.exit_code == 2
    assert "Config file not found: toy/sfft" in result.output and "toy/sft" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(UserError, match="ppo-lag"):
        resolve_config("ppo_lag")


def test_configs_list_show_and_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = runner.invoke(app, ["configs"])
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines()]
    assert names == builtin_names()
    assert "toy world" in listed.output.lower()  # each name with its header comment
    shown = runner.invoke(app, ["configs", "show", "toy/sft"])
    assert shown.output == (ROOT / "configs" / "toy" / "sft.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    copied = runner.invoke(app, ["configs", "copy", "toy/sft"])
    assert copied.exit_code == 0 and (tmp_path / "sft.yaml").read_text() == shown.output
    again = runner.invoke(app, ["configs", "copy", "toy/sft"])
    assert again.exit_code == 2 and "--force" in again.output
    (tmp_path / "mine").mkdir()
    assert runner.invoke(app, ["configs", "copy", "ppo-lag", "mine"]).exit_code == 0
    assert (tmp_path / "mine" / "ppo-lag.yaml").is_file()
    missing = runner.invoke(app, ["configs", "show", "nope"])
    assert missing.exit_code == 2 and "beaver configs" in missing.output


def test_the_demo_moves_every_output_demo_path(tmp_path: Path) -> None:
    cfg = {"output_dir": "output/demo/sft", "a": ["toyworld-sft:1.0:output/demo/toyworld"],
           "b": {"c": "output/demo"}, "d": "my-output/demo/x", "e": "output/demos"}  # fmt: skip
    assert rewrite_paths(cfg, "/x/run") == {
        "output_dir": "/x/run/sft", "a": ["toyworld-sft:1.0:/x/run/toyworld"],
        "b": {"c": "/x/run"}, "d": "my-output/demo/x", "e": "output/demos",
    }  # fmt: skip
    # No config the demo runs keeps a path into output/demo once moved.
    out = tmp_path / "elsewhere"
    for stage in (*ONLINE, *OFFLINE):
        text = stage_config(stage, out).read_text()
        assert "output/demo" not in text.replace(out.as_posix(), ""), stage.config
        assert yaml.safe_load(text)["output_dir"].startswith(out.as_posix())


def test_the_demo_never_clears_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "sft").mkdir()
    (tmp_path / "results.json").write_text("{}")
    clear(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not an earlier demo"):
        clear(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
