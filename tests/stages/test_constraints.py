"""Constraints as a list (`constraints:` of ppo-lag / rloo-lag) on a tiny toy world, through the CLI.

The one-constraint shorthand (`cost_model` + `lagrange`) and the equivalent one-item list give
the same metrics rows and the same trained weights; several constraints give one multiplier per
constraint, each moved by its own cost against its own bound, every one named in metrics,
plots, summary and checkpoints, and a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_ppo import invoke, metrics, runner
from test_ppo import world as world  # the fixture
from transformers import AutoModel

from beaver.cli import app
from beaver.config import PPOConfig, load_config
from beaver.models.score import ScoreModel, save_score_model

MULTIPLIER = {
    "lambda_init": 1.0,
    "lambda_lr": 0.1,
    "lambda_max": 10.0,
    "episode_cost_window_size": 128,
}
_TIMING = ("time", "tokens_per_s", "eta_s")  # wall-clock, never equal twice


def _save_with_tokenizer(model: ScoreModel, world: Path, out: Path) -> Path:
    """Save a score model beside the world cost model's tokenizer and chat template files."""
    save_score_model(model, out)
    for f in (world / "cm").glob("tokenizer*"):
        shutil.copy(f, out / f.name)
    for f in (world / "cm").glob("*template*"):
        shutil.copy(f, out / f.name)
    return out


def _base(world: Path, out: Path) -> dict[str, Any]:
    """configs/toy/ppo-lag.yaml scaled down, without its constraint (cost_model + lagrange)."""
    cfg = yaml.safe_load(Path("configs/toy/ppo-lag.yaml").read_text())
    for key in ("cost_model", "lagrange"):
        cfg.pop(key)
    cfg.update(
        output_dir=str(out),
        actor={"name_or_path": str(world / "model")},
        reward_model={"name_or_path": str(world / "rm")},
    )
    cfg["data"]["train"] = [f"toyworld-prompts:1.0:{world}"]
    cfg["generation"]["max_new_tokens"] = 6
    cfg["ppo"]["rollout_batch_size"] = 8
    cfg["train"].update(per_device_batch_size=4, max_steps=4)
    return cfg


def _run(cfg: dict[str, Any], path: Path, *overrides: str) -> None:
    path.write_text(yaml.safe_dump(cfg))
    invoke(["ppo-lag", "--config", str(path), *overrides])


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith(_TIMING)}


@pytest.fixture(scope="module")
def second_cm(world: Path) -> Path:
    """Another untrained cost model (a different head), so two sources score differently."""
    torch.manual_seed(123)
    out = world / "cm2"
    backbone = AutoModel.from_pretrained(world / "model")
    model = ScoreModel(backbone, "cost")  # type: ignore[arg-type]
    torch.nn.init.normal_(model.score_head.weight, std=1.0)
    return _save_with_tokenizer(model, world, out)


