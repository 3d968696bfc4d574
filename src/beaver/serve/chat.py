"""`beaver chat`: talk to one or several models in the terminal, tokens streamed as they come.

Every model answers the same user turn. One model (or output that is not a terminal) streams
as plain text under a label; several models in a terminal stream side by side in panels.
Input comes from the terminal (the terminal's own line editing) or from a pipe, one user turn
per line, so a chat can be scripted: `printf 'hi\\n/regenerate\\n' | beaver chat --model PATH`.
Ctrl-C during an answer stops it and drops the turn; Ctrl-C or Ctrl-D at the prompt leaves.
Everything users and models write is printed as plain text (`[/INST]` is not Rich markup). When
a conversation outgrows a model's context, its oldest exchanges are left out of the prompt.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from beaver.config import ChatConfig, SamplingCfg
from beaver.config.evaluation import CHAT_SAMPLING
from beaver.console import plain_console
from beaver.data.templates import resolve_template
from beaver.errors import UserError
from beaver.models.generation import describe_sampling, resolve_sampling
from beaver.models.inference import inference_lm, inference_tokenizer
from beaver.models.loading import check_models
from beaver.models.scorer import Scorer
from beaver.serve.generation import StreamingReply
from beaver.serve.session import (
    COMMANDS,
    Bot,
    ChatSession,
    format_scores,
    parse_command,
    unique_labels,
)

_STYLES = ("bold cyan", "bold magenta", "bold yellow", "bold green")
_FIXED_STYLES = {"red": "bold red", "blue": "bold blue"}


def style_of(label: str, index: int) -> str:
    return _FIXED_STYLES.get(label, _STYLES[index % len(_STYLES)])


class ChatUI:
    """The terminal side of a chat: reads turns, runs commands, streams and scores answers."""

    def __init__(
        self,
        session: ChatSession,
        cfg: ChatConfig,
        scorer: Scorer,
        console: Console,
        stdin: TextIO | None = None,
    ) -> None:
        self.session, self.cfg, self.scorer, self.console = session, cfg, scorer, console
        self.stdin = stdin or sys.stdin
        self.interactive = self.stdin.isatty()
        self.side_by_side = len(session.bots) > 1 and console.is_terminal and cfg.stream
        # Each model samples as the config says, else as its generation_config does, else with
        # beaver's chat defaults (an unset temperature of 1.0 reads as nonsense on small models).
        self.sampling: dict[str, SamplingCfg] = {}
        self.sampling_source: dict[str, str] = {}
        for bot in session.bots:
            resolved, source = resolve_sampling(cfg.generation, bot.model, CHAT_SAMPLING)
            self.sampling[bot.label], self.sampling_source[bot.label] = resolved, source

    # --- input -------------------------------------------------------------------------
    def read_turn(self) -> str | None:
        """The next non-empty line, or None at end of input (Ctrl-D / end of the pipe)."""
        prompt = Text("you> ", style="bold green")
        while True:
            if self.interactive:
                self.console.print(prompt, end="")
                line = read_terminal_line(self.stdin)
                if line is None:
                    return None
            else:
                line = self.stdin.readline()
                if not line:
                    return None
                line = line.rstrip("\n")
                self.console.print(Text.assemble(prompt, line))
            if line.strip():
                return line.strip()

    def loop(self) -> None:
        self.banner()
        while True:
            try:
                line = self.read_turn()
            except (EOFError, KeyboardInterrupt):
                line = None
            if line is None:
                self.console.print()
                return
            command = parse_command(line)
            if command == "/exit":
                return
            if command is None:
                self.session.add_user(line)
                self.answer()
            else:
                self.run_command(command)

    def play(self, rows: list[dict[str, object]]) -> None:
        """Each prompt row as a fresh one-turn conversation (a red-team set, side by side)."""
        self.banner()
        for i, row in enumerate(rows, start=1):
            self.session.reset()
            category = f" ({row['category']})" if row.get("category") is not None else ""
            self.console.print(Text(f"[{i}/{len(rows)}]{category}", style="dim"))
            self.console.print(Text.assemble(("you> ", "bold green"), str(row["prompt"])))
            self.session.add_user(str(row["prompt"]))
            self.answer()

    # --- commands ----------------------------------------------------------------------
    def run_command(self, command: str) -> None:
        actions: dict[str, Callable[[], None]] = {
            "/help": self.help,
            "/reset": self.reset,
            "/clear": self.clear,
            "/regenerate": self.regenerate,
            "/history": self.history,
        }
        action = actions.get(command)
        if action is None:
            self.console.print(
                Text.assemble(("unknown command", "yellow"), "; /help lists the commands")
            )
        else:
            action()

    def banner(self) -> None:
        names = ", ".join(b.label for b in self.session.bots)
        self.console.print(
            Text.assemble(
                ("beaver chat", "bold"), f" with {names}. /help for commands, /exit to leave."
            )
        )
        for label, gen in self.sampling.items():
            line = f"  {label}: {describe_sampling(gen)} (from {self.sampling_source[label]})"
            self.console.print(Text(line, style="dim"))

    def help(self) -> None:
        table = Table(show_header=False, box=None)
        for name, what in COMMANDS.items():
            table.add_row(Text(name, style="bold"), what)
        self.console.print(table)

    def reset(self) -> None:
        self.session.reset()
        self.console.print(Text("conversation reset", style="dim"))

    def clear(self) -> None:
        self.session.reset()
        self.console.clear()
        self.console.print(Text("screen cleared, conversation reset", style="dim"))

    def regenerate(self) -> None:
        if not self.session.drop_last_answers():
            self.console.print(Text("nothing to regenerate yet", style="yellow"))
            return
        self.answer()

    def history(self) -> None:
        lines = self.session.transcript()
        if not lines:
            self.console.print(Text("(the conversation is empty)", style="dim"))
        labels = [b.label for b in self.session.bots]
        for who, text in lines:
            style = "bold green" if who == "you" else style_of(who, labels.index(who))
            self.console.print(Text.assemble(("  ", ""), (f"{who}: ", style), text))

    # --- answers -----------------------------------------------------------------------
    def answer(self) -> None:
        """Every bot answers the pending user turn; Ctrl-C drops the whole turn."""
        mark = [n - 1 for n in self.session.mark()]  # rewinding drops the pending user turn too
        try:
            answers = self._stream_side_by_side() if self.side_by_side else self._stream_plain()
        except KeyboardInterrupt:
            self.session.rewind(mark)
            self.console.print(Text("\n(interrupted: the turn was dropped)", style="yellow"))
            return
        if self.scorer.active and not self.side_by_side:  # side by side: scored in the panels
            for bot, line in zip(self.session.bots, self._score_lines(answers), strict=True):
                self.console.print(Text.assemble((f"  {bot.label}: ", "dim"), line))
        for bot, text in zip(self.session.bots, answers, strict=True):
            self.session.add_answer(bot, text)

    def _stream(self, bot: Bot, on_piece: Callable[[str], None]) -> str:
        gen = self.sampling[bot.label]
        ids, dropped = bot.prompt_ids(self.session.template, gen.max_new_tokens)
        if dropped:
            self.console.print(
                Text(
                    f"({bot.label}: the {dropped} oldest turn(s) no longer fit its context "
                    "and were left out)",
                    style="dim",
                )
            )
        reply = StreamingReply(bot.model, bot.tokenizer, ids, gen)
        pieces: list[str] = []
        try:
            for piece in reply:
                pieces.append(piece)
                on_piece(piece)
        except KeyboardInterrupt:
            reply.stop()
            raise
        return "".join(pieces).strip()

    def _stream_plain(self) -> list[str]:
        answers = []
        for i, bot in enumerate(self.session.bots):
            self.console.print(Text(f"{bot.label}> ", style_of(bot.label, i)), end="")
            if self.cfg.stream:
                text = self._stream(bot, self._write)
            else:
                text = self._stream(bot, lambda _: None)
                self._write(text)
            self.console.print()
            answers.append(text)
        return answers

    def _write(self, piece: str) -> None:
        self.console.out(piece, end="", highlight=False)
        self.console.file.flush()

    def _stream_side_by_side(self) -> list[str]:
        bots = self.session.bots
        texts, notes = ["" for _ in bots], ["" for _ in bots]

        def view() -> RenderableType:
            grid = Table.grid(expand=True, padding=(0, 1))
            for _ in bots:
                grid.add_column(ratio=1)
            grid.add_row(
                *(
                    Panel(
                        Text(t),
                        title=Text(b.label),
                        subtitle=Text(n) if n else None,
                        border_style=style_of(b.label, i),
                    )
                    for i, (b, t, n) in enumerate(zip(bots, texts, notes, strict=True))
                )
            )
            return grid

        with Live(view(), console=self.console, refresh_per_second=15) as live:
            for i, bot in enumerate(bots):

                def update(piece: str, i: int = i) -> None:
                    texts[i] += piece
                    live.update(view())

                texts[i] = self._stream(bot, update)
                live.update(view())
            if self.scorer.active:
                notes[:] = self._score_lines(texts)
                live.update(view())
        return texts

    def _score_lines(self, answers: list[str]) -> list[str]:
        """Scores of the answers to the pending user turn (before they join the history)."""
        conversations = [b.history for b in self.session.bots]
        rewards, costs = self.scorer.score(conversations, answers)
        return [
            format_scores(rewards[i] if rewards else None, costs[i] if costs else None)
            for i in range(len(answers))
        ]


def read_terminal_line(stream: TextIO, poll_s: float = 0.1) -> str | None:
    """One line typed at a terminal (None at Ctrl-D on an empty line); Ctrl-C raises at once.

    Why not `input()`: it blocks in read(2), and a SIGINT that lands after the prompt is printed
    but before the read starts only sets Python's signal flag; the handler (KeyboardInterrupt)
    runs when the read returns, i.e. never at a quiet prompt. Waiting in `select` with a
    timeout returns to the interpreter every `poll_s`, which runs the handler. The terminal is
    in canonical mode, so the fd becomes readable once a whole line (or Ctrl-D) was typed, and
    one read returns at most that line.
    """
    if os.name != "posix":  # no select on a console handle: fall back to the blocking read
        try:
            return input()
        except EOFError:
            return None
    fd = stream.fileno()
    data = b""
    while not data.endswith(b"\n"):
        while not select.select([fd], [], [], poll_s)[0]:
            pass
        chunk = os.read(fd, 4096)
        if not chunk:  # Ctrl-D: on an empty line the end of input, else the end of that line
            if not data:
                return None
            break
        data += chunk
    return data.decode("utf-8", errors="replace").rstrip("\n")


def load_session(cfg: ChatConfig, labels: list[str] | None, console: Console) -> ChatSession:
    """Load every model of `cfg.models` (with a status line on stderr)."""
    check_models("causal LM", **{f"models[{i}]": m for i, m in enumerate(cfg.models)})
    check_models("reward", reward_model=cfg.reward_model)
    check_models("cost", cost_model=cfg.cost_model)
    labels = labels or unique_labels([m.name_or_path for m in cfg.models])
    bots = []
    for label, model in zip(labels, cfg.models, strict=True):
        with console.status(Text(f"loading {model.name_or_path}")):
            tokenizer = inference_tokenizer(model)
            bots.append(Bot(label, inference_lm(model), tokenizer))
    return ChatSession(bots, cfg.template)


def run_chat(cfg: ChatConfig, labels: list[str] | None = None) -> None:
    """Load the models (and score models), then chat until /exit or end of input."""
    console = plain_console()
    status = plain_console(stderr=True)
    rows = None  # a prompt source instead of typed turns: read (and checked) before any model
    if cfg.prompts is not None:
        from beaver.eval.files import load_prompts

        rows = load_prompts(cfg.prompts, cfg.max_prompts, cfg.prompt_column, cfg.category_column)
    session = load_session(cfg, labels, status)
    for bot in session.bots:  # a clear error for `template=chat` now, not at the first turn
        resolve_template(bot.tokenizer, cfg.template)
    scorer = Scorer()
    if cfg.reward_model or cfg.cost_model:
        with status.status("loading score models"):
            scorer = Scorer.load(cfg.reward_model, cfg.cost_model, cfg.template)
    ui = ChatUI(session, cfg, scorer, console)
    if rows is None:
        ui.loop()
    else:
        ui.play(rows)


def run(cfg: ChatConfig) -> None:
    """`beaver chat`."""
    if not cfg.models:
        raise UserError("no model to chat with: pass --model PATH (repeatable) or models=[PATH]")
    run_chat(cfg)
