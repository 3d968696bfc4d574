"""The `beaver` command line: one short command per stage.

Every command has the same shape: load YAML + `key.sub=value` overrides, validate (pydantic),
then hand the config to its module's `run(cfg)`. The commands that differ only in module and
schema are rows of `COMMANDS`; `chat`, `arena` and `data inspect` add their own options.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.text import Text

from beaver.config import (
    ChatConfig,
    DPOConfig,
    EvalArenaConfig,
    EvalBigBenchConfig,
    EvalGPT4Config,
    MergeConfig,
    PPOConfig,
    ScoreConfig,
    ScoreEvalConfig,
    ServeScoreConfig,
    SFTConfig,
    ToyEvalConfig,
    TrainStage,
    algorithms_of,
    dump_config,
    load_config,
)
from beaver.config.toyworld import ToyWorldConfig
from beaver.console import plain_console, plain_warnings
from beaver.errors import UserError

app = typer.Typer(
    name="beaver",
    help="Safe RLHF: SFT, reward and cost models, PPO and PPO-Lagrangian, DPO, SafeDPO and SACPO, "
    "chat and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
eval_app = typer.Typer(
    help="Evaluate models: arena, gpt4, bigbench, toyworld, score (rm, cm).", no_args_is_help=True
)
data_app = typer.Typer(help="Look at datasets as the model will see them.", no_args_is_help=True)
serve_app = typer.Typer(help="Serve models over HTTP: score (a score model).", no_args_is_help=True)
configs_app = typer.Typer(
    help="The configs that ship with beaver: list them (no subcommand), show one, copy one out "
    "to edit. `--config NAME` takes a file, else one of these names (`toy/sft`, `ppo-lag`).",
    invoke_without_command=True,
)

err_console = plain_console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", show_default=False)
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Overrides as key.sub=value (e.g. optim.lr=1e-5).", show_default=False),
]
PrintOpt = Annotated[
    bool, typer.Option("--print-config", help="Print the resolved config as YAML and exit.")
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a user's mistake as one short paragraph and exit 2; bugs keep their traceback.

    The message is plain text: it may quote paths, data and overrides (`[/INST]`, `[a`)."""
    try:
        yield
    except UserError as err:
        err_console.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        raise typer.Exit(err.exit_code) from None


@dataclass(frozen=True)
class Command:
    """A command that loads a config and hands it to `beaver.<module>.run(cfg)`."""

    name: str
    module: str
    schema: type[BaseModel]
    help: str
    key: str | None = None
    """A field the command sets (`objective`, `algorithm`)..."""
    value: str | None = None
    """...to this value, unless the config says otherwise..."""
    allowed: frozenset[str] = frozenset()
    """...within these values (default: `value` only)."""

    def check(self, cfg: BaseModel) -> None:
        if self.key is None:
            return
        got, allowed = getattr(cfg, self.key), self.allowed or frozenset({str(self.value)})
        if got not in allowed:
            raise UserError(
                f"`{self.key}: {got}` does not fit this command "
                f"(expected one of {sorted(allowed)}); use the matching command."
            )


