#!/usr/bin/env bash
# The toy-world pipeline, as one short script (what `make demo` runs); everything lands in
# output/demo/. Each stage is a plain `beaver` command with its toy config: read top to bottom.
#
# `scripts/demo.sh offline` (`make demo-offline`) runs the offline methods instead of PPO and
# reward shaping: DPO, SafeDPO, SACPO and P-SACPO from the same SFT model on the same preference
# pairs, with PPO-Lag beside them in the same run, and a table of the judge's numbers next to
# each method's wall time and peak memory. It reuses the world, SFT, reward and cost models of an
# earlier `make demo` when they are there.
set -euo pipefail
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
# One intra-op thread: the toy models' matrices are too small to gain from a second one, and two
# threads slow down up to 10x whenever anything else shares the cores (measured on 2 cores).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mode="${1:-online}"
start=$(date +%s)
stage() { echo; echo "== $*"; }
have() { test -f "output/demo/$1/model/config.json"; }

if [ "$mode" = offline ]; then
    rm -rf output/demo/{ppo-lag,dpo,safe-dpo,sacpo,p-sacpo,offline}
    if ! have sft; then
        rm -rf output/demo
        stage "toy world: datasets, tokenizer, tiny model, ground-truth judge"
        beaver toyworld --config configs/toy/toyworld.yaml
        stage "SFT: the tiny model learns the world's language from the behaviour policy"
        beaver sft --config configs/toy/sft.yaml
    fi
    have rm || { stage "reward model (for PPO-Lag)"; rm -rf output/demo/rm; beaver rm --config configs/toy/rm.yaml; }
    have cm || { stage "cost model (for PPO-Lag)"; rm -rf output/demo/cm; beaver cm --config configs/toy/cm.yaml; }
    stage "1/5 PPO-Lagrangian, for comparison: reward under a cost constraint"
    beaver ppo-lag --config configs/toy/ppo-lag.yaml
    stage "2/5 DPO on helpfulness pairs (also SACPO's first step)"
    beaver dpo --config configs/toy/dpo.yaml
    stage "3/5 SafeDPO: the same pairs, safe answers first, with a safety margin"
    beaver dpo --config configs/toy/safe-dpo.yaml
    stage "4/5 SACPO: DPO on safety pairs from the DPO model, then P-SACPO's merge of the two"
    beaver dpo --config configs/toy/sacpo.yaml
    merge_start=$(date +%s)
    beaver merge --config configs/toy/p-sacpo.yaml
    merge_s=$(( $(date +%s) - merge_start ))
    stage "5/5 evaluation on held-out prompts by the ground-truth judge; cost of each method"
    beaver eval toyworld --config configs/toy/eval-offline.yaml
    python scripts/offline_table.py output/demo "$merge_s"
    echo
    echo "offline demo finished in $(( $(date +%s) - start )) s; table: output/demo/offline/table.md"
    exit 0
fi

rm -rf output/demo   # a fresh run each time (stages refuse to mix with an earlier run's checkpoints)
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
