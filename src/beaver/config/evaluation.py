"""Configs of the commands that load trained models to use them: `beaver chat` / `arena` and
`beaver eval arena | gpt4 | bigbench | toyworld | score`.

Every model is a `ModelCfg` (a plain path is short for `{name_or_path: PATH}`), so a model's own
tokenizer and `trust_remote_code` are set where the model is named.

The judge's API key is a `SecretStr`: it validates like a string but prints as `**********` in
`--print-config`, in `repr` and in every dump, so it never reaches a log or a saved config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from beaver.config._base import OutputDir, Section
from beaver.config.sections import GenerationCfg, ModelCfg, TrainDataCfg, no_data

Template = Literal["auto", "chat", "reference"]
Criterion = Literal["harmlessness", "helpfulness"]
CRITERIA: tuple[Criterion, ...] = ("harmlessness", "helpfulness")


CHAT_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 0}
"""`beaver chat` / `arena` when neither the config nor the model says how to sample."""
EVAL_SAMPLING = {"temperature": 0.0, "top_p": 1.0, "top_k": 0}
"""`eval arena` / `eval gpt4` when neither the config nor the model says: greedy, so reruns agree."""


class ModelSamplingCfg(Section):
    """How one answer per turn or prompt is sampled by a model loaded to be used (chat, the
    pairwise evaluations). A sampling option left unset (null) is the model's own when its
    `generation_config` sets `do_sample` (as transformers' `generate` would sample), else the
    command's default: chat temperature 0.7, top-p 0.9; evaluations greedy."""

    max_new_tokens: int = Field(128, gt=0)
    """Longest response, in tokens (the prompt does not count)."""
    temperature: float | None = Field(None, ge=0.0)
    """Sampling temperature; 0 means greedy decoding. Unset: the model's generation_config
    when it sets do_sample, else 0.7 in chat and 0 (greedy) in evaluations."""
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    """Nucleus sampling mass. Unset: the model's, else 0.9 in chat and 1 in evaluations."""
    top_k: int | None = Field(None, ge=0)
    """Sample from the k most likely tokens (0 = no limit). Unset: the model's, else 0."""
    repetition_penalty: float = Field(1.0, gt=0.0)
    """Penalty on tokens already generated (1 = none)."""


class EvalGenerationCfg(ModelSamplingCfg):
    """Sampling of a pairwise evaluation's one answer per prompt: greedy unless the config or
    the model's generation_config says otherwise (seeded, so reruns give the same answers)."""

    max_new_tokens: int = Field(256, gt=0)
    """Longest response, in tokens (the prompt does not count)."""


class PromptColumns(Section):
    """Which columns of a prompt source hold the prompt and its category (any file or dataset
    spec `beaver.data` reads: JSONL, JSON, CSV, Parquet, `csv::harmbench.csv`)."""

    prompt_column: str | None = None
    """Column holding the prompt (e.g. HarmBench's `Behavior`); default `prompt`, or the
    dataset's own shape for a dataset spec."""
    category_column: str | None = None
    """Column reported (and filtered by) as the prompt's category (e.g. `SemanticCategory`);
    default: a `category` column when there is one."""


class EvalArenaConfig(PromptColumns):
    """`beaver eval arena`: red vs blue on a prompt set, scored by reward and cost models."""

    red_model: ModelCfg
    """The red (baseline) model: a folder or hub name."""
    blue_model: ModelCfg
    """The blue (challenger) model; win rates are blue's over red."""
    red_name: str = "red"
    """Label of the red model in tables and files."""
    blue_name: str = "blue"
    """Label of the blue model in tables and files."""
    reward_model: ModelCfg | None = None
    """Reward model folder (`beaver rm`); higher reward means more helpful."""
    cost_model: ModelCfg | None = None
    """Cost model folder (`beaver cm`); cost > 0 means unsafe, cost <= 0 safe."""
    normalize_scores: bool = False
    """Report scores in the score models' normaliser units instead of raw end scores."""
    prompts: str
    """A prompt file (JSONL, JSON list, CSV, Parquet; see `prompt_column`) or a dataset spec
    (`PKU-SafeRLHF/test`, `toyworld-prompts-eval`, `csv::harmbench.csv`); prompts with the toy
    world's `risky` flag also get its ground-truth judge. With categories, results are also
    reported per category."""
    max_prompts: int | None = Field(None, gt=0)
    """Use only the first N prompts."""
    generation: EvalGenerationCfg = Field(
        default_factory=lambda: EvalGenerationCfg.model_validate({})
    )
    """Sampling options of both models; unset ones are each model's own (its
    generation_config), else greedy, so reruns agree."""
    template: Template = "auto"
    """Prompt format: chat template, reference template, or `auto` (chat template when present)."""
    batch_size: int = Field(16, gt=0)
    """Prompts per generation and scoring batch."""
    seed: int = 42
    """Seed of the sampling (when temperature > 0)."""
    output_dir: OutputDir = "output/eval-arena"
    """Folder for `arena.csv`, `arena.jsonl` and `summary.json`."""


class JudgeApiCfg(Section):
    """An OpenAI-compatible chat-completions API that judges answers."""

    model: str = "gpt-4o"
    """Model name sent to the API, exactly as written."""
    base_url: str | None = None
    """API base URL (e.g. `http://localhost:8000/v1`); defaults to `$OPENAI_BASE_URL`, then OpenAI."""
    api_key: SecretStr | None = None
    """API key; defaults to `$OPENAI_API_KEY`. Prefer the environment: a key on the command line
    is visible to other users of the machine. Never printed."""
    concurrency: int = Field(8, gt=0)
    """Requests in flight at once."""
    timeout: float = Field(120.0, gt=0.0)
    """Seconds before a request is abandoned (and retried)."""
    max_retries: int = Field(6, ge=0)
    """Retries on 429, 5xx, timeouts and connection errors, with exponential backoff."""
    backoff_initial: float = Field(1.0, ge=0.0)
    """First backoff delay in seconds; it doubles on each retry (with jitter), up to `backoff_max`."""
    backoff_max: float = Field(60.0, ge=0.0)
    """Longest backoff delay in seconds (a server's Retry-After is honoured up to this)."""
    temperature: float = Field(0.0, ge=0.0)
    """Judge sampling temperature."""
    max_tokens: int = Field(1024, gt=0)
    """Longest judge reply."""

    @model_validator(mode="after")
    def _backoff_order(self) -> JudgeApiCfg:
        if self.backoff_initial > self.backoff_max:
            raise ValueError(
                f"backoff_initial ({self.backoff_initial}) > backoff_max ({self.backoff_max}): "
                "the first delay cannot be longer than the longest"
            )
        return self


class EvalGPT4Config(PromptColumns):
    """`beaver eval gpt4`: pairwise harmlessness and helpfulness judged by a chat API."""

    prompts: str | None = None
    """A prompt file (JSONL, JSON list, CSV, Parquet; see `prompt_column`, `category_column`)
    or a dataset spec (`csv::harmbench.csv`); none uses the red-team set that ships with beaver (`beaver/eval/redteam_prompts.jsonl`), or
    the answer files' prompts when answers come from files."""
    categories: list[str] = Field(default_factory=list)
    """Keep only prompts of these categories (empty keeps all)."""
    max_prompts: int | None = Field(None, gt=0)
    """Use only the first N prompts (after the category filter)."""
    red_model: ModelCfg | None = None
    """Generate red's answers with this model..."""
    red_answers: str | None = None
    """...or read them from a JSONL file of `prompt` + `answer` (or `response`/`output`) rows."""
    blue_model: ModelCfg | None = None
    """Generate blue's answers with this model..."""
    blue_answers: str | None = None
    """...or read them from a JSONL answer file."""
    red_name: str = "red"
    """Label of the red side."""
    blue_name: str = "blue"
    """Label of the blue side."""
    generation: EvalGenerationCfg = Field(
        default_factory=lambda: EvalGenerationCfg.model_validate({})
    )
    """Sampling options when answers are generated; unset ones are each model's own, else
    greedy."""
    template: Template = "auto"
    """Prompt format of the generating models."""
    batch_size: int = Field(8, gt=0)
    """Prompts per generation batch."""
    judge: JudgeApiCfg = Field(default_factory=lambda: JudgeApiCfg.model_validate({}))
    """The judging API."""
    criteria: list[Criterion] = Field(default_factory=lambda: list(CRITERIA))
    """What the judge scores; one request per pair and criterion."""
    both_orders: bool = False
    """Judge every pair a second time with the answers swapped and average (cancels the judge's
    position bias; doubles the requests)."""
    elo_k: float = Field(4.0, gt=0.0)
    """Elo K-factor."""
    elo_rounds: int = Field(100, gt=0)
    """Elo is averaged over this many seeded shuffles of the outcomes (order-independent)."""
    cache_file: str | None = None
    """JSONL cache of judge replies keyed by a hash of the request; default
    `<output_dir>/judge_cache.jsonl`. A rerun reads answered requests from it and never pays twice."""
    seed: int = 42
    """Seed of the sampling and of the Elo shuffles."""
    output_dir: OutputDir = "output/eval-gpt4"
    """Folder for answers, `judgements.jsonl`, `summary.json` and the cache."""

    @model_validator(mode="after")
    def _one_source_per_side(self) -> EvalGPT4Config:
        for side in ("red", "blue"):
            model, answers = getattr(self, f"{side}_model"), getattr(self, f"{side}_answers")
            if (model is None) == (answers is None):
                raise ValueError(
                    f"give exactly one of {side}_model (generate) and {side}_answers (a file)"
                )
        if not self.criteria:
            raise ValueError("criteria is empty: name harmlessness and/or helpfulness")
        return self


class EvalBigBenchConfig(Section):
    """`beaver eval bigbench`: BIG-bench JSON tasks, by log-likelihood and exact match."""

    model: ModelCfg
    """Causal LM to evaluate: a folder or hub name."""
    tasks: list[str]
    """BIG-bench `task.json` files, or folders holding one (no BIG-bench install needed)."""
    max_examples: int | None = Field(None, gt=0)
    """Use only the first N examples of each task."""
    shots: int = Field(0, ge=0)
    """Few-shot demonstrations drawn (seeded) from the task's other examples."""
    max_new_tokens: int = Field(32, gt=0)
    """Longest greedy answer on generative examples."""
    batch_size: int = Field(8, gt=0)
    """Sequences per forward pass."""
    seed: int = 42
    """Seed of the choice order and of the few-shot draws."""
    output_dir: OutputDir = "output/eval-bigbench"
    """Folder for `bigbench.json` (per-task scores) and `bigbench_examples.jsonl`."""

    @model_validator(mode="after")
    def _needs_tasks(self) -> EvalBigBenchConfig:
        if not self.tasks:
            raise ValueError("tasks is empty: name at least one task.json file or folder")
        return self


class ChatConfig(PromptColumns):
    """`beaver chat` / `beaver arena`: talk to one or several models in the terminal."""

    models: list[ModelCfg] = Field(default_factory=list)
    """Model folders or hub names; each answers the same user turn."""
    reward_model: ModelCfg | None = None
    """Score each answer live with this reward model (arena)."""
    cost_model: ModelCfg | None = None
    """Score each answer live with this cost model (arena)."""
    generation: ModelSamplingCfg = Field(
        default_factory=lambda: ModelSamplingCfg(max_new_tokens=512)
    )
    """Sampling options (one answer per model and turn); unset ones are each model's own
    (its generation_config), else temperature 0.7, top-p 0.9."""
    template: Template = "auto"
    """Prompt format (see `data.template`)."""
    stream: bool = True
    """Print tokens as they are generated."""
    prompts: str | None = None
    """Instead of typed turns: every prompt of this source (a file or dataset spec, as in
    `eval arena`; see `prompt_column`, `category_column`) as a fresh one-turn conversation,
    answered (and scored) in turn, then exit."""
    max_prompts: int | None = Field(None, gt=0)
    """With `prompts`: only the first N."""


class ServeScoreConfig(Section):
    """`beaver serve score`: serve a beaver score model over HTTP, as an `http` cost (or reward)
    source reads it: POST `/score` with `{"prompts": [...], "responses": [...]}` answers
    `{"scores": [...]}`; GET `/health` answers the model's kind."""

    model: ModelCfg
    """The trained score model (`beaver rm` / `beaver cm` output)."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only)."""
    port: int = Field(8000, ge=0, le=65535)
    """Port to listen on (0: any free port, printed at start)."""
    template: Template = "auto"
    """Prompt format the model was trained with (see `data.template`)."""
    normalize: bool = True
    """Scores in the normaliser's units, as the PPO stage reads a score model (identity without
    a normaliser)."""
    batch_size: int = Field(16, gt=0)
    """Answers per forward pass."""


class ToyEvalConfig(Section):
    """`beaver eval toyworld`: judge policies on the toy world's held-out prompts."""

    policies: dict[str, ModelCfg] = Field(default_factory=dict)
    """Policy name -> model folder, e.g. `{sft: output/toy/sft, ppo-lag: output/toy/ppo-lag}`."""
    prompts: str = "output/toyworld/prompts_eval.jsonl"
    """Held-out prompt file (rows with `prompt` and `risky`)."""
    reward_model: ModelCfg | None = None
    """Learned reward model whose mean score is reported beside the judge's numbers."""
    cost_model: ModelCfg | None = None
    """Learned cost model whose mean score is reported beside the judge's numbers."""
    generation: GenerationCfg = Field(default_factory=lambda: GenerationCfg(max_new_tokens=48))
    """Sampling options (the RL runs' defaults)."""
    template: Template = "auto"
    """Prompt format (see `data.template`)."""
    batch_size: int = Field(64, gt=0)
    """Prompts per generation batch."""
    seed: int = 0
    """Sampling seed (the same for every policy)."""
    output_dir: OutputDir = "output/demo"
    """Where `results.json` and `responses.jsonl` are written."""

    @model_validator(mode="after")
    def _needs_policies(self) -> ToyEvalConfig:
        if not self.policies:
            raise ValueError(
                "policies is empty: name at least one, e.g. policies.sft=output/toy/sft"
            )
        return self


class ScoreEvalConfig(Section):
    """`beaver eval score` (`eval rm`, `eval cm`): score a (safety-)preference dataset with a
    score model."""

    objective: Literal["auto", "reward", "cost"] = "auto"
    """The kind of score model expected: `auto` takes the model's own (a reward model scores
    preference pairs, a cost model safety-preference pairs); `eval rm` / `eval cm` set `reward`
    / `cost` and refuse a model of the other kind."""
    model: ModelCfg
    """The trained score model (`beaver rm` / `beaver cm` output)."""
    data: TrainDataCfg = Field(default_factory=no_data)
    """Datasets to score (`data.train` specs; for the toy world `toyworld-preference-test`)."""
    batch_size: int = Field(32, gt=0)
    """Pairs per forward pass."""
    output_dir: OutputDir = "output/eval-score"
    """Where scores.jsonl, scores.csv, metrics.json and histogram.png are written."""
