"""beaver's shipped configs, installed as the package `beaver.configs` (see pyproject.toml).

This folder is their only copy: a wheel packs it as `beaver/configs/`, an editable install maps
`beaver.configs` onto it. `beaver configs` lists, shows and copies them; `--config NAME` finds
them by name (`toy/sft`, `ppo-lag`). Every path inside them is relative to the folder a command
runs in, not to this one.
"""
