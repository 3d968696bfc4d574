"""`beaver data inspect`: the data exactly as a model will see it.

Prints each source's size, the dataset statistics (truncated, dropped, skipped counts), the
token length distribution against `max_length`, and a few samples rendered token by token with
the trained spans highlighted (for pairs: each response, scored at its final EOS). Without a
tokenizer, it prints the raw samples instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from beaver.console import plain_console
from beaver.data.build import dataset_class
from beaver.data.kinds import KINDS
from beaver.data.loading import DataWarning, OnBadRow, dedupe_prompts, mix
from beaver.data.plugins import import_modules
from beaver.data.raw import RawSample
from beaver.data.spec import parse_specs
from beaver.data.tokenized import DataStats, TokenizedDataset
from beaver.errors import UserError

TRAINED = "bold green"
OTHER = "dim"


@dataclass
class InspectResult:
    """What `run` found (also printed)."""

    kind: str
    num_samples: int
    stats: DataStats | None = None
    lengths: dict[str, float] = field(default_factory=dict)


def detect_kind(sample: RawSample) -> str:
    """The richest kind a sample supports: safety pairs, pairs, supervised, or prompts."""
    if sample.other_answer is not None:
        signs = (sample.safer, sample.is_safe, sample.is_other_safe)
        return "safety_preference" if None not in signs else "preference"
    if sample.dialogue is not None or sample.answer is not None:
        return "supervised"
    return "prompt_only"


def length_stats(lengths: Sequence[int], max_length: int) -> dict[str, float]:
    """count, min, mean, p50, p90, p99, max, and how many exceed `max_length`."""
    if not lengths:
        return {}
    ordered = sorted(lengths)

    def pct(p: float) -> float:
        return float(ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))])

    return {
        "count": len(ordered),
        "min": ordered[0],
        "mean": sum(ordered) / len(ordered),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": ordered[-1],
        "over_max_length": sum(n > max_length for n in ordered),
    }


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a model folder or hub name (`beaver.models.loading`)."""
    from beaver.config.sections import ModelCfg
    from beaver.models.loading import load_tokenizer as load

    return load(ModelCfg(name_or_path=name, trust_remote_code=trust_remote_code))


def render_tokens(tokenizer: Any, ids: list[int], flags: list[bool]) -> Text:
    """Token runs decoded in order; trained runs highlighted (decoded by prefix differences so
    that spacing survives the cuts between runs)."""
    text = Text()
    start, previous = 0, ""
    for end in range(1, len(ids) + 1):
        if end < len(ids) and flags[end] == flags[start]:
            continue
        decoded = tokenizer.decode(ids[:end], skip_special_tokens=False)
        piece = (
            decoded[len(previous) :]
            if decoded.startswith(previous)
            else tokenizer.decode(ids[start:end], skip_special_tokens=False)
        )
        text.append(piece, style=TRAINED if flags[start] else OTHER)
        start, previous = end, decoded
    return text


def _raw_panel(index: int, sample: RawSample) -> Panel:
    body = Table.grid(padding=(0, 1))
    for name, value in vars(sample).items():
        if value not in (None, {}, []) and name not in ("dataset", "row"):
            body.add_row(
                Text(name, style="bold"), Text(repr(value) if not isinstance(value, str) else value)
            )
    return Panel(body, title=Text(f"sample {index} · {sample.where()}"), title_align="left")


def run(
    specs: Sequence[str],
    *,
    kind: str = "auto",
    tokenizer: Any = None,
    max_length: int = 512,
    template: str = "auto",
    num_samples: int = 3,
    imports: Sequence[str] = (),
    columns: dict[str, str] | None = None,
    on_bad_row: OnBadRow = "error",
    seed: int = 42,
    trust_remote_code: bool = False,
    console: Console | None = None,
) -> InspectResult:
    """Inspect `specs` as `kind` data (auto: from the first sample) for `tokenizer` (a name or
    path, or a loaded tokenizer; None prints raw samples only)."""
    console = console or plain_console()
    with warnings.catch_warnings():  # the counts are printed below, with the sizes
        warnings.simplefilter("ignore", DataWarning)
        return _run(
            specs,
            kind,
            tokenizer,
            max_length,
            template,
            num_samples,
            imports,
            columns,
            on_bad_row,
            seed,
            trust_remote_code,
            console,
        )


def _run(
    specs: Sequence[str],
    kind: str,
    tokenizer: Any,
    max_length: int,
    template: str,
    num_samples: int,
    imports: Sequence[str],
    columns: dict[str, str] | None,
    on_bad_row: OnBadRow,
    seed: int,
    trust_remote_code: bool,
    console: Console,
) -> InspectResult:
    import_modules(imports)
    if kind != "auto":
        dataset_class(kind)  # a clear error before any loading
    mixed = mix(parse_specs(list(specs)), seed=seed, columns=columns, on_bad_row=on_bad_row)
    if not mixed.train:
        raise UserError(f"No samples in {', '.join(specs)}")
    kind = detect_kind(mixed.train[0]) if kind == "auto" else kind.replace("-", "_")
    samples, duplicates = mixed.train, 0
    if KINDS[kind].dedupe:
        samples, duplicates = dedupe_prompts(samples)

    table = Table("spec", "path", "rows", "skipped", "samples", title=f"{kind} data")
    for src in mixed.sources:
        table.add_row(
            src["spec"], str(src["path"]), str(src["rows"]), str(src["skipped"]), str(src["train"])
        )
    console.print(table)
    if tokenizer is None:
        console.print(
            f"{len(samples)} raw samples (give --model or --tokenizer for token "
            f"statistics and rendered samples)"
        )
        for i, sample in enumerate(samples[:num_samples]):
            console.print(_raw_panel(i, sample))
        return InspectResult(kind, len(samples))

    tok = load_tokenizer(tokenizer, trust_remote_code) if isinstance(tokenizer, str) else tokenizer
    stats = DataStats(
        num_rows=mixed.num_rows,
        skipped_bad_rows=mixed.skipped_bad_rows,
        duplicate_prompts=duplicates,
    )
    ds: TokenizedDataset = KINDS[kind](
        samples, tok, max_length=max_length, template=template, on_bad_row=on_bad_row, stats=stats
    )
    lengths = length_stats(ds.lengths, max_length)
    console.print(
        Text.assemble(
            "template: ",
            (ds.template, "bold"),
            f" · max_length {max_length} · {ds.stats.summary()}",
        )
    )
    if lengths:
        lt = Table(*lengths, title="token lengths (before truncation)")
        lt.add_row(
            *(
                f"{v:.1f}" if isinstance(v, float) and not v.is_integer() else f"{v:g}"
                for v in lengths.values()
            )
        )
        console.print(lt)
    legend = Text("legend: ")
    legend.append("trained / scored response", style=TRAINED)
    legend.append(" · ")
    legend.append("not trained", style=OTHER)
    console.print(legend)
    for i in range(min(num_samples, len(ds))):
        where = ds.samples[i].where()
        for label, ids, flags in ds.highlight(i):
            console.print(
                Panel(
                    render_tokens(tok, ids, flags),
                    title_align="left",
                    title=Text(f"sample {i} · {label} · {len(ids)} tokens · {where}"),
                )
            )
    return InspectResult(kind, len(ds), ds.stats, lengths)
