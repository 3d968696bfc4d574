"""RLOO: episodes/s of `beaver rloo` vs TRL's `RLOOTrainer` (reward only), and of the
critic-free `beaver rloo-lag` beside `beaver ppo-lag`, with each side's peak memory.

One step = one rollout of 64 episodes: 16 of the toy world's RL prompts x k = 4 sampled answers
(up to 40 tokens, temperature 1, no top-k / top-p), scored by the same reward model, then one
pass as two micro-batches of 32 and one optimiser step (TRL: per_device_train_batch_size 32,
gradient_accumulation_steps 2, num_generations 4, num_iterations 1). beaver rloo and TRL do the
same math: the KL (k1, beta 0.05) folded into the sequence score, the leave-one-out baseline,
advantages divided by their std, one clipped ratio per sequence (`rloo.ratio=sequence`, TRL's
`epsilon` 0.2), the loss averaged over sequences. TRL is given beaver's prompts as text that
tokenises back to the same ids, and a reward function that scores its token ids with beaver's
reward model (EOS appended as beaver reads it) minus the same missing-EOS penalty 3, so both
sides see identical rewards. Both: AdamW lr 5e-4 constant, betas 0.9/0.95, no weight decay,
gradient clipping at norm 1, fp32.

`beaver rloo-lag` and `beaver ppo-lag` run every part of their constrained update (cost model;
PPO-Lag also its two critics) with the multiplier held near 0 (lambda_init 1e-6, lambda_lr 0),
as bench_ppo.py does, so their policies learn alike and sample answers of similar lengths:
the difference in speed and memory is then what each method holds and computes. ppo-lag runs
64 prompts x 1 answer, the same 64 episodes a step.

The trend checked (beaver rloo vs TRL) is the mean reward-model score of each rollout.

    python benchmarks/bench_rloo.py [--blocks 12] [--block-steps 1] [--replicas 1] [--threads 1]
"""

from __future__ import annotations

import statistics
from typing import Any

import machine
import prepare
import report
from bench_ppo import prompt_dataset
from harness import Side, interleave

PROMPTS, K, MICRO, NEW_TOKENS, LR, BETA2 = 16, 4, 32, 40, 5e-4, 0.95
EPISODES = PROMPTS * K
KL, EOS_PENALTY = 0.05, 3.0


def beaver_side(pacer: Any, steps: int, algorithm: str) -> None:
    import beaver.stages.ppo as ppo
    from beaver.config import PPOConfig, load_config

    critic_free = algorithm.startswith("rloo")
    out = prepare.run_dir(f"{algorithm}-beaver")
    overrides = [
        f"algorithm={algorithm}",
        f"output_dir={out}",
        f"actor.name_or_path={prepare.SFT_MODEL}",
        f"reward_model.name_or_path={prepare.RM_MODEL}",
        f"data.train=[toyworld-prompts:1.0:{prepare.WORLD}]",
        f"generation.max_new_tokens={NEW_TOKENS}",
        f"generation.num_return_sequences={K if critic_free else 1}",
        f"ppo.rollout_batch_size={PROMPTS if critic_free else EPISODES}",
        f"ppo.kl_coeff={KL}",
        f"ppo.missing_eos_penalty={EOS_PENALTY}",
        "rloo.ratio=sequence",
        f"train.per_device_batch_size={MICRO}",
        f"train.gradient_accumulation_steps={EPISODES // MICRO}",
        f"train.max_steps={steps}",
        *prepare.COMMON,
    ]
    for opt in ("actor_optim", "critic_optim"):
        overrides += [f"{opt}.lr={LR}", f"{opt}.betas=[0.9,{BETA2}]", f"{opt}.weight_decay=0.0"]
        overrides += [f"{opt}.clip_grad_norm=1.0"]
    if algorithm.endswith("-lag"):
        overrides += [
            f"cost_model.name_or_path={prepare.CM_MODEL}",
            "lagrange.target_unsafe_share=null",
            "lagrange.lambda_init=1e-6",
            "lagrange.lambda_lr=0.0",
        ]
    config = "ppo-lag.yaml" if algorithm.endswith("-lag") else "ppo.yaml"
    cfg = load_config(PPOConfig, prepare.ROOT / "configs/toy" / config, overrides)
    step = ppo.ppo_step

    def timed(*args: Any) -> Any:
        out = step(*args)
        m = out.metrics
        pacer.step(
            units=out.samples,
            loss=m["rollout/reward"],
            generate=m["time/generate"],
            score=m["time/score"],
            response_length=m["rollout/response_length"],
        )
        return out

    ppo.ppo_step = timed  # run() calls the module-level name
    ppo.run(cfg)


