"""Instruction data: Stanford Alpaca (`instruction`, `input`, `output`) and Firefly (`input`, `target`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from beaver.data.fields import get_str, scalar_meta
from beaver.data.raw import RawDataset, RawSample


def alpaca_sample(row: Mapping[str, Any]) -> RawSample:
    """An Alpaca row: the instruction, then the input if any (joined by a space, as the reference)."""
    instruction = get_str(row, "instruction")
    extra = get_str(row, "input", optional=True)
    prompt = f"{instruction} {extra}" if extra else instruction
    return RawSample(
        input=prompt,
        answer=get_str(row, "output"),
        meta=scalar_meta(row, {"instruction", "input", "output", "text"}),
    )


class AlpacaDataset(RawDataset):
    """Stanford Alpaca, 52k instructions."""

    NAME = "alpaca"
    ALIASES: ClassVar[tuple[str, ...]] = ("stanford-alpaca", "tatsu-lab/alpaca")
    PATH = "tatsu-lab/alpaca"

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        return alpaca_sample(row)


class FireflyDataset(RawDataset):
    """Firefly 1.1M (Chinese instructions): `input` -> `target`; `kind` is kept as metadata."""

    NAME = "firefly"
    ALIASES: ClassVar[tuple[str, ...]] = ("firefly-train-1.1M", "YeungNLP/firefly-train-1.1M")
    PATH = "YeungNLP/firefly-train-1.1M"

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        return RawSample(
            input=get_str(row, "input"),
            answer=get_str(row, "target"),
            meta=scalar_meta(row, {"input", "target"}),
        )
