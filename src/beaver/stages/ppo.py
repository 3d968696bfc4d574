"""`beaver ppo` / `beaver ppo-lag`: RLHF against a reward model, optionally under a cost constraint.

parse (CLI) -> build (tokenizer, prompt data, actor + critics as trained engines, reference,
reward and cost models as frozen ones, the Lagrange controller) -> train (the shared loop; one
step = one rollout batch and its PPO update) -> save (actor in HF format) -> plots.

One stage serves the online algorithms of `beaver.config.algorithms`; the algorithm's spec
(`cfg.spec`) says which parts are built, and the step runs on whatever was built:
- `ppo`: reward model, reward critic;
- `ppo-lag`: + per constraint a cost source, a cost critic and a multiplier:
  A = (A_r - sum_k lambda_k A_ck) / (1 + sum_k lambda_k) (one constraint: `cost_model` +
  `lagrange`, A = (A_r - lambda A_c) / (1 + lambda); several: `constraints`);
- `reward-shaping`: R' = R - lambda_fixed * C with the reward critic only (an ablation);
- `rloo` / `rloo-lag`: no critic at all; k responses per prompt and leave-one-out baselines per
  stream (`beaver.algo.rloo`), combined as PPO-Lag's are.

With `actor.lora` the actor is a peft model and the reference is the same module with its adapter
disabled (no second copy); critics with `lora` train their adapters and heads. The summary says
how many models the run holds and how many parameters each trained engine trains.

[beaver] A constraint with `target_unsafe_share` has its threshold d calibrated at the start from
its cost source's scores on rollouts of the initial policy (ALGORITHMS.md); it is logged, written
to `threshold.json` and kept in every checkpoint.

Several constraints: each has its own cost source (sources naming the same model share one copy
and one forward), its own cost critic (ppo-lag: a cost stream's values depend on which cost it
predicts, and a critic per constraint keeps each GAE exactly PPO-Lag's; the price is one more
model per constraint, which `rloo-lag` avoids), its own multiplier updated from its own J_c, and
its metrics, checkpoint state and plot lines under its name.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from beaver.algo import LagrangeController, controller_from_config, threshold_from_costs
from beaver.config.sections import ModelCfg
from beaver.config.stages import SHORTHAND_CONSTRAINT, PPOConfig
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
from beaver.models.saving import save_hf, unwrap
from beaver.models.score import ScoreModel, load_score_model
from beaver.report.plots import plot_metrics, read_metrics
from beaver.stages.constraints import check_head, constraint_summary, critic_start, text_source
from beaver.stages.ppo_step import (
    UpdatePlan,
    compute_targets,
    per_constraint,
    rollout_stats,
    update,
)
from beaver.stages.rollout import (
    CostSource,
    RewardTerm,
    RolloutModels,
    RolloutOptions,
    SampledLogprobs,
    collect_rollout,
    make_decoder,
    make_retokenizer,
    part_name,
)


@dataclass
class PPOParts:
    """Everything a PPO step touches, built once."""

    models: RolloutModels
    opts: RolloutOptions
    plan: UpdatePlan
    controllers: tuple[LagrangeController, ...] = ()  # one per constraint
    names: tuple[str, ...] = ()  # the constraints' names, in the same order
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

    def critic(name: str, model_cfg: ModelCfg, head: str | None = None) -> Any:
        model = load_score_model(
            model_cfg, dtype, "critic", deepspeed=specs.critic, trainable=True, head=head
        )
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
        reward_terms=tuple(
            RewardTerm(t.name, t.weight, text_source(t.source, f"reward_terms.{t.name}.source"))
            for t in cfg.reward_terms
        ),
    )
    if "reward_critic" in cfg.spec.critic_names():
        reward_critic = critic("reward_critic", cfg.reward_critic or cfg.reward_model)
        models = replace(models, reward_critic=reward_critic)
    constraints = cfg.constraint_list()
    if cfg.spec.fixed_cost_weight:  # reward shaping: one cost source, no constraint
        assert cfg.cost_model is not None  # the config checks it
        source = CostSource(SHORTHAND_CONSTRAINT, score_model("cost_model", cfg.cost_model))
        return replace(models, cost_sources=(source,))
    k, loaded = len(constraints), {}  # one copy of each distinct cost model
    sources = []
    for c in constraints:
        if c.source.cost_model is None:  # a source that reads text
            key = f"constraints.{c.name}.source"
            sources.append(CostSource(c.name, text=text_source(c.source, key)))
            continue
        key = c.source.cost_model.model_dump_json()
        if key not in loaded:
            name = part_name("cost_model", c.name, k)
            loaded[key] = score_model(name, c.source.cost_model)
        head = c.source.head
        model: ScoreModel = unwrap(loaded[key])  # type: ignore[assignment]
        index = None if head is None else model.head_index(head)
        sources.append(CostSource(c.name, loaded[key], index))
    critics = ()
    if cfg.spec.cost_critic:
        critics = tuple(
            critic(part_name("cost_critic", c.name, k), *critic_start(cfg, c)) for c in constraints
        )
    return replace(models, cost_sources=tuple(sources), cost_critics=critics)


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
        padding_free=train.padding_free,
        length_grouped=cfg.ppo.length_grouped and not train.padding_free,
    )
    episodes = cfg.ppo.rollout_batch_size * cfg.generation.num_return_sequences
    updates = rollouts * plan.updates_per_rollout(episodes)
    optim_steps = math.ceil(updates / train.gradient_accumulation_steps)
    models = build_models(cfg, run_, specs, optim_steps)
    actor_tok = load_tokenizer(cfg.actor, padding_side="left")
    retokenize = make_retokenizer(actor_tok, load_tokenizer(cfg.reward_model))
    constraints = cfg.constraint_list()
    controllers = tuple(controller_from_config(c) for c in constraints)
    opts = RolloutOptions(
        generation=cfg.generation,
        eos_token_id=actor_tok.eos_token_id,
        pad_token_id=actor_tok.pad_token_id,
        missing_eos_penalty=cfg.ppo.missing_eos_penalty,
        lambda_fixed=cfg.lagrange.lambda_fixed if spec.fixed_cost_weight else None,
        # ZeRO-3 over several ranks: every rank runs each forward of `generate` together
        synced_gpus=specs.actor.zero3 and dist.world_size() > 1,
        decode=make_decoder(actor_tok),
        sampled_logprobs=SampledLogprobs.for_sampling(
            cfg.generation, cfg.ppo.logprobs_from_sampling
        ),
        padding_free=train.padding_free,
    )
    if cfg.generation.engine == "vllm":
        from beaver.models.vllm_engine import VLLMSampler

        max_len = cfg.data.max_length + cfg.generation.max_new_tokens
        sampler = VLLMSampler(
            models.actor, actor_tok, cfg.generation, max_len, train.seed,
            gpu_memory_utilization=cfg.generation.vllm_gpu_memory,
        )  # fmt: skip
        opts = replace(opts, sampler=sampler)
    ptx_loader = None
    if cfg.data.ptx:
        from beaver.data import build_dataset

        ptx_ds = build_dataset("supervised", cfg.data.ptx, cfg.data, load_tokenizer(cfg.actor))
        ptx_loader = make_loader(ptx_ds, train.per_device_batch_size, shuffle=True, seed=train.seed)
    names = tuple(c.name for c in constraints)
    return PPOParts(models, opts, plan, controllers, names, retokenize, ptx_loader)


def prompts_of(batch: dict[str, Any]) -> list[str] | None:
    """The raw prompt texts of a prompt batch (for cost sources that read text)."""
    meta = batch.get("meta")
    return None if meta is None else [m.get("prompt", "") for m in meta]


def _mean_over_ranks(values: Tensor) -> float:
    """Mean of per-episode values over all ranks (J_c of the constraint)."""
    total = dist.reduce_values({"sum": float(values.sum()), "n": float(values.numel())}, "sum")
    return total["sum"] / max(total["n"], 1.0)


def calibration_costs(parts: PPOParts, loader: Any, batches: int) -> Tensor:
    """(N, K) every cost source's scores on rollouts of the initial policy, gathered over ranks."""
    costs = []
    for k, batch in enumerate(loader):
        if k >= batches:
            break
        batch = to_device(batch, dist.device())
        rollout, _ = collect_rollout(
            parts.models, batch["input_ids"], batch["attention_mask"], parts.opts, parts.retokenize,
            prompts_of(batch),
        )  # fmt: skip
        assert rollout.costs is not None
        costs.append(rollout.costs)
    return dist.gather(torch.cat(costs))


