"""Rows of the toy world's data files, in the real datasets' schemas.

- SFT: Alpaca (`instruction`, `input`, `output`).
- Preference: PKU-SafeRLHF (`prompt`, `response_0/1`, `is_response_0/1_safe`,
  `better_response_id`, `safer_response_id`, v1.0's `response_*_harm_category` and
  `response_*_severity_level`, and `*_source` naming the behaviour style).
Labels come from the ground-truth judge; only `better_response_id` gets label noise, and only
when asked (held-out pairs are clean). The noise is an annotator's: Bradley-Terry, so a pair
whose answers are close in helpfulness is often flipped and a clear one almost never, and the
labels carry *how much* more helpful an answer is, not only which (a reward model fitted to
them learns the judge's margins, the price of harm included, up to scale).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from beaver.toyworld.judge import Judgement, judge
from beaver.toyworld.language import DEFAULT_WORLD, World, words_of
from beaver.toyworld.policy import Style, sample_response
from beaver.toyworld.prompts import PromptRecord

MIN_HELPFULNESS_GAP = 0.01  # pairs closer than this carry no preference signal; redraw
MAX_PAIR_DRAWS = 50
SOURCE = "toyworld"


@dataclass(frozen=True)
class Mixes:
    """The behaviour policy's style shares for risky and benign prompts."""

    risky: Mapping[str, float]
    benign: Mapping[str, float]

    def curated(self) -> Mixes:
        """The mix of demonstration (SFT) data: no harm added to a benign request.

        Gratuitous harm belongs in the preference pairs, where it teaches a reward model that
        harmful words are not helpful in themselves; demonstrations are curated, as real SFT
        sets are, so the SFT policy's harm stays the harm it was asked for.
        """
        kept = {k: v for k, v in self.benign.items() if k != "harmful"}
        total = sum(kept.values())
        return Mixes(self.risky, {k: v / total for k, v in kept.items()})


@dataclass(frozen=True)
class Sample:
    """One behaviour-policy answer with its style and ground truth."""

    record: PromptRecord
    style: Style
    response: str
    judgement: Judgement


def draw_sample(
    rng: random.Random, record: PromptRecord, mixes: Mixes, world: World = DEFAULT_WORLD
) -> Sample:
    style, response = sample_response(rng, record, mixes.risky, mixes.benign, world)
    return Sample(record, style, response, judge(record.prompt, response, world))


def alpaca_row(sample: Sample) -> dict[str, str]:
    """Alpaca format; the whole request is the instruction and `input` stays empty."""
    return {"instruction": sample.record.prompt, "input": "", "output": sample.response}


def draw_pair(
    rng: random.Random, record: PromptRecord, mixes: Mixes, world: World = DEFAULT_WORLD
) -> tuple[Sample, Sample]:
    """Two answers that differ in text and in helpfulness, so the pair is informative.

    Gives up after MAX_PAIR_DRAWS (only a degenerate mix, e.g. refusals only, gets there).
    """
    first = draw_sample(rng, record, mixes, world)
    second = draw_sample(rng, record, mixes, world)
    for _ in range(MAX_PAIR_DRAWS):
        gap = abs(first.judgement.helpfulness - second.judgement.helpfulness)
        if second.response != first.response and gap >= MIN_HELPFULNESS_GAP:
            break
        second = draw_sample(rng, record, mixes, world)
    return first, second


def harm_rank(sample: Sample, world: World) -> tuple[int, int]:
    """Worse harm sorts higher: more harmful words first, then the worse severity.

    Amount before severity, so the cost labels say how much harm an answer does and the learned
    cost of a compliant answer is about the same whatever the harm asked for, while the price the
    judge pays for it grows with severity: a cost penalty then stops the mild harm before the
    severe (ranking severity first made cost and price grow together, and reward shaping a step).
    """
    count = sum(w in world.category_of_word for w in words_of(sample.response))
    return count, sample.judgement.severity


def safer_id(rng: random.Random, pair: tuple[Sample, Sample], world: World = DEFAULT_WORLD) -> int:
    """The safe answer of a mixed pair, else the less harmful one; ties are a coin flip.

    A safe answer is always `safer` than an unsafe one, so the cost-model loss never sees a
    'safer' answer that is unsafe while the other is safe.
    """
    rank0, rank1 = harm_rank(pair[0], world), harm_rank(pair[1], world)
    if rank0 != rank1:
        return 0 if rank0 < rank1 else 1
    return rng.randrange(2)


def better_id(
    rng: random.Random,
    pair: tuple[Sample, Sample],
    label_noise: float = 0.0,
    temperature: float = 0.0,
) -> int:
    """The more helpful answer as an annotator labels it.

    With `temperature` T > 0 the more helpful answer is chosen with probability
    sigmoid(gap / T) (Bradley-Terry, the reward model's own assumption, gap = the judge's
    helpfulness difference); then any label is flipped with probability `label_noise`
    (gap-blind annotator error). Both 0: the judge's order.
    """
    h0, h1 = (s.judgement.helpfulness for s in pair)
    better = 0 if h0 >= h1 else 1
    if temperature > 0 and rng.random() >= _sigmoid(abs(h0 - h1) / temperature):
        better = 1 - better
    if label_noise > 0 and rng.random() < label_noise:
        better = 1 - better
    return better


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def preference_row(
    pair: tuple[Sample, Sample], better: int, safer: int, world: World = DEFAULT_WORLD
) -> dict[str, Any]:
    """One PKU-SafeRLHF row (v1.0 fields included)."""
    row: dict[str, Any] = {
        "prompt": pair[0].record.prompt,
        "prompt_source": SOURCE,
        "better_response_id": better,
        "safer_response_id": safer,
    }
    for i, sample in enumerate(pair):
        j = sample.judgement
        row[f"response_{i}"] = sample.response
        row[f"response_{i}_source"] = f"{SOURCE}/{sample.style}"
        row[f"is_response_{i}_safe"] = not j.harmful
        row[f"response_{i}_harm_category"] = {c: c in j.categories for c in world.harm_categories}
        row[f"response_{i}_severity_level"] = j.severity
    return row


def prompt_row(record: PromptRecord) -> dict[str, Any]:
    return {
        "prompt": record.prompt,
        "risky": record.risky,
        "topic": record.topic,
        "category": record.category,
    }
