"""PKU-SafeRLHF preference pairs with safety labels (and its 30K / 10K samples).

Columns: `prompt`, `response_0`, `response_1`, `is_response_{0,1}_safe`, `better_response_id`,
`safer_response_id`; the v1.0 release (June 2024) adds `response_{0,1}_harm_category`
({category: flagged}), `response_{0,1}_severity_level` and `*_source`, all read when present.

The hub re-released PKU-SafeRLHF under the same name: `PKU-SafeRLHF/*` is the current release
(v1.0, 83.4k pairs), `PKU-SafeRLHF-v0/*` is pinned to the hub's `v0` revision, the data the
Safe RLHF paper and the reference scripts used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from beaver.data.fields import get_bool, get_int, get_str, harm_categories, scalar_meta
from beaver.data.raw import RawDataset, RawSample

_COLUMNS = {
    "prompt",
    "response_0",
    "response_1",
    "is_response_0_safe",
    "is_response_1_safe",
    "better_response_id",
    "safer_response_id",
    "response_0_harm_category",
    "response_1_harm_category",
    "response_0_severity_level",
    "response_1_severity_level",
}


def safe_rlhf_sample(row: Mapping[str, Any]) -> RawSample:
    """A row in the PKU-SafeRLHF schema (old or v1.0 columns)."""
    better = get_int(row, "better_response_id", choices=(0, 1))
    safer = get_int(row, "safer_response_id", choices=(0, 1))
    return RawSample(
        input=get_str(row, "prompt"),
        answer=get_str(row, "response_0"),
        other_answer=get_str(row, "response_1"),
        better=better == 0,
        safer=safer == 0,
        is_safe=get_bool(row, "is_response_0_safe"),
        is_other_safe=get_bool(row, "is_response_1_safe"),
        category=harm_categories(row, "response_0_harm_category"),
        other_category=harm_categories(row, "response_1_harm_category"),
        severity=get_int(row, "response_0_severity_level", optional=True),
        other_severity=get_int(row, "response_1_severity_level", optional=True),
        meta=scalar_meta(row, _COLUMNS | {"response_0_sha256", "response_1_sha256"}),
    )


class SafeRLHFDataset(RawDataset):
    """Any dataset in the PKU-SafeRLHF schema (old or v1.0 columns)."""

    PATH = "PKU-Alignment/PKU-SafeRLHF"

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        return safe_rlhf_sample(row)


class SafeRLHFTrain(SafeRLHFDataset):
    NAME = "PKU-SafeRLHF/train"
    ALIASES: ClassVar[tuple[str, ...]] = ("PKU-Alignment/PKU-SafeRLHF/train", "PKU-SafeRLHF")


class SafeRLHFTest(SafeRLHFDataset):
    NAME = "PKU-SafeRLHF/test"
    ALIASES = ("PKU-Alignment/PKU-SafeRLHF/test",)
    SPLIT = "test"


class SafeRLHFv0Train(SafeRLHFDataset):
    """The original release (the Safe RLHF paper's data), pinned to the hub's `v0` revision."""

    NAME = "PKU-SafeRLHF-v0/train"
    REVISION = "v0"


class SafeRLHFv0Test(SafeRLHFv0Train):
    NAME = "PKU-SafeRLHF-v0/test"
    SPLIT = "test"


class SafeRLHF30KTrain(SafeRLHFDataset):
    NAME = "PKU-SafeRLHF-30K/train"
    ALIASES: ClassVar[tuple[str, ...]] = ("PKU-Alignment/PKU-SafeRLHF-30K/train",)
    PATH = "PKU-Alignment/PKU-SafeRLHF-30K"


class SafeRLHF30KTest(SafeRLHF30KTrain):
    NAME = "PKU-SafeRLHF-30K/test"
    ALIASES = ("PKU-Alignment/PKU-SafeRLHF-30K/test",)
    SPLIT = "test"


class SafeRLHF10KTrain(SafeRLHFDataset):
    NAME = "PKU-SafeRLHF-10K/train"
    ALIASES = ("PKU-Alignment/PKU-SafeRLHF-10K/train",)
    PATH = "PKU-Alignment/PKU-SafeRLHF-10K"
