"""`beaver ppo` / `beaver ppo-lag`: RLHF against a reward model, optionally under a cost constraint.

parse (CLI) -> build (tokenizer, prompt data, actor + critics as trained engines, reference,
reward and cost models as frozen ones, the Lagrange controller) -> train (the shared loop; one
step = one rollout batch and its PPO update) -> save (actor in HF format) -> plots.

One stage serves three algorithms (`algorithm`):
- `ppo`: reward model, reward critic;
- `ppo-lag`: + cost model, cost critic and the multiplier: A = (A_r - lambda A_c) / (1 + lambda);
- `reward-shaping`: R' = R - lambda_fixed * C with the reward critic only (an ablation).

[beaver] With `lagrange.target_unsafe_share` the threshold d is calibrated at the start from the
cost model's scores on rollouts of the initial policy (ALGORITHMS.md); it is logged, written to
`threshold.json` and kept in every checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from beaver.algo import LagrangeController, threshold_from_costs
from beaver.config.stages import PPOConfig
from beaver.engine import dist
from beaver.engine.build import init_engine, make_ds_config, write_ds_config
from beaver.engine.data import make_loader, to_device
from beaver.engine.loop import StepResult, count_steps, train_loop
from beaver.engine.run import Run, finish_run, start_run
from beaver.files import write_json
from beaver.models.loading import check_model_source, dtype_of, load_causal_lm, load_tokenizer
from beaver.models.saving import save_hf
from beaver.models.score import load_score_model
from beaver.report.plots import plot_metrics, read_metrics
from beaver.stages.ppo_step import compute_targets, rollout_stats, update
from beaver.stages.rollout import (
    RolloutModels,
    RolloutOptions,
    collect_rollout,
    make_retokenizer,
)


@dataclass
class PPOParts:
    """Everything a PPO step touches, built once."""

    models: RolloutModels
    opts: RolloutOptions
    controller: LagrangeController | None
    retokenize: Any
    ptx_loader: Any


def _build(cfg: PPOConfig, run_: Run, total_steps: int, updates_per_step: int) -> PPOParts:
    """Engines for the actor and critics (trained) and the frozen models, from the config."""
    train, ds, dtype = cfg.train, cfg.deepspeed, dtype_of(cfg.deepspeed.precision)
    optim_steps = math.ceil(total_steps * updates_per_step / train.gradient_accumulation_steps)
    actor_ds = make_ds_config(ds, train, cfg.actor_optim)
    critic_ds = make_ds_config(ds, train, cfg.critic_optim)
    frozen_ds = make_ds_config(ds, train, None)
    write_ds_config(actor_ds, run_.dir / "ds_config.json")
    ac = ds.activation_checkpointing

    def trained(model: Any, ds_config: dict[str, Any], optim: Any) -> Any:
        return init_engine(model, ds_config, optim, optim_steps, activation_checkpointing=ac)

    actor = trained(load_causal_lm(cfg.actor, dtype, actor_ds), actor_ds, cfg.actor_optim)
    ref = init_engine(load_causal_lm(cfg.actor, dtype, frozen_ds), frozen_ds)
    reward_model = init_engine(
        load_score_model(cfg.reward_model, dtype, ds_config=frozen_ds), frozen_ds
    )
    critic = load_score_model(
        cfg.reward_critic or cfg.reward_model, dtype, "critic", ds_config=critic_ds
    )
    reward_critic = trained(critic, critic_ds, cfg.critic_optim)
    cost_model = cost_critic = None
    if cfg.algorithm != "ppo":
        assert cfg.cost_model is not None
        cost_model = init_engine(
            load_score_model(cfg.cost_model, dtype, ds_config=frozen_ds), frozen_ds
        )
    if cfg.algorithm == "ppo-lag":
        assert cfg.cost_model is not None
        critic = load_score_model(
            cfg.cost_critic or cfg.cost_model, dtype, "critic", ds_config=critic_ds
        )
        cost_critic = trained(critic, critic_ds, cfg.critic_optim)

    actor_tok = load_tokenizer(cfg.actor, padding_side="left")
    score_tok = load_tokenizer(cfg.reward_model)
    lag = cfg.lagrange
    controller = None
    if cfg.algorithm == "ppo-lag":
        controller = LagrangeController(
            lambda_init=lag.lambda_init,
            lambda_lr=lag.lambda_lr,
            lambda_max=lag.lambda_max,
            threshold=lag.threshold,
            update_delay_steps=lag.lambda_update_delay_steps,
            window_size=lag.episode_cost_window_size,
        )
    opts = RolloutOptions(
        generation=cfg.generation,
        eos_token_id=actor_tok.eos_token_id,
        pad_token_id=actor_tok.pad_token_id,
        missing_eos_penalty=cfg.ppo.missing_eos_penalty,
        lambda_fixed=lag.lambda_fixed if cfg.algorithm == "reward-shaping" else None,
        synced_gpus=ds.zero_stage == 3 and dist.world_size() > 1,
    )
    ptx_loader = None
    if cfg.data.ptx:
        from beaver.data import build_dataset

        ptx_ds = build_dataset("supervised", cfg.data.ptx, cfg.data, load_tokenizer(cfg.actor))
        ptx_loader = make_loader(ptx_ds, train.per_device_batch_size, shuffle=True, seed=train.seed)
    models = RolloutModels(actor, ref, reward_model, reward_critic, cost_model, cost_critic)
    return PPOParts(models, opts, controller, make_retokenizer(actor_tok, score_tok), ptx_loader)


def _mean_over_ranks(values: Tensor) -> float:
    """Mean of per-episode values over all ranks (J_c of the constraint)."""
    total = dist.reduce_values({"sum": float(values.sum()), "n": float(values.numel())}, "sum")
    return total["sum"] / max(total["n"], 1.0)


def calibrate(parts: PPOParts, loader: Any, share: float, batches: int) -> float:
    """Threshold d from the cost model's scores on the initial policy's rollouts."""
    costs = []
    for k, batch in enumerate(loader):
        if k >= batches:
            break
        batch = to_device(batch, dist.device())
        rollout, _ = collect_rollout(
            parts.models, batch["input_ids"], batch["attention_mask"], parts.opts, parts.retokenize
        )
        assert rollout.cost is not None
        costs.append(rollout.cost)
    return threshold_from_costs(dist.gather(torch.cat(costs)), share)


def ppo_step(cfg: PPOConfig, parts: PPOParts, batch: dict[str, Any], ptx_iter: Any) -> StepResult:
    """One rollout batch: sample, score, move lambda, compute targets, update actor and critics."""
    m, controller = parts.models, parts.controller
    batch = to_device(batch, dist.device())
    rollout, timings = collect_rollout(
        m, batch["input_ids"], batch["attention_mask"], parts.opts, parts.retokenize
    )
    metrics = rollout_stats(rollout)
    if controller is not None:
        assert rollout.cost is not None
        controller.observe(rollout.cost)
        j_c = _mean_over_ranks(torch.tensor(list(controller.window)))
        if cfg.lagrange.update_cadence == "per_rollout":
            controller.update(j_c)
        metrics.update(
            {"lagrange/mean_episode_cost": j_c, "lagrange/threshold": controller.threshold}
        )

    def lambda_now() -> float | None:
        if controller is None:
            return None
        if cfg.lagrange.update_cadence == "per_step":
            controller.update(j_c)
        return controller.lambda_

    targets = compute_targets(rollout, cfg.ppo)
    # Micro-batch order from the global RNG, which checkpoints restore: resume stays exact.
    generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
    ptx = [to_device(next(ptx_iter), dist.device())] if ptx_iter is not None else None
    start = time.perf_counter()
    stats = update(
        m.actor,
        m.reward_critic,
        m.cost_critic,
        rollout,
        targets,
        cfg.ppo,
        cfg.train.per_device_batch_size,
        cfg.generation.temperature,
        generator,
        lambda_now,
        ptx,
    )
    timings["time/train"] = time.perf_counter() - start
    for key in stats[0]:
        metrics[key] = sum(s[key] for s in stats) / len(stats)
    if controller is not None:
        metrics["lagrange/lambda"] = controller.lambda_
    metrics.update(timings)
    tokens = int(rollout.attention_mask.sum())
    return StepResult(
        loss=metrics["train/actor_loss"], metrics=metrics, tokens=tokens, samples=rollout.batch_size
    )


def _cycle(loader: Any) -> Any:
    while True:
        yield from loader


def run(cfg: PPOConfig) -> None:
    from beaver.data import build_dataset

    for model_cfg in (
        cfg.actor,
        cfg.reward_model,
        cfg.cost_model,
        cfg.reward_critic,
        cfg.cost_critic,
    ):
        if model_cfg is not None:
            check_model_source(model_cfg.name_or_path)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.actor, padding_side="left")
    prompts = build_dataset("prompt_only", cfg.data.train, cfg.data, tokenizer, "training")
    run_.print(f"prompts: {prompts.stats.summary()}")
    train = cfg.train
    loader = make_loader(prompts, cfg.ppo.rollout_batch_size, shuffle=True, seed=train.seed)
    steps = count_steps(train, loader, 1)
    episodes = cfg.ppo.rollout_batch_size * cfg.generation.num_return_sequences
    updates = math.ceil(episodes / train.per_device_batch_size) * cfg.ppo.update_iters
    parts = _build(cfg, run_, steps, updates)

    share = cfg.lagrange.target_unsafe_share
    if parts.controller is not None and share is not None and run_.resume_from is None:
        d = calibrate(parts, loader, share, cfg.lagrange.calibration_batches)
        parts.controller.threshold = d
        run_.print(f"threshold calibrated for an unsafe share of {share:.0%}: d = {d:.3f}")
        if dist.is_main():
            write_json(run_.dir / "threshold.json", {"target_unsafe_share": share, "threshold": d})

    engines = {"actor": parts.models.actor, "reward_critic": parts.models.reward_critic}
    if parts.models.cost_critic is not None:
        engines["cost_critic"] = parts.models.cost_critic
    stateful = {"lagrange": parts.controller} if parts.controller is not None else {}
    ptx_iter = _cycle(parts.ptx_loader) if parts.ptx_loader is not None else None

    def step_fn(batches: list[dict[str, Any]]) -> StepResult:
        return ppo_step(cfg, parts, batches[0], ptx_iter)

    result = train_loop(
        step_fn,
        loader,
        engines,
        train=train,
        checkpoint_dir=run_.checkpoint_dir,
        logger=run_.logger,
        total_steps=steps,
        batches_per_step=1,
        stateful=stateful,  # type: ignore[arg-type]
        resume_from=run_.resume_from,
    )
    model_dir = None
    if result.interrupted is None:
        model_dir = save_hf(parts.models.actor, tokenizer, run_.dir / "model")
    if dist.is_main():
        write_plots(run_, parts.controller)
    finish_run(run_, result, model_dir, {"algorithm": cfg.algorithm})


def write_plots(run_: Run, controller: LagrangeController | None) -> None:
    """PNG plots of the run's metrics: lambda, episode cost vs threshold, reward, KL."""
    rows = read_metrics(run_.dir / "metrics.jsonl")
    panels = {
        "reward": ["rollout/reward"],
        "KL": ["rollout/kl_k1", "rollout/kl_k3"],
        "EOS rate": ["rollout/eos_rate"],
    }
    if controller is not None:
        panels = {
            "lambda": ["lagrange/lambda"],
            "episode cost": ["lagrange/mean_episode_cost", "rollout/cost"],
            **panels,
        }
    hlines = {"threshold": controller.threshold} if controller is not None else None
    path = plot_metrics(rows, panels, run_.dir / "training.png", run_.cfg.output_dir, hlines)
    run_.print(f"plots: {path}")
