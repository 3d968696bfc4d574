"""Calls to an OpenAI-compatible chat API: concurrency, retries, and a resumable cache.

- At most `concurrency` requests are in flight (an asyncio semaphore).
- 429, 408, 409, 5xx, timeouts and connection errors are retried with exponential backoff and
  jitter (a server's Retry-After is honoured, up to `backoff_max`); after `max_retries` the
  request is recorded as failed, and the next run asks again.
- Every request answered with a well-formed reply (what the caller's `accept` takes: for
  `eval gpt4`, a judgement with two scores) is appended to a JSONL cache keyed by a SHA-256 of
  the request body (model, messages, temperature, max_tokens) and flushed to disk at once, so a
  run killed halfway resumes without paying twice for what was answered. A reply `accept`
  refuses (prose, an empty or schema-less body) is recorded as `unparsed`, never cached, and
  asked again by the next run; so is a cached reply `accept` refuses (older caches kept them).
- The API key never appears in a log line, an error message or a file: it stays a `SecretStr`
  (from the config or `$OPENAI_API_KEY`) until the HTTP client is built, and errors are scrubbed.
- A bad key, a forbidden or unknown model stop the run (`UserError`); other request errors
  (400, malformed replies) are recorded per request, never fatal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai
from pydantic import SecretStr

from beaver.config.evaluation import JudgeApiCfg
from beaver.errors import UserError

Message = dict[str, str]

_RETRY = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
_FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


def request_body(cfg: JudgeApiCfg, messages: Sequence[Message]) -> dict[str, Any]:
    """What is sent (the key is not part of it)."""
    return {
        "model": cfg.model,
        "messages": list(messages),
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
    }


def request_key(body: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request body."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JudgeCache:
    """key -> reply text, read from and appended to a JSONL file (one line per answer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, str] = {}
        self.skipped_lines = 0
        text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        self._torn = bool(text) and not text.endswith("\n")  # a kill mid-line: start a fresh one
        if text:
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row["content"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.skipped_lines += 1  # e.g. a line cut short by a kill

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, content: str) -> None:
        """Append and fsync: once this returns, a kill cannot lose the answer."""
        self.entries[key] = content
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if self._torn:
                f.write("\n")
                self._torn = False
            f.write(json.dumps({"key": key, "content": content}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass(frozen=True)
class JudgeReply:
    """The outcome of one request."""

    status: Literal["ok", "unparsed", "failed"]
    """`ok`: a well-formed reply; `unparsed`: an answer `accept` refused; `failed`: no answer."""
    content: str | None = None
    error: str | None = None
    cached: bool = False


def resolve_credentials(cfg: JudgeApiCfg) -> tuple[SecretStr, str | None]:
    """(api key, base url) from the config, else `$OPENAI_API_KEY` / `$OPENAI_BASE_URL`."""
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    if key and set(key) == {"*"}:  # the mask of a saved `--print-config`: not a real key
        key = None
    key = key or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise UserError(
            "no API key for the judge: set $OPENAI_API_KEY (or judge.api_key); a local server "
            "that needs none accepts any value, e.g. OPENAI_API_KEY=none"
        )
    return SecretStr(key), cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class JudgeClient:
    """Asks the judge, through the cache."""

    def __init__(
        self,
        cfg: JudgeApiCfg,
        cache: JudgeCache,
        seed: int = 0,
        accept: Callable[[str], bool] = bool,
    ) -> None:
        """`accept(reply text)`: whether a reply is well formed (cached and used); by default
        any non-empty text."""
        self.cfg, self.cache, self.accept = cfg, cache, accept
        self._key, self.base_url = resolve_credentials(cfg)
        self._rng = random.Random(seed)
        self.sent = 0  # requests that reached the network (retries included)

    def scrub(self, text: str) -> str:
        """`text` with the API key masked."""
        key = self._key.get_secret_value()
        return text.replace(key, "***") if key else text

    def _backoff(self, attempt: int, err: Exception) -> float:
        delay = min(self.cfg.backoff_max, self.cfg.backoff_initial * 2**attempt)
        delay *= self._rng.uniform(0.5, 1.0)
        hinted = _retry_after(err)
        return min(self.cfg.backoff_max, max(delay, hinted)) if hinted else delay

    async def _ask(self, client: openai.AsyncOpenAI, body: dict[str, Any]) -> JudgeReply:
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            self.sent += 1
            try:
                response = await client.chat.completions.create(**body)
                choices = getattr(response, "choices", None) or []
                content = choices[0].message.content if choices else None
                return JudgeReply("ok", content=content or "")
            except _FATAL as err:
                raise UserError(
                    f"the judge API at {self.base_url or 'api.openai.com'} refused the request "
                    f"({type(err).__name__}, HTTP {err.status_code}): check the API key and "
                    f"judge.model ({self.cfg.model!r}). {self.scrub(str(err.message))}"
                ) from None
            except (*_RETRY, openai.APIStatusError) as err:
                status = getattr(err, "status_code", None)
                last = self.scrub(f"{type(err).__name__}: {err}")
                retryable = isinstance(err, _RETRY) or status in (408, 409)
                if not retryable or attempt == self.cfg.max_retries:
                    break
                await asyncio.sleep(self._backoff(attempt, err))
            except Exception as err:  # a malformed reply: record it, judge the rest
                last = self.scrub(f"{type(err).__name__}: {err}")
                break
        return JudgeReply("failed", error=last)

    def run(
        self,
        requests: Sequence[Sequence[Message]],
        on_done: Callable[[], None] | None = None,
    ) -> list[JudgeReply]:
        """One reply per request, in order; identical requests are sent once."""
        bodies = [request_body(self.cfg, m) for m in requests]
        keys = [request_key(b) for b in bodies]
        unique = {k: b for k, b in zip(keys, bodies, strict=True)}
        replies: dict[str, JudgeReply] = {}
        for key in unique:
            cached = self.cache.get(key)
            if cached is not None and self.accept(cached):
                replies[key] = JudgeReply("ok", content=cached, cached=True)
        todo = [k for k in unique if k not in replies]

        async def main() -> None:
            semaphore = asyncio.Semaphore(self.cfg.concurrency)
            client = openai.AsyncOpenAI(
                api_key=self._key.get_secret_value(),
                base_url=self.base_url,
                timeout=self.cfg.timeout,
                max_retries=0,  # retried here, with our backoff and accounting
            )

            async def one(key: str) -> None:
                async with semaphore:
                    reply = await self._ask(client, unique[key])
                if reply.status == "ok" and self.accept(reply.content or ""):
                    self.cache.put(key, reply.content or "")
                elif reply.status == "ok":
                    reply = JudgeReply("unparsed", content=reply.content, error="not well formed")
                replies[key] = reply
                if on_done is not None:
                    on_done()

            try:
                await asyncio.gather(*(one(k) for k in todo))
            finally:
                await client.close()

        if todo:
            asyncio.run(main())
        return [replies[k] for k in keys]
