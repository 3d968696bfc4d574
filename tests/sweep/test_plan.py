"""The sweep config and its plan: points, ids, placeholders, chains, override encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from beaver.config import load_config
from beaver.config.loader import _model_of, all_paths
from beaver.config.sweep import SweepConfig
from beaver.errors import UserError
from beaver.sweep.plan import build_plan, encode_value, point_settings

RL = {"actor.name_or_path": "{sft}/model", "data.train": ["toyworld-prompts:1.0:{world}"]}


def sweep(**fields: Any) -> SweepConfig:
    base: dict[str, Any] = {
        "output_dir": "out/s",
        "shared": {
            "world": {"command": "toyworld"},
            "sft": {"command": "sft", "overrides": {"model": {"name_or_path": "{world}/model"}}},
        },
        "methods": {
            "ppo-lag": {
                "command": "ppo-lag",
                "overrides": RL,
                "grid": {"lagrange.target_unsafe_share": [0.02, 0.1]},
            }
        },
        "evaluation": {"overrides": {"prompts": "{world}/prompts_eval.jsonl"}},
    }
    base.update(fields)
    return load_config(SweepConfig, None, defaults=base)


def test_every_field_is_documented() -> None:
    for path in all_paths(SweepConfig):
        parent, _, leaf = path.rpartition(".")
        owner: Any = SweepConfig
        for part in parent.split(".") if parent else []:
            owner = _model_of(owner.model_fields[part].annotation)
        assert owner.model_fields[leaf].description, f"SweepConfig.{path} has no docstring"


def test_plan_shared_stages_then_points_with_placeholders_filled() -> None:
    jobs = build_plan(sweep())
    assert [j.id for j in jobs] == [
        "shared/world",
        "shared/sft",
        "points/ppo-lag-target_unsafe_share=0.02",
        "points/ppo-lag-target_unsafe_share=0.1",
    ]
    sft = jobs[1].steps[0]
    assert sft.overrides == {
        "model.name_or_path": "out/s/shared/world/model",
        "output_dir": "out/s/shared/sft",
    }
    assert jobs[1].needs == {"world"}
    run, evaluation = jobs[2].steps
    assert run.command == ("ppo-lag",) and run.dir == Path(
        "out/s/points/ppo-lag-target_unsafe_share=0.02/run"
    )
    assert run.overrides["actor.name_or_path"] == "out/s/shared/sft/model"
    assert run.overrides["data.train"] == ["toyworld-prompts:1.0:out/s/shared/world"]
    assert run.overrides["lagrange.target_unsafe_share"] == 0.02
    assert jobs[2].needs == {"sft", "world"} and jobs[2].label == "0.02"
    assert jobs[2].uses == ("world", "sft")  # what the point's own run starts from
    assert evaluation.command == ("eval", "toyworld")
    assert evaluation.overrides["policies.policy"] == str(run.dir / "model")
    assert evaluation.overrides["output_dir"] == str(run.dir.parent / "eval")


def test_grid_crossed_with_points_and_labels() -> None:
    method = (
        sweep()
        .methods["ppo-lag"]
        .model_copy(update={"grid": {"a.x": [1, 2]}, "points": [{"b": {"y": "p"}}, {"b.y": "q"}]})
    )
    assert point_settings(method) == [
        {"b.y": "p", "a.x": 1},
        {"b.y": "p", "a.x": 2},
        {"b.y": "q", "a.x": 1},
        {"b.y": "q", "a.x": 2},
    ]
    cfg = sweep(methods={"m": method.model_dump()})
    jobs = build_plan(cfg)[2:]
    assert [j.id for j in jobs] == [
        "points/m-y=p-x=1",
        "points/m-y=p-x=2",
        "points/m-y=q-x=1",
        "points/m-y=q-x=2",
    ]
    assert jobs[0].label == "y=p x=1"


def test_grid_values_overridden_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "output_dir: out\nmethods:\n  ppo-lag:\n    command: ppo-lag\n"
        "    grid: {lagrange.target_unsafe_share: [0.02, 0.1]}\n"
    )
    cfg = load_config(
        SweepConfig, path, ["methods.ppo-lag.grid.lagrange.target_unsafe_share=[0.5]"]
    )
    assert cfg.methods["ppo-lag"].grid == {"lagrange.target_unsafe_share": [0.5]}


def test_colliding_ids_get_a_digest() -> None:
    # paths are shown by their last part, so two folders named `a` would share an id
    cfg = sweep(methods={"m": {"command": "sft", "grid": {"model.name_or_path": ["x/a", "y/a"]}}})
    ids = [j.id for j in build_plan(cfg)[2:]]
    assert ids[0] == "points/m-name_or_path=a"
    assert ids[1].startswith("points/m-name_or_path=a-") and len(ids[1]) == len(ids[0]) + 9


def test_chain_steps_reference_earlier_steps_and_take_their_grid_keys() -> None:
    cfg = sweep(
        methods={
            "sacpo": {
                "steps": {
                    "helpful": {
                        "command": "dpo",
                        "overrides": {"actor.name_or_path": "{sft}/model"},
                    },
                    "safe": {
                        "command": "dpo",
                        "overrides": {"actor.name_or_path": "{helpful}/model"},
                    },
                },
                "grid": {"safe:dpo.beta": [0.01, 0.1]},
            }
        }
    )
    job = build_plan(cfg)[2]
    assert job.id == "points/sacpo-beta=0.01"
    helpful, safe, _ = job.steps
    assert "dpo.beta" not in helpful.overrides and safe.overrides["dpo.beta"] == 0.01
    assert safe.overrides["actor.name_or_path"] == f"{helpful.dir}/model"
    assert job.policy == safe.dir / "model"


def test_baseline_method_evaluates_its_policy_only() -> None:
    cfg = sweep(methods={"sft": {"policy": "{sft}/model"}})
    job = build_plan(cfg)[2]
    assert [s.name for s in job.steps] == ["eval"] and job.needs == {"sft", "world"}
    assert job.uses == ("sft",)  # the evaluation's prompts come from `world`: not a cost
    assert job.steps[0].overrides["policies.policy"] == "out/s/shared/sft/model"
    arena = sweep(
        methods={"sft": {"policy": "{sft}/model"}},
        evaluation={"kind": "arena", "overrides": {"red_model": "{sft}/model"}},
    )
    step = build_plan(arena)[2].steps[0]
    assert step.command == ("eval", "arena")
    assert step.overrides["blue_model"] == "out/s/shared/sft/model"
    assert step.overrides["blue_name"] == "policy"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (
            {"methods": {"m": {"command": "sft", "overrides": {"x": "{nope}/model"}}}},
            "unknown placeholder(s) ['{nope}']",
        ),
        (
            {"methods": {"m": {"steps": {"a": {"command": "sft"}}, "grid": {"lr": [1]}}}},
            "name the step: `STEP:lr`",
        ),
        (
            {"methods": {"m": {"steps": {"a": {"command": "sft"}}, "grid": {"b:lr": [1]}}}},
            "no step `b`",
        ),
        ({"methods": {"m": {"command": "sft", "grid": {"lr": []}}}}, "grid.lr is empty"),
        (
            {"methods": {"m": {"command": "sft", "overrides": {"output_dir": "x"}}}},
            "`output_dir` is set by the sweep",
        ),
        (
            {"methods": {"m": {"command": "sft", "overrides": {"train": {"resume": "auto"}}}}},
            "`train.resume` is set by the sweep",
        ),
        ({"methods": {"eval": {"command": "sft"}}}, "method name 'eval'"),
        ({"methods": {"m": {"config": "c.yaml"}}}, "belong to a one-step method"),
        ({"methods": {"m": {"command": "sft", "steps": {"a": {"command": "sft"}}}}}, "not both"),
        ({"methods": {}}, "methods is empty"),
        ({"frontier": {"reference": "shaping"}}, "frontier.reference 'shaping' is not a method"),
        ({"parallel": 0}, "parallel"),
    ],
)
def test_config_mistakes_are_named(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(UserError) as err:
        sweep(**fields)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "value",
    [
        "out/a=b/run",
        "1e-3",
        "no",
        "true",
        "null",
        ".inf",
        "a: b",
        "[x",
        "",
        "toyworld-sft:1.0:out/w",
        0.02,
        1e-3,
        3,
        True,
        None,
        ["a:1.0:b", "c"],
        {"k": "v"},
        [],
        "with space",
    ],
)
def test_encoded_overrides_read_back_as_the_same_value(value: Any) -> None:
    text = f"key={encode_value(value)}"
    assert OmegaConf.to_container(OmegaConf.from_dotlist([text]))["key"] == value  # type: ignore[index]


def test_the_readme_example_is_a_valid_sweep() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("```yaml\noutput_dir: output/sweeps/mine") + len("```yaml\n")
    example = OmegaConf.to_container(OmegaConf.create(readme[start : readme.index("```", start)]))
    cfg = load_config(SweepConfig, None, defaults=example)  # type: ignore[arg-type]
    points = [j.id for j in build_plan(cfg) if j.method is not None]
    # sft, 3 shaping weights, 3 bounds, 2 SACPO lambdas
    assert len(points) == 1 + 3 + 3 + 2 and "points/sacpo-sacpo_lambda=2" in points
