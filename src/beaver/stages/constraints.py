"""The constraints of a PPO-Lag run: their cost sources, the start of their cost critics, the
check of a category head before anything loads, and their summary.

`PPOConfig.constraint_list()` says what the constraints are (one named `cost` for the
`cost_model` + `lagrange` shorthand); the stage builds each source here: a beaver cost model
(loaded by the stage, shared between the constraints naming it) or a source that reads text
(`beaver.models.sources`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beaver.algo import LagrangeController
from beaver.config.sections import ModelCfg
from beaver.config.stages import ConstraintCfg, CostSourceCfg, PPOConfig
from beaver.engine import dist
from beaver.errors import UserError
from beaver.models.score import saved_heads
from beaver.models.sources import TextScore


def critic_start(cfg: PPOConfig, c: ConstraintCfg) -> tuple[ModelCfg, str | None]:
    """What a constraint's cost critic starts from: its `cost_critic`, else its source's cost
    model (its category head, for a head), else (a source that reads text) the actor's
    backbone with a fresh head."""
    if c.cost_critic is not None:
        return c.cost_critic, None
    if c.source.cost_model is not None:
        return c.source.cost_model, c.source.head
    return ModelCfg(name_or_path=cfg.actor.name_or_path, tokenizer=cfg.actor.tokenizer), None


def text_source(source: CostSourceCfg, key: str) -> TextScore:
    """A source that reads text (callable, classifier, HTTP), built as its config (at `key`)
    says."""
    from beaver.models import sources

    if source.callable is not None:
        return sources.callable_source(source.callable, f"{key}.callable")
    if source.classifier is not None:
        return sources.ClassifierSource(source.classifier, f"{key}.classifier", dist.device())
    assert source.http is not None  # the config checks there is exactly one kind
    return sources.HttpSource(source.http)


def check_head(path: str, head: str | None, key: str) -> None:
    """A constraint's `head` names a category head of its cost model (read from the model's
    score_config.json, before anything loads)."""
    if head is None:
        return
    heads = saved_heads(path)
    if heads is None or head not in heads:
        has = f"its heads are {list(heads)}" if heads else "it has no category heads"
        raise UserError(
            f"{key}={head!r}: the cost model {path} has no such head ({has}; "
            "train them with `beaver cm` and score.heads)"
        )


def constraint_summary(cfg: PPOConfig, controllers: Sequence[LagrangeController]) -> dict[str, Any]:
    """Each constraint's source, bound, final multiplier and J_c, by name (summary.json)."""
    if not controllers:
        return {}
    out = {}
    for c, controller in zip(cfg.constraint_list(), controllers, strict=True):
        out[c.name] = {
            "source": c.source.model_dump(mode="json", exclude_defaults=True),
            "threshold": controller.threshold,
            "target_unsafe_share": c.target_unsafe_share,
            "rule": c.rule,
            "lambda": controller.lambda_,
            "mean_episode_cost": controller.mean_cost,
        }
    return {"constraints": out}
