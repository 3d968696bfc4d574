"""Cost sources that read text: a Python callable, an HF classifier, an HTTP endpoint.

One small interface, `TextScore`: `score(prompts, responses) -> (B,) fp32 tensor`, the raw
prompts and the decoded answers in, one score per answer out. The rollout holds these beside
beaver score models (which read token ids) and does not know which kind it holds
(ARCHITECTURE.md, "Reward and cost sources"). Every source keeps the cost convention: cost > 0
means unsafe.

- `callable_source`: `module:function`, imported only when a config names it.
- `ClassifierSource`: an `AutoModelForSequenceClassification` used as it is; the probability p
  of its unsafe label becomes log(p / (1 - p)) - log(b / (1 - b)) (`log_odds`, default) or p - b
  (`probability`), both > 0 exactly when p > b, the `boundary`.
- `HttpSource`: POST `{"prompts": [...], "responses": [...]}`, read `{"scores": [...]}`; a
  timeout per request, retries with doubling backoff on connection errors, timeouts and 5xx,
  then a `UserError` naming the URL and what went wrong (the run stops; its last checkpoint is
  intact). `beaver serve score` serves a beaver score model this way.

A source that returns the wrong number of scores, or a score that is not a finite number, is a
`UserError` naming the source.
"""

from __future__ import annotations

import importlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from beaver.errors import UserError


class TextScore(Protocol):
    """One score per answer from the prompts and answers as text."""

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> Tensor: ...


def checked_scores(values: Any, n: int, what: str) -> Tensor:
    """(n,) fp32 scores from what a source returned (a list, a tuple or a tensor), or a
    `UserError` naming `what` when they are not n finite numbers."""
    try:
        scores = torch.as_tensor(
            values.tolist() if isinstance(values, Tensor) else list(values), dtype=torch.float32
        ).flatten()
    except (TypeError, ValueError) as err:
        raise UserError(f"{what} returned {type(values).__name__}, not numbers: {err}") from None
    if scores.numel() != n:
        raise UserError(f"{what} returned {scores.numel()} scores for {n} responses")
    if not torch.isfinite(scores).all():
        bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
        raise UserError(f"{what} returned scores that are not finite numbers at {bad[:5]}")
    return scores


def load_callable(spec: str, key: str) -> Callable[..., Any]:
    """The function of `module:function`, imported now (only a config naming it imports it)."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(
            f"{key}={spec!r}: cannot import {module_name!r} ({err}); put it on PYTHONPATH"
        ) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"{key}={spec!r}: {module_name!r} has no function {name!r}")
    return fn  # type: ignore[no-any-return]


def callable_source(spec: str, key: str) -> TextScore:
    """A `module:function` rule as a source."""
    fn = load_callable(spec, key)

    def score(prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
        return checked_scores(fn(list(prompts), list(responses)), len(responses), spec)

    return score


def cost_from_probability(p: Tensor, kind: str, boundary: float, eps: float = 1e-6) -> Tensor:
    """A cost from the unsafe probability p: log-odds or p itself, both shifted so that the cost
    is 0 at p = `boundary` (cost > 0 exactly when p > boundary)."""
    if kind == "probability":
        return p - boundary
    q = p.clamp(eps, 1.0 - eps)
    return torch.log(q / (1.0 - q)) - math.log(boundary / (1.0 - boundary))


class ClassifierSource:
    """An HF sequence-classification model as a cost source (`ClassifierCfg`)."""

    def __init__(self, cfg: Any, key: str, device: Any = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification

        from beaver.models.inference import inference_tokenizer
        from beaver.models.loading import check_model_source, load_pretrained

        check_model_source(cfg.model.name_or_path, key=f"{key}.model")
        self.cfg = cfg
        self.model = (
            load_pretrained(
                AutoModelForSequenceClassification, cfg.model, torch.float32, None, False
            )
            .to(device)
            .eval()
        )
        self.tokenizer = inference_tokenizer(cfg.model, side="right")
        self.label = unsafe_index(self.model.config, cfg.unsafe_label, key)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
        device = next(self.model.parameters()).device
        costs = []
        for start in range(0, len(responses), self.cfg.batch_size):
            part = list(responses[start : start + self.cfg.batch_size])
            pair = list(prompts[start : start + self.cfg.batch_size])
            texts = (pair, part) if self.cfg.input == "prompt_response" else (part,)
            enc = self.tokenizer(
                *texts, truncation=True, max_length=self.cfg.max_length, padding=True,
                return_tensors="pt",
            ).to(device)  # fmt: skip
            logits = self.model(**enc).logits.float()  # (b, labels)
            p = logits.softmax(dim=-1)[:, self.label]
            costs.append(cost_from_probability(p, self.cfg.cost, self.cfg.boundary).cpu())
        return torch.cat(costs) if costs else torch.empty(0)


def unsafe_index(config: Any, label: str | int, key: str) -> int:
    """The index of the unsafe label (a name of `id2label`, or an index), else a `UserError`
    listing the model's labels."""
    id2label = {int(i): str(n) for i, n in getattr(config, "id2label", {}).items()}
    if isinstance(label, int) and label in id2label:
        return label
    names = {n: i for i, n in id2label.items()}
    if isinstance(label, str) and label in names:
        return names[label]
    raise UserError(f"{key}.unsafe_label={label!r}: the classifier's labels are {id2label}")


class HttpSource:
    """A score served over HTTP (`HttpSourceCfg`)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
        parts = []
        for start in range(0, len(responses), self.cfg.batch_size):
            end = start + self.cfg.batch_size
            parts.append(self._request(list(prompts[start:end]), list(responses[start:end])))
        return torch.cat(parts) if parts else torch.empty(0)

    def _request(self, prompts: list[str], responses: list[str]) -> Tensor:
        body = json.dumps({"prompts": prompts, "responses": responses}).encode("utf-8")
        url, wait, errors = self.cfg.url, self.cfg.backoff_s, []
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as reply:
                    answer = json.loads(reply.read().decode("utf-8"))
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:200]
                if err.code < 500:  # the request itself is wrong: asking again will not help
                    raise UserError(
                        f"cost source {url} refused the request: {err.code} {detail}"
                    ) from None
                errors.append(f"{err.code} {detail}")
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                errors.append(str(getattr(err, "reason", err)))
                continue
            except json.JSONDecodeError as err:
                raise UserError(f"cost source {url} answered with invalid JSON: {err}") from None
            if not isinstance(answer, dict) or "scores" not in answer:
                raise UserError(f"cost source {url} answered without a 'scores' list: {answer!r}")
            return checked_scores(answer["scores"], len(responses), f"cost source {url}")
        raise UserError(
            f"cost source {url} is not answering: {self.cfg.retries + 1} tries failed "
            f"(last: {errors[-1]}); start it (e.g. `beaver serve score`) and resume the run "
            "from its last checkpoint (train.resume=auto)"
        )
