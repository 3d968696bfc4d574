"""Evaluation commands: `beaver eval arena`, `eval gpt4` and `eval bigbench`."""
