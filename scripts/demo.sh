#!/usr/bin/env bash
# The toy-world pipeline, as one short script (what `make demo` runs).
# Each stage is a plain `beaver` command with a toy config; read top to bottom.
set -euo pipefail
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

echo "== 1. toy world: datasets, tokenizer, tiny model, ground-truth judge"
beaver toyworld --config configs/toy/toyworld.yaml

echo
echo "Pipeline on the toy world (built so far):"
echo "  toyworld -> sft -> rm -> cm -> ppo / reward-shaping / ppo-lag -> eval by the judge"
