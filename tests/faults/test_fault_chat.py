"""Chat faults: a Ctrl-C at a quiet prompt always leaves, piped text is echoed verbatim, and a
conversation longer than the model's context still gets answered."""

from __future__ import annotations

import _thread
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from beaver.config import ChatConfig, ModelCfg
from beaver.console import plain_console
from beaver.data.templates import encode_prompt
from beaver.models.inference import inference_lm, inference_tokenizer
from beaver.models.scorer import Scorer
from beaver.serve.chat import ChatUI, run_chat
from beaver.serve.session import Bot, ChatSession


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Python's KeyboardInterrupt handler on SIGINT, as in a program started at a terminal.

    A test run started in the background by a non-interactive shell inherits SIGINT ignored,
    Python then installs no handler, and `_thread.interrupt_main()` does nothing for a signal
    Python does not handle: the test would time out although the chat is right.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_ctrl_c")
def test_ctrl_c_just_before_the_prompt_reads_is_handled(monkeypatch: pytest.MonkeyPatch) -> None:
    # The race behind a chat that sometimes ignored Ctrl-C at the prompt: the SIGINT lands after
    # the prompt is printed but before the read starts, so it interrupts no system call and only
    # sets Python's signal flag. `_thread.interrupt_main()` sets exactly that flag (no syscall is
    # interrupted); a blocking read then waits until the next line arrives, which `rescue`
    # types after 20 s so that a failing test ends.
    master, slave = os.openpty()
    terminal = open(slave, encoding="utf-8")  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "stdin", terminal)  # `input()` reads sys.stdin
    ui = ChatUI(
        ChatSession([]), ChatConfig(), Scorer(), plain_console(file=io.StringIO()), terminal
    )
    assert ui.interactive
    rescued = threading.Event()

    def rescue() -> None:
        rescued.set()
        os.write(master, b"typed later\n")

    late = threading.Timer(20.0, rescue)
    try:
        with pytest.raises(KeyboardInterrupt):
            threading.Timer(0.2, _thread.interrupt_main).start()
            late.start()
            ui.read_turn()
        assert not rescued.is_set(), "the Ctrl-C was handled only when a line arrived"
    finally:
        late.cancel()
        terminal.close()
        os.close(master)


def test_a_terminal_line_and_ctrl_d() -> None:
    master, slave = os.openpty()
    with open(slave, encoding="utf-8") as terminal:
        ui = ChatUI(
            ChatSession([]), ChatConfig(), Scorer(), plain_console(file=io.StringIO()), terminal
        )
        os.write(master, "  [/INST] héllo  \n".encode())
        assert ui.read_turn() == "[/INST] héllo"
        os.write(master, b"\x04")  # Ctrl-D on an empty line
        assert ui.read_turn() is None
    os.close(master)


def test_piped_turns_with_markup_are_echoed_verbatim(
    toy_world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    turns = "[/INST] what about [b]the garden[/b] :smile: ?\n/nope\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(turns))
    cfg = ChatConfig.model_validate(
        {"models": [str(toy_world / "model")], "generation": {"max_new_tokens": 3}}
    )
    run_chat(cfg)
    out = capsys.readouterr().out
    assert "you> [/INST] what about [b]the garden[/b] :smile: ?" in out
    assert "unknown command; /help lists the commands" in out


def test_history_beyond_the_context_drops_the_oldest_turns(toy_world: Path) -> None:
    model = ModelCfg(name_or_path=str(toy_world / "model"))
    bot = Bot("toy", inference_lm(model), inference_tokenizer(model))
    limit = bot.model.config.max_position_embeddings  # 256 tokens
    turn = " ".join(["tell me about the garden"] * 8)  # about 45 tokens a turn
    for i in range(12):
        bot.history += [
            {"role": "user", "content": f"{i} {turn}"},
            {"role": "assistant", "content": turn},
        ]
    bot.history.append({"role": "user", "content": "and the last one ?"})
    ids, dropped = bot.prompt_ids("chat", max_new_tokens=32)
    assert len(ids) + 32 <= limit and dropped > 0
    # exactly the newest exchanges that fit: one more would not
    assert ids == encode_prompt(bot.tokenizer, bot.history[2 * dropped :], "chat")
    longer = encode_prompt(bot.tokenizer, bot.history[2 * (dropped - 1) :], "chat")
    assert len(longer) + 32 > limit
    assert len(bot.history) == 25  # the history itself keeps every turn
