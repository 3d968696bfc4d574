"""`beaver serve score`: a beaver score model behind HTTP, as an `http` cost source reads it.

POST `/score` with `{"prompts": [...], "responses": [...]}` (one raw user prompt per answer)
answers `{"scores": [...]}`: each answer scored as the model was trained, prompt in its template,
answer and EOS after it (`beaver.models.scorer`), in the normaliser's units by default (as the
PPO stage reads a score model). GET `/health` answers `{"status": "ok", "score_type": ...}`.
A malformed request is answered 400 with what is wrong; the server keeps serving.

Standard library only (`http.server`), one request at a time: the model is the bottleneck, and
one process keeps its memory once. It listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from beaver.config.evaluation import ServeScoreConfig
from beaver.console import plain_console
from beaver.models.scorer import LoadedScoreModel

console = plain_console()


def parse_request(body: bytes) -> tuple[list[str], list[str]]:
    """(prompts, responses) of a request body, or ValueError saying what is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"the body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be an object with 'prompts' and 'responses'")
    prompts, responses = data.get("prompts"), data.get("responses")
    for name, value in (("prompts", prompts), ("responses", responses)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"'{name}' must be a list of strings")
    assert isinstance(prompts, list) and isinstance(responses, list)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return prompts, responses


def make_handler(scorer: LoadedScoreModel, batch_size: int) -> type[BaseHTTPRequestHandler]:
    """The request handler class serving `scorer`."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/health":
                self._send(404, {"error": f"no {self.path}; GET /health, POST /score"})
                return
            self._send(200, {"status": "ok", "score_type": scorer.model.score_type})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/score":
                self._send(404, {"error": f"no {self.path}; POST /score"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                prompts, responses = parse_request(self.rfile.read(length))
            except ValueError as err:
                self._send(400, {"error": str(err)})
                return
            conversations = [[{"role": "user", "content": p}] for p in prompts]
            self._send(200, {"scores": scorer.score(conversations, responses, batch_size)})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: one line per request would flood a training run's console

    return Handler


def run(cfg: ServeScoreConfig) -> None:
    scorer = LoadedScoreModel.load(cfg.model, cfg.template, cfg.normalize)
    server = HTTPServer((cfg.host, cfg.port), make_handler(scorer, cfg.batch_size))
    host, port = cfg.host, server.server_address[1]
    console.print(
        f"serving {scorer.model.score_type} model {cfg.model.name_or_path} on "
        f"http://{host}:{port}/score (Ctrl-C stops)",
        highlight=False,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
