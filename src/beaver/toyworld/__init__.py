"""beaver's embedded toy world: a synthetic language with a known ground truth for help and harm.

`generate(cfg)` writes SFT data (Alpaca), preference pairs (PKU-SafeRLHF), RL and held-out
evaluation prompts, a word-level tokenizer and a tiny random causal LM, all from one seed.
`judge(prompt, response)` is the ground truth that evaluation reads instead of learned models.
See docs in `beaver.toyworld.judge` for the helpfulness formula and design/TOYWORLD.md for why.

Importing this package does not import torch or transformers; only `generate` and the
`assets` module do.
"""

from beaver.config.toyworld import BenignMixConfig, RiskyMixConfig, ToyModelConfig, ToyWorldConfig
from beaver.toyworld.generate import (
    WorldSummary,
    format_summary,
    generate,
    load_world,
    summary_lines,
)
from beaver.toyworld.judge import (
    Judgement,
    JudgementSummary,
    PromptInfo,
    analyse_prompt,
    judge,
    summarize_judgements,
)
from beaver.toyworld.language import DEFAULT_WORLD, World, words_of
from beaver.toyworld.prompts import PromptRecord, load_prompts

__all__ = [
    "DEFAULT_WORLD",
    "BenignMixConfig",
    "Judgement",
    "JudgementSummary",
    "PromptInfo",
    "PromptRecord",
    "RiskyMixConfig",
    "ToyModelConfig",
    "ToyWorldConfig",
    "World",
    "WorldSummary",
    "analyse_prompt",
    "format_summary",
    "generate",
    "judge",
    "load_prompts",
    "load_world",
    "summarize_judgements",
    "summary_lines",
    "words_of",
]
