"""One config per stage, composed from the shared sections.

Cross-field checks live in validators here, so a bad combination is refused before any model
is loaded. Defaults are the reference's 7B defaults (ALGORITHMS.md); `configs/toy/` holds the
toy-world variants.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from beaver.config._base import OutputDir, Section
from beaver.config.algorithms import ALGORITHMS, OnlineAlgorithm
from beaver.config.sections import (
    DataCfg,
    DeepSpeedCfg,
    LaunchCfg,
    LoggingCfg,
    LoopCfg,
    ModelCfg,
    OptimCfg,
    RolloutGenerationCfg,
    TrainCfg,
    TrainDataCfg,
    TrainedModelCfg,
    no_data,
)


class TrainStage(Section):
    """What every training stage has: where it writes, how it trains, logs and launches."""

    @model_validator(mode="after")
    def _check_adapters(self) -> TrainStage:
        """Refuse a LoRA set-up that peft, bitsandbytes and DeepSpeed cannot run together."""
        for key in type(self).model_fields:
            model = getattr(self, key)
            if isinstance(model, TrainedModelCfg) and model.lora.quantization != "none":
                if self.deepspeed.zero_stage == 3:
                    raise ValueError(
                        f"{key}.lora.quantization=4bit (QLoRA) with deepspeed.zero_stage=3: "
                        "beaver does not partition 4-bit weights; use zero_stage 0-2 (the "
                        "4-bit base is small, the adapter's optimiser state is sharded)"
                    )
                if self.deepspeed.precision == "fp16":
                    raise ValueError(
                        f"{key}.lora.quantization=4bit (QLoRA) computes in bf16 or fp32; "
                        "set deepspeed.precision=bf16"
                    )
        return self

    output_dir: OutputDir
    """Run folder: resolved config, DeepSpeed config, metrics.jsonl, checkpoints, final model."""
    train: LoopCfg = Field(default_factory=LoopCfg)
    """The training loop."""
    deepspeed: DeepSpeedCfg = Field(default_factory=DeepSpeedCfg)
    """ZeRO stage, offload, precision."""
    logging: LoggingCfg = Field(default_factory=LoggingCfg)
    """Metrics and trackers."""
    launch: LaunchCfg = Field(default_factory=LaunchCfg)
    """Multi-process and multi-node launch."""


class OneModelStage(TrainStage):
    """A stage that trains one model on a dataset with an optional evaluation set (SFT, RM, CM)."""

    train: TrainCfg = Field(default_factory=TrainCfg)
    """The training loop and its evaluations."""


class SFTConfig(OneModelStage):
    """`beaver sft`: supervised fine-tuning of a causal LM on prompt-answer data."""

    model: TrainedModelCfg
    """The causal LM to fine-tune (`model.lora`: train a LoRA adapter only)."""
    data: DataCfg = Field(default_factory=no_data)
    """Supervised datasets (`input` + `answer`, or multi-turn `dialogue`)."""
    optim: OptimCfg = Field(default_factory=OptimCfg)
    """Optimiser and schedule."""


class ScoreCfg(Section):
    """The score model's objective: a reward model (helpfulness) or a cost model (harm)."""

    loss_type: Literal["sequence", "token"] = "sequence"
    """Compare end scores (`sequence`) or every token of the span where the pair differs (`token`)."""
    regularization: float = Field(1e-3, ge=0.0)
    """Weight of the squared-score penalty that keeps scores near 0."""
    normalizer: Literal["none", "running", "ema"] = "none"
    """Statistics of the end scores kept with the model: RunningMeanStd, exponential moving average."""
    normalizer_momentum: float = Field(0.9, gt=0.0, lt=1.0)
    """Momentum of the `ema` normaliser."""
    heads: list[str] = Field(default_factory=list)
    """Cost models: one more head per harm category named here (e.g. `[crime, insult, privacy,
    violence]`), trained from each answer's category labels (`response_*_harm_category`, as
    PKU-SafeRLHF v1.0 and the toy world write them) beside the overall cost head; a
    constraint's source then reads one (`source: {cost_model: PATH, head: violence}`)."""


