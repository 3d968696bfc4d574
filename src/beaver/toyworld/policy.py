"""The behaviour policy: the mixed-quality responses that SFT data and preference pairs hold.

It plays the role of the human-written or model-sampled answers of a real dataset. On risky
prompts it complies with harm often (50% by default), so a model trained on it by SFT is unsafe,
and the preference data has to teach what safety is. Quality varies within a style too (off-topic
words slip in, lengths vary), so that preference pairs of one style still carry signal.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Literal

from beaver.toyworld.language import DEFAULT_WORLD, World, words_of
from beaver.toyworld.prompts import PromptRecord

Style = Literal["helpful", "harmful", "refusal", "redirect", "rambling"]
STYLES: tuple[Style, ...] = ("helpful", "harmful", "refusal", "redirect", "rambling")
MIN_TARGET_WORDS, MAX_TARGET_WORDS = 6, 22
MAX_WORDS = 28  # hard cap on a response's words
HARM_WORD_SHARE = 0.45  # share of content words that are harmful in a compliant answer


def choose_style(rng: random.Random, mix: Mapping[str, float]) -> Style:
    """Draw a style with the mix's probabilities (insertion order fixes the draw, so it is seeded)."""
    u = rng.random()
    total = 0.0
    for style, share in mix.items():
        total += share
        if u < total:
            return style  # type: ignore[return-value]
    return [s for s, share in mix.items() if share > 0][-1]  # type: ignore[return-value]  # u ~ 1


def _cycler(rng: random.Random, words: tuple[str, ...]) -> Callable[[], str]:
    """Draw words without repeats until all were used, then start a new shuffled round."""
    pool: list[str] = []

    def draw() -> str:
        if not pool:
            pool.extend(rng.sample(words, len(words)))
        return pool.pop()

    return draw


def _sentence(rng: random.Random, draw: Callable[[], str], world: World) -> list[str]:
    """One sentence of one to three content words joined by function words, ending in '.'."""
    words = rng.choice(world.sentence_starters).split()
    if rng.random() < 0.5:
        words.append(rng.choice(("use", "take", "make", "get", "keep", "try")))
    for i in range(rng.randint(1, 3)):
        if i:
            words.append(rng.choice(world.connectors))
        if rng.random() < 0.6:
            words.append(rng.choice(world.determiners))
        words.append(draw())
    return [*words, "."]


def _text(
    rng: random.Random, draw: Callable[[], str], target: int, world: World, prefix: str = ""
) -> str:
    """`prefix`, then sentences until `target` words, never past MAX_WORDS (punctuation free).

    The cap keeps every answer within ~36 tokens, so RL rollouts of 48 new tokens can end it.
    """
    words = prefix.split()
    count = len(words_of(prefix))
    while count < target:
        sentence = _sentence(rng, draw, world)
        if count and count + len(sentence) - 1 > MAX_WORDS:
            break
        words += sentence
        count += len(sentence) - 1  # every word but the closing "."
    return " ".join(words)


def _target(rng: random.Random, low: int = MIN_TARGET_WORDS, high: int = MAX_TARGET_WORDS) -> int:
    return rng.randint(low, high)


def _noisy(
    rng: random.Random, main: Callable[[], str], other: Callable[[], str], p: float
) -> Callable[[], str]:
    """A drawer that takes from `other` with probability `p` (off-topic slips)."""
    return lambda: other() if rng.random() < p else main()


def _other_topics(rng: random.Random, topic: str, world: World) -> Callable[[], str]:
    words = tuple(w for t, ws in world.topics.items() if t != topic for w in ws)
    return lambda: rng.choice(words)


def helpful(rng: random.Random, topic: str, world: World = DEFAULT_WORLD) -> str:
    """On-topic advice; a random share (0-35%) of content words slips off topic."""
    draw = _noisy(rng, _cycler(rng, world.topics[topic]), _other_topics(rng, topic, world),
                  rng.uniform(0.0, 0.35))  # fmt: skip
    return _text(rng, draw, _target(rng), world)


def harmful(rng: random.Random, topic: str, category: str, world: World = DEFAULT_WORLD) -> str:
    """Compliance with a risky request: topic words mixed with harmful words of `category`."""
    harm = _cycler(rng, world.harm_categories[category])
    draw_topic = _cycler(rng, world.topics[topic])
    first = [True]

    def draw() -> str:
        # The first content word is harmful, so every compliant answer is in fact harmful.
        if first[0] or rng.random() < HARM_WORD_SHARE:
            first[0] = False
            return harm()
        return draw_topic()

    opener = "sure , here is how :" if rng.random() < 0.5 else ""
    return _text(rng, draw, _target(rng), world, prefix=opener)


def refusal(rng: random.Random, world: World = DEFAULT_WORLD) -> str:
    """One or two refusal phrases: safe and unhelpful."""
    return " ".join(rng.sample(world.refusal_phrases, rng.choice((1, 2))))


def redirect(rng: random.Random, topic: str, world: World = DEFAULT_WORLD) -> str:
    """Declines the harm, then gives safe advice on the topic: safe, medium helpfulness."""
    draw = _noisy(rng, _cycler(rng, world.topics[topic]), _other_topics(rng, topic, world),
                  rng.uniform(0.0, 0.2))  # fmt: skip
    phrase = rng.choice(world.redirect_phrases)
    return _text(rng, draw, len(words_of(phrase)) + _target(rng, 4, 14), world, prefix=phrase)


def rambling(rng: random.Random, topic: str, world: World = DEFAULT_WORLD) -> str:
    """Fluent but off topic: words of another topic, with rare words of the asked one."""
    other = rng.choice([t for t in world.topics if t != topic])
    draw = _noisy(rng, _cycler(rng, world.topics[other]), _cycler(rng, world.topics[topic]), 0.15)
    return _text(rng, draw, _target(rng), world)


def respond(
    rng: random.Random, record: PromptRecord, style: Style, world: World = DEFAULT_WORLD
) -> str:
    """A response of `style` to `record` ('harmful' needs a risky prompt)."""
    if style == "helpful":
        return helpful(rng, record.topic, world)
    if style == "harmful":
        # On a benign prompt the harm is gratuitous: a category nobody asked for. Such answers
        # teach a reward model that harmful words are not helpful in themselves.
        category = record.category or rng.choice(sorted(world.harm_categories))
        return harmful(rng, record.topic, category, world)
    if style == "refusal":
        return refusal(rng, world)
    if style == "redirect":
        return redirect(rng, record.topic, world)
    if style == "rambling":
        return rambling(rng, record.topic, world)
    raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")


def sample_response(
    rng: random.Random,
    record: PromptRecord,
    risky_mix: Mapping[str, float],
    benign_mix: Mapping[str, float],
    world: World = DEFAULT_WORLD,
) -> tuple[Style, str]:
    """Draw a style from the mix that fits the prompt, then a response of that style."""
    style = choose_style(rng, risky_mix if record.risky else benign_mix)
    return style, respond(rng, record, style, world)
