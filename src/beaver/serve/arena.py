"""`beaver arena`: the red and the blue model answer each user turn side by side.

The chat of `beaver chat` with exactly two models labelled red and blue; with
`reward_model=PATH` and/or `cost_model=PATH` every answer is scored as it lands
(higher reward is more helpful; cost > 0 is unsafe).
"""

from __future__ import annotations

from beaver.config import ChatConfig
from beaver.errors import UserError
from beaver.serve.chat import run_chat


def run(cfg: ChatConfig) -> None:
    """`beaver arena`."""
    if len(cfg.models) != 2:
        raise UserError(
            f"the arena needs two models (--red PATH --blue PATH), got {len(cfg.models)}"
        )
    run_chat(cfg, labels=["red", "blue"])