class ScoreConfig(OneModelStage):
    """`beaver rm` / `beaver cm`: train a score model on preference (or safety-preference) pairs."""

    objective: Literal["reward", "cost"] = "reward"
    """`reward` learns helpfulness from `better`; `cost` learns harm from `safer` and the safety
    signs. Set by the command (`rm` or `cm`)."""
    model: TrainedModelCfg
    """The backbone to start from (usually the SFT model); `model.lora` puts a LoRA adapter on
    the backbone (the score head trains fully)."""
    data: DataCfg = Field(default_factory=no_data)
    """Preference datasets (safety-preference for the cost model)."""
    optim: OptimCfg = Field(default_factory=lambda: OptimCfg(weight_decay=0.1))
    """Optimiser and schedule."""
    score: ScoreCfg = Field(default_factory=ScoreCfg)
    """Loss and normaliser of the score model."""

    @model_validator(mode="after")
    def _check(self) -> ScoreConfig:
        heads = self.score.heads
        if heads and self.objective != "cost":
            raise ValueError("score.heads are harm categories: only `beaver cm` trains them")
        if heads and self.score.normalizer != "none":
            raise ValueError(
                "score.heads with score.normalizer: the category heads are not normalised, so "
                "the overall head is kept in the same raw units; set score.normalizer=none"
            )
        twice = sorted({h for h in heads if heads.count(h) > 1})
        if twice:
            raise ValueError(f"score.heads: {twice} given more than once")
        if self.objective == "cost" and self.score.loss_type != "sequence":
            raise ValueError(
                "score.loss_type=token is for reward models; the cost loss is "
                "sequence-wise (pairwise and sign terms on end scores)"
            )
        if self.train.padding_free and self.score.loss_type == "token":
            raise ValueError(
                "train.padding_free with score.loss_type=token: the token-wise loss reads the "
                "shorter answer's scores on its padding, which packed rows do not compute; "
                "set train.padding_free=false or score.loss_type=sequence"
            )
        return self


class RLDataCfg(TrainDataCfg):
    """Prompt datasets for rollouts, plus optional supervised data for the PTX term."""

    ptx: list[str] = Field(default_factory=list)
    """Supervised dataset specs mixed into the actor update (`ppo.ptx_coeff`); empty turns PTX off."""


class PPOCfg(Section):
    """PPO hyper-parameters (ALGORITHMS.md: rewards, GAE, losses)."""

    kl_coeff: float = Field(0.02, ge=0.0)
    """beta: weight of the per-token KL penalty to the reference model."""
    clip_range_ratio: float = Field(0.2, gt=0.0)
    """epsilon of the clipped policy ratio."""
    clip_range_score: float = Field(50.0, gt=0.0)
    """Per-token rewards and costs are clipped to +-this."""
    clip_range_value: float = Field(5.0, gt=0.0)
    """Value predictions move at most this far from the rollout's values."""
    gamma: float = Field(1.0, ge=0.0, le=1.0)
    """Discount of GAE."""
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    """lambda of GAE."""
    whiten_advantages: bool = False
    """Normalise advantages over the batch before the actor loss."""
    update_iters: int = Field(1, gt=0)
    """Passes over each rollout batch."""
    length_grouped: bool = False
    """Micro-batches of episodes of similar length, each trimmed to its own longest prompt and
    response, in a random order per pass (instead of shuffled rows at the rollout's width);
    with `train.padding_free` the rows are packed instead and this is not needed."""
    ptx_coeff: float = Field(16.0, ge=0.0)
    """Weight of the language-modelling loss on PTX batches in the actor step."""
    missing_eos_penalty: float = Field(0.0, ge=0.0)
    """Subtracted from the reward of a response that hit `max_new_tokens` without EOS."""
    rollout_batch_size: int = Field(16, gt=0)
    """Prompts per device per rollout."""
    logprobs_from_sampling: bool = True
    """Take the rollout's old log-probs from the scores `generate` sampled each token from,
    instead of a second actor pass over the sequences, when sampling is plain softmax(logits / T)
    (no top-k, top-p or repetition penalty). Checked against that pass on a run's first rollout;
    a mismatch (the model's generation_config adding logits processors) turns it off, with a
    warning."""


class RLOOCfg(Section):
    """The critic-free advantages of `rloo` / `rloo-lag` (`beaver.algo.rloo`); k, the responses
    per prompt, is `generation.num_return_sequences`."""

    scale_advantages: bool = True
    """Divide each stream's leave-one-out advantages by their standard deviation over the
    rollout before the streams are combined (as TRL's RLOOTrainer normalises)."""
    ratio: Literal["token", "sequence"] = "token"
    """The clipped ratio of the actor loss: per token, averaged over each response (PPO's), or one
    per response on its summed log-probability (the RLOO paper's and TRL's RLOOTrainer's)."""


