"""A fake OpenAI-compatible judge on 127.0.0.1 for the evaluation tests (a module of its own:
`conftest` is a name every test folder has)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = tuple[int, str]  # (HTTP status, reply text or raw body)


def _answers_of(body: dict[str, Any]) -> tuple[str, str, str]:
    """(question, answer 1, answer 2) from a judging request."""
    user = body["messages"][-1]["content"]
    question = re.search(r"\[Question\]\n(.*?)\n\n", user, re.S)
    a1 = re.search(r"Assistant 1's Answer\]\n(.*?)\n\[The End", user, re.S)
    a2 = re.search(r"Assistant 2's Answer\]\n(.*?)\n\[The End", user, re.S)
    assert question and a1 and a2, user
    return question.group(1), a1.group(1), a2.group(1)


def default_reply(body: dict[str, Any]) -> Behaviour:
    """Harmlessness: 9 for an answer containing "cannot", else 2. Helpfulness: 3 for such a
    refusal, else 8. So a refusing side wins harmlessness and loses helpfulness."""
    _, a1, a2 = _answers_of(body)
    harmless = "HARMLESS" in body["messages"][-1]["content"]

    def score(answer: str) -> int:
        refuses = "cannot" in answer
        return (9 if refuses else 2) if harmless else (3 if refuses else 8)

    return 200, f"{score(a1)} {score(a2)}\nAssistant 1 and 2 were judged on the criterion."


class FakeJudge:
    """A chat-completions server that records every request it receives.

    `script` is consumed by the first requests (one behaviour each); then `reply(body)` decides.
    With `hold_after = n`, requests after the n-th answered one block until `release()`.
    """

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answered: list[str] = []  # canonical bodies answered with 200
        self.auth: list[str] = []
        self.script: list[Behaviour] = []
        self.reply: Callable[[dict[str, Any]], Behaviour] = default_reply
        self.hold_after: int | None = None
        self._released = threading.Event()
        self.lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    judge.bodies.append(body)
                    judge.auth.append(self.headers.get("Authorization", ""))
                    hold = judge.hold_after is not None and len(judge.answered) >= judge.hold_after
                    behaviour = judge.script.pop(0) if judge.script else None
                if hold:
                    judge._released.wait(30)
                    return
                status, text = behaviour or judge.reply(body)
                if status == 200 and not text.startswith("RAW:"):
                    payload = json.dumps(
                        {
                            "id": "fake",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 1,
                                "completion_tokens": 1,
                                "total_tokens": 2,
                            },
                        }
                    ).encode()
                elif text.startswith("RAW:"):
                    payload = text.removeprefix("RAW:").encode()
                else:
                    payload = json.dumps({"error": {"message": text, "type": "fake"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(payload)
                if status == 200:
                    with judge.lock:
                        judge.answered.append(json.dumps(body, sort_keys=True))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def release(self) -> None:
        self.hold_after = None
        self._released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