def beaver_reward(tok: Any) -> Any:
    """TRL's reward function: beaver's reward model on prompt + completion ids (EOS appended
    where the answer has none in its ids, as beaver's rollout scores it), minus the penalty for
    a completion without EOS: the numbers `beaver rloo` gets for the same tokens."""
    import torch

    from beaver.config import ModelCfg
    from beaver.models.batching import pad_batch
    from beaver.models.forward import score_sequences
    from beaver.models.score import load_score_model

    rm = load_score_model(ModelCfg(name_or_path=str(prepare.RM_MODEL)), torch.float32).eval()
    eos = tok.eos_token_id

    def reward(prompts: list[str], completion_ids: list[list[int]], **_: Any) -> list[float]:
        rows = [tok(p)["input_ids"] + list(c) for p, c in zip(prompts, completion_ids, strict=True)]
        ended = torch.tensor([len(c) > 0 and c[-1] == eos for c in completion_ids])
        ids, mask = pad_batch(rows, tok.pad_token_id)
        with torch.no_grad():
            scores = score_sequences(rm, ids, mask, normalize=True).float()
        return (scores - EOS_PENALTY * (~ended).float()).tolist()

    reward.__name__ = "beaver_rm"
    return reward


def trl_side(pacer: Any, steps: int) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    data, tok = prompt_dataset()
    texts = [tok.decode(ids) for ids in data["input_ids"]]
    same = all(tok(t)["input_ids"] == ids for t, ids in zip(texts, data["input_ids"], strict=True))
    assert same, "the prompts' text does not tokenise back to beaver's ids"

    class PacerCallback(TrainerCallback):
        """One pacer step per optimiser step, at its log (logging_steps 1), which the Trainer
        writes right after the step ends and which carries the step's reward and length."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "rewards/beaver_rm/mean" in logs:
                pacer.step(
                    units=EPISODES,
                    loss=logs["rewards/beaver_rm/mean"],
                    response_length=logs["completions/mean_length"],
                )

    args = RLOOConfig(
        output_dir=str(prepare.run_dir("rloo-trl")),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=EPISODES // MICRO,
        num_generations=K,
        num_iterations=1,
        max_completion_length=NEW_TOKENS,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=KL,
        epsilon=0.2,
        normalize_advantages=True,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        adam_beta2=BETA2,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        seed=42,
    )
    policy = AutoModelForCausalLM.from_pretrained(prepare.SFT_MODEL, dtype=torch.float32)
    trainer = RLOOTrainer(
        model=policy,
        reward_funcs=[beaver_reward(tok)],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": texts}),
        processing_class=tok,
        callbacks=[PacerCallback()],
    )
    trainer.train()


def main() -> dict[str, Any]:
    a = report.bench_args(__doc__, blocks=12, block_steps=1, warmup_steps=2)
    for kind in ("rm", "cm"):
        prepare.score_model(kind)
    prepare.clean_runs()
    peak = machine.gemm_peak_flops()
    steps = a.steps
    sides = interleave(
        [
            Side("beaver-rloo", beaver_side, {"steps": steps, "algorithm": "rloo"}),
            Side("trl-rloo", trl_side, {"steps": steps}),
            Side("beaver-rloo-lag", beaver_side, {"steps": steps, "algorithm": "rloo-lag"}),
            Side("beaver-ppo-lag", beaver_side, {"steps": steps, "algorithm": "ppo-lag"}),
        ],
        warmup_steps=a.warmup_steps,
        block_steps=a.block_steps,
        blocks=a.blocks,
        log_dir=prepare.WORK / "logs",
        replicas=a.replicas,
        prefix="rloo",
    )
    from transformers import AutoConfig

    shape = machine.Shape.of(AutoConfig.from_pretrained(prepare.SFT_MODEL))
    data, _ = prompt_dataset()
    prompt = statistics.fmean(len(x) for x in data["input_ids"])
    # Each side's passes per episode: LM passes, the reference's and (TRL) the policy's for the
    # old log-probs, which beaver takes from the sampling scores;
    # reward (and cost) model score passes, + the critics' for PPO-Lag; the update trains the
    # actor (and 2 critics).
    flops = {
        "beaver-rloo": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 1, 0),
        "trl-rloo": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 2, 1, 0),
        "beaver-rloo-lag": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 2, 0),
        "beaver-ppo-lag": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 4, 2),
    }
    by_name = {s.name: s for s in sides}
    lengths = {
        s.name: round(statistics.median(r["response_length"] for b in s.blocks for r in b), 1)
        for s in sides
    }
    result = report.assemble(
        "rloo",
        sides,
        flops_per_unit=flops,
        unit="episodes/s",
        peer="trl-rloo",
        peak=peak,
        workload={
            "prompts": PROMPTS,
            "k": K,
            "episodes_per_step": EPISODES,
            "micro_batch": MICRO,
            "max_new_tokens": NEW_TOKENS,
            "mean_prompt_tokens": round(prompt, 1),
            "precision": "fp32",
        },
        response_tokens=lengths,
        rloo_lag_over_ppo_lag=report.ratio(by_name["beaver-rloo-lag"], by_name["beaver-ppo-lag"]),
        trend=report.check_trends(
            [by_name["beaver-rloo"], by_name["trl-rloo"]], "up", metric="reward"
        ),
    )
    report.write("rloo", result)
    report.print_result(result)
    print(f"median response tokens: {lengths}")
    return result


if __name__ == "__main__":
    main()