def calibrate(cfg: PPOConfig, run_: Run, parts: PPOParts, loader: Any) -> None:
    """Thresholds of the constraints bounded by `target_unsafe_share`, from one set of
    calibration rollouts (every source scores the same answers); saved to threshold.json."""
    shares = {c.name: c.target_unsafe_share for c in cfg.constraint_list()}
    if all(q is None for q in shares.values()):
        return
    costs = calibration_costs(parts, loader, cfg.lagrange.calibration_batches)
    saved: dict[str, Any] = {}
    for k, (name, controller) in enumerate(zip(parts.names, parts.controllers, strict=True)):
        share = shares[name]
        if share is None:
            continue
        controller.threshold = threshold_from_costs(costs[:, k], share)
        d = controller.threshold
        run_.print(f"{name}: threshold calibrated for an unsafe share of {share:.1%}: d = {d:.3f}")
        saved[name] = {"target_unsafe_share": share, "threshold": d}
    if len(parts.names) == 1:  # the file's form from before constraints were a list
        saved = {**next(iter(saved.values())), "constraints": saved}
    if dist.is_main():
        write_json(run_.dir / "threshold.json", saved)


def observe_costs(
    controllers: tuple[LagrangeController, ...], names: tuple[str, ...], costs: Tensor
) -> dict[str, float]:
    """The rollout event of every multiplier: constraint k's episode costs (column k of the
    (B, K) `costs`) into its window, its J_c over ranks."""
    out: dict[str, float] = {}
    for k, controller in enumerate(controllers):
        controller.observe(costs[:, k])
        # float64: the window holds Python floats, and a float32 sum would round J_c (and lambda)
        j_c = _mean_over_ranks(torch.tensor(list(controller.window), dtype=torch.float64))
        controller.on_rollout(j_c)
        out.update(per_constraint("lagrange/mean_episode_cost", names, k, j_c))
        out.update(per_constraint("lagrange/threshold", names, k, controller.threshold))
    return out


