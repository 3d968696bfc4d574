"""`beaver ppo` / `beaver ppo-lag`: RLHF against a reward model, optionally under a cost constraint.

parse (CLI) -> build (tokenizer, prompt data, actor + critics as trained engines, reference,
reward and cost models as frozen ones, the Lagrange controller) -> train (the shared loop; one
step = one rollout batch and its PPO update) -> save (actor in HF format) -> plots.

One stage serves the online algorithms of `beaver.config.algorithms`; the algorithm's spec
(`cfg.spec`) says which parts are built, and the step runs on whatever was built:
- `ppo`: reward model, reward critic;
- `ppo-lag`: + cost model, cost critic and the multiplier: A = (A_r - lambda A_c) / (1 + lambda);
- `reward-shaping`: R' = R - lambda_fixed * C with the reward critic only (an ablation);
- `rloo` / `rloo-lag`: no critic at all; k responses per prompt and leave-one-out baselines per
  stream (`beaver.algo.rloo`), combined as PPO-Lag's are.

With `actor.lora` the actor is a peft model and the reference is the same module with its adapter
disabled (no second copy); critics with `lora` train their adapters and heads. The summary says
how many models the run holds and how many parameters each trained engine trains.

[beaver] With `lagrange.target_unsafe_share` the threshold d is calibrated at the start from the
cost model's scores on rollouts of the initial policy (ALGORITHMS.md); it is logged, written to
`threshold.json` and kept in every checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from beaver.algo import LagrangeController, controller_from_config, threshold_from_costs
from beaver.config.sections import ModelCfg
from beaver.config.stages import PPOConfig
from beaver.engine import dist
from beaver.engine.build import DeepSpeedSpec, init_engine, make_ds_config
from beaver.engine.checkpoint import disk_errors
from beaver.engine.checkpoint import finished_advice as _finished
from beaver.engine.data import make_loader, to_device
from beaver.engine.loop import StepResult, count_steps, train_loop
from beaver.engine.run import Run, finish_run, start_run
from beaver.files import write_json
from beaver.models.adapters import has_adapter, parameter_counts
from beaver.models.loading import check_models, dtype_of, load_causal_lm, load_tokenizer
from beaver.models.saving import save_hf
from beaver.models.score import load_score_model
from beaver.report.plots import plot_metrics, read_metrics
from beaver.stages.ppo_step import UpdatePlan, compute_targets, rollout_stats, update
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
    plan: UpdatePlan
    controller: LagrangeController | None = None
    retokenize: Any = None
    ptx_loader: Any = None


class EngineSpecs(NamedTuple):
    """The DeepSpeed set-up of each kind of engine a run holds."""

    actor: DeepSpeedSpec
    critic: DeepSpeedSpec
    frozen: DeepSpeedSpec  # reference, reward and cost models

    @classmethod
    def of(cls, cfg: PPOConfig) -> EngineSpecs:
        ds, train = cfg.deepspeed, cfg.train
        return cls(
            make_ds_config(ds, train, cfg.actor_optim),
            make_ds_config(ds, train, cfg.critic_optim),
            make_ds_config(ds, train, None),
        )


def build_models(cfg: PPOConfig, run_: Run, specs: EngineSpecs, optim_steps: int) -> RolloutModels:
    """An engine for every model the algorithm holds: actor and critics trained (schedules of
    `optim_steps` steps), the reference and score models frozen. Each engine's DeepSpeed config
    goes to the run folder (the actor's is `ds_config.json`)."""
    dtype = dtype_of(cfg.deepspeed.precision)

    def trained(name: str, model: Any, is_critic: bool) -> Any:
        spec, optim = (
            (specs.critic, cfg.critic_optim) if is_critic else (specs.actor, cfg.actor_optim)
        )
        run_.write_ds_config(spec, None if name == "actor" else name)
        ac = cfg.deepspeed.activation_checkpointing
        return init_engine(model, spec, optim, optim_steps, activation_checkpointing=ac)

    def frozen(name: str, model: Any) -> Any:
        run_.write_ds_config(specs.frozen, name)
        return init_engine(model, specs.frozen)

    def critic(name: str, model_cfg: ModelCfg) -> Any:
        model = load_score_model(model_cfg, dtype, "critic", deepspeed=specs.critic, trainable=True)
        return trained(name, model, is_critic=True)

    def score_model(name: str, model_cfg: ModelCfg) -> Any:
        return frozen(name, load_score_model(model_cfg, dtype, deepspeed=specs.frozen))

    # The order of the loads is part of the run: fresh score heads draw from the global RNG.
    actor = load_causal_lm(cfg.actor, dtype, specs.actor, trainable=True)
    models = RolloutModels(
        actor=trained("actor", actor, is_critic=False),
        # A LoRA actor is its own reference with the adapter disabled: no second copy.
        ref=None
        if has_adapter(actor)
        else frozen("reference", load_causal_lm(cfg.actor, dtype, specs.frozen)),
        reward_model=score_model("reward_model", cfg.reward_model),
    )
    if "reward_critic" in cfg.spec.critic_names():
        reward_critic = critic("reward_critic", cfg.reward_critic or cfg.reward_model)
        models = replace(models, reward_critic=reward_critic)
    if cfg.spec.cost_model:
        assert cfg.cost_model is not None  # the config checks it
        models = replace(models, cost_model=score_model("cost_model", cfg.cost_model))
    if cfg.spec.cost_critic:
        assert cfg.cost_model is not None
        cost_critic = critic("cost_critic", cfg.cost_critic or cfg.cost_model)
        models = replace(models, cost_critic=cost_critic)
    return models


def build(cfg: PPOConfig, run_: Run, rollouts: int) -> PPOParts:
    """The models, rollout options, update plan, multiplier and PTX data of a run of
    `rollouts` steps."""
    spec, train, specs = cfg.spec, cfg.train, EngineSpecs.of(cfg)
    plan = UpdatePlan(
        cfg.ppo,
        train.per_device_batch_size,
        cfg.generation.temperature,
        critic_free=spec.critic_free,
        samples_per_prompt=cfg.generation.num_return_sequences,
        scale_advantages=cfg.rloo.scale_advantages,
        sequence_ratio=spec.critic_free and cfg.rloo.ratio == "sequence",
    )
    episodes = cfg.ppo.rollout_batch_size * cfg.generation.num_return_sequences
    updates = rollouts * plan.updates_per_rollout(episodes)
    optim_steps = math.ceil(updates / train.gradient_accumulation_steps)
    models = build_models(cfg, run_, specs, optim_steps)
    actor_tok = load_tokenizer(cfg.actor, padding_side="left")
    retokenize = make_retokenizer(actor_tok, load_tokenizer(cfg.reward_model))
    controller = controller_from_config(cfg.lagrange) if spec.multiplier else None
    opts = RolloutOptions(
        generation=cfg.generation,
        eos_token_id=actor_tok.eos_token_id,
        pad_token_id=actor_tok.pad_token_id,
        missing_eos_penalty=cfg.ppo.missing_eos_penalty,
        lambda_fixed=cfg.lagrange.lambda_fixed if spec.fixed_cost_weight else None,
        # ZeRO-3 over several ranks: every rank runs each forward of `generate` together
        synced_gpus=specs.actor.zero3 and dist.world_size() > 1,
    )
    ptx_loader = None
    if cfg.data.ptx:
        from beaver.data import build_dataset

        ptx_ds = build_dataset("supervised", cfg.data.ptx, cfg.data, load_tokenizer(cfg.actor))
        ptx_loader = make_loader(ptx_ds, train.per_device_batch_size, shuffle=True, seed=train.seed)
    return PPOParts(models, opts, plan, controller, retokenize, ptx_loader)


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


def observe_costs(controller: LagrangeController, costs: Tensor) -> dict[str, float]:
    """The rollout event of the multiplier: episode costs into its window, J_c over ranks."""
    controller.observe(costs)
    # float64: the window holds Python floats, and a float32 sum would round J_c (and lambda)
    j_c = _mean_over_ranks(torch.tensor(list(controller.window), dtype=torch.float64))
    controller.on_rollout(j_c)
    return {"lagrange/mean_episode_cost": j_c, "lagrange/threshold": controller.threshold}


def ppo_step(cfg: PPOConfig, parts: PPOParts, batch: dict[str, Any], ptx_iter: Any) -> StepResult:
    """One rollout batch: sample, score, move lambda, compute targets, update actor and critics."""
    batch = to_device(batch, dist.device())
    rollout, timings = collect_rollout(
        parts.models, batch["input_ids"], batch["attention_mask"], parts.opts, parts.retokenize
    )
    metrics = rollout_stats(rollout)
    if parts.controller is not None:
        assert rollout.cost is not None
        metrics.update(observe_costs(parts.controller, rollout.cost))
    targets = compute_targets(rollout, parts.plan)
    # Micro-batch order from the global RNG, which checkpoints restore: resume stays exact.
    generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
    ptx = [to_device(next(ptx_iter), dist.device())] if ptx_iter is not None else None
    start = time.perf_counter()
    stats = update(
        parts.models, rollout, targets, parts.plan, generator, controller=parts.controller,
        ptx_batches=ptx,
    )  # fmt: skip
    timings["time/train"] = time.perf_counter() - start
    for key in stats[0]:
        metrics[key] = sum(s[key] for s in stats) / len(stats)
    if parts.controller is not None:
        metrics["lagrange/lambda"] = parts.controller.lambda_
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

    # Each model of the kind its key needs, before anything loads (a cost model as the
    # reward model would train the actor to maximise harm); critics may start from any model.
    check_models("causal LM", actor=cfg.actor)
    check_models("reward", reward_model=cfg.reward_model)
    check_models("cost", cost_model=cfg.cost_model)
    check_models(None, reward_critic=cfg.reward_critic, cost_critic=cfg.cost_critic)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.actor, padding_side="left")
    prompts = build_dataset("prompt_only", cfg.data.train, cfg.data, tokenizer, "training")
    run_.print(f"prompts: {prompts.stats.summary()}")
    loader = make_loader(prompts, cfg.ppo.rollout_batch_size, shuffle=True, seed=cfg.train.seed)
    steps = count_steps(cfg.train, loader, 1)
    parts = build(cfg, run_, steps)
    share = cfg.lagrange.target_unsafe_share
    if parts.controller is not None and share is not None and run_.resume_from is None:
        d = calibrate(parts, loader, share, cfg.lagrange.calibration_batches)
        parts.controller.threshold = d
        run_.print(f"threshold calibrated for an unsafe share of {share:.0%}: d = {d:.3f}")
        if dist.is_main():
            write_json(run_.dir / "threshold.json", {"target_unsafe_share": share, "threshold": d})
    train(cfg, run_, parts, loader, steps, tokenizer)


