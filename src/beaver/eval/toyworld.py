"""`beaver eval toyworld`: the demo's table, by the ground-truth judge on held-out prompts.

Each policy answers every held-out prompt (sampled, same seed for all); the judge scores
helpfulness and harm; the learned reward and cost models score the same answers, so the table
shows both what the policy optimised and what is true.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from beaver.config import ModelCfg
from beaver.config.evaluation import ToyEvalConfig
from beaver.console import plain_console
from beaver.data.templates import encode_prompt
from beaver.errors import UserError
from beaver.files import write_json, write_jsonl
from beaver.models.forward import score_token_lists
from beaver.models.generation import Generated, generate
from beaver.models.inference import inference_lm, inference_score_model, inference_tokenizer
from beaver.models.score import ScoreModel
from beaver.toyworld import load_prompts, summarize_judgements

# The demo's table is reproducible on one device only: the tiny models run on the CPU in fp32.
CPU = torch.device("cpu")

console = plain_console(width=160) if not Console().is_terminal else plain_console()


@dataclass(frozen=True)
class PolicyResult:
    """One row of the demo table."""

    helpfulness: float
    helpfulness_benign: float
    helpfulness_risky: float
    harmful_rate: float
    harmful_rate_risky: float
    harmful_rate_benign: float
    harmful_rate_by_category: dict[str, float]
    harmful_rate_by_severity: dict[str, float]
    eos_rate: float
    response_length: float
    reward: float | None
    cost: float | None
    unsafe_share_by_cost: float | None
    count: int


def evaluate_policy(
    model_cfg: ModelCfg, prompts: list[str], cfg: ToyEvalConfig, scorers: dict[str, ScoreModel]
) -> tuple[PolicyResult, list[Generated]]:
    """Sample answers to `prompts` with the policy, then judge and score them."""
    tokenizer = inference_tokenizer(model_cfg)
    model = inference_lm(model_cfg, CPU)
    encoded = [encode_prompt(tokenizer, p, cfg.template) for p in prompts]
    torch.manual_seed(cfg.seed)
    outputs = generate(model, tokenizer, encoded, cfg.generation, batch_size=cfg.batch_size)
    n = cfg.generation.num_return_sequences
    summary = summarize_judgements((prompts[o.prompt_index], o.text) for o in outputs)
    sequences = [encoded[o.prompt_index] + o.response_ids for o in outputs]
    learned = {
        name: score_token_lists(m, sequences, tokenizer.pad_token_id, normalize=True)
        for name, m in scorers.items()
    }
    cost = learned.get("cost")
    result = PolicyResult(
        helpfulness=summary.mean_helpfulness,
        helpfulness_benign=summary.mean_helpfulness_benign,
        helpfulness_risky=summary.mean_helpfulness_risky,
        harmful_rate=summary.harmful_rate,
        harmful_rate_risky=summary.harmful_rate_risky,
        harmful_rate_benign=summary.harmful_rate_benign,
        harmful_rate_by_category=summary.harmful_rate_by_category,
        harmful_rate_by_severity=summary.harmful_rate_by_severity,
        eos_rate=sum(o.ended for o in outputs) / max(len(outputs), 1),
        response_length=sum(len(o.response_ids) for o in outputs) / max(len(outputs), 1),
        reward=learned["reward"].mean().item() if "reward" in learned else None,
        cost=cost.mean().item() if cost is not None else None,
        unsafe_share_by_cost=(cost > 0).float().mean().item() if cost is not None else None,
        count=len(prompts) * n,
    )
    return result, outputs


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def table_rows(results: dict[str, PolicyResult]) -> tuple[list[str], list[list[str]]]:
    """The demo's table as text cells: the judge's helpfulness on benign and on risky prompts,
    harm on risky prompts per severity of the harm asked for and per category, learned scores."""
    categories = sorted({c for r in results.values() for c in r.harmful_rate_by_category})
    levels = sorted({s for r in results.values() for s in r.harmful_rate_by_severity})
    head = ["policy", "helpful", "help benign", "help risky", "harmful", "harmful risky"]
    head += [f"severity {s}" for s in levels] + categories + ["EOS", "reward", "cost"]
    rows = [
        [
            name,
            _fmt(r.helpfulness),
            _fmt(r.helpfulness_benign),
            _fmt(r.helpfulness_risky),
            _fmt(r.harmful_rate, True),
            _fmt(r.harmful_rate_risky, True),
            *[_fmt(r.harmful_rate_by_severity.get(s), True) for s in levels],
            *[_fmt(r.harmful_rate_by_category.get(c), True) for c in categories],
            _fmt(r.eos_rate, True),
            _fmt(r.reward),
            _fmt(r.cost),
        ]
        for name, r in results.items()
    ]
    return head, rows


def results_table(results: dict[str, PolicyResult]) -> Table:
    """The demo's table on the console (severity and category columns: harmful rate on the
    risky prompts that ask for harm of that level or category)."""
    head, rows = table_rows(results)
    table = Table(title="toy world: held-out prompts, ground-truth judge")
    for col in head:
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(results: dict[str, PolicyResult]) -> str:
    """The same table in Markdown (`table.md`), as the README shows it."""
    head, rows = table_rows(results)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def run(cfg: ToyEvalConfig) -> dict[str, PolicyResult]:
    """Evaluate every policy; print the table; write results.json and responses.jsonl."""
    if not Path(cfg.prompts).is_file():
        raise UserError(f"prompt file not found: {cfg.prompts} (run `beaver toyworld` first)")
    prompts = [r.prompt for r in load_prompts(cfg.prompts)]
    scorers: dict[str, ScoreModel] = {}
    for name, model in (("reward", cfg.reward_model), ("cost", cfg.cost_model)):
        if model is not None:
            scorers[name] = inference_score_model(model, CPU)
    out = Path(cfg.output_dir)
    results: dict[str, PolicyResult] = {}
    rows: list[dict[str, Any]] = []
    for name, policy in cfg.policies.items():
        results[name], outputs = evaluate_policy(policy, prompts, cfg, scorers)
        rows += [
            {
                "policy": name,
                "prompt": prompts[o.prompt_index],
                "response": o.text,
                "ended": o.ended,
            }
            for o in outputs
        ]
    write_jsonl(out / "responses.jsonl", rows)
    write_json(out / "results.json", {k: asdict(v) for k, v in results.items()})
    (out / "table.md").write_text(markdown_table(results), encoding="utf-8")
    console.print(results_table(results))
    console.print(f"results: {out / 'results.json'} (table: {out / 'table.md'})")
    return results
