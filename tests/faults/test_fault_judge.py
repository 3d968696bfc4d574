"""Judge faults: only well-formed judgements are cached, a reply that is not one is a failure
retried by the next run, and a run that could judge nothing exits non-zero with counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faulthelpers import beaver
from judge_fake import FakeJudge, default_reply

N = 4  # prompts; 2 criteria -> 8 requests
KEY = {"OPENAI_API_KEY": "sk-fault", "OPENAI_BASE_URL": ""}
EMPTY_CHOICES = 'RAW:{"id": "x", "object": "chat.completion", "created": 0, "choices": []}'


@pytest.fixture
def judge() -> Iterator[FakeJudge]:
    fake = FakeJudge()
    yield fake
    fake.close()


def _args(tmp_path: Path, judge: FakeJudge) -> list[str]:
    red, blue = tmp_path / "red.jsonl", tmp_path / "blue.jsonl"
    prompts = [f"question number {i}?" for i in range(N)]
    red.write_text("".join(json.dumps({"prompt": p, "answer": "here"}) + "\n" for p in prompts))
    blue.write_text(
        "".join(json.dumps({"prompt": p, "answer": "I cannot"}) + "\n" for p in prompts)
    )
    return [
        "eval", "gpt4", f"red_answers={red}", f"blue_answers={blue}", f"judge.base_url={judge.url}",
        "judge.max_retries=0", f"output_dir={tmp_path / 'out'}",
    ]  # fmt: skip


def _cache(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "out" / "judge_cache.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_replies_that_are_no_judgement_are_not_cached_and_asked_again(
    tmp_path: Path, judge: FakeJudge
) -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str]:
        text = body["messages"][-1]["content"]
        if "number 1" in text:
            return 200, "Both answers have merit; I would rather not put numbers on them."
        if "number 2" in text:
            return 200, EMPTY_CHOICES  # valid JSON, no choices: no content at all
        return default_reply(body)

    judge.reply = reply
    args = _args(tmp_path, judge)
    out = beaver(*args, env=KEY, code=0)
    assert "4 of 8 requests could not be judged" in out.output
    assert len(_cache(tmp_path)) == 4  # only the well-formed judgements
    assert "blue losses" in out.output and "losss" not in out.output
    judge.reply = default_reply  # the judge behaves again: only the 4 failures are asked again
    sent = len(judge.bodies)
    out = beaver(*args, env=KEY, code=0)
    assert len(judge.bodies) == sent + 4
    assert "could not be judged" not in out.output
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgements.jsonl").read_text().splitlines()]
    assert all(r[c]["status"] == "ok" for r in rows for c in ("harmlessness", "helpfulness"))


def test_a_cached_reply_that_is_no_judgement_is_asked_again(
    tmp_path: Path, judge: FakeJudge
) -> None:
    args = _args(tmp_path, judge)
    beaver(*args, env=KEY, code=0)
    cache = tmp_path / "out" / "judge_cache.jsonl"
    # A cache written by an older version kept empty replies: they must not count as answers.
    rows = _cache(tmp_path)
    cache.write_text("".join(json.dumps({**r, "content": ""}) + "\n" for r in rows))
    sent = len(judge.bodies)
    beaver(*args, env=KEY, code=0)
    assert len(judge.bodies) == sent + 8


@pytest.mark.parametrize(
    ("behaviour", "counts"),
    [((500, "down"), "8 failed after retries"), ((200, "no idea"), "8 were not a judgement")],
)
def test_nothing_judged_exits_non_zero_with_counts(
    tmp_path: Path, judge: FakeJudge, behaviour: tuple[int, str], counts: str
) -> None:
    judge.reply = lambda body: behaviour
    out = beaver(*_args(tmp_path, judge), env=KEY, code=1)
    assert "none of the 8 requests" in out.output and counts in out.output
    assert _cache(tmp_path) == []
