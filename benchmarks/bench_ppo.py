"""PPO: episodes/s end to end of `beaver ppo` vs TRL's `trl.experimental.ppo.PPOTrainer`, split
into generation / scoring / training; and `beaver ppo-lag`'s overhead over `beaver ppo`.

One step = one rollout batch of 64 prompts (the toy world's RL prompts), up to 40 sampled tokens
each (temperature 1, no top-k / top-p), scored by the same reward model (beaver's trained head
copied into TRL's `score` layer), then one PPO epoch over it as two micro-batches of 32 with one
optimiser step (TRL: gradient_accumulation_steps 2, num_mini_batches 1; beaver: the same
accumulation). Both: policy and value model from the same checkpoints, fp32, AdamW lr 5e-4
constant for actor and critic, betas 0.9/0.95, no weight decay, no gradient clipping (TRL's PPO
loop does not clip), KL coefficient 0.05 (k1), missing-EOS penalty 3, GAE gamma 1 lambda 0.95,
whitened advantages, ratio clip 0.2, value clip 5.

`beaver ppo-lag` runs with all of PPO-Lag's work (cost model, cost critic, the cost GAE and
critic update, the Lagrange controller) but with the multiplier held near 0 (lambda_init 1e-6,
lambda_lr 0), so that its policy learns as PPO's does and samples answers of the same lengths:
the speed difference to `beaver ppo` is PPO-Lag's overhead at equal work.

Splits: generation = the `generate` call; scoring = from there until the update starts (log-probs,
reference, reward and value passes; for TRL also its GAE); training = the rest of the step.
The trend checked is the mean reward-model score of each rollout (after the EOS penalty).

    python benchmarks/bench_ppo.py [--blocks 15] [--block-steps 1] [--replicas 1] [--threads 1]
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace
from typing import Any

import machine
import prepare
import report
from harness import Side, interleave, per_step, share

ROLLOUT, MICRO, NEW_TOKENS, LR, BETA2 = 64, 32, 40, 5e-4, 0.95
# The old log-probs from a second actor pass instead of the sampling scores
RECOMPUTE = ("ppo.logprobs_from_sampling=false",)
# Every scoring and training pass on packed rows (no padding computed)
PACKED = ("train.padding_free=true",)
KL, EOS_PENALTY, VALUE_CLIP = 0.05, 3.0, 5.0


def beaver_side(pacer: Any, steps: int, algorithm: str, extra: tuple[str, ...] = ()) -> None:
    """`extra`: overrides that turn one of beaver's savings off (the table's "off" rows)."""
    import beaver.stages.ppo as ppo
    from beaver.config import PPOConfig, load_config

    out = prepare.run_dir(f"{algorithm}-beaver" + "".join(f"-{e.split('=')[0]}" for e in extra))
    overrides = [
        f"algorithm={algorithm}",
        f"output_dir={out}",
        f"actor.name_or_path={prepare.SFT_MODEL}",
        f"reward_model.name_or_path={prepare.RM_MODEL}",
        f"data.train=[toyworld-prompts:1.0:{prepare.WORLD}]",
        f"generation.max_new_tokens={NEW_TOKENS}",
        f"ppo.rollout_batch_size={ROLLOUT}",
        f"ppo.kl_coeff={KL}",
        f"ppo.missing_eos_penalty={EOS_PENALTY}",
        f"ppo.clip_range_value={VALUE_CLIP}",
        "ppo.whiten_advantages=true",
        f"train.per_device_batch_size={MICRO}",
        f"train.gradient_accumulation_steps={ROLLOUT // MICRO}",
        f"train.max_steps={steps}",
        *prepare.COMMON,
        *extra,
    ]
    for opt in ("actor_optim", "critic_optim"):
        overrides += [f"{opt}.lr={LR}", f"{opt}.betas=[0.9,{BETA2}]", f"{opt}.weight_decay=0.0"]
        overrides += [f"{opt}.clip_grad_norm=0.0"]
    if algorithm == "ppo-lag":
        # All of PPO-Lag's work (cost model, cost critic, its GAE and update, the controller),
        # with the multiplier held near 0 so that the policy learns as PPO's does and both
        # sample answers of the same lengths: the difference in speed is then the overhead.
        overrides += [
            f"cost_model.name_or_path={prepare.CM_MODEL}",
            "lagrange.target_unsafe_share=null",
            "lagrange.lambda_init=1e-6",
            "lagrange.lambda_lr=0.0",
        ]
    config = "ppo-lag.yaml" if algorithm == "ppo-lag" else "ppo.yaml"
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
            # generation.engine=vllm: the push of the actor's weights into vLLM (bench_vllm)
            **({"push": m["time/weight_sync"]} if "time/weight_sync" in m else {}),
        )
        return out

    ppo.ppo_step = timed  # run() calls the module-level name
    ppo.run(cfg)


def trl_score_model(path: Any) -> Any:
    """A `LlamaForSequenceClassification` with beaver's score model: backbone and head (a
    Linear with bias, so the scores are the same numbers)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32
    )
    head = load_file(str(path / "score_head.safetensors"))
    model.score = torch.nn.Linear(model.config.hidden_size, 1, bias=True)
    model.score.load_state_dict(
        {"weight": head["score_head.weight"], "bias": head["score_head.bias"]}
    )
    return model


