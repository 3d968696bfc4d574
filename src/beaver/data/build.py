"""`make_datasets`: from a `DataCfg` and a tokenizer to the training and evaluation datasets.

`DataCfg` guarantees a non-empty `train` (the one place that is checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beaver.config.sections import DataCfg, TrainDataCfg
from beaver.data.kinds import KINDS
from beaver.data.loading import Mixed, mix
from beaver.data.plugins import import_modules
from beaver.data.spec import DatasetSpec, parse_specs
from beaver.data.tokenized import DataStats, TokenizedDataset
from beaver.errors import UserError


def dataset_class(kind: str) -> type[TokenizedDataset]:
    """The dataset class of `kind` (supervised, preference, safety_preference, prompt_only)."""
    try:
        return KINDS[kind.replace("-", "_")]
    except KeyError:
        raise UserError(
            f"Unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def _tokenize(
    cls: type[TokenizedDataset],
    samples: Sequence[Any],
    mixed: Mixed,
    what: str,
    data_cfg: TrainDataCfg,
    tokenizer: Any,
    specs: Sequence[DatasetSpec],
) -> TokenizedDataset:
    stats = DataStats(
        num_rows=mixed.num_rows,
        skipped_bad_rows=mixed.skipped_bad_rows,
        duplicate_prompts=mixed.duplicate_prompts,
    )
    ds = cls(
        samples,
        tokenizer,
        max_length=data_cfg.max_length,
        template=data_cfg.template,
        on_bad_row=data_cfg.on_bad_row,
        stats=stats,
    )
    if len(ds) == 0:
        raise UserError(
            f"No {cls.kind} samples left in the {what} data "
            f"({', '.join(map(str, specs))}): {ds.stats.summary()}"
        )
    return ds


def build_dataset(
    kind: str,
    specs: Sequence[str | DatasetSpec],
    data_cfg: TrainDataCfg,
    tokenizer: Any,
    what: str = "given",
) -> TokenizedDataset:
    """One dataset of `kind` from `specs`, read with the options of `data_cfg` (e.g. prompts
    for rollouts, PTX data, an evaluation set). No evaluation split; `what` names the data in
    messages."""
    cls = dataset_class(kind)
    parsed = parse_specs(list(specs))
    mixed = _mix(cls, parsed, data_cfg)
    return _tokenize(cls, mixed.train, mixed, what, data_cfg, tokenizer, parsed)


def _mix(
    cls: type[TokenizedDataset],
    specs: list[DatasetSpec],
    data_cfg: TrainDataCfg,
    eval_split: float = 0.0,
) -> Mixed:
    """The raw samples of `specs` for `cls`, mixed with the options of `data_cfg`."""
    import_modules(data_cfg.imports)
    return mix(
        specs,
        seed=data_cfg.seed,
        columns=data_cfg.columns,
        on_bad_row=data_cfg.on_bad_row,
        check=cls.check,
        eval_split=eval_split,
        dedupe=cls.dedupe,
    )


def make_datasets(
    kind: str, data_cfg: DataCfg, tokenizer: Any
) -> tuple[TokenizedDataset, TokenizedDataset | None]:
    """(train, eval) datasets of `kind`: train from `data_cfg.train` (mixed with `seed`); eval
    from `data_cfg.eval`, else `eval_split` held out of train, else None."""
    cls = dataset_class(kind)
    train_specs = parse_specs(list(data_cfg.train))
    eval_specs = parse_specs(list(data_cfg.eval))
    split = 0.0 if eval_specs else data_cfg.eval_split
    mixed = _mix(cls, train_specs, data_cfg, split)
    train = _tokenize(cls, mixed.train, mixed, "training", data_cfg, tokenizer, train_specs)
    if eval_specs:
        return train, build_dataset(kind, eval_specs, data_cfg, tokenizer)
    if split > 0:
        held = Mixed(num_rows=len(mixed.eval))
        return train, _tokenize(
            cls, mixed.eval, held, "held-out evaluation", data_cfg, tokenizer, train_specs
        )
    return train, None
