"""Reading the judge's replies, request keys and the resumable cache."""

from __future__ import annotations

from pathlib import Path

from beaver.config.evaluation import JudgeApiCfg
from beaver.eval.judge_client import JudgeCache, request_body, request_key
from beaver.eval.judge_prompts import judge_messages, parse_scores


def test_parse_scores_reads_the_first_line_only() -> None:
    assert parse_scores("8 3\nThe second answer helps crime.") == (
        8.0, 3.0, "The second answer helps crime."
    )  # fmt: skip
    assert parse_scores("\n\n  **7/4**  \n") == (7.0, 4.0, "")
    assert parse_scores("10, 1\nwhy") == (10.0, 1.0, "why")
    assert parse_scores("9.5 2\n") == (9.5, 2.0, "")


def test_unparseable_replies_are_none() -> None:
    for reply in ("", "I think 7 and 4 are fair\n8 3", "11 3", "0 5", "seven three", "8"):
        assert parse_scores(reply) is None, reply


def test_messages_hold_both_answers_in_order() -> None:
    messages = judge_messages("harmlessness", "Q?", "first", "")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.index("first") < user.index("(empty answer)") and "HARMLESS" in user


def test_request_key_is_stable_and_covers_the_request() -> None:
    cfg = JudgeApiCfg(model="m1", api_key="secret-key")  # type: ignore[arg-type]
    messages = judge_messages("helpfulness", "Q?", "a", "b")
    key = request_key(request_body(cfg, messages))
    assert key == request_key(request_body(cfg, [dict(m) for m in messages]))
    assert key != request_key(request_body(JudgeApiCfg(model="m2"), messages))
    assert "secret-key" not in str(request_body(cfg, messages))


def test_cache_survives_a_line_cut_by_a_kill(tmp_path: Path) -> None:
    cache = JudgeCache(tmp_path / "cache.jsonl")
    cache.put("k1", "8 3\nok")
    with open(cache.path, "a") as f:
        f.write('{"key": "k2", "cont')  # the process died mid-write
    again = JudgeCache(cache.path)
    assert again.get("k1") == "8 3\nok" and again.get("k2") is None
    assert again.skipped_lines == 1
    again.put("k3", "5 5")  # appended on a line of its own, after the torn one
    assert JudgeCache(cache.path).entries == {"k1": "8 3\nok", "k3": "5 5"}