def ppo_step(cfg: PPOConfig, parts: PPOParts, batch: dict[str, Any], ptx_iter: Any) -> StepResult:
    """One rollout batch: sample, score, move lambda, compute targets, update actor and critics."""
    batch = to_device(batch, dist.device())
    sync = {}
    if parts.opts.sampler is not None:  # the last update's (or a resumed run's) weights to vLLM
        sync["time/weight_sync"] = parts.opts.sampler.push(parts.models.actor)
    rollout, measured = collect_rollout(
        parts.models, batch["input_ids"], batch["attention_mask"], parts.opts, parts.retokenize,
        prompts_of(batch),
    )  # fmt: skip
    metrics = rollout_stats(rollout, parts.names)
    if parts.controllers:
        assert rollout.costs is not None
        metrics.update(observe_costs(parts.controllers, parts.names, rollout.costs))
    targets = compute_targets(rollout, parts.plan)
    # Micro-batch order from the global RNG, which checkpoints restore: resume stays exact.
    generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
    ptx = [to_device(next(ptx_iter), dist.device())] if ptx_iter is not None else None
    start = time.perf_counter()
    stats = update(
        parts.models, rollout, targets, parts.plan, generator, controllers=parts.controllers,
        names=parts.names, ptx_batches=ptx,
    )  # fmt: skip
    measured["time/train"] = time.perf_counter() - start
    for key in stats[0]:
        metrics[key] = sum(s[key] for s in stats) / len(stats)
    for k, controller in enumerate(parts.controllers):
        metrics.update(per_constraint("lagrange/lambda", parts.names, k, controller.lambda_))
    metrics.update(measured | sync)  # times, reward terms
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
    for c in cfg.constraints:
        key = f"constraints.{c.name}"
        check_models("cost", **{f"{key}.source.cost_model": c.source.cost_model})
        check_models(None, **{f"{key}.cost_critic": c.cost_critic})
        if c.source.cost_model is not None:
            check_head(c.source.cost_model.name_or_path, c.source.head, f"{key}.source.head")
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.actor, padding_side="left")
    prompts = build_dataset("prompt_only", cfg.data.train, cfg.data, tokenizer, "training")
    run_.print(f"prompts: {prompts.stats.summary()}")
    loader = make_loader(prompts, cfg.ppo.rollout_batch_size, shuffle=True, seed=cfg.train.seed)
    steps = count_steps(cfg.train, loader, 1)
    parts = build(cfg, run_, steps)
    if run_.resume_from is None:  # a resumed run's thresholds come from its checkpoint
        calibrate(cfg, run_, parts, loader)
    train(cfg, run_, parts, loader, steps, tokenizer)


