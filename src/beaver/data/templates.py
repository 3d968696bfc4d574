"""Prompt formats and the token spans a model is trained on.

Two formats (`data.template`): the tokenizer's chat template (`chat`), or the reference's
(`reference`):

    BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:{answer}<eos> USER: {input2} ASSISTANT:...

`auto` takes the chat template when the tokenizer has one. Chat-rendered text already holds its
special tokens (BOS included when the template writes it), so it is tokenised without adding
any; reference text is tokenised with them (BOS for Llama-style tokenizers), as the reference did.

Trained spans are found in characters, then mapped to tokens through the tokenizer's offsets (or,
for a slow tokenizer, by tokenising text prefixes), so a merge across a span boundary cannot
shift the labels. For a chat template the span of assistant turn k runs from the end of
`render(turns[:k], add_generation_prompt=True)` to the end of `render(turns[:k+1])`, so it holds
the template's end-of-turn marker. Every span must contain the EOS token: where the template
ends a turn with another marker, EOS is inserted after it, so generation stops there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from beaver.data.raw import BadRow
from beaver.errors import UserError

Template = Literal["auto", "chat", "reference"]
Resolved = Literal["chat", "reference"]
Messages = str | Sequence[str] | Sequence[Mapping[str, str]]
Span = tuple[int, int]

PROMPT_BEGIN = "BEGINNING OF CONVERSATION: "
PROMPT_USER = "USER: {input} "
PROMPT_ASSISTANT = "ASSISTANT:"


def resolve_template(tokenizer: Any, template: str = "auto") -> Resolved:
    """`chat` or `reference` for this tokenizer (`auto`: chat when it has a chat template)."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "reference":
        return "reference"
    if template == "chat" and not has_chat:
        raise UserError(
            "data.template is `chat` but the tokenizer has no chat template; use "
            "`auto` or `reference`, or give the tokenizer a chat_template"
        )
    if template not in ("auto", "chat"):
        raise UserError(f"template {template!r} is not one of auto, chat, reference")
    return "chat" if has_chat else "reference"


def eos_token_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise UserError(
            "The tokenizer has no EOS token; beaver appends EOS to every answer "
            "(set eos_token on the tokenizer)"
        )
    return int(eos)


def pad_token_id(tokenizer: Any) -> int:
    """PAD, or EOS when there is none (padding is found from lengths, never from token ids)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else eos_token_id(tokenizer)


def to_messages(messages_or_text: Messages, system: str | None = None) -> list[dict[str, str]]:
    """A string (one user turn), alternating turns, or role/content messages -> messages."""
    if isinstance(messages_or_text, str):
        items: list[dict[str, str]] = [{"role": "user", "content": messages_or_text}]
    else:
        items = []
        for i, m in enumerate(messages_or_text):
            if isinstance(m, str):
                items.append({"role": "user" if i % 2 == 0 else "assistant", "content": m})
            else:
                message = cast(Mapping[str, str], m)
                items.append({"role": str(message["role"]), "content": str(message["content"])})
    if system is not None and not (items and items[0]["role"] == "system"):
        items.insert(0, {"role": "system", "content": system})
    return items


def _reference(messages: list[dict[str, str]], eos: str) -> tuple[str, list[Span]]:
    """Reference-format text and the character spans of the assistant turns (+ EOS)."""
    text, spans = PROMPT_BEGIN, []
    turns = [m for m in messages if m["role"] != "system"]  # the format has no system slot
    for i, m in enumerate(turns):
        if m["role"] == "user":
            text += (
                ("" if i == 0 else " ") + PROMPT_USER.format(input=m["content"]) + PROMPT_ASSISTANT
            )
        else:
            start = len(text)
            text += m["content"] + eos
            spans.append((start, len(text)))
    return text, spans


def _apply(tokenizer: Any, messages: list[dict[str, str]], generation: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation
        )
    except Exception as err:  # jinja raises TemplateError (e.g. 'roles must alternate')
        raise BadRow("input", f"cannot be rendered by the chat template: {err}") from None
    return str(text)


def _chat(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[Span]]:
    """Chat-template text and assistant spans, rendered incrementally (see module docstring)."""
    full = _apply(tokenizer, messages, generation=False)
    spans: list[Span] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _apply(tokenizer, messages[:i], generation=True)
        last = i == len(messages) - 1
        through = full if last else _apply(tokenizer, messages[: i + 1], generation=False)
        if not (through.startswith(before) and full.startswith(through)):
            return full, _search_spans(full, messages, str(tokenizer.eos_token or ""))
        spans.append((len(before), len(through)))
    return full, spans


def _search_spans(full: str, messages: list[dict[str, str]], eos: str) -> list[Span]:
    """Fallback for templates that re-render history: find each answer's text in order."""
    spans, cursor = [], 0
    for m in messages:
        start = full.find(m["content"], cursor)
        if start < 0:
            raise BadRow("input", "cannot locate an assistant turn in the chat template's output")
        end = start + len(m["content"])
        if m["role"] == "assistant":
            if eos and full[end:].lstrip().startswith(eos):
                end = full.index(eos, end) + len(eos)
            spans.append((start, end))
        cursor = end
    return spans