@pytest.mark.parametrize("algorithm", ["ppo-lag", "rloo-lag"])
def test_one_item_list_is_the_shorthand_exactly(
    world: Path,
    tmp_path: Path,
    algorithm: str,
) -> None:
    # A threshold far below the untrained costs: lambda moves every step, so the multiplier's
    # path is compared too, not only its start.
    extra = {"algorithm": algorithm}
    if algorithm == "rloo-lag":
        extra["generation"] = {"max_new_tokens": 6, "num_return_sequences": 2}
    short = {**_base(world, tmp_path / "short"), **extra}
    short["cost_model"] = {"name_or_path": str(world / "cm")}
    short["lagrange"] = {**MULTIPLIER, "threshold": -1.0}
    listed = {**_base(world, tmp_path / "list"), **extra}
    listed["constraints"] = [
        {
            "name": "cost",
            "source": {"cost_model": str(world / "cm")},
            "threshold": -1.0,
            **MULTIPLIER,
        }
    ]
    _run(short, tmp_path / "short.yaml", "train.save_every=4")
    _run(listed, tmp_path / "list.yaml", "train.save_every=4")
    a, b = metrics(tmp_path / "short"), metrics(tmp_path / "list")
    assert [_comparable(r) for r in a] == [_comparable(r) for r in b]
    lambdas = [r["lagrange/cost/lambda"] for r in a]
    assert lambdas == [r["lagrange/lambda"] for r in a] and lambdas[-1] > 1.0  # it moved
    wa = load_file(str(tmp_path / "short" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "list" / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for out in ("short", "list"):  # the checkpoint keeps the shorthand's key
        ckpt = torch.load(
            tmp_path / out / "checkpoints" / "step-00000004" / "rank-00000.pt", weights_only=True
        )
        assert list(ckpt["extra"]) == ["lagrange"]
        assert (tmp_path / out / "checkpoints" / "step-00000004" / "actor").is_dir()


def _two(world: Path, cm2: Path, out: Path, algorithm: str = "ppo-lag") -> dict[str, Any]:
    # The untrained cost models score near 0: "tight" (d = -100) is always violated, so its
    # lambda must rise; "loose" (d = +100) is always met, so its lambda must fall.
    cfg = _base(world, out)
    cfg["algorithm"] = algorithm
    if algorithm == "rloo-lag":
        cfg["generation"]["num_return_sequences"] = 2
    cfg["constraints"] = [
        {"name": "tight", "source": {"cost_model": str(world / "cm")}, "threshold": -100.0},
        {
            "name": "loose",
            "source": {"cost_model": str(cm2)},
            "threshold": 100.0,
            "rule": "pid",
            "pid_kd": 0.0,
        },
    ]
    return cfg


def test_two_constraints_each_multiplier_follows_its_own_cost(
    world: Path,
    second_cm: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "two"
    _run(_two(world, second_cm, out), tmp_path / "two.yaml", "train.save_every=2")
    rows = metrics(out)
    tight = [r["lagrange/tight/lambda"] for r in rows]
    loose = [r["lagrange/loose/lambda"] for r in rows]
    assert tight == sorted(tight) and tight[-1] > 1.0
    assert loose == sorted(loose, reverse=True) and loose[-1] < 1.0
    last = rows[-1]
    for name, d in (("tight", -100.0), ("loose", 100.0)):
        assert last[f"lagrange/{name}/threshold"] == d
        assert f"rollout/{name}/cost" in last and f"train/{name}/cost_critic_loss" in last
    # two sources, two costs: the second model's scores are not the first's
    assert last["rollout/tight/cost"] != pytest.approx(last["rollout/loose/cost"], abs=1e-4)
    assert "lagrange/lambda" not in last  # no unnamed multiplier when there are several
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["trained"] == [
        "actor", "reward_critic", "cost_critic.tight", "cost_critic.loose"
    ]  # fmt: skip
    assert summary["models"]["frozen"] == [
        "ref",
        "reward_model",
        "cost_model.tight",
        "cost_model.loose",
    ]
    cons = summary["constraints"]
    assert cons["tight"]["lambda"] == pytest.approx(tight[-1])
    assert cons["loose"]["rule"] == "pid" and cons["loose"]["threshold"] == 100.0
    assert (out / "training.png").stat().st_size > 0
    step = out / "checkpoints" / "step-00000004"
    assert (step / "cost_critic.tight").is_dir() and (step / "cost_critic.loose").is_dir()

    # resume from step 2: the same rows as the uninterrupted run, both multipliers included
    resumed = tmp_path / "resumed"
    cfg = _two(world, second_cm, resumed)
    _run(cfg, tmp_path / "resumed.yaml", f"train.resume={out / 'checkpoints' / 'step-00000002'}")
    after = {r["step"]: r for r in metrics(resumed)}
    assert sorted(after) == [3, 4]
    for row in rows[2:]:
        got = after[row["step"]]
        for key in ("loss", "lagrange/tight/lambda", "lagrange/loose/lambda",
                    "train/loose/cost_critic_loss", "rollout/tight/cost"):  # fmt: skip
            assert got[key] == pytest.approx(row[key], abs=1e-6), key


def test_sources_naming_one_model_share_it(world: Path, tmp_path: Path) -> None:
    # rloo-lag: no critics; two constraints on the same cost model load it once and see the
    # same costs; their bounds differ, so their multipliers part ways.
    cfg = _base(world, tmp_path / "out")
    cfg["algorithm"] = "rloo-lag"
    cfg["generation"]["num_return_sequences"] = 2
    cfg["constraints"] = [
        {"name": "a", "source": {"cost_model": str(world / "cm")}, "threshold": -100.0},
        {"name": "b", "source": {"cost_model": str(world / "cm")}, "threshold": 100.0},
    ]
    _run(cfg, tmp_path / "c.yaml")
    rows = metrics(tmp_path / "out")
    assert all(r["rollout/a/cost"] == r["rollout/b/cost"] for r in rows)
    assert rows[-1]["lagrange/a/lambda"] > 1.0 > rows[-1]["lagrange/b/lambda"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"] == {
        "trained": ["actor"],
        "frozen": ["ref", "reward_model", "cost_model.a"],
    }


BASE = ["output_dir=/tmp/x", "actor=a", "reward_model=r", "data.train=[x]", "algorithm=ppo-lag"]
ONE = "constraints=[{name: v, source: {cost_model: c}}]"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([ONE, "cost_model=c"], "given together with ['cost_model']"),
        ([ONE, "lagrange.lambda_lr=0.3"], "given together with ['lagrange.lambda_lr']"),
        (
            [
                "constraints=[{name: v, source: {cost_model: c}}, {name: v, source: {cost_model: d}}]"
            ],
            "names must differ, ['v']",
        ),
        ([ONE, "algorithm=ppo"], "has no multiplier"),
        (["constraints=[{name: 'a b', source: {cost_model: c}}]"], "name"),
        (["constraints=[{name: v, source: {cost_model: c}, lambda_max: 0.5}]"], "lambda_max"),
        (
            [
                "algorithm=rloo-lag",
                "generation.num_return_sequences=2",
                "constraints=[{name: v, source: {cost_model: c}, cost_critic: c}]",
            ],
            "holds no critic",
        ),
        ([], "needs cost_model.name_or_path (or constraints)"),
    ],
)
def test_bad_constraints_are_refused_by_name(extra: list[str], message: str) -> None:
    from beaver.errors import UserError

    with pytest.raises(UserError, match=None) as err:
        load_config(PPOConfig, None, [*BASE, *extra])
    assert message in str(err.value)


def test_shorthand_is_one_constraint_named_cost() -> None:
    cfg = load_config(PPOConfig, None, [*BASE, "cost_model=c", "lagrange.threshold=0.5",
                                        "lagrange.rule=pid", "lagrange.lambda_lr=0.3"])  # fmt: skip
    (c,) = cfg.constraint_list()
    assert (c.name, c.threshold, c.rule, c.lambda_lr) == ("cost", 0.5, "pid", 0.3)
    assert c.source.cost_model.name_or_path == "c"
    listed = load_config(PPOConfig, None, [*BASE, ONE])
    assert [x.name for x in listed.constraint_list()] == ["v"]
    shaping = load_config(PPOConfig, None, [*BASE, "cost_model=c", "algorithm=reward-shaping"])
    assert shaping.constraint_list() == []  # a fixed weight, no multiplier


def test_cli_refuses_a_bad_constraint_with_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ppo-lag", *BASE[:-1], ONE, "cost_model=c"])
    assert result.exit_code == 2, result.output
    assert "constraints" in result.output


@pytest.fixture(scope="module")
def heads_cm(world: Path) -> Path:
    """An untrained multi-head cost model (the toy world's four categories)."""
    torch.manual_seed(5)
    out = world / "cm-heads"
    heads = ("crime", "insult", "privacy", "violence")
    model = ScoreModel(AutoModel.from_pretrained(world / "model"), "cost", heads=heads)  # type: ignore[arg-type]
    torch.nn.init.normal_(model.category_head.weight, std=1.0)  # type: ignore[union-attr]
    return _save_with_tokenizer(model, world, out)


def test_constraints_on_category_heads_share_the_model(
    world: Path, heads_cm: Path, tmp_path: Path
) -> None:
    # Two heads of one multi-head cost model: loaded once, scored once, two cost streams; each
    # constraint's critic starts from its own head.
    cfg = _base(world, tmp_path / "out")
    cfg["constraints"] = [
        {"name": n, "source": {"cost_model": str(heads_cm), "head": n}, "threshold": d}
        for n, d in (("violence", -100.0), ("crime", 100.0))
    ]
    _run(cfg, tmp_path / "c.yaml")
    rows = metrics(tmp_path / "out")
    assert rows[-1]["lagrange/violence/lambda"] > 1.0 > rows[-1]["lagrange/crime/lambda"]
    assert all(r["rollout/violence/cost"] != r["rollout/crime/cost"] for r in rows)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"]["frozen"] == ["ref", "reward_model", "cost_model.violence"]
    assert summary["constraints"]["violence"]["source"]["head"] == "violence"


def test_critic_from_a_category_head_starts_as_that_head() -> None:
    from transformers import LlamaConfig, LlamaModel

    from beaver.models.score import one_head

    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    torch.manual_seed(0)
    model = ScoreModel(LlamaModel(cfg), "cost", heads=("a", "b"))
    ids = torch.tensor([[3, 4, 5]])
    before = model(ids, torch.ones_like(ids)).category_end_scores
    assert before is not None
    critic = one_head(model, "b")
    assert torch.allclose(critic(ids, torch.ones_like(ids)).end_scores, before[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match=r"no category head 'c': it has no category heads"):
        one_head(critic, "c")


def test_an_unknown_head_is_refused_before_loading(
    world: Path, heads_cm: Path, tmp_path: Path
) -> None:
    cfg = _base(world, tmp_path / "out")
    cfg["constraints"] = [{"name": "v", "source": {"cost_model": str(heads_cm), "head": "violnce"}}]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["ppo-lag", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2, result.output
    assert "constraints.v.source.head='violnce'" in result.output
    assert "'violence'" in result.output and "Traceback" not in result.output
    cfg["constraints"] = [{"name": "v", "source": {"cost_model": str(world / "cm"), "head": "x"}}]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["ppo-lag", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "it has no category heads" in result.output


def test_the_per_category_toy_configs() -> None:
    from beaver.config import ScoreConfig

    cm = load_config(ScoreConfig, "configs/toy/cm-categories.yaml", [], {"objective": "cost"})
    assert cm.score.heads == ["crime", "insult", "privacy", "violence"]
    cfg = load_config(
        PPOConfig, "configs/toy/ppo-lag-categories.yaml", [], {"algorithm": "ppo-lag"}
    )
    bounds = {c.name: (c.source.head, c.target_unsafe_share) for c in cfg.constraint_list()}
    # 1% and 5% of risky answers, a third of the prompts risky: 1/3 of each share of all answers
    assert bounds == {
        "violence": ("violence", pytest.approx(0.01 / 3, abs=1e-4)),
        "crime": ("crime", pytest.approx(0.01 / 3, abs=1e-4)),
        "insult": ("insult", pytest.approx(0.05 / 3, abs=1e-4)),
        "privacy": ("privacy", pytest.approx(0.05 / 3, abs=1e-4)),
    }
    models = {c.source.cost_model.name_or_path for c in cfg.constraints}
    assert models == {f"{cm.output_dir}/model"}  # the multi-head model that config trains


def test_the_console_line_shows_every_named_multiplier() -> None:
    from beaver.engine.tracking import _SHOWN, format_metrics

    several = {"loss": 1.0, "lagrange/crime/lambda": 2.0, "lagrange/insult/lambda": 0.5,
               "lagrange/crime/threshold": -4.0}  # fmt: skip
    assert format_metrics(several, _SHOWN) == (
        "loss=1  lagrange/crime/lambda=2  lagrange/insult/lambda=0.5"
    )
    one = {"loss": 1.0, "lagrange/lambda": 2.0, "lagrange/cost/lambda": 2.0}
    assert format_metrics(one, _SHOWN) == "loss=1  lagrange/lambda=2"  # not twice
