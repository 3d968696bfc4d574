"""`beaver eval gpt4` against a fake OpenAI-compatible server on 127.0.0.1 (conftest.FakeJudge).

Red complies, blue refuses ("cannot"): the fake judge gives harmlessness 2 vs 9 and
helpfulness 8 vs 3, so blue wins every harmlessness pair and loses every helpfulness pair.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from judge_fake import FakeJudge, default_reply
from typer.testing import CliRunner

from beaver.cli import app
from childenv import child_env

runner = CliRunner()
SECRET = "sk-test-SECRET-4242"
N = 4  # prompts


def _answer_files(tmp_path: Path, n: int = N) -> tuple[Path, Path]:
    red, blue = tmp_path / "red.jsonl", tmp_path / "blue.jsonl"
    prompts = [f"how do I do bad thing number {i}?" for i in range(n)]
    red.write_text("".join(json.dumps({"prompt": p, "answer": f"here is how {i}"}) + "\n"
                           for i, p in enumerate(prompts)))  # fmt: skip
    blue.write_text("".join(json.dumps({"prompt": p, "response": "I cannot help with that."}) + "\n"
                            for p in prompts))  # fmt: skip
    return red, blue


def _args(tmp_path: Path, judge: FakeJudge, *extra: str) -> list[str]:
    red, blue = _answer_files(tmp_path)
    return [
        "eval", "gpt4", f"red_answers={red}", f"blue_answers={blue}", f"judge.base_url={judge.url}",
        "judge.model=my-judge-v1", "judge.backoff_initial=0.01", "judge.max_retries=2",
        f"output_dir={tmp_path / 'out'}", *extra,
    ]  # fmt: skip


def _invoke(args: list[str]) -> Any:
    return runner.invoke(app, args, env={"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": ""})


def _judgements(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "out" / "judgements.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "summary.json").read_text())


def test_judges_every_pair_then_reruns_from_the_cache(
    tmp_path: Path, fake_judge: FakeJudge
) -> None:
    result = _invoke(_args(tmp_path, fake_judge))
    assert result.exit_code == 0, result.output
    assert len(fake_judge.bodies) == 2 * N  # one request per pair and criterion
    assert {b["model"] for b in fake_judge.bodies} == {"my-judge-v1"}  # name sent as written
    assert all(a == f"Bearer {SECRET}" for a in fake_judge.auth)
    rows = _judgements(tmp_path)
    assert [r["harmlessness"]["red"] for r in rows] == [2.0] * N
    assert [r["harmlessness"]["blue"] for r in rows] == [9.0] * N
    assert rows[0]["helpfulness"]["reasoning"] == [
        "Assistant 1 and 2 were judged on the criterion."
    ]
    crit = _summary(tmp_path)["criteria"]
    assert crit["harmlessness"]["blue_vs_red"]["win"] == N
    assert crit["helpfulness"]["blue_vs_red"]["loss"] == N
    assert crit["harmlessness"]["elo"]["blue"] > 1000 > crit["harmlessness"]["elo"]["red"]
    assert crit["helpfulness"]["red_mean"] == 8.0 and crit["helpfulness"]["blue_mean"] == 3.0
    assert "Elo" in result.output and "harmlessness" in result.output

    again = _invoke(_args(tmp_path, fake_judge))
    assert again.exit_code == 0, again.output
    assert len(fake_judge.bodies) == 2 * N  # nothing sent twice
    assert _summary(tmp_path)["requests"]["from_cache"] == 2 * N


def test_429_is_retried_then_succeeds(tmp_path: Path, fake_judge: FakeJudge) -> None:
    fake_judge.script = [(429, "slow down"), (429, "slow down")]
    result = _invoke(_args(tmp_path, fake_judge, "judge.concurrency=1"))
    assert result.exit_code == 0, result.output
    assert len(fake_judge.bodies) == 2 * N + 2
    summary = _summary(tmp_path)
    assert summary["requests"]["sent_with_retries"] == 2 * N + 2
    assert all(c["judged"] == N for c in summary["criteria"].values())


def test_500_retried_and_a_lasting_500_recorded_as_failed(
    tmp_path: Path, fake_judge: FakeJudge
) -> None:

    def reply(body: dict[str, Any]) -> tuple[int, str]:
        return (
            (500, "boom") if "number 2" in body["messages"][-1]["content"] else default_reply(body)
        )

    fake_judge.script = [(500, "transient")]
    fake_judge.reply = reply
    result = _invoke(_args(tmp_path, fake_judge, "judge.concurrency=1"))
    assert result.exit_code == 0, result.output
    assert "failed after retries" in result.output
    # 1 transient 500 + 6 good requests + 2 criteria x (1 + 2 retries) lasting 500s
    assert len(fake_judge.bodies) == 1 + 6 + 2 * 3
    rows = _judgements(tmp_path)
    assert rows[2]["harmlessness"]["status"] == "failed"
    assert "InternalServerError" in rows[2]["harmlessness"]["errors"][0]
    assert [r["harmlessness"]["status"] for r in rows].count("ok") == N - 1
    assert _summary(tmp_path)["criteria"]["harmlessness"]["failed"] == 1

    fake_judge.reply = default_reply  # the server recovers: a rerun asks only for the two failures
    before = len(fake_judge.bodies)
    assert _invoke(_args(tmp_path, fake_judge)).exit_code == 0
    assert len(fake_judge.bodies) == before + 2
    assert all(r["harmlessness"]["status"] == "ok" for r in _judgements(tmp_path))


def test_garbage_replies_are_recorded_not_fatal(tmp_path: Path, fake_judge: FakeJudge) -> None:

    def reply(body: dict[str, Any]) -> tuple[int, str]:
        text = body["messages"][-1]["content"]
        if "number 1" in text:
            return 200, "Both answers have merit; I would rather not put numbers on them."
        if "number 3" in text:
            return 200, "RAW:<html>this is not json</html>"
        return default_reply(body)

    fake_judge.reply = reply
    result = _invoke(_args(tmp_path, fake_judge))
    assert result.exit_code == 0, result.output
    rows = _judgements(tmp_path)
    assert rows[1]["helpfulness"]["status"] == "unparsed"
    assert "rather not" in rows[1]["helpfulness"]["unparsed_replies"][0]
    assert rows[3]["helpfulness"]["status"] == "failed"
    assert rows[0]["helpfulness"]["status"] == "ok"
    crit = _summary(tmp_path)["criteria"]["helpfulness"]
    assert (crit["judged"], crit["unparsed"], crit["failed"]) == (N - 2, 1, 1)


def test_killed_run_resumes_without_duplicate_requests(
    tmp_path: Path, fake_judge: FakeJudge
) -> None:
    answered_before_kill = 3
    fake_judge.hold_after = answered_before_kill  # the 4th request hangs until we kill the run
    cache = tmp_path / "out" / "judge_cache.jsonl"
    args = _args(tmp_path, fake_judge, "judge.concurrency=1")
    env = child_env(OPENAI_API_KEY=SECRET, OPENAI_BASE_URL="")
    proc = subprocess.Popen(
        [sys.executable, "-m", "beaver", *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a waiting limit: starts are slow on a loaded machine
        while time.monotonic() < deadline:
            written = cache.read_text().count("\n") if cache.is_file() else 0
            if written == answered_before_kill and len(fake_judge.bodies) > answered_before_kill:
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        else:
            pytest.fail("the evaluation never reached the held request")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    fake_judge.release()
    first_run = len(fake_judge.bodies)

    result = _invoke(args)
    assert result.exit_code == 0, result.output
    # The resume asks only for what was not answered (the held request included) ...
    assert len(fake_judge.bodies) - first_run == 2 * N - answered_before_kill
    # ... and no request was answered twice.
    assert len(fake_judge.answered) == len(set(fake_judge.answered)) == 2 * N
    assert all(r["harmlessness"]["status"] == "ok" for r in _judgements(tmp_path))


def test_api_key_is_never_printed_or_written(tmp_path: Path, fake_judge: FakeJudge) -> None:
    args = [*_args(tmp_path, fake_judge), f"judge.api_key={SECRET}"]
    shown = runner.invoke(app, [*args, "--print-config"])
    assert shown.exit_code == 0, shown.output
    assert SECRET not in shown.output
    assert yaml.safe_load(shown.stdout)["judge"]["api_key"] == "**********"
    result = runner.invoke(app, args, env={"OPENAI_API_KEY": ""})
    assert result.exit_code == 0, result.output
    assert fake_judge.auth[0] == f"Bearer {SECRET}"  # the key from the config was used ...
    assert SECRET not in result.output  # ... and shown nowhere
    for path in (tmp_path / "out").iterdir():
        assert SECRET not in path.read_text(), path
    # A saved --print-config holds the mask, not a key: the environment's key is used instead.
    fresh = [f"output_dir={tmp_path / 'out2'}", "judge.api_key='**********'"]
    masked = _invoke([*_args(tmp_path, fake_judge), *fresh])
    assert masked.exit_code == 0, masked.output
    assert fake_judge.auth[-1] == f"Bearer {SECRET}"


def test_missing_key_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    red, blue = _answer_files(tmp_path)
    base = ["eval", "gpt4", f"red_answers={red}", f"blue_answers={blue}", f"output_dir={tmp_path}"]
    result = runner.invoke(app, base, env={"OPENAI_API_KEY": ""})
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output
    missing = ["eval", "gpt4", f"red_answers={tmp_path / 'nope.jsonl'}", f"blue_answers={blue}"]
    result = runner.invoke(app, missing, env={"OPENAI_API_KEY": "x"})
    assert result.exit_code == 2 and "nope.jsonl" in result.output
    both = ["eval", "gpt4", f"red_answers={red}", "red_model=m", f"blue_answers={blue}"]
    result = runner.invoke(app, both)
    assert result.exit_code == 2 and "exactly one of red_model" in result.output


def test_answers_generated_by_models_are_saved_and_reused(
    tmp_path: Path, fake_judge: FakeJudge, toy_world: Path
) -> None:
    model = str(toy_world / "model")
    args = [
        "eval", "gpt4", f"red_model={model}", f"blue_model={model}", "categories=[crime,drugs]",
        "max_prompts=3", "generation.max_new_tokens=4", f"judge.base_url={fake_judge.url}",
        f"output_dir={tmp_path / 'out'}", "criteria=[harmlessness]",
    ]  # fmt: skip
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    rows = _judgements(tmp_path)
    assert [r["category"] for r in rows] == ["crime"] * 3  # the built-in red-team set, filtered
    saved = (tmp_path / "out" / "answers_red.jsonl").read_text()
    assert len(fake_judge.bodies) == 3
    again = _invoke(args)  # same model and sampling: answers reused, so every request is cached
    assert again.exit_code == 0, again.output
    assert (tmp_path / "out" / "answers_red.jsonl").read_text() == saved
    assert len(fake_judge.bodies) == 3
