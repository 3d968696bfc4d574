"""The state of a chat with one or several models, without any terminal code.

Every model ("bot") keeps its own history: the user turns are shared, each bot's answers are its
own, so each one continues its own conversation. Slash commands are parsed here too, and the
labels and score lines a chat shows are made here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beaver.data.templates import Template, encode_prompt
from beaver.models.scorer import is_safe

Message = dict[str, str]

COMMANDS: dict[str, str] = {
    "/help": "show the commands",
    "/reset": "forget the conversation and start a new one",
    "/clear": "clear the screen and forget the conversation",
    "/regenerate": "answer the last user turn again",
    "/history": "show the conversation so far",
    "/exit": "leave (also /quit, Ctrl-D, or Ctrl-C at the prompt)",
}
_ALIASES = {"/quit": "/exit", "/q": "/exit", "/h": "/help", "/?": "/help"}


def parse_command(line: str) -> str | None:
    """The command a line names (`/exit`...), `"?"` for an unknown one, None for a user turn."""
    word = line.strip().lower()
    if not word.startswith("/") or " " in word:
        return None
    word = _ALIASES.get(word, word)
    return word if word in COMMANDS else "?"


@dataclass
class Bot:
    """One model in the chat, with its tokenizer and conversation."""

    label: str
    model: Any
    tokenizer: Any
    history: list[Message] = field(default_factory=list)

    def prompt_ids(self, template: Template, max_new_tokens: int = 0) -> tuple[list[int], int]:
        """Token ids this bot continues: its history up to the pending user turn, without the
        oldest exchanges that would leave no room in the model's context for `max_new_tokens`
        more; and how many user turns were left out (the history itself keeps them)."""
        limit = context_length(self.model)
        history, dropped = self.history, 0
        ids = encode_prompt(self.tokenizer, history, template)
        while limit is not None and len(ids) + max_new_tokens > limit and len(history) > 2:
            history, dropped = history[2:], dropped + 1  # the oldest user turn and its answer
            ids = encode_prompt(self.tokenizer, history, template)
        return ids, dropped


def context_length(model: Any) -> int | None:
    """The longest sequence the model's positions cover (None when its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass
class ChatSession:
    """Bots that answer the same user turns."""

    bots: list[Bot]
    template: Template = "auto"

    @property
    def turns(self) -> int:
        """User turns in the conversation."""
        return sum(m["role"] == "user" for m in self.bots[0].history) if self.bots else 0

    def add_user(self, text: str) -> None:
        for bot in self.bots:
            bot.history.append({"role": "user", "content": text})

    def add_answer(self, bot: Bot, text: str) -> None:
        bot.history.append({"role": "assistant", "content": text})

    def mark(self) -> list[int]:
        """History lengths now, to `rewind` to when a turn is interrupted."""
        return [len(bot.history) for bot in self.bots]

    def rewind(self, mark: list[int]) -> None:
        for bot, length in zip(self.bots, mark, strict=True):
            del bot.history[length:]

    def drop_last_answers(self) -> bool:
        """Remove each bot's answer to the last user turn (for /regenerate); False if none."""
        if not self.turns:
            return False
        for bot in self.bots:
            if bot.history and bot.history[-1]["role"] == "assistant":
                bot.history.pop()
        return True

    def reset(self) -> None:
        for bot in self.bots:
            bot.history.clear()

    def transcript(self) -> list[tuple[str, str]]:
        """(speaker, text) lines: each user turn, then every bot's answer to it."""
        lines: list[tuple[str, str]] = []
        answers = [[m["content"] for m in b.history if m["role"] == "assistant"] for b in self.bots]
        users = [m["content"] for m in self.bots[0].history if m["role"] == "user"]
        for i, text in enumerate(users):
            lines.append(("you", text))
            for bot, said in zip(self.bots, answers, strict=True):
                if i < len(said):
                    lines.append((bot.label, said[i]))
        return lines


def short_name(name: str) -> str:
    """A label for a model path: its last two parts (`toyworld/model`)."""
    parts = Path(name.rstrip("/")).parts
    return "/".join(parts[-2:]) if parts else name


def unique_labels(names: list[str]) -> list[str]:
    """Short labels, numbered when two would be equal."""
    labels = [short_name(n) for n in names]
    return [f"{lab} #{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def format_scores(reward: float | None, cost: float | None) -> str:
    """`reward +1.23 · cost -0.40 (safe)` for the terminal."""
    parts = []
    if reward is not None:
        parts.append(f"reward {reward:+.3f}")
    if cost is not None:
        parts.append(f"cost {cost:+.3f} ({'safe' if is_safe(cost) else 'UNSAFE'})")
    return " · ".join(parts)