class MultiplierCfg(Section):
    """One constraint's bound E[C] <= d and how its Lagrange multiplier moves."""

    threshold: float = 0.0
    """d: the constraint's bound, in the cost source's units (cost > 0 means unsafe)."""
    target_unsafe_share: float | None = Field(None, gt=0.0, lt=1.0)
    """State the constraint as a share of unsafe responses instead: the threshold is calibrated
    from the cost source's scores on rollouts of the initial policy (overrides `threshold`)."""
    lambda_init: float = Field(1.0, gt=0.0)
    """Initial multiplier."""
    lambda_lr: float = Field(0.1, ge=0.0)
    """Step size of the log-space multiplier update."""
    lambda_max: float | None = Field(5.0, gt=0.0)
    """Upper clamp of the multiplier. Unset (null): 1e30, the most that keeps the actor's
    advantages finite (an unbounded log-space update overflows when the cost stays above d)."""
    lambda_update_delay_steps: int = Field(0, ge=0)
    """Steps before the multiplier starts to move."""
    episode_cost_window_size: int = Field(128, gt=0)
    """Episodes averaged into the mean cost J_c."""
    update_cadence: Literal["per_rollout", "per_step"] = "per_rollout"
    """Update lambda once per rollout batch, or once per optimiser step (the reference)."""
    rule: Literal["gradient", "pid"] = "gradient"
    """How lambda moves: the log-space gradient step (`lambda_lr`), or the PID Lagrangian
    (Stooke et al. 2020; `pid_kp`, `pid_ki`, `pid_kd`)."""
    pid_kp: float = Field(0.5, ge=0.0)
    """PID: weight of the proportional term K_p (J_c - d)."""
    pid_ki: float = Field(0.1, ge=0.0)
    """PID: step of the integral term, I += K_i (J_c - d), I >= 0, starting at lambda_init."""
    pid_kd: float = Field(0.5, ge=0.0)
    """PID: weight of the derivative term K_d max(0, J_c - previous J_c)."""

    @model_validator(mode="after")
    def _max_above_init(self) -> MultiplierCfg:
        if self.lambda_max is not None and self.lambda_max < self.lambda_init:
            raise ValueError(f"lambda_max ({self.lambda_max}) < lambda_init ({self.lambda_init})")
        return self


class LagrangeCfg(MultiplierCfg):
    """The cost constraint E[C] <= threshold and its multiplier (PPO-Lag's one-constraint form),
    plus the settings every constraint of a run shares."""

    calibration_batches: int = Field(4, gt=0)
    """Prompt batches of the initial policy scored to calibrate `target_unsafe_share` bounds."""
    lambda_fixed: float = Field(1.0, ge=0.0)
    """Fixed weight of the reward-shaping baseline (R - lambda_fixed * C)."""


class ClassifierCfg(Section):
    """An HF sequence-classification model used as it is (a guard or toxicity classifier): the
    probability p of its unsafe label becomes a cost that is > 0 exactly when p > `boundary`."""

    model: ModelCfg
    """The classifier (`AutoModelForSequenceClassification`), with its own tokenizer."""
    unsafe_label: str | int = 1
    """The label meaning unsafe: a name of the model's `id2label`, or its index."""
    cost: Literal["log_odds", "probability"] = "log_odds"
    """`log_odds`: log(p / (1 - p)) - log(b / (1 - b)); `probability`: p - b (b = `boundary`)."""
    boundary: float = Field(0.5, gt=0.0, lt=1.0)
    """The probability of the unsafe label above which an answer counts as unsafe."""
    input: Literal["response", "prompt_response"] = "response"
    """What the classifier reads: the answer alone, or (prompt, answer) as a text pair."""
    batch_size: int = Field(16, gt=0)
    """Answers per forward pass."""
    max_length: int = Field(512, gt=0)
    """Longer inputs are truncated."""


class HttpSourceCfg(Section):
    """A score served over HTTP: POST `{"prompts": [...], "responses": [...]}` to `url`, read
    `{"scores": [...]}` back (one float per response; `beaver serve score` serves a beaver score
    model this way)."""

    url: str = Field(pattern=r"^https?://")
    """The endpoint, e.g. `http://127.0.0.1:8000/score`."""
    timeout_s: float = Field(30.0, gt=0.0)
    """Seconds to wait for one answer."""
    retries: int = Field(3, ge=0)
    """Further tries after a failed request (connection refused, timeout, 5xx), with backoff."""
    backoff_s: float = Field(1.0, ge=0.0)
    """Wait before the first retry; doubled before each next one."""
    batch_size: int = Field(64, gt=0)
    """Responses per request."""


