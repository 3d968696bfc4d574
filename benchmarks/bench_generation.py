"""Generation: new tokens/s at a fixed length and batch, beaver vs TRL's PPO generation.

The SFT'd toy policy samples 40 new tokens (temperature 1, no top-k / top-p, KV cache) for
batches of 64 left-padded RL prompts. EOS is switched off on every side, so every call produces
exactly 64 x 40 tokens and the sides do the same work whatever they sample.

- `beaver-rollout`: `beaver.stages.rollout.sample_responses`, PPO's sampling;
- `beaver-generate`: `beaver.models.generation.generate`, the helper of evaluation and chat
  (it also cuts and decodes every response to text);
- `trl`: `trl.experimental.ppo.ppo_trainer.batch_generation`, PPO's sampling in TRL (it also
  returns the logits of every step, which TRL's PPO uses as the old log-probs).

    python benchmarks/bench_generation.py [--blocks 20] [--block-steps 2] [--replicas 2]
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import machine
import prepare
import report
from bench_ppo import prompt_dataset
from harness import Side, interleave

BATCH, NEW_TOKENS = 64, 40


def _policy() -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(prepare.SFT_MODEL, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # fixed length: nothing stops a row early
    return model


def _batches(tok: Any) -> Any:
    """Endless left-padded prompt batches (input_ids, attention_mask) and their id lists."""
    from beaver.models.generation import left_padded

    data, _ = prompt_dataset()
    rows = list(data["input_ids"])
    for start in itertools.cycle(range(0, len(rows) - BATCH + 1, BATCH)):
        chunk = rows[start : start + BATCH]
        enc = left_padded(tok, chunk)
        yield enc["input_ids"], enc["attention_mask"], chunk


def beaver_rollout_side(pacer: Any) -> None:
    from beaver.config import GenerationCfg
    from beaver.stages.rollout import RolloutOptions, sample_responses

    model = _policy()
    _, tok = prompt_dataset()
    gen = GenerationCfg(max_new_tokens=NEW_TOKENS, temperature=1.0)
    no_eos: Any = None  # fixed length
    opts = RolloutOptions(generation=gen, eos_token_id=no_eos, pad_token_id=tok.pad_token_id)
    for ids, mask, _ in _batches(tok):
        _, _, response = sample_responses(model, ids, mask, opts)
        assert response.shape == (BATCH, NEW_TOKENS), response.shape
        pacer.step(units=response.numel())


class _NoEos:
    """The tokenizer as `generate` sees it, without an EOS id (fixed-length sampling)."""

    eos_token_id = None

    def __init__(self, tok: Any) -> None:
        self.pad_token_id = tok.pad_token_id
        self.decode = tok.decode


def beaver_generate_side(pacer: Any) -> None:
    from beaver.config import GenerationCfg
    from beaver.models.generation import generate

    model = _policy()
    _, tok = prompt_dataset()
    gen = GenerationCfg(max_new_tokens=NEW_TOKENS, temperature=1.0)
    for _, _, chunk in _batches(tok):
        out = generate(model, _NoEos(tok), chunk, gen, batch_size=BATCH)
        assert all(len(o.response_ids) == NEW_TOKENS for o in out)
        pacer.step(units=sum(len(o.response_ids) for o in out))


def trl_side(pacer: Any) -> None:
    import warnings

    from transformers import GenerationConfig

    warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
    from trl.experimental.ppo.ppo_trainer import batch_generation

    model = _policy()
    _, tok = prompt_dataset()
    # PPOTrainer.train's own generation config
    config = GenerationConfig(
        max_new_tokens=NEW_TOKENS, temperature=1.0 + 1e-7, top_k=0, top_p=1.0, do_sample=True
    )
    for ids, _, _ in _batches(tok):
        out, _ = batch_generation(model, ids, BATCH, tok.pad_token_id, config)
        new = out[:, ids.shape[1] :]
        assert new.shape == (BATCH, NEW_TOKENS), new.shape
        pacer.step(units=new.numel())


def main() -> dict[str, Any]:
    a = report.bench_args(__doc__, blocks=20, block_steps=2, warmup_steps=2, replicas=2)
    prepare.sft_model()
    prepare.clean_runs()
    peak = machine.gemm_peak_flops()
    sides = interleave(
        [
            Side("beaver-rollout", beaver_rollout_side),
            Side("beaver-generate", beaver_generate_side),
            Side("trl", trl_side),
        ],
        warmup_steps=a.warmup_steps,
        block_steps=a.block_steps,
        blocks=a.blocks,
        log_dir=prepare.WORK / "logs",
        replicas=a.replicas,
        prefix="generation",
    )
    from transformers import AutoConfig

    shape = machine.Shape.of(AutoConfig.from_pretrained(prepare.SFT_MODEL))
    data, _ = prompt_dataset()
    prompt = round(statistics.fmean(len(x) for x in data["input_ids"]))
    per_token = machine.decode_flops(shape, BATCH, prompt, NEW_TOKENS) / (BATCH * NEW_TOKENS)
    result = report.assemble(
        "generation",
        sides,
        flops_per_unit=dict.fromkeys((s.name for s in sides), per_token),
        unit="tok/s",
        peer="trl",
        peak=peak,
        workload={
            "batch": BATCH,
            "new_tokens": NEW_TOKENS,
            "mean_prompt_tokens": prompt,
            "sampling": "temperature 1, no top-k / top-p, KV cache, EOS off",
            "precision": "fp32",
        },
        model_flops_per_new_token=per_token,
    )
    report.write("generation", result)
    report.print_result(result)
    return result


if __name__ == "__main__":
    main()
