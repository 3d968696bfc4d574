"""Config mistakes: a secret never reaches an error message, validator errors name the fields
involved (never the whole config), and text from users and paths is printed verbatim."""

from __future__ import annotations

from pathlib import Path

from faulthelpers import beaver

SECRET = "sk-test-SECRET-4242"


def test_api_key_is_not_printed_when_a_whole_config_validator_fails(tmp_path: Path) -> None:
    # Only red's answers are given: the cross-field validator of EvalGPT4Config fails, and
    # pydantic hands it the whole input, key included.
    out = beaver("eval", "gpt4", f"red_answers={tmp_path}/r.jsonl", f"judge.api_key={SECRET}")
    assert SECRET not in out.output
    assert "blue_model" in out.output and "blue_answers" in out.output


def test_a_secret_of_the_wrong_type_is_masked() -> None:
    out = beaver("eval", "gpt4", "red_model=m", "blue_model=n", f"judge.api_key=[{SECRET}]")
    assert SECRET not in out.output and "judge.api_key" in out.output
    out = beaver("eval", "gpt4", "red_model=m", "blue_model=n", f"judge={SECRET}")  # a section
    assert SECRET not in out.output and "`judge`" in out.output


def test_api_key_is_not_printed_when_another_override_does_not_parse() -> None:
    out = beaver("eval", "gpt4", f"judge.api_key={SECRET}", "categories=[crime")
    assert SECRET not in out.output
    assert "categories=[crime" in out.output  # the culprit, verbatim


def test_api_key_is_not_printed_from_a_broken_yaml_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gpt4.yaml"
    cfg.write_text(f"judge:\n  api_key: {SECRET}: oops\n")
    out = beaver("eval", "gpt4", "--config", str(cfg))
    assert SECRET not in out.output
    assert "line 2" in out.output and str(cfg) in out.output


def test_whole_config_validators_name_their_fields_not_the_dict() -> None:
    out = beaver("sft", "model.name_or_path=m", "output_dir=o")
    assert "data.train is empty" in out.output
    assert "deepspeed" not in out.output and "{" not in out.output
    out = beaver(
        "ppo-lag", "actor.name_or_path=a", "reward_model.name_or_path=r",
        "cost_model.name_or_path=c", "data.train=[p]", "output_dir=o", "lagrange.lambda_max=0.5",
    )  # fmt: skip
    assert "lambda_max (0.5) < lambda_init (1.0)" in out.output
    assert "episode_cost_window_size" not in out.output and "{" not in out.output


def test_backoff_initial_above_backoff_max_is_refused() -> None:
    out = beaver(
        "eval", "gpt4", "red_model=m", "blue_model=n",
        "judge.backoff_initial=30", "judge.backoff_max=5", "--print-config",
    )  # fmt: skip
    assert "`judge`: backoff_initial (30.0) > backoff_max (5.0)" in out.output


def test_markup_and_emoji_codes_in_paths_are_printed_verbatim(tmp_path: Path) -> None:
    for name in ("[/INST]", "[draft]", ":smile:"):
        missing = tmp_path / name / "sft.yaml"
        out = beaver("sft", "--config", str(missing))
        assert f"Config file not found: {missing}" in out.output


def test_an_unclosed_list_override_is_printed_verbatim() -> None:
    out = beaver("sft", "data.train=[a", "--print-config")
    assert "data.train=[a" in out.output
