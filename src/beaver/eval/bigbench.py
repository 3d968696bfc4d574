"""`beaver eval bigbench`: BIG-bench JSON tasks (`task.json`), without a BIG-bench install.

Prompts follow BIG-bench's JSON task format: `task_prefix`, then for each example
`example_input_prefix` (default `"\\nQ: "`) + input + `example_output_prefix` (default
`"\\nA: "`); multiple-choice inputs get their choices appended (`choice_prefix`, default
`"\\n  choice: "`, in a seeded order) unless `append_choices_to_input` is false. Few-shot
demonstrations (`shots`) are other examples with their (best) target, joined by
`few_shot_example_separator`.

- Multiple choice (`target_scores`): each option's log-likelihood given the prompt (sum of its
  tokens' log-probs, fp32); the grade is the `target_scores` value of the most likely option
  (BIG-bench's `multiple_choice_grade`, which is accuracy for 0/1 scores).
- Generative (`target`, a string or a list): greedy answer, cut at `stop_string` (default: the
  first newline) and matched by `output_regex` when given, then stripped; exact match against
  any target (`exact_str_match`).
Tokenisation follows lm-evaluation-harness: an option's tokens are those of prompt + option
beyond the prompt's, with the prompt's trailing spaces moved onto the option.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from rich.text import Text
from torch import nn

from beaver.config import GenerationCfg
from beaver.config.evaluation import EvalBigBenchConfig
from beaver.console import plain_console
from beaver.errors import UserError
from beaver.files import read_json, write_json, write_jsonl
from beaver.models.batching import pad_batch
from beaver.models.forward import response_logprobs
from beaver.models.generation import generate
from beaver.models.inference import inference_lm, inference_tokenizer
from beaver.models.loading import check_models


@dataclass(frozen=True)
class Prepared:
    """One example, ready to score."""

    prompt: str
    choices: list[str] | None = None
    choice_scores: list[float] | None = None
    targets: list[str] | None = None


@dataclass(frozen=True)
class Task:
    """A BIG-bench JSON task."""

    name: str
    data: dict[str, Any]

    def get(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)


def load_task(path: str | Path) -> Task:
    """A task from `task.json` or a folder holding one; malformed examples are user errors."""
    p = Path(path)
    if p.is_dir():
        p = p / "task.json"
    if not p.is_file():
        raise UserError(f"BIG-bench task file not found: {p}")
    data = read_json(p)
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise UserError(f"{p}: a BIG-bench JSON task needs a non-empty `examples` list")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise UserError(f"{p}, example {i}: needs an `input` string")
        scores = ex.get("target_scores")
        if scores is not None and (not isinstance(scores, dict) or not scores):
            raise UserError(f"{p}, example {i}: `target_scores` must map options to scores")
        if scores is None and not isinstance(ex.get("target"), str | list):
            raise UserError(f"{p}, example {i}: needs `target_scores` or `target`")
    name = str(data.get("name") or (p.parent.name if p.name == "task.json" else p.stem))
    return Task(name=name, data=data)


def _targets(ex: dict[str, Any]) -> list[str]:
    """Generative targets; for multiple choice, the best-scoring options."""
    if "target" in ex:
        t = ex["target"]
        return [str(x) for x in t] if isinstance(t, list) else [str(t)]
    best = max(ex["target_scores"].values())
    return [k for k, v in ex["target_scores"].items() if v == best]


def prepare(task: Task, shots: int = 0, seed: int = 42, limit: int | None = None) -> list[Prepared]:
    """Every example (the first `limit`) as a prompt, with few-shot demonstrations."""
    rng = random.Random(f"{seed}:{task.name}")
    in_prefix = task.get("example_input_prefix", "\nQ: ")
    out_prefix = task.get("example_output_prefix", "\nA: ")
    choice_prefix = task.get("choice_prefix", "\n  choice: ")
    append_choices = task.get("append_choices_to_input", True)
    separator = task.get("few_shot_example_separator", "\n")
    examples: list[dict[str, Any]] = task.data["examples"]

    def body(ex: dict[str, Any]) -> str:
        text = ex["input"]
        if "target_scores" in ex and append_choices:
            options = sorted(ex["target_scores"])
            rng.shuffle(options)
            text += choice_prefix + choice_prefix.join(options)
        return in_prefix + text + out_prefix

    prepared = []
    for index, ex in enumerate(examples[:limit] if limit else examples):
        others = [e for j, e in enumerate(examples) if j != index]
        demos = rng.sample(others, min(shots, len(others)))
        context = "".join(body(d) + _targets(d)[0] + separator for d in demos)
        prompt = task.get("task_prefix", "") + context + body(ex)
        if "target_scores" in ex:
            choices = list(ex["target_scores"])
            scores = [float(ex["target_scores"][c]) for c in choices]
            prepared.append(Prepared(prompt, choices, scores))
        else:
            prepared.append(Prepared(prompt, targets=_targets(ex)))
    return prepared


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def continuation_ids(tokenizer: Any, context: str, option: str) -> tuple[list[int], list[int]]:
    """(context ids, option ids), with the context's trailing spaces moved onto the option."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, option = context[:-spaces], context[-spaces:] + option
    ctx = _encode(tokenizer, context)
    whole = _encode(tokenizer, context + option)
    if whole[: len(ctx)] == ctx:
        return ctx, whole[len(ctx) :]
    return ctx, list(tokenizer(option, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def option_logprobs(
    model: nn.Module,
    tokenizer: Any,
    pairs: list[tuple[str, str]],
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[float]:
    """Sum of log p(option tokens | context) for each (context, option), in fp32."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = []
    for context, option in pairs:
        ctx, cont = continuation_ids(tokenizer, context, option)
        if not ctx:  # nothing to condition on: start from BOS (or EOS)
            ctx = [
                tokenizer.bos_token_id
                if tokenizer.bos_token_id is not None
                else tokenizer.eos_token_id
            ]
        if max_length and len(ctx) + len(cont) > max_length:
            ctx = ctx[-max(1, max_length - len(cont)) :]  # keep the end of the context
        encoded.append((ctx, cont))
    out: list[float] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        ids, mask = pad_batch([c + o for c, o in chunk], pad)
        # (B, W - 1): column t is the log-prob of token t + 1 given tokens <= t
        logp, _ = response_logprobs(model, ids.to(device), mask.to(device), prompt_len=1)
        logp = logp.cpu()
        for row, (ctx, cont) in enumerate(chunk):
            out.append(float(logp[row, len(ctx) - 1 : len(ctx) - 1 + len(cont)].sum()))
    return out


def postprocess(text: str, stop_string: str | None, output_regex: str | None) -> str:
    """The answer part of a generation: cut at the stop string, then the regex's first match."""
    cut = text.find(stop_string or "\n")
    if cut >= 0:
        text = text[:cut]
    if output_regex:
        found = re.findall(output_regex, text)
        text = found[0] if found else ""
        if isinstance(text, tuple):  # a regex with groups
            text = text[0]
    return text.strip()


def evaluate_task(
    model: nn.Module, tokenizer: Any, task: Task, cfg: EvalBigBenchConfig
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(per-task scores, per-example records)."""
    prepared = prepare(task, cfg.shots, cfg.seed, cfg.max_examples)
    mc = [p for p in prepared if p.choices is not None]
    gen = [p for p in prepared if p.targets is not None]
    records: list[dict[str, Any]] = []
    grades: list[float] = []
    if mc:
        max_len = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        pairs = [(p.prompt, c) for p in mc for c in p.choices or []]
        flat = iter(option_logprobs(model, tokenizer, pairs, cfg.batch_size, max_len))
        for p in mc:
            assert p.choices is not None and p.choice_scores is not None
            logps = [next(flat) for _ in p.choices]
            best = max(range(len(logps)), key=logps.__getitem__)
            grades.append(p.choice_scores[best])
            records.append({"task": task.name, "prompt": p.prompt, "choices": p.choices,
                            "logprobs": logps, "chosen": p.choices[best], "score": grades[-1]})  # fmt: skip
    matches: list[float] = []
    if gen:
        greedy = GenerationCfg.model_validate(
            {"max_new_tokens": cfg.max_new_tokens, "temperature": 0}
        )
        prompts = [p.prompt for p in gen]  # raw text: the tokenizer adds its specials (BOS)
        outs = generate(model, tokenizer, prompts, greedy, batch_size=cfg.batch_size,
                        add_special_tokens=True)  # fmt: skip
        texts = [o.text for o in outs]
        for p, text in zip(gen, texts, strict=True):
            answer = postprocess(
                text, task.get("stop_string", None), task.get("output_regex", None)
            )
            matches.append(float(answer in (p.targets or [])))
            records.append({"task": task.name, "prompt": p.prompt, "generation": text,
                            "answer": answer, "targets": p.targets, "score": matches[-1]})  # fmt: skip
    scores: dict[str, Any] = {"task": task.name, "examples": len(prepared)}
    if mc:
        scores["multiple_choice_grade"] = sum(grades) / len(grades)
        scores["multiple_choice_examples"] = len(mc)
    if gen:
        scores["exact_str_match"] = sum(matches) / len(matches)
        scores["generative_examples"] = len(gen)
    return scores, records


def run(cfg: EvalBigBenchConfig) -> None:
    """`beaver eval bigbench`."""
    console = plain_console()
    tasks = [load_task(t) for t in cfg.tasks]  # every task checked before the model loads
    check_models("causal LM", model=cfg.model)
    name = cfg.model.name_or_path
    with console.status(Text(f"loading {name}")):
        tokenizer = inference_tokenizer(cfg.model)
        model = inference_lm(cfg.model)
    results, records = [], []
    for task in tasks:
        with console.status(Text(f"{task.name}: {len(task.data['examples'])} examples")):
            scores, recs = evaluate_task(model, tokenizer, task, cfg)
        results.append(scores)
        records += recs
    out_dir = Path(cfg.output_dir)
    write_json(out_dir / "bigbench.json", {"model": name, "shots": cfg.shots, "tasks": results})
    write_jsonl(out_dir / "bigbench_examples.jsonl", records)
    table = Table(title=f"BIG-bench, {name}, {cfg.shots}-shot")
    for col in ("task", "examples", "multiple_choice_grade", "exact_str_match"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for s in results:
        mc, em = s.get("multiple_choice_grade"), s.get("exact_str_match")
        table.add_row(s["task"], str(s["examples"]), "-" if mc is None else f"{mc:.3f}",
                      "-" if em is None else f"{em:.3f}")  # fmt: skip
    console.print(table)
    console.print(f"scores: {out_dir / 'bigbench.json'}; per example: bigbench_examples.jsonl")