def render(
    tokenizer: Any, messages: list[dict[str, str]], template: Resolved
) -> tuple[str, list[Span]]:
    """Text of a whole conversation and the character spans of its assistant turns."""
    if template == "chat":
        return _chat(tokenizer, messages)
    return _reference(messages, str(tokenizer.eos_token))


def format_prompt(
    tokenizer: Any, messages_or_text: Messages, template: str = "auto", *, system: str | None = None
) -> str:
    """Prompt text ready for generation: the conversation so far, ending where the assistant
    starts (`... ASSISTANT:` or the chat template's generation prompt)."""
    messages = to_messages(messages_or_text, system)
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a prompt must end with a user turn")
    if resolve_template(tokenizer, template) == "chat":
        return _apply(tokenizer, messages, generation=True)
    return _reference(messages, str(tokenizer.eos_token))[0]


def encode_prompt(
    tokenizer: Any, messages_or_text: Messages, template: str = "auto", *, system: str | None = None
) -> list[int]:
    """Token ids of `format_prompt(...)`, with special tokens added as the template needs."""
    text = format_prompt(tokenizer, messages_or_text, template, system=system)
    resolved = resolve_template(tokenizer, template)
    return list(tokenizer(text, add_special_tokens=resolved == "reference")["input_ids"])


def token_ranges(
    tokenizer: Any, text: str, spans: Sequence[Span], add_special_tokens: bool
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` and, per character span, its token range [a, b) (a == b if empty)."""
    try:
        enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    except NotImplementedError:  # a slow (Python) tokenizer has no offsets: tokenise prefixes
        ids = list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

        def count(end: int) -> int:
            return len(tokenizer(text[:end], add_special_tokens=add_special_tokens)["input_ids"])

        return ids, [(count(s), max(count(s), count(e))) for s, e in spans]
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    ranges = []
    for s, e in spans:
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and b > s and a < e]
        if inside:
            ranges.append((inside[0], inside[-1] + 1))
        else:  # nothing to train in the text itself: the EOS will go where the span starts
            at = sum(1 for a, b in offsets if b > a and a < s)
            ranges.append((at, at))
    return ids, ranges


def trained_tokens(
    tokenizer: Any, text: str, spans: Sequence[Span], add_special_tokens: bool, eos_id: int | None
) -> tuple[list[int], list[bool]]:
    """Token ids and a trained flag per token; with `eos_id`, EOS is inserted at the end of any
    span lacking it."""
    ids, ranges = token_ranges(tokenizer, text, spans, add_special_tokens)
    flags = [False] * len(ids)
    for a, b in reversed(ranges):  # from the end, so insertions keep earlier ranges valid
        for i in range(a, b):
            flags[i] = True
        if eos_id is not None and eos_id not in ids[a:b]:
            ids.insert(b, eos_id)
            flags.insert(b, True)
    return ids, flags


def encode_dialogue(
    tokenizer: Any,
    turns: Sequence[str],
    template: Resolved,
    *,
    system: str | None = None,
    last_only: bool = False,
) -> tuple[list[int], list[bool]]:
    """A supervised conversation (alternating, ending with the assistant) -> ids, trained flags.

    Every assistant turn is trained, or with `last_only` just the last (earlier turns are
    context, as for `input` turns + `answer`).
    """
    text, spans = render(tokenizer, to_messages(turns, system), template)
    spans = spans[-1:] if last_only else spans
    return trained_tokens(tokenizer, text, spans, template == "reference", eos_token_id(tokenizer))


def encode_answer(
    tokenizer: Any,
    prompt: str,
    answer: str,
    template: Resolved,
) -> tuple[list[int], list[bool]]:
    """`prompt` (text from `format_prompt`) + answer + EOS -> ids, response flags.

    One response of a preference pair; the score model reads its score at the last token, this
    EOS, as it does on rollouts (the same prompt text, the generated answer, EOS).
    """
    text = prompt + answer
    ids, flags = trained_tokens(
        tokenizer, text, [(len(prompt), len(text))], template == "reference", None
    )
    return [*ids, eos_token_id(tokenizer)], [*flags, True]