def _run(
    cmd: Command,
    config: Path | None,
    overrides: list[str] | None,
    print_config: bool,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Load and validate the config, then run the command (or just print the config)."""
    with user_errors():
        if cmd.key is not None:
            defaults = {cmd.key: cmd.value, **(defaults or {})}
        cfg = load_config(cmd.schema, config, overrides, defaults=defaults)
        cmd.check(cfg)
        if print_config:
            typer.echo(dump_config(cfg), nl=False)
            return
        runner = importlib.import_module(f"beaver.{cmd.module}").run
        if isinstance(cfg, TrainStage):
            from beaver.engine.launch import relaunch_if_requested

            relaunch_if_requested(cfg.launch)
        runner(cfg)


def _register(group: typer.Typer, cmd: Command) -> None:
    def command(
        config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
    ) -> None:
        _run(cmd, config, overrides, print_config)

    group.command(cmd.name, help=cmd.help)(command)


COMMANDS: tuple[tuple[typer.Typer, Command], ...] = (
    (app, Command("toyworld", "toyworld.generate", ToyWorldConfig,
                  "Generate the toy world: datasets, tokenizer, a tiny model and the "
                  "ground-truth judge.")),
    (app, Command("sft", "stages.sft", SFTConfig, "Supervised fine-tuning of a causal LM.")),
    (app, Command("rm", "stages.score", ScoreConfig,
                  "Train a reward model (helpfulness) on preference pairs.",
                  "objective", "reward")),
    (app, Command("cm", "stages.score", ScoreConfig,
                  "Train a cost model (harm) on safety-preference pairs.", "objective", "cost")),
    (app, Command("ppo", "stages.ppo", PPOConfig,
                  "RLHF with PPO (or critic-free RLOO) against a reward model.",
                  "algorithm", "ppo", algorithms_of("ppo"))),
    (app, Command("ppo-lag", "stages.ppo", PPOConfig,
                  "Safe RLHF: PPO-Lagrangian under a cost constraint (or critic-free "
                  "RLOO-Lagrangian, or the reward-shaping baseline).", "algorithm", "ppo-lag",
                  algorithms_of("ppo-lag"))),
    (app, Command("dpo", "stages.dpo", DPOConfig,
                  "Offline preference optimisation: DPO, SafeDPO or SACPO (`algorithm`), no "
                  "reward model.")),
    (app, Command("merge", "models.merge", MergeConfig,
                  "Merge models linearly (P-SACPO): weights in, a plain HF model out.")),
    (eval_app, Command("arena", "eval.arena", EvalArenaConfig,
                       "Red vs blue on a prompt dataset, scored by reward and cost models. "
                       "Sampling: `generation.*`, else each model's generation_config, else "
                       "greedy.")),
    (eval_app, Command("gpt4", "eval.gpt4", EvalGPT4Config,
                       "Pairwise judging by an OpenAI-compatible chat API (key from "
                       "$OPENAI_API_KEY). Sampling: `generation.*`, else each model's "
                       "generation_config, else greedy.")),
    (eval_app, Command("bigbench", "eval.bigbench", EvalBigBenchConfig,
                       "BIG-bench tasks from their JSON task files.")),
    (eval_app, Command("toyworld", "eval.toyworld", ToyEvalConfig,
                       "Judge policies on the toy world's held-out prompts (helpfulness, harm, "
                       "learned scores).")),
    (eval_app, Command("score", "eval.score", ScoreEvalConfig,
                       "Score a (safety-)preference dataset with a reward or cost model: "
                       "accuracy, scores file, histogram.", "objective", "auto",
                       frozenset({"auto", "reward", "cost"}))),
    (eval_app, Command("rm", "eval.score", ScoreEvalConfig,
                       "`eval score` of a reward model (a cost model is refused).",
                       "objective", "reward")),
    (eval_app, Command("cm", "eval.score", ScoreEvalConfig,
                       "`eval score` of a cost model: also sign accuracy (a reward model is "
                       "refused).", "objective", "cost")),
    (serve_app, Command("score", "serve.score", ServeScoreConfig,
                        "Serve a score model over HTTP (POST /score: prompts and responses in, "
                        "scores out), as an `http` cost source reads it.")),
)  # fmt: skip
"""The commands that differ only in module and schema, in the order `--help` lists them."""

for _group, _cmd in COMMANDS:
    _register(_group, _cmd)
_CHAT = Command("chat", "serve.chat", ChatConfig, "")
_ARENA = Command("arena", "serve.arena", ChatConfig, "")
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")
app.add_typer(serve_app, name="serve")
app.add_typer(configs_app, name="configs")


@configs_app.callback()
def configs_list(ctx: typer.Context) -> None:
    """List the built-in configs, each with the first line of its header comment."""
    if ctx.invoked_subcommand is not None:
        return
    from beaver.config.builtin import builtin_names, describe

    names = builtin_names()
    width = max(map(len, names))
    for name in names:
        typer.echo(f"{name:<{width}}  {describe(name)}".rstrip())


ConfigName = Annotated[str, typer.Argument(help="Built-in config name, e.g. toy/sft or ppo-lag.")]


@configs_app.command("show")
def configs_show(name: ConfigName) -> None:
    """Print a built-in config."""
    from beaver.config.builtin import builtin_or_error

    with user_errors():
        typer.echo(builtin_or_error(name).read_text(), nl=False)


@configs_app.command("copy")
def configs_copy(
    name: ConfigName,
    dest: Annotated[
        Path | None, typer.Argument(help="File or folder to copy to (default: here).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Copy a built-in config out to edit it (then: `beaver CMD --config FILE`)."""
    from beaver.config.builtin import copy_builtin

    with user_errors():
        typer.echo(f"wrote {copy_builtin(name, dest, force)}")


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the demo's runs to.")
    ] = Path("output/demo"),
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="DPO, SafeDPO, SACPO and P-SACPO beside PPO-Lag, with each method's cost "
            "(reuses an earlier demo's world, SFT, reward and cost models in the same folder).",
        ),
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="A tiny world and a few steps per stage: checks that it runs, in "
            "minutes; learns nothing to speak of.",
        ),
    ] = False,
) -> None:
    """The toy-world pipeline from the built-in toy configs, ending with the judge's table."""
    from beaver.demo import run as run_demo

    with user_errors():
        run_demo(output, offline=offline, quick=quick)