def train(cfg: PPOConfig, run_: Run, parts: PPOParts, loader: Any, steps: int, tok: Any) -> None:
    """The shared loop over `steps` rollouts, then the actor's HF folder, plots and summary."""
    models = parts.models
    engines = {"actor": models.actor}
    optim = {"actor": ("actor_optim", cfg.actor_optim)}
    for name in cfg.spec.critic_names():
        engines[name] = getattr(models, name)
        optim[name] = ("critic_optim", cfg.critic_optim)
    stateful = {"lagrange": parts.controller} if parts.controller is not None else {}
    ptx_iter = _cycle(parts.ptx_loader) if parts.ptx_loader is not None else None

    def step_fn(batches: list[dict[str, Any]]) -> StepResult:
        return ppo_step(cfg, parts, batches[0], ptx_iter)

    result = train_loop(
        step_fn,
        loader,
        engines,
        train=cfg.train,
        checkpoint_dir=run_.checkpoint_dir,
        logger=run_.logger,
        total_steps=steps,
        batches_per_step=1,
        stateful=stateful,  # type: ignore[arg-type]
        resume_from=run_.resume_from,
        optim=optim,
    )
    model_dir = None
    if result.interrupted is None:
        with disk_errors("the final model", run_.dir / "model", _finished(result)):
            model_dir = save_hf(models.actor, tok, run_.dir / "model", cfg.actor.lora.save_merged)
    if dist.is_main():
        write_plots(run_, parts.controller)
    sizes = model_sizes(models, engines)
    run_.print(
        f"models held: {sizes['models_held']}; parameters trained: "
        f"{sum(sizes['trainable_parameters'].values()):,} of {sizes['parameters']:,}"
    )
    finish_run(
        run_, result, model_dir, {"algorithm": cfg.algorithm, "models": held(models), **sizes}
    )


def model_sizes(models: RolloutModels, engines: dict[str, Any]) -> dict[str, Any]:
    """How many models (copies of weights) the run holds, their parameters, and how many of
    them each trained engine trains (a LoRA actor doubles as the reference)."""
    present = [m for m in vars(models).values() if m is not None]
    trained = {name: parameter_counts(e.module)[0] for name, e in engines.items()}
    return {
        "models_held": len(present),
        "reference": "actor with its adapter disabled" if models.ref is None else "own copy",
        "parameters": sum(parameter_counts(getattr(m, "module", m))[1] for m in present),
        "trainable_parameters": trained,
    }


def held(models: RolloutModels) -> dict[str, list[str]]:
    """The models a run held, trained and frozen, by name (summary.json)."""
    trained = ("actor", "reward_critic", "cost_critic")
    names = [f.name for f in fields(models) if getattr(models, f.name) is not None]
    return {
        "trained": [n for n in names if n in trained],
        "frozen": [n for n in names if n not in trained],
    }


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