def train(cfg: PPOConfig, run_: Run, parts: PPOParts, loader: Any, steps: int, tok: Any) -> None:
    """The shared loop over `steps` rollouts, then the actor's HF folder, plots and summary."""
    models = parts.models
    engines = {"actor": models.actor}
    optim = {"actor": ("actor_optim", cfg.actor_optim)}
    for name in held(models)["trained"][1:]:  # the critics: reward, then one per constraint
        engines[name] = models.named()[name]
        optim[name] = ("critic_optim", cfg.critic_optim)
    k = len(parts.controllers)  # one constraint keeps the key "lagrange" (older checkpoints)
    stateful = {
        part_name("lagrange", n, k): c for n, c in zip(parts.names, parts.controllers, strict=True)
    }
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
        write_plots(run_, parts)
    sizes = model_sizes(models, engines)
    run_.print(
        f"models held: {sizes['models_held']}; parameters trained: "
        f"{sum(sizes['trainable_parameters'].values()):,} of {sizes['parameters']:,}"
    )
    finish_run(
        run_,
        result,
        model_dir,
        {
            "algorithm": cfg.algorithm,
            "models": held(models),
            **sizes,
            **constraint_summary(cfg, parts.controllers),
        },
    )


def model_sizes(models: RolloutModels, engines: dict[str, Any]) -> dict[str, Any]:
    """How many models (copies of weights) the run holds, their parameters, and how many of
    them each trained engine trains (a LoRA actor doubles as the reference)."""
    present = list(models.named().values())
    trained = {name: parameter_counts(e.module)[0] for name, e in engines.items()}
    return {
        "models_held": len(present),
        "reference": "actor with its adapter disabled" if models.ref is None else "own copy",
        "parameters": sum(parameter_counts(getattr(m, "module", m))[1] for m in present),
        "trainable_parameters": trained,
    }


def held(models: RolloutModels) -> dict[str, list[str]]:
    """The models a run held, trained and frozen, by name (summary.json)."""
    names = list(models.named())
    is_trained = [n.split(".")[0] in ("actor", "reward_critic", "cost_critic") for n in names]
    return {
        "trained": [n for n, t in zip(names, is_trained, strict=True) if t],
        "frozen": [n for n, t in zip(names, is_trained, strict=True) if not t],
    }


def write_plots(run_: Run, parts: PPOParts) -> None:
    """PNG plots of the run's metrics: the multipliers, each constraint's episode cost against
    its threshold, reward, KL."""
    rows = read_metrics(run_.dir / "metrics.jsonl")
    panels: dict[str, list[str]] = {}
    lines: dict[str, dict[str, float]] = {}
    if parts.controllers:
        panels["lambda"] = [f"lagrange/{n}/lambda" for n in parts.names]
        for name, controller in zip(parts.names, parts.controllers, strict=True):
            title = f"cost: {name}"
            panels[title] = [f"lagrange/{name}/mean_episode_cost", f"rollout/{name}/cost"]
            lines[title] = {f"threshold {name}": controller.threshold}
    panels.update(
        {
            "reward": ["rollout/reward"],
            "KL": ["rollout/kl_k1", "rollout/kl_k3"],
            "EOS rate": ["rollout/eos_rate"],
        }
    )
    out = run_.dir / "training.png"
    path = plot_metrics(rows, panels, out, run_.cfg.output_dir, panel_hlines=lines)
    run_.print(f"plots: {path}")