@app.command()
def sweep(
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    print_config: PrintOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every run's config, list the commands, stop.")
    ] = False,
) -> None:
    """Many runs from one config (a grid of overrides), each evaluated; one table, one frontier."""
    from beaver.config.sweep import SweepConfig

    with user_errors():
        cfg = load_config(SweepConfig, config, overrides)
        if print_config:
            typer.echo(dump_config(cfg), nl=False)
            return
        from beaver.sweep.run import run as run_sweep

        code = run_sweep(cfg, dry_run=dry_run)
    raise typer.Exit(code)


ModelOpt = Annotated[
    list[str] | None, typer.Option("--model", "-m", help="Model folder or hub name (repeatable).")
]


@app.command()
def chat(
    model: ModelOpt = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    print_config: PrintOpt = False,
) -> None:
    """Chat with one or several models side by side in the terminal.

    Sampling: `generation.*` as given; an option left unset is the model's own (its
    generation_config, when it sets do_sample), else beaver's chat defaults: temperature 0.7,
    top-p 0.9 (as configs/chat.yaml)."""
    _run(_CHAT, config, overrides, print_config, defaults={"models": model} if model else None)


@app.command()
def arena(
    red: Annotated[str | None, typer.Option(help="Red model.")] = None,
    blue: Annotated[str | None, typer.Option(help="Blue model.")] = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    print_config: PrintOpt = False,
) -> None:
    """Red vs blue: two models answer each prompt side by side, optionally scored live.

    Sampling as in `beaver chat`: `generation.*` as given, else each model's generation_config,
    else temperature 0.7, top-p 0.9. `prompts=FILE_OR_SPEC` (with `prompt_column`,
    `category_column`) plays a red-team set instead of typed turns."""
    models = [m for m in (red, blue) if m]
    _run(_ARENA, config, overrides, print_config, defaults={"models": models} if models else None)


@data_app.command("inspect")
def data_inspect(
    spec: Annotated[list[str], typer.Argument(help="Dataset specs NAME[:PROP[:PATH]].")],
    kind: Annotated[
        str, typer.Option(help="auto | supervised | preference | safety_preference | prompt_only")
    ] = "auto",
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model folder or hub name whose tokenizer to use."),
    ] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer (overrides --model).")] = None,
    max_length: Annotated[int, typer.Option(help="Longest tokenised sample.")] = 512,
    template: Annotated[str, typer.Option(help="auto | chat | reference")] = "auto",
    samples: Annotated[int, typer.Option("--samples", "-n", help="Samples to render.")] = 3,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module registering custom datasets (repeatable)."),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(help="Column mapping FIELD=COLUMN for json/jsonl/csv/parquet (repeatable)."),
    ] = None,
    on_bad_row: Annotated[str, typer.Option(help="error | skip")] = "error",
) -> None:
    """Sizes, rendered samples with trained spans highlighted, length statistics."""
    with user_errors():
        from beaver.data.inspect import run as inspect_data

        if on_bad_row not in ("error", "skip"):
            raise UserError(f"--on-bad-row must be error or skip, got {on_bad_row!r}")
        mapping = dict(c.partition("=")[::2] for c in column or [])
        inspect_data(
            spec,
            kind=kind,
            tokenizer=tokenizer or model,
            max_length=max_length,
            template=template,
            num_samples=samples,
            imports=imports or [],
            columns=mapping,
            on_bad_row=on_bad_row,  # type: ignore[arg-type]
        )


def main() -> None:
    """Console-script entry point."""
    # Per-file progress bars of transformers / hub drown beaver's own console output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    plain_warnings()
    # `deepspeed --module beaver ...` appends --local_rank=N (LOCAL_RANK is in the environment too)
    sys.argv = [a for a in sys.argv if not a.startswith("--local_rank")]
    app(prog_name="beaver")


if __name__ == "__main__":
    main()