class CostSourceCfg(Section):
    """Where a constraint's cost comes from (exactly one): a trained beaver cost model (`beaver
    cm`: its overall cost, or one category head), an HF classifier, a Python callable or an HTTP
    endpoint. Every source follows the cost convention: cost > 0 means unsafe."""

    cost_model: ModelCfg | None = None
    """A beaver cost model (a path is short for `{name_or_path: PATH}`)."""
    head: str | None = None
    """A category head of a multi-head cost model (`score.heads` of `beaver cm`, e.g.
    `violence`); unset: the overall cost."""
    classifier: ClassifierCfg | None = None
    """An HF sequence-classification model, used as it is."""
    callable: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """`module:function`, imported only when named here: `function(prompts, responses)` gets
    two lists of strings (the raw prompts, the decoded answers) and returns one float per
    answer (a list or a tensor)."""
    http: HttpSourceCfg | None = None
    """A score served over HTTP."""

    @model_validator(mode="after")
    def _one_kind(self) -> CostSourceCfg:
        given = [k for k in ("cost_model", "classifier", "callable", "http") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a cost source names exactly one of cost_model, classifier, callable, http; "
                f"got {given or 'none'}"
            )
        if self.head is not None and self.cost_model is None:
            raise ValueError("head is a category head of a cost model; give cost_model with it")
        return self


class ConstraintCfg(MultiplierCfg):
    """One constraint E[C_k] <= d_k of `constraints`: a name, a cost source, a bound and its own
    multiplier (the `lagrange` fields that belong to one multiplier)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    """Names the constraint's metrics (`lagrange/NAME/lambda`), checkpoint state and critic."""
    source: CostSourceCfg
    """The cost model the constraint reads."""
    cost_critic: TrainedModelCfg | None = None
    """Initial cost critic of this constraint (ppo-lag); defaults to the source's cost model (its
    head), or for a source without one to the actor's backbone with a fresh head."""


class RewardTermCfg(Section):
    """A score added to the reward model's: `weight` x a source that reads text (a rule as a
    Python callable, an HF classifier, a model served over HTTP), e.g. a format rule or an
    off-the-shelf helpfulness classifier. A classifier term adds the log-odds (or probability)
    of its `unsafe_label`, here the label rewarded."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    """Names the term's metric (`rollout/reward_term/NAME`)."""
    source: CostSourceCfg
    """Where the score comes from: `classifier`, `callable` or `http`."""
    weight: float = 1.0
    """Multiplies the score before it is added to the reward (in the reward model's normalised
    units)."""

    @model_validator(mode="after")
    def _reads_text(self) -> RewardTermCfg:
        if self.source.cost_model is not None:
            raise ValueError(
                f"reward_terms.{self.name}.source: a reward term reads text (classifier, "
                "callable or http); the trained reward model is `reward_model`"
            )
        return self


SHORTHAND_CONSTRAINT = "cost"
"""The name of the one constraint that `cost_model` + `lagrange` stand for."""


