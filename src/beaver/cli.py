"""The `beaver` command line: one short command per stage.

Each training command has the same shape: load YAML + `key.sub=value` overrides, validate
(pydantic), then hand the config to its stage's `run(cfg)`. Nothing else lives here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from beaver.config import ChatConfig, PPOConfig, ScoreConfig, SFTConfig, dump_config, load_config
from beaver.errors import UserError

app = typer.Typer(
    name="beaver",
    help="Safe RLHF: SFT, reward and cost models, PPO and PPO-Lagrangian, chat and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
eval_app = typer.Typer(help="Evaluate models: arena, gpt4, bigbench, rm, cm.", no_args_is_help=True)
data_app = typer.Typer(help="Look at datasets as the model will see them.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")

err_console = Console(stderr=True)

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
    """Print a user's mistake as one short paragraph and exit 2; bugs keep their traceback."""
    try:
        yield
    except UserError as err:
        err_console.print(
            f"[bold red]error:[/] {err}", highlight=False, markup=True, soft_wrap=True
        )
        raise typer.Exit(err.exit_code) from None


def _stage_runner(module: str) -> Any:
    """`beaver.stages.<module>.run`, or a clear 'not built yet' exit for a stage still to come."""
    name = f"beaver.{module}"
    if importlib.util.find_spec(name) is None:
        raise UserError(
            f"`{module.rsplit('.', 1)[-1]}` is not built yet in this version of beaver."
        )
    return importlib.import_module(name).run


def _run(
    module: str,
    schema: type[BaseModel],
    config: Path | None,
    overrides: list[str] | None,
    print_config: bool,
    defaults: dict[str, Any] | None = None,
    allowed: tuple[str, set[str]] | None = None,
) -> None:
    """Load and validate the config, then run the stage (or just print the config)."""
    with user_errors():
        cfg = load_config(schema, config, overrides, defaults=defaults)
        if allowed is not None:
            key, values = allowed
            if getattr(cfg, key) not in values:
                raise UserError(
                    f"`{key}: {getattr(cfg, key)}` does not fit this command "
                    f"(expected one of {sorted(values)}); use the matching command."
                )
        if print_config:
            typer.echo(dump_config(cfg), nl=False)
            return
        runner = _stage_runner(module)
        if isinstance(cfg, SFTConfig | ScoreConfig | PPOConfig):
            from beaver.engine.launch import relaunch_if_requested

            relaunch_if_requested(cfg.launch)
        runner(cfg)


@app.command()
def toyworld(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Generate the toy world: datasets, tokenizer, a tiny model and the ground-truth judge."""
    from beaver.config.toyworld import ToyWorldConfig

    _run("toyworld.generate", ToyWorldConfig, config, overrides, print_config)


@app.command()
def sft(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Supervised fine-tuning of a causal LM."""
    _run("stages.sft", SFTConfig, config, overrides, print_config)


@app.command()
def rm(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Train a reward model (helpfulness) on preference pairs."""
    _run(
        "stages.score",
        ScoreConfig,
        config,
        overrides,
        print_config,
        defaults={"objective": "reward"},
        allowed=("objective", {"reward"}),
    )


@app.command()
def cm(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Train a cost model (harm) on safety-preference pairs."""
    _run(
        "stages.score",
        ScoreConfig,
        config,
        overrides,
        print_config,
        defaults={"objective": "cost"},
        allowed=("objective", {"cost"}),
    )


@app.command()
def ppo(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """RLHF with PPO against a reward model."""
    _run(
        "stages.ppo",
        PPOConfig,
        config,
        overrides,
        print_config,
        defaults={"algorithm": "ppo"},
        allowed=("algorithm", {"ppo"}),
    )


@app.command("ppo-lag")
def ppo_lag(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Safe RLHF: PPO-Lagrangian under a cost constraint (or the reward-shaping baseline)."""
    _run(
        "stages.ppo",
        PPOConfig,
        config,
        overrides,
        print_config,
        defaults={"algorithm": "ppo-lag"},
        allowed=("algorithm", {"ppo-lag", "reward-shaping"}),
    )


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
    """Chat with one or several models side by side in the terminal."""
    _run(
        "serve.chat",
        ChatConfig,
        config,
        overrides,
        print_config,
        defaults={"models": model} if model else None,
    )


@app.command()
def arena(
    red: Annotated[str | None, typer.Option(help="Red model.")] = None,
    blue: Annotated[str | None, typer.Option(help="Blue model.")] = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    print_config: PrintOpt = False,
) -> None:
    """Red vs blue: two models answer each prompt side by side, optionally scored live."""
    models = [m for m in (red, blue) if m]
    _run(
        "serve.arena",
        ChatConfig,
        config,
        overrides,
        print_config,
        defaults={"models": models} if models else None,
    )


def _not_built(name: str) -> None:
    with user_errors():
        raise UserError(f"`{name}` is not built yet in this version of beaver.")


@eval_app.command("arena")
def eval_arena(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Red vs blue on a prompt dataset, scored by reward and cost models."""
    from beaver.config.evaluation import EvalArenaConfig

    _run("eval.arena", EvalArenaConfig, config, overrides, print_config)


@eval_app.command("gpt4")
def eval_gpt4(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Pairwise judging by an OpenAI-compatible chat API (key from $OPENAI_API_KEY)."""
    from beaver.config.evaluation import EvalGPT4Config

    _run("eval.gpt4", EvalGPT4Config, config, overrides, print_config)


@eval_app.command("bigbench")
def eval_bigbench(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """BIG-bench tasks from their JSON task files."""
    from beaver.config.evaluation import EvalBigBenchConfig

    _run("eval.bigbench", EvalBigBenchConfig, config, overrides, print_config)


@eval_app.command("rm")
def eval_rm(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Score a preference dataset with a reward model: accuracy, scores file, histogram."""
    from beaver.config.evaluation import ScoreEvalConfig

    _run("eval.score", ScoreEvalConfig, config, overrides, print_config)


@eval_app.command("cm")
def eval_cm(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Score a safety-preference dataset with a cost model: accuracy, sign accuracy, histogram."""
    from beaver.config.evaluation import ScoreEvalConfig

    _run("eval.score", ScoreEvalConfig, config, overrides, print_config)


@eval_app.command("toyworld")
def eval_toyworld(
    config: ConfigOpt = None, overrides: OverridesArg = None, print_config: PrintOpt = False
) -> None:
    """Judge policies on the toy world's held-out prompts (helpfulness, harm, learned scores)."""
    from beaver.config.evaluation import ToyEvalConfig

    _run("eval.toyworld", ToyEvalConfig, config, overrides, print_config)


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
    # `deepspeed --module beaver ...` appends --local_rank=N (LOCAL_RANK is in the environment too)
    sys.argv = [a for a in sys.argv if not a.startswith("--local_rank")]
    app(prog_name="beaver")


if __name__ == "__main__":
    main()
