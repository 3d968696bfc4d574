"""Talking to models in the terminal: `beaver chat` and `beaver arena`.

`session` (the chat's state, without terminal code), `generation` (token streaming), `chat` (the
terminal side). Models load through `beaver.models.inference`, answers are scored through
`beaver.models.scorer`, as in `beaver eval`.
"""
