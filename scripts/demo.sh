#!/usr/bin/env bash
# The toy-world pipeline, as one short script (what `make demo` runs); everything lands in
# output/demo/. Each stage is a plain `beaver` command with its toy config: read top to bottom.
set -euo pipefail
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
# One intra-op thread: the toy models' matrices are too small to gain from a second one, and two
# threads slow down up to 10x whenever anything else shares the cores (measured on 2 cores).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
rm -rf output/demo   # a fresh run each time (stages refuse to mix with an earlier run's checkpoints)
start=$(date +%s)
stage() { echo; echo "== $*"; }

stage "1/7 toy world: datasets, tokenizer, tiny model, ground-truth judge"
beaver toyworld --config configs/toy/toyworld.yaml
stage "2/7 SFT: the tiny model learns the world's language from the behaviour policy"
beaver sft --config configs/toy/sft.yaml
stage "3/7 reward model (helpfulness)"
beaver rm --config configs/toy/rm.yaml
stage "4/7 cost model (harm)"
beaver cm --config configs/toy/cm.yaml
stage "5/7 PPO: reward only"
beaver ppo --config configs/toy/ppo.yaml
stage "6/7 reward shaping: R - lambda_fixed * C (baseline)"
beaver ppo-lag --config configs/toy/reward-shaping.yaml
stage "7/7 PPO-Lagrangian: reward under a cost constraint"
beaver ppo-lag --config configs/toy/ppo-lag.yaml
stage "evaluation of all four policies on held-out prompts by the ground-truth judge"
beaver eval toyworld --config configs/toy/eval.yaml
echo
echo "demo finished in $(( $(date +%s) - start )) s; results: output/demo/results.json," \
     "PPO-Lag's lambda and cost: output/demo/ppo-lag/training.png"