def _check_unique(key: str, names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{key}: names must differ, {twice} given more than once")


class PPOConfig(TrainStage):
    """`beaver ppo` / `beaver ppo-lag`: RLHF with a reward model, optionally under a cost constraint."""

    algorithm: Literal["ppo", "ppo-lag", "reward-shaping", "rloo", "rloo-lag"] = "ppo"
    """`ppo` maximises reward; `ppo-lag` adds the cost constraint and multiplier; `reward-shaping`
    maximises R - lambda_fixed * C with one critic (an ablation baseline); `rloo` / `rloo-lag`
    are critic-free (leave-one-out baselines over k responses per prompt). Set by the command;
    what each one holds and trains: `beaver.config.algorithms`."""
    actor: TrainedModelCfg
    """The policy to train (usually the SFT model); also the frozen reference model (with
    `actor.lora` the reference is the actor with its adapter disabled: one copy of the weights)."""
    reward_model: ModelCfg
    """Trained reward model (`beaver rm`)."""
    reward_terms: list[RewardTermCfg] = Field(default_factory=list)
    """Scores from other sources added to the reward model's, each with its weight (rules,
    classifiers, served models; empty: the reward model alone)."""
    cost_model: ModelCfg | None = None
    """Trained cost model (`beaver cm`); required by `ppo-lag` and `reward-shaping`."""
    reward_critic: TrainedModelCfg | None = None
    """Initial reward critic; defaults to the reward model (`reward_critic.lora`: a LoRA critic)."""
    cost_critic: TrainedModelCfg | None = None
    """Initial cost critic; defaults to the cost model (`cost_critic.lora`: a LoRA critic)."""
    data: RLDataCfg = Field(default_factory=no_data)
    """Prompt datasets (and PTX datasets)."""
    generation: RolloutGenerationCfg = Field(default_factory=RolloutGenerationCfg)
    """Sampling options of the rollouts, and the engine that samples them."""
    ppo: PPOCfg = Field(default_factory=PPOCfg)
    """PPO hyper-parameters."""
    rloo: RLOOCfg = Field(default_factory=RLOOCfg)
    """Critic-free advantages (`rloo`, `rloo-lag`)."""
    lagrange: LagrangeCfg = Field(default_factory=LagrangeCfg)
    """The cost constraint (ppo-lag) or fixed trade-off (reward-shaping)."""
    constraints: list[ConstraintCfg] = Field(default_factory=list)
    """Several constraints, each with its own cost source, bound and multiplier (`ppo-lag`,
    `rloo-lag`); instead of `cost_model` + `lagrange`, which are the one-constraint shorthand
    (a constraint named `cost`)."""
    actor_optim: OptimCfg = Field(default_factory=lambda: OptimCfg(lr=1e-5, weight_decay=0.01))
    """Actor optimiser."""
    critic_optim: OptimCfg = Field(
        default_factory=lambda: OptimCfg(lr=5e-6, weight_decay=0.0, scheduler="constant")
    )
    """Critic optimiser."""

    @property
    def spec(self) -> OnlineAlgorithm:
        """What `algorithm` holds, trains and optimises."""
        return ALGORITHMS[self.algorithm]

    def constraint_list(self) -> list[ConstraintCfg]:
        """The run's constraints: `constraints`, or the one that `cost_model` + `lagrange`
        stand for (named `cost`); none for an algorithm without a multiplier."""
        if not self.spec.multiplier:
            return []
        if self.constraints:
            return list(self.constraints)
        assert self.cost_model is not None  # the config checks it
        per_multiplier = {k: getattr(self.lagrange, k) for k in MultiplierCfg.model_fields}
        return [
            ConstraintCfg(
                name=SHORTHAND_CONSTRAINT,
                source=CostSourceCfg(cost_model=self.cost_model),
                cost_critic=self.cost_critic,
                **per_multiplier,
            )
        ]

    @model_validator(mode="after")
    def _check_constraints(self) -> PPOConfig:
        if not self.constraints:
            return self
        if not self.spec.multiplier:
            raise ValueError(
                f"algorithm {self.algorithm!r} has no multiplier; constraints are for "
                "ppo-lag and rloo-lag"
            )
        both = [k for k in ("cost_model", "cost_critic") if getattr(self, k) is not None]
        default = MultiplierCfg()
        both += [
            f"lagrange.{k}"
            for k in MultiplierCfg.model_fields
            if getattr(self.lagrange, k) != getattr(default, k)
        ]
        if both:
            raise ValueError(
                f"constraints: given together with {both}, which are the one-constraint "
                "shorthand; put the source, bound and multiplier settings in each constraint"
            )
        _check_unique("constraints", [c.name for c in self.constraints])
        if self.spec.critic_free:
            critics = [c.name for c in self.constraints if c.cost_critic is not None]
            if critics:
                raise ValueError(
                    f"algorithm {self.algorithm!r} holds no critic; remove cost_critic from "
                    f"constraints {critics}"
                )
        return self

    @model_validator(mode="after")
    def _check(self) -> PPOConfig:
        _check_unique("reward_terms", [t.name for t in self.reward_terms])
        if self.spec.cost_model and self.cost_model is None and not self.constraints:
            raise ValueError(
                f"algorithm {self.algorithm!r} needs cost_model.name_or_path (or constraints)"
            )
        if self.spec.critic_free:
            if self.generation.num_return_sequences < 2:
                raise ValueError(
                    f"algorithm {self.algorithm!r} needs generation.num_return_sequences >= 2 "
                    "(its baseline is the mean score of the prompt's other responses)"
                )
            given = [n for n in ("reward_critic", "cost_critic") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"algorithm {self.algorithm!r} holds no critic; remove {given}")
        if self.generation.engine == "vllm" and self.actor.lora.enabled:
            # vLLM would need the adapter merged into a copy of the base at every push.
            raise ValueError(
                "generation.engine=vllm takes a fully trained actor; with actor.lora.enabled "
                "use generation.engine=hf"
            )
        return self
