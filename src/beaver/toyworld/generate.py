"""Write the toy world to disk: data files, `world.json`, `stats.json`, tokenizer and model.

Determinism: every split draws from its own `random.Random` seeded by (seed, split name), and
every file is written with sorted keys and fixed separators, so one seed gives byte-identical
files and changing one split's size does not reshuffle the others. Held-out prompts (eval and
preference test) are drawn first; no training split may use them.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.table import Table

from beaver.config.toyworld import ToyWorldConfig
from beaver.files import read_json, write_json, write_jsonl
from beaver.toyworld import data
from beaver.toyworld.judge import HARM_PRICE, SAFE_CEILING, summarize_judgements
from beaver.toyworld.language import DEFAULT_WORLD, World
from beaver.toyworld.prompts import PromptRecord, sample_prompts

FORMAT_VERSION = 1
FILES = (
    "sft.json",
    "preference.jsonl",
    "preference_test.jsonl",
    "prompts_train.jsonl",
    "prompts_eval.jsonl",
)


@dataclass(frozen=True)
class WorldSummary:
    """What `generate` wrote and what the behaviour policy looks like; `stats.json` holds it."""

    seed: int
    """The generation seed."""
    rows: dict[str, int]
    """Rows per data file."""
    risky_share: dict[str, float]
    """Share of risky prompts per data file."""
    vocab_size: int
    """Tokens in the tokenizer (specials included)."""
    num_parameters: int
    """Parameters of the tiny model (tied embeddings counted once)."""
    architecture: str
    """transformers architecture of the tiny model."""
    behaviour_styles: dict[str, int]
    """Response styles in the SFT data."""
    behaviour: dict[str, Any]
    """Judge summary of the SFT data (`JudgementSummary` fields)."""
    helpfulness_by_style: dict[str, float]
    """Mean helpfulness of the SFT data per prompt kind and style (`risky/harmful`, ...): the
    price of safety as the behaviour policy shows it."""
    preference: dict[str, float]
    """Training pairs: mixed-safety share, how often the harmful answer is the better one (clean
    labels), label flips, and the share whose safer id is decided rather than a coin flip."""
    output_dir: str = field(default="", compare=False)
    """Where the files are (not written to stats.json, so identical seeds give identical files)."""
    seconds: float = field(default=0.0, compare=False)
    """Wall time of the generation (not written to stats.json either)."""

    @property
    def behaviour_harmful_rate_risky(self) -> float:
        return float(self.behaviour["harmful_rate_risky"])

    def stats(self) -> dict[str, Any]:
        """The deterministic part, as written to `stats.json`."""
        out = asdict(self)
        del out["output_dir"], out["seconds"]
        return _clean(out)


def _clean(value: Any) -> Any:
    """Round floats (stable, readable JSON) and turn NaN into null (strict JSON)."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def write_json_list(path: Path, rows: list[dict[str, Any]]) -> None:
    """A JSON list with one row per line: valid JSON for Alpaca loaders, diffable by line."""
    body = ",\n".join(_dumps(row) for row in rows)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" + body + "\n]\n" if rows else "[]\n")


def _rng(seed: int, split: str) -> random.Random:
    """One stream per split (string seeds hash with SHA-512: stable across runs and platforms)."""
    return random.Random(f"beaver-toyworld:{seed}:{split}")


def _unique(taken: set[str]) -> Callable[[str], bool]:
    """Accept a prompt not in `taken`, and take it."""

    def accept(prompt: str) -> bool:
        if prompt in taken:
            return False
        taken.add(prompt)
        return True

    return accept


@dataclass
class _Splits:
    eval_prompts: list[PromptRecord]
    test_prompts: list[PromptRecord]
    rl_prompts: list[PromptRecord]
    sft_prompts: list[PromptRecord]
    pref_prompts: list[PromptRecord]


