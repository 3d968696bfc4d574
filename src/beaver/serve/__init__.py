"""Talking to models in the terminal: `beaver chat` and `beaver arena`.

`loading` (models on the best device, in eval mode), `generation` (token streaming) and
`scoring` (reward and cost models on prompt + answer) also serve `beaver eval`.
"""