def prompt_dataset() -> tuple[Any, Any]:
    """beaver's tokenized RL prompts as the HF dataset TRL takes (`input_ids`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from beaver.config import DataCfg
    from beaver.data import make_datasets

    tok = AutoTokenizer.from_pretrained(prepare.SFT_MODEL, padding_side="left")
    spec = DataCfg(train=[f"toyworld-prompts:1.0:{prepare.WORLD}"], max_length=64)
    ds, _ = make_datasets("prompt_only", spec, tok)
    ids = [list(map(int, ds[i]["input_ids"])) for i in range(len(ds))]
    return Dataset.from_dict({"input_ids": ids}), tok


def trl_side(pacer: Any, steps: int) -> None:
    import torch
    import trl.experimental.ppo.ppo_trainer as pt
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    clock: dict[str, Any] = {"generate": 0.0, "gen_end": 0.0, "score_end": None, "gc": 0.0}
    generate, forward, collect = pt.batch_generation, pt.forward, pt.gc.collect

    def timed_generate(model: Any, queries: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = generate(model, queries, *args, **kwargs)
        clock["gen_end"] = time.perf_counter()
        clock["generate"] = clock["gen_end"] - start
        eos = out[0][:, queries.shape[1] :] == model.generation_config.eos_token_id
        ended = eos.any(dim=1)
        lengths = torch.where(ended, eos.int().argmax(dim=1) + 1, eos.shape[1])
        clock["response_length"] = lengths.float().mean().item()
        return out

    def timed_collect(*args: Any) -> int:  # TRL's PPO loop calls gc.collect() twice a step
        start = time.perf_counter()
        found = collect(*args)
        clock["gc"] += time.perf_counter() - start
        return found

    def marked_forward(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled() and clock["score_end"] is None:  # the update's first pass
            clock["score_end"] = time.perf_counter()
        return forward(*args, **kwargs)

    pt.batch_generation, pt.forward = timed_generate, marked_forward
    pt.gc = SimpleNamespace(collect=timed_collect)  # only TRL's PPO module sees the wrapper

    class PacerCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            clock["reward"] = logs["objective/scores"]

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            pacer.step(
                units=ROLLOUT,
                loss=clock["reward"],
                generate=clock["generate"],
                score=clock["score_end"] - clock["gen_end"],
                gc=clock["gc"],
                response_length=clock["response_length"],
            )
            clock["score_end"], clock["gc"] = None, 0.0

    data, tok = prompt_dataset()
    out = prepare.run_dir("ppo-trl")
    args = PPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=ROLLOUT // MICRO,
        num_mini_batches=1,
        num_ppo_epochs=1,
        local_rollout_forward_batch_size=ROLLOUT,
        total_episodes=steps * ROLLOUT,
        response_length=NEW_TOKENS,
        temperature=1.0,
        stop_token="eos",
        missing_eos_penalty=EOS_PENALTY,
        kl_coef=KL,
        cliprange_value=VALUE_CLIP,
        learning_rate=LR,
        lr_scheduler_type="constant",
        adam_beta2=BETA2,
        weight_decay=0.0,
        num_sample_generations=0,
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
    ref = AutoModelForCausalLM.from_pretrained(prepare.SFT_MODEL, dtype=torch.float32)
    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=ref,
        reward_model=trl_score_model(prepare.RM_MODEL),
        value_model=trl_score_model(prepare.RM_MODEL),
        train_dataset=data,
        eval_dataset=data.select(range(ROLLOUT)),
        callbacks=[PacerCallback()],
    )
    trainer.train()


def split(side: Side) -> dict[str, float]:
    """Median seconds per step in generation, scoring and the rest (training), the mean
    response length; for TRL its gc.collect() seconds (one call falls in scoring, one in
    training); for vLLM rollouts the weight push before each rollout (`push_s`, not in
    `train_s`)."""
    total = per_step(side).median
    gen, score = share(side, "generate").median, share(side, "score").median
    measured = {key for b in side.blocks for r in b for key in r}
    push = share(side, "push").median if "push" in measured else 0.0
    out = {
        "step_s": round(total, 3),
        "generate_s": round(gen, 3),
        "score_s": round(score, 3),
        "train_s": round(total - gen - score - push, 3),
        "response_tokens": round(share(side, "response_length").median, 1),
    }
    if "push" in measured:
        out["push_s"] = round(push, 4)
    if "gc" in measured:
        out["gc_collect_s"] = round(share(side, "gc").median, 3)
    return out


def policy_shape() -> tuple[machine.Shape, float]:
    """The policy's shape and the RL prompts' mean length: what an episode's FLOPs depend on."""
    from transformers import AutoConfig

    shape = machine.Shape.of(AutoConfig.from_pretrained(prepare.SFT_MODEL))
    data, _ = prompt_dataset()
    return shape, statistics.fmean(len(x) for x in data["input_ids"])