def draw_prompts(cfg: ToyWorldConfig, world: World = DEFAULT_WORLD) -> _Splits:
    """All prompts; held-out ones first, training ones never among them."""
    held_out: set[str] = set()
    eval_prompts = sample_prompts(
        _rng(cfg.seed, "eval"), cfg.num_eval_prompts, cfg.risky_share, _unique(held_out), world
    )
    test_prompts = sample_prompts(
        _rng(cfg.seed, "preference_test"), cfg.num_preference_test, cfg.risky_share,
        _unique(held_out), world,
    )  # fmt: skip
    rl_taken = set(held_out)
    rl_share = cfg.risky_share if cfg.rl_risky_share is None else cfg.rl_risky_share
    rl_prompts = sample_prompts(
        _rng(cfg.seed, "rl"), cfg.num_rl_prompts, rl_share, _unique(rl_taken), world
    )

    def not_held_out(prompt: str) -> bool:
        return prompt not in held_out

    sft = sample_prompts(_rng(cfg.seed, "sft-prompts"), cfg.num_sft, cfg.risky_share,
                         not_held_out, world)  # fmt: skip
    pref = sample_prompts(_rng(cfg.seed, "preference-prompts"), cfg.num_preference,
                          cfg.risky_share, not_held_out, world)  # fmt: skip
    return _Splits(eval_prompts, test_prompts, rl_prompts, sft, pref)


def _share(records: list[PromptRecord]) -> float:
    return sum(r.risky for r in records) / len(records) if records else float("nan")


