"""The `beaver` CLI through Typer's CliRunner, and every YAML under configs/ validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from beaver.cli import app
from childenv import child_env

ROOT = Path(__file__).parents[1]
runner = CliRunner()

# Which command reads which config file, by file name.
COMMAND_OF = {
    "sft": ["sft"],
    "rm": ["rm"],
    "rm-lora": ["rm"],
    "cm": ["cm"],
    "cm-categories": ["cm"],
    "cm-lora": ["cm"],
    "ppo": ["ppo"],
    "ppo-lag": ["ppo-lag"],
    "ppo-lag-lora": ["ppo-lag"],
    "ppo-lag-categories": ["ppo-lag"],
    "reward-shaping": ["ppo-lag"],
    "rloo-lag": ["ppo-lag"],
    "dpo": ["dpo"],
    "safe-dpo": ["dpo"],
    "sacpo": ["dpo"],
    "p-sacpo": ["merge"],
    "eval-offline": ["eval", "toyworld"],
    "eval-lora": ["eval", "toyworld"],
    "toyworld": ["toyworld"],
    "chat": ["chat"],
    "eval-arena": ["eval", "arena"],
    "eval-gpt4": ["eval", "gpt4"],
    "eval-bigbench": ["eval", "bigbench"],
    "eval": ["eval", "toyworld"],
}


def test_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in (
        "sft",
        "rm",
        "cm",
        "ppo",
        "ppo-lag",
        "dpo",
        "merge",
        "chat",
        "arena",
        "eval",
        "serve",
        "toyworld",
        "sweep",
    ):
        assert name in result.output
    result = runner.invoke(app, ["eval", "--help"])
    for name in ("arena", "gpt4", "bigbench", "rm", "cm"):
        assert name in result.output
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "score" in result.output


def test_print_config_prints_resolved_yaml() -> None:
    result = runner.invoke(
        app, ["sft", "--config", "configs/toy/sft.yaml", "optim.lr=0.5", "--print-config"]
    )
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["optim"]["lr"] == 0.5
    assert printed["deepspeed"]["zero_stage"] == 0
    assert printed["train"]["max_bad_steps"] == 3  # defaults are filled in


def test_bad_value_exits_2_naming_key_and_type() -> None:
    result = runner.invoke(
        app, ["sft", "--config", "configs/toy/sft.yaml", "optim.lr=abc", "--print-config"]
    )
    assert result.exit_code == 2
    assert "optim.lr" in result.output and "float" in result.output
    assert "Traceback" not in result.output


def test_misspelt_top_level_key_suggests() -> None:
    result = runner.invoke(
        app, ["sft", "--config", "configs/toy/sft.yaml", "optm.lr=1", "--print-config"]
    )
    assert result.exit_code == 2
    assert "did you mean `optim`?" in result.output


def test_command_sets_its_objective_and_refuses_a_mismatch() -> None:
    common = ["output_dir=o", "model.name_or_path=m", "data.train=[d]", "--print-config"]
    result = runner.invoke(app, ["cm", *common])
    assert result.exit_code == 0 and yaml.safe_load(result.stdout)["objective"] == "cost"
    result = runner.invoke(app, ["rm", "objective=cost", *common])
    assert result.exit_code == 2 and "does not fit this command" in result.output


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "model"
    result = runner.invoke(app, ["eval", "bigbench", f"model={missing}", f"tasks=[{tmp_path}]"])
    assert result.exit_code == 2 and "task file not found" in result.output  # tasks checked first
    (tmp_path / "task.json").write_text('{"examples": [{"input": "q", "target": "a"}]}')
    result = runner.invoke(app, ["eval", "bigbench", f"model={missing}", f"tasks=[{tmp_path}]"])
    assert result.exit_code == 2 and f"model folder not found: {missing}" in result.output
    result = runner.invoke(app, ["eval", "gpt4", f"red_answers={missing}.jsonl", "blue_model=m"])
    assert result.exit_code == 2 and "file not found" in result.output
    assert "Traceback" not in result.output


def _configs() -> list[Path]:
    return sorted(ROOT.glob("configs/**/*.yaml"))


@pytest.mark.parametrize("path", _configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path: Path) -> None:
    command = ["sweep"] if path.parent.name == "sweeps" else COMMAND_OF.get(path.stem)
    assert command is not None, f"{path}: add its command to COMMAND_OF"
    result = runner.invoke(app, [*command, "--config", str(path), "--print-config"])
    assert result.exit_code == 0, result.output


def _run_beaver(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("beaver")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=60)


def test_shell_completion_script_and_completions() -> None:
    # Typer detects the calling shell (under `make` that is sh, which it cannot complete);
    # its test switch makes --show-completion take the shell's name instead.
    env = child_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    shown = _run_beaver("--show-completion", "bash", env=env)
    assert shown.returncode == 0 and "_BEAVER_COMPLETE" in shown.stdout
    # What bash asks for when the user types `beaver pp<TAB>`.
    env.update(_BEAVER_COMPLETE="complete_bash", COMP_WORDS="beaver pp", COMP_CWORD="1")
    completed = _run_beaver(env=env)
    assert set(completed.stdout.split()) == {"ppo", "ppo-lag"}


def test_python_dash_m_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "beaver", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert result.returncode == 0 and "ppo-lag" in result.stdout