def workload(prompt: float) -> dict[str, Any]:
    return {
        "rollout_batch": ROLLOUT,
        "micro_batch": MICRO,
        "max_new_tokens": NEW_TOKENS,
        "mean_prompt_tokens": round(prompt, 1),
        "precision": "fp32",
    }


def main() -> dict[str, Any]:
    a = report.bench_args(__doc__, blocks=15, block_steps=1, warmup_steps=2)
    for kind in ("rm", "cm"):
        prepare.score_model(kind)
    steps = a.steps
    prepare.clean_runs()
    peak = machine.gemm_peak_flops()
    sides = interleave(
        [
            Side("beaver-ppo", beaver_side, {"steps": steps, "algorithm": "ppo"}),
            Side("trl-ppo", trl_side, {"steps": steps}),
            Side(
                "beaver-ppo-recompute",
                beaver_side,
                {"steps": steps, "algorithm": "ppo", "extra": RECOMPUTE},
            ),
            Side(
                "beaver-ppo-packed",
                beaver_side,
                {"steps": steps, "algorithm": "ppo", "extra": PACKED},
            ),
            Side("beaver-ppo-lag", beaver_side, {"steps": steps, "algorithm": "ppo-lag"}),
        ],
        warmup_steps=a.warmup_steps,
        block_steps=a.block_steps,
        blocks=a.blocks,
        log_dir=prepare.WORK / "logs",
        replicas=a.replicas,
        prefix="ppo",
    )
    shape, prompt = policy_shape()
    # Each side's own passes. beaver and TRL: the reference LM pass (the old log-probs come with
    # generation; `-recompute` runs the actor again), reward and critic score passes; PPO-Lag:
    # + cost model and cost critic, and it trains two critics.
    flops = {
        "beaver-ppo": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 2, 1),
        "trl-ppo": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 2, 1),
        "beaver-ppo-recompute": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 2, 2, 1),
        "beaver-ppo-packed": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 2, 1),
        "beaver-ppo-lag": machine.ppo_episode_flops(shape, prompt, NEW_TOKENS, 1, 4, 2),
    }
    by_name = {s.name: s for s in sides}
    result = report.assemble(
        "ppo",
        sides,
        flops_per_unit=flops,
        unit="episodes/s",
        peer="trl-ppo",
        peak=peak,
        workload=workload(prompt),
        model_flops_per_episode=flops,
        split={s.name: split(s) for s in sides},
        lag_over_ppo=report.ratio(by_name["beaver-ppo-lag"], by_name["beaver-ppo"]),
        trend=report.check_trends(sides, "up", metric="reward"),
    )
    report.write("ppo", result)
    report.print_result(result)
    return result


if __name__ == "__main__":
    main()