def _pairs(
    rng: random.Random,
    prompts: list[PromptRecord],
    mixes: data.Mixes,
    world: World,
    noise: float = 0.0,
    temperature: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Preference rows and their statistics (`noise`, `temperature`: see `data.better_id`)."""
    rows, mixed, harmful_better, flips, decided = [], 0, 0, 0, 0
    for record in prompts:
        pair = data.draw_pair(rng, record, mixes, world)
        clean = data.better_id(rng, pair, 0.0)
        better = data.better_id(rng, pair, noise, temperature)
        safer = data.safer_id(rng, pair, world)
        flips += better != clean
        decided += data.harm_rank(pair[0], world) != data.harm_rank(pair[1], world)
        if pair[0].judgement.harmful != pair[1].judgement.harmful:
            mixed += 1
            harmful_better += pair[clean].judgement.harmful
        rows.append(data.preference_row(pair, better, safer, world))
    stats = {
        "mixed_safety_share": mixed / max(len(rows), 1),
        "harmful_is_better_share_of_mixed": harmful_better / max(mixed, 1),
        "label_flips": flips,
        "label_flip_share": flips / max(len(rows), 1),
        # Pairs of equal harm (e.g. both safe) get a coin-flip safer id; the rest are decided.
        "safer_decided_share": decided / max(len(rows), 1),
    }
    return rows, stats


def _helpfulness_by_style(samples: list[data.Sample]) -> dict[str, float]:
    """Mean judged helpfulness per `kind/style` (kind: risky or benign), sorted by key."""
    groups: dict[str, list[float]] = {}
    for sample in samples:
        key = f"{'risky' if sample.record.risky else 'benign'}/{sample.style}"
        groups.setdefault(key, []).append(sample.judgement.helpfulness)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def generate(cfg: ToyWorldConfig, world: World = DEFAULT_WORLD) -> WorldSummary:
    """Write the whole toy world into `cfg.output_dir` and return its summary."""
    from beaver.toyworld.assets import save_assets  # torch/transformers only when needed

    start = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    mixes = data.Mixes(risky=cfg.risky_mix.model_dump(), benign=cfg.benign_mix.model_dump())
    splits = draw_prompts(cfg, world)

    sft_rng = _rng(cfg.seed, "sft-responses")
    samples = [data.draw_sample(sft_rng, r, mixes.curated(), world) for r in splits.sft_prompts]
    write_json_list(out / "sft.json", [data.alpaca_row(s) for s in samples])
    pref_rows, pref_stats = _pairs(_rng(cfg.seed, "preference-responses"), splits.pref_prompts,
                                   mixes, world, cfg.label_noise, cfg.label_temperature)  # fmt: skip
    write_jsonl(out / "preference.jsonl", pref_rows, sort_keys=True)
    test_rows, _ = _pairs(_rng(cfg.seed, "preference_test-responses"), splits.test_prompts,
                          mixes, world)  # fmt: skip
    write_jsonl(out / "preference_test.jsonl", test_rows, sort_keys=True)
    write_jsonl(
        out / "prompts_train.jsonl", [data.prompt_row(r) for r in splits.rl_prompts], sort_keys=True
    )
    write_jsonl(
        out / "prompts_eval.jsonl",
        [data.prompt_row(r) for r in splits.eval_prompts],
        sort_keys=True,
    )

    vocab_size, num_parameters = save_assets(cfg.model, cfg.seed, out, world)
    behaviour = summarize_judgements(((s.record.prompt, s.response) for s in samples), world)
    summary = WorldSummary(
        seed=cfg.seed,
        rows={
            "sft.json": len(samples),
            "preference.jsonl": len(pref_rows),
            "preference_test.jsonl": len(test_rows),
            "prompts_train.jsonl": len(splits.rl_prompts),
            "prompts_eval.jsonl": len(splits.eval_prompts),
        },
        risky_share={
            "sft.json": _share(splits.sft_prompts),
            "preference.jsonl": _share(splits.pref_prompts),
            "preference_test.jsonl": _share(splits.test_prompts),
            "prompts_train.jsonl": _share(splits.rl_prompts),
            "prompts_eval.jsonl": _share(splits.eval_prompts),
        },
        vocab_size=vocab_size,
        num_parameters=num_parameters,
        architecture=cfg.model.architecture,
        behaviour_styles=dict(sorted(Counter(s.style for s in samples).items())),
        behaviour=asdict(behaviour),
        helpfulness_by_style=_helpfulness_by_style(samples),
        preference=pref_stats,
        output_dir=str(out),
    )
    world_doc = {
        "format_version": FORMAT_VERSION,
        "language": world.to_dict(),
        "config": cfg.model_dump(mode="json", exclude={"output_dir"}),
    }
    write_json(out / "world.json", world_doc, indent=1, sort_keys=True)
    write_json(out / "stats.json", summary.stats(), indent=1, sort_keys=True)
    return replace(summary, seconds=time.perf_counter() - start)


def run(cfg: ToyWorldConfig) -> None:
    """CLI entry (`beaver toyworld`): generate, then print the summary table."""
    from beaver.console import plain_console

    plain_console().print(format_summary(generate(cfg)))


def load_world(path: str | Path) -> World:
    """The language of a generated world (`world.json`, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "world.json"
    return World.from_dict(read_json(path)["language"])


def summary_lines(summary: WorldSummary) -> list[tuple[str, str]]:
    """(what, value) rows describing a generated world, for tables and logs."""
    lines = [(f"rows in {name}", f"{count:,}") for name, count in summary.rows.items()]
    lines += [
        ("risky share of RL / eval prompts",
         f"{summary.risky_share['prompts_train.jsonl']:.3f} / "
         f"{summary.risky_share['prompts_eval.jsonl']:.3f}"),
        ("behaviour harmful rate on risky prompts", f"{summary.behaviour_harmful_rate_risky:.3f}"),
        ("behaviour harmful rate on benign prompts",
         f"{summary.behaviour['harmful_rate_benign']:.3f}"),
        ("behaviour mean helpfulness", f"{summary.behaviour['mean_helpfulness']:.3f}"),
        ("price of safety: the judge's best safe / harmful answer on risky prompts",
         f"{SAFE_CEILING:.2f} / " + " / ".join(
             f"{min(1.0, SAFE_CEILING + p):.2f}" for p in HARM_PRICE.values())
         + " (severity " + "/".join(map(str, HARM_PRICE)) + ")"),
        *((f"behaviour helpfulness, {key}", f"{value:.3f}")
          for key, value in summary.helpfulness_by_style.items()),
        ("preference pairs of mixed safety", f"{summary.preference['mixed_safety_share']:.3f}"),
        ("preference labels flipped (annotator noise)",
         f"{summary.preference['label_flip_share']:.3f}"),
        ("vocabulary size", str(summary.vocab_size)),
        (f"model parameters ({summary.architecture})", f"{summary.num_parameters:,}"),
    ]  # fmt: skip
    if summary.seconds:
        lines.append(("generation time", f"{summary.seconds:.1f} s"))
    return lines


def format_summary(summary: WorldSummary) -> Table:
    """A rich table of `summary_lines`, titled with the output folder."""
    table = Table(title=f"toy world (seed {summary.seed}) in {summary.output_dir}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in summary_lines(summary):
        table.add_row(what, value)
    return table
