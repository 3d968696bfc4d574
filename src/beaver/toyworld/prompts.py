"""Prompts of the toy world: benign requests about a topic, and risky ones that ask for harm.

Every prompt names two or three words of its topic, so the judge (which sees only text) finds
the topic again; a risky prompt also names one or two harmful words of the category it asks
for, which is how the judge tells risky from benign.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from beaver.files import read_json_rows
from beaver.toyworld.language import DEFAULT_WORLD, World


@dataclass(frozen=True)
class PromptRecord:
    """One prompt with its ground truth, as a row of `prompts_*.jsonl`."""

    prompt: str
    """The request text (lowercase words, punctuation separated by spaces)."""
    risky: bool
    """True when the prompt asks for something harmful."""
    topic: str
    """The topic the prompt is about."""
    category: str | None
    """The harm category asked for; None for a benign prompt."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def _topic_phrase(rng: random.Random, words: tuple[str, ...]) -> str:
    """Two or three distinct topic words in a short noun phrase."""
    a, b, c = rng.sample(words, 3)
    patterns = (
        f"the {a} and the {b}",
        f"my {a} , {b} and {c}",
        f"the {a} with the {b}",
        f"the {a} for my {b}",
        f"some {a} , {b} or {c}",
    )
    return rng.choice(patterns)


def benign_prompt(rng: random.Random, topic: str, world: World = DEFAULT_WORLD) -> str:
    """A request for help on `topic`, 4-10 words plus punctuation."""
    opener = rng.choice(world.benign_openers)
    return f"{opener} {_topic_phrase(rng, world.topics[topic])} ?"


def risky_prompt(
    rng: random.Random, topic: str, category: str, world: World = DEFAULT_WORLD
) -> str:
    """A request to do harm of `category` using things of `topic`, 7-15 words."""
    harm = rng.sample(world.harm_categories[category], rng.choice((1, 2)))
    ask = " and ".join(harm)
    target = rng.choice(world.risky_targets)
    opener = rng.choice(world.risky_openers)
    link = rng.choice(("using", "with"))
    return f"{opener} {ask} {target} {link} {_topic_phrase(rng, world.topics[topic])} ?"


def sample_prompt(rng: random.Random, risky: bool, world: World = DEFAULT_WORLD) -> PromptRecord:
    """A prompt on a uniformly drawn topic (and harm category when `risky`)."""
    topic = rng.choice(list(world.topics))
    if not risky:
        return PromptRecord(benign_prompt(rng, topic, world), False, topic, None)
    category = rng.choice(list(world.harm_categories))
    return PromptRecord(risky_prompt(rng, topic, category, world), True, topic, category)


def risky_flags(rng: random.Random, count: int, risky_share: float) -> list[bool]:
    """Exactly round(count * share) risky flags in random order: stable shares in small splits."""
    num_risky = round(count * risky_share)
    flags = [True] * num_risky + [False] * (count - num_risky)
    rng.shuffle(flags)
    return flags


def sample_prompts(
    rng: random.Random,
    count: int,
    risky_share: float,
    accept: Callable[[str], bool] = lambda _: True,
    world: World = DEFAULT_WORLD,
    max_tries: int = 1000,
) -> list[PromptRecord]:
    """`count` prompts whose text `accept` allows (used to keep splits disjoint and unique)."""
    records = []
    for risky in risky_flags(rng, count, risky_share):
        for _ in range(max_tries):
            record = sample_prompt(rng, risky, world)
            if accept(record.prompt):
                break
        else:
            raise RuntimeError(
                f"no acceptable prompt after {max_tries} draws; the split is too large"
            )
        records.append(record)
    return records


def load_prompts(path: str | Path) -> list[PromptRecord]:
    """Read a `prompts_*.jsonl` file written by the generator."""
    rows = read_json_rows(path)
    return [PromptRecord(r["prompt"], bool(r["risky"]), r["topic"], r["category"]) for r in rows]
