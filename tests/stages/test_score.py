"""`beaver rm` / `beaver cm` / `beaver eval score|rm|cm` on a small toy world, through the CLI.

Learning to the issue's accuracy targets is asserted by the slow pipeline test; here: both
objectives train (loss falls) and save a score model that reloads with its head and normaliser,
ZeRO-3 + bf16 works, and `eval cm` writes scores and a histogram PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import AutoModel
from typer.testing import CliRunner

from beaver.cli import app
from beaver.models.score import score_model_from_backbone
from beaver.toyworld import ToyModelConfig, ToyWorldConfig, generate

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("score-world")
    generate(
        ToyWorldConfig(
            output_dir=str(out),
            num_sft=16,
            num_preference=512,
            num_preference_test=128,
            num_rl_prompts=8,
            num_eval_prompts=8,
            model=ToyModelConfig(hidden_size=32, num_layers=2, num_heads=4),
        )
    )
    return out


def score_args(world: Path, out: Path, command: str, *extra: str) -> list[str]:
    return [
        command,
        "--config",
        f"configs/toy/{command}.yaml",
        f"output_dir={out}",
        f"model.name_or_path={world / 'model'}",
        f"data.train=[toyworld-preference:1.0:{world}]",
        f"data.eval=[toyworld-preference-test:1.0:{world}]",
        *extra,
    ]


def invoke(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("command", ["rm", "cm"])
def test_score_model_trains_and_reloads(world: Path, tmp_path: Path, command: str) -> None:
    invoke(score_args(world, tmp_path, command, "score.normalizer=running"))
    losses = [r["loss"] for r in metrics(tmp_path) if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learned something
    final = json.loads((tmp_path / "summary.json").read_text())["final_eval"]
    # the training loop's evaluation agrees with `beaver eval rm|cm` of the saved model
    invoke(
        ["eval", command, f"model={tmp_path / 'model'}", f"output_dir={tmp_path / 'eval'}",
         f"data.train=[toyworld-preference-test:1.0:{world}]", "data.max_length=96"]
    )  # fmt: skip
    standalone = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert final["eval/accuracy"] == pytest.approx(standalone["accuracy"], abs=1e-6)
    assert ("eval/sign_accuracy" in final) == (command == "cm")
    model_dir = tmp_path / "model"
    model = score_model_from_backbone(AutoModel.from_pretrained(model_dir), model_dir)
    assert model.score_type == ("cost" if command == "cm" else "reward")
    assert model.normalizer is not None and int(model.normalizer.count) > 0


def test_zero3_bf16(world: Path, tmp_path: Path) -> None:
    invoke(
        score_args(
            world,
            tmp_path,
            "cm",
            "deepspeed.zero_stage=3",
            "deepspeed.precision=bf16",
            "train.max_steps=3",
        )
    )
    model_dir = tmp_path / "model"
    model = score_model_from_backbone(AutoModel.from_pretrained(model_dir), model_dir)
    ids = torch.tensor([[3, 4, 5]])
    assert torch.isfinite(model(ids, torch.ones_like(ids)).end_scores).all()


def test_eval_cm_writes_scores_and_histogram(world: Path, tmp_path: Path) -> None:
    invoke(score_args(world, tmp_path / "cm", "cm", "train.max_steps=4"))
    out = tmp_path / "eval"
    invoke(
        [
            "eval",
            "cm",
            f"model.name_or_path={tmp_path / 'cm' / 'model'}",
            f"data.train=[toyworld-preference-test:1.0:{world}]",
            f"output_dir={out}",
        ]
    )
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 128 and {"safer_score", "unsafer_score", "safer_is_safe"} <= set(rows[0])
    assert (out / "scores.csv").read_text().splitlines()[0].startswith("index,")
    saved = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "sign_accuracy"} <= set(saved)
    with Image.open(out / "histogram.png") as png:
        assert png.format == "PNG" and png.size[0] > 300 and png.size[1] > 200


def test_eval_score_takes_the_models_kind_and_the_aliases_refuse_the_other(
    world: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from beaver.models.score import ScoreModel, save_score_model

    cm = tmp_path / "untrained-cm"
    backbone = AutoModel.from_pretrained(world / "model")
    save_score_model(
        ScoreModel(backbone, "cost"),  # type: ignore[arg-type]
        cm,
        AutoTokenizer.from_pretrained(world / "model"),
    )
    data = f"data.train=[toyworld-preference-test:1.0:{world}]"
    invoke(["eval", "score", f"model={cm}", data, f"output_dir={tmp_path / 'auto'}"])
    saved = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert "sign_accuracy" in saved  # scored as a cost model, on safety-preference pairs
    refused = runner.invoke(app, ["eval", "rm", f"model={cm}", data, f"output_dir={tmp_path}"])
    assert refused.exit_code == 2 and "is a cost model" in refused.output
    assert "Traceback" not in refused.output


def test_eval_of_a_plain_causal_lm_is_a_clear_error(world: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            "rm",
            f"model.name_or_path={world / 'model'}",
            f"data.train=[toyworld-preference-test:1.0:{world}]",
        ],
    )
    assert result.exit_code == 2 and "not a beaver score model" in result.output


def test_token_wise_cost_loss_is_refused() -> None:
    result = runner.invoke(
        app,
        [
            "cm",
            "output_dir=o",
            "model.name_or_path=m",
            "data.train=[d]",
            "score.loss_type=token",
            "--print-config",
        ],
    )
    assert result.exit_code == 2 and "sequence-wise" in result.output


def test_padding_free_token_wise_reward_loss_is_refused() -> None:
    args = ["rm", "output_dir=o", "model.name_or_path=m", "data.train=[d]"]
    ok = runner.invoke(app, [*args, "train.padding_free=true", "--print-config"])
    assert ok.exit_code == 0, ok.output
    result = runner.invoke(
        app, [*args, "train.padding_free=true", "score.loss_type=token", "--print-config"]
    )
    assert (
        result.exit_code == 2 and "train.padding_free with score.loss_type=token" in result.output
    )


HEADS = "score.heads=[crime,insult,privacy,violence]"


def test_multi_head_cost_model_trains_saves_and_reports_each_head(
    world: Path, tmp_path: Path
) -> None:
    from beaver.models.score import saved_heads

    invoke(score_args(world, tmp_path, "cm", HEADS, "train.epochs=2"))
    rows = [r for r in metrics(tmp_path) if "train/category_loss" in r]
    first, last = rows[:3], rows[-3:]
    mean = lambda rs: sum(r["train/category_loss"] for r in rs) / len(rs)  # noqa: E731
    assert mean(last) < mean(first)  # the category heads learned something
    assert {f"train/heads/{h}/sign_accuracy" for h in ("crime", "violence")} <= set(rows[-1])
    model_dir = tmp_path / "model"
    assert saved_heads(model_dir) == ("crime", "insult", "privacy", "violence")
    final = json.loads((tmp_path / "summary.json").read_text())["final_eval"]
    invoke(
        ["eval", "cm", f"model={model_dir}", f"output_dir={tmp_path / 'eval'}",
         f"data.train=[toyworld-preference-test:1.0:{world}]", "data.max_length=96"]
    )  # fmt: skip
    standalone = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for h in ("crime", "insult", "privacy", "violence"):
        for m in ("sign_accuracy", "flagged_share", "pairs_ordered"):
            key = f"heads/{h}/{m}"
            assert final[f"eval/{key}"] == pytest.approx(standalone[key], abs=1e-6), key
    # the overall head is the same cost model as ever: its metrics are there too
    assert {"accuracy", "sign_accuracy"} <= set(standalone)

    # reloaded: overall head + 4 category heads; `head=` makes one category the one head
    model = score_model_from_backbone(AutoModel.from_pretrained(model_dir), model_dir)
    ids = torch.tensor([[3, 4, 5, 6], [0, 3, 4, 5]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    out = model(ids, mask)
    assert out.category_end_scores is not None and out.category_end_scores.shape == (2, 4)
    violence = score_model_from_backbone(
        AutoModel.from_pretrained(model_dir), model_dir, head="violence"
    )
    assert violence.heads == () and violence.category_head is None
    one = violence(ids, mask)
    assert one.category_end_scores is None
    assert torch.allclose(one.end_scores, out.category_end_scores[:, 3], atol=1e-5)


def test_heads_need_category_labels_and_known_names(world: Path, tmp_path: Path) -> None:
    # labels stripped from the rows: the first row is named
    rows = [json.loads(line) for line in (world / "preference.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("response_0_harm_category")
        row.pop("response_1_harm_category")
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps(r) + "\n" for r in rows[:64]))
    args = score_args(world, tmp_path / "a", "cm", HEADS, f"data.train=[PKU-SafeRLHF/train:1:{bare}]",
                      "data.eval=[]")  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "row 1: no harm-category labels for response_0" in result.output
    # a misspelt head: flagged nowhere, the categories the data flags are listed
    result = runner.invoke(app, score_args(world, tmp_path / "b", "cm", "score.heads=[violnce]"))
    assert result.exit_code == 2, result.output
    assert "['violnce']: flagged on no answer" in result.output and "'violence'" in result.output
    assert "Traceback" not in result.output
    # heads are harm categories of a cost model
    result = runner.invoke(app, score_args(world, tmp_path / "c", "rm", HEADS, "--print-config"))
    assert result.exit_code == 2 and "only `beaver cm` trains them" in result.output
