"""Token streaming for the terminal: generate in a background thread, yield text as it comes.

Batched generation lives in `beaver.models.generation`; this adds what a chat needs on top:
a `TextIteratorStreamer`, and a stop flag (Ctrl-C) checked between tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from beaver.config import SamplingCfg
from beaver.models.generation import generation_kwargs


class _StopOnEvent:
    """A stopping criterion that ends generation once `event` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class StreamingReply:
    """Sample one response to `prompt_ids` in a thread; iterate to get its text piece by piece.

    `stop()` ends generation early (the pieces received so far stay valid); an exception in the
    generating thread is re-raised in the caller once the stream ends.
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any, prompt_ids: list[int], gen: SamplingCfg
    ) -> None:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        device = next(model.parameters()).device
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, P)
        kwargs = {
            **generation_kwargs(gen, tokenizer),
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "streamer": self.streamer,
            "stopping_criteria": StoppingCriteriaList([_StopOnEvent(self._stop)]),  # type: ignore[list-item]
        }
        self._thread = threading.Thread(target=self._generate, args=(model, kwargs), daemon=True)
        self._thread.start()

    def _generate(self, model: nn.Module, kwargs: dict[str, Any]) -> None:
        try:
            with torch.no_grad():
                model.generate(**kwargs)  # type: ignore[operator]
        except BaseException as err:  # handed over to the caller's thread
            self._error = err
            self.streamer.end()

    def __iter__(self) -> Iterator[str]:
        yield from self.streamer
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Ask the generating thread to finish, and wait for it."""
        self._stop.set()
        self._thread.join()
