"""Conversations in the formats rows carry them: chat messages and Anthropic transcripts.

Both become a list of turns that alternate user / assistant and start with the user, as
`RawSample` wants. Consecutive turns of one role are joined with a blank line (raw hh-rlhf and
some chat data have them); a conversation starting with the assistant, or an unknown role, is a
`BadRow` naming the column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from beaver.data.raw import BadRow

_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatbot": "assistant",
    "system": "system",
}
_TRANSCRIPT = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_messages(
    key: str, messages: Any, *, from_user: bool = True
) -> tuple[str | None, list[str], str]:
    """Chat messages (`role`/`content`, or ShareGPT `from`/`value`) as (system, turns, last role).

    A system message is only allowed first. With `from_user`, the turns must start with the user.
    """
    if isinstance(messages, Mapping):  # one message (e.g. processed hh-rlhf's `chosen`)
        messages = [messages]
    if not isinstance(messages, list | tuple) or not messages:
        raise BadRow(key, f"must be a non-empty list of messages, got {type(messages).__name__}")
    system: str | None = None
    roles: list[str] = []
    texts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise BadRow(f"{key}[{i}]", f"must be a message mapping, got {type(message).__name__}")
        raw_role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value", message.get("text")))
        role = _ROLES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise BadRow(
                f"{key}[{i}].role", f"{raw_role!r} is not a user, assistant or system role"
            )
        if not isinstance(content, str):
            raise BadRow(f"{key}[{i}].content", f"must be a string, got {type(content).__name__}")
        if role == "system":
            if i != 0:
                raise BadRow(f"{key}[{i}].role", "a system message is only allowed first")
            system = content
            continue
        _append(roles, texts, role, content)
    if from_user and roles and roles[0] != "user":
        raise BadRow(key, "must start with a user message (after an optional system message)")
    return system, texts, roles[-1] if roles else "user"


def assistant_text(key: str, value: Any) -> str:
    """A completion given as a string or as assistant message(s) (TRL conversational rows)."""
    if isinstance(value, str):
        return value
    _, texts, last = parse_messages(key, value, from_user=False)
    if len(texts) != 1 or last != "assistant":
        raise BadRow(key, "must be one assistant message (or a string)")
    return texts[0]


def parse_transcript(key: str, text: Any) -> list[str]:
    """An Anthropic transcript (`\\n\\nHuman: ... \\n\\nAssistant: ...`) as alternating turns."""
    if not isinstance(text, str):
        raise BadRow(key, f"must be a transcript string, got {type(text).__name__}")
    if text.startswith(("Human:", "Assistant:")):
        text = "\n\n" + text
    parts = _TRANSCRIPT.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise BadRow(key, "is not a `\\n\\nHuman: ... \\n\\nAssistant: ...` transcript")
    roles: list[str] = []
    texts: list[str] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        _append(roles, texts, "user" if speaker == "Human" else "assistant", content.strip())
    if roles[0] != "user":
        raise BadRow(key, "transcript must start with `Human:`")
    return texts


def split_pair(key_a: str, a: list[str], key_b: str, b: list[str]) -> tuple[list[str], str, str]:
    """Two conversations that share all but their last (assistant) turn -> (prompt, a, b)."""
    for key, turns in ((key_a, a), (key_b, b)):
        if len(turns) < 2 or len(turns) % 2:
            raise BadRow(key, "must end with an assistant turn after at least one user turn")
    if a[:-1] != b[:-1]:
        raise BadRow(
            key_b, f"does not share the conversation of `{key_a}` up to the last assistant turn"
        )
    return a[:-1], a[-1], b[-1]


def _append(roles: list[str], texts: list[str], role: str, content: str) -> None:
    if roles and roles[-1] == role:
        texts[-1] = f"{texts[-1]}\n\n{content}"
    else:
        roles.append(role)
        texts.append(content)
