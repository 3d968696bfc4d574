"""`beaver dpo`: offline preference optimisation against a frozen reference (DPO, SafeDPO, SACPO).

parse (CLI) -> build (tokenizer, pair datasets, reference log-probs or a frozen reference engine,
the policy engine) -> train (the shared single-model skeleton: one step = the micro-batches of
one optimiser step) -> save (HF folder `<output_dir>/model`) -> summary.

One stage, three methods (`algorithm`), which differ only in their pairs (`METHODS`) and loss
options; the math is `beaver.algo.dpo`:
- `dpo`: helpfulness pairs, better answer chosen. This is also SACPO's first step.
- `safe-dpo`: the same pairs with both safety labels, re-ordered by SafeDPO's rule (the safe
  answer of a safe/unsafe pair is chosen; pairs of two unsafe answers are dropped before
  training, so they cost no compute), and the margin Delta on safe-vs-unsafe pairs.
- `sacpo`: safety pairs (safer answer chosen, whatever the safety labels say of both) with
  beta / lambda; `model` (and so the reference) is the helpfulness-aligned model of the first
  step. P-SACPO then merges the two models (`beaver merge`).

Both answers of a micro-batch go through the model in one forward pass ((2B, L), chosen rows then
rejected, one common padded length). Log-probs are sums over the answer's tokens and its EOS
(the pair's response mask), in fp32. The reference is scored per micro-batch with no grad, or
once for the whole dataset before training (`dpo.precompute_ref_logps`), after which it is freed.

Metrics (TRL's, under beaver's names): loss, implicit-reward accuracy 1[h(y_w) > h(y_l)], the
margin h(y_w) - h(y_l), the chosen and rejected rewards h(y) and log-probs, and at evaluation a
sampled estimate of KL(pi || pi_ref): answers to `dpo.kl_prompts` evaluation prompts are sampled
from the policy and sum_t (log pi - log pi_ref) is averaged over them (the log-ratio on the
dataset's own answers is not a KL: those answers were not sampled from the policy).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from beaver.algo import (
    dpo_loss,
    masked_sum,
    response_mask,
    sacpo_beta,
    safedpo_pairs,
    safety_margin,
    shifted_logprobs,
)
from beaver.config.dpo import DPOConfig
from beaver.data.tokenized import DataStats, TokenizedDataset
from beaver.engine import dist
from beaver.engine.build import init_engine, make_ds_config
from beaver.engine.data import make_loader, set_position, to_device
from beaver.engine.loop import StepResult
from beaver.engine.run import start_run
from beaver.engine.stage import train_one_model
from beaver.models.batching import pad_batch
from beaver.models.forward import response_logprobs
from beaver.models.loading import check_models, dtype_of, load_causal_lm, load_tokenizer
from beaver.models.packing import causal_lm_logits
from beaver.models.pairs import pair_inputs
from beaver.models.saving import save_hf
from beaver.stages.rollout import RolloutOptions, sample_responses


@dataclass(frozen=True)
class Method:
    """Which pairs a method trains on: the dataset kind, its two sides (chosen first unless
    re-ordered), and whether SafeDPO's transformation re-orders them."""

    kind: str
    keys: tuple[str, str]
    safedpo: bool = False
    sacpo: bool = False  # the safety step of SACPO: beta / lambda


METHODS = {
    "dpo": Method("preference", ("better", "worse")),
    "safe-dpo": Method("labeled_preference", ("better", "worse"), safedpo=True),
    "sacpo": Method("safety_preference", ("safer", "unsafer"), sacpo=True),
}


class PairData(Dataset[dict[str, Any]]):
    """Items `indices` of a pair dataset, with the reference's log-probs of both sides when they
    were precomputed (`ref_logps` (N, 2), in the dataset's side order)."""

    def __init__(
        self, base: TokenizedDataset, indices: list[int], ref_logps: Tensor | None = None
    ) -> None:
        self.base, self.indices, self.ref_logps = base, indices, ref_logps
        self.stats = DataStats(**{**base.stats.as_dict(), "num_samples": len(indices)})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[self.indices[i]]
        return item if self.ref_logps is None else {**item, "ref_logps": self.ref_logps[i]}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.base.collate(items)
        if self.ref_logps is not None:
            out["ref_logps"] = torch.stack([x["ref_logps"] for x in items])  # (B, 2)
        return out


def pair_logps(
    model: Any, batch: dict[str, Tensor], keys: tuple[str, str], padding_free: bool = False
) -> Tensor:
    """(B, 2) fp32 log pi(answer | prompt) of both sides, summed over the answer tokens (EOS
    included), from one forward pass over the (2B, L) concatenation (packed rows when
    `padding_free`)."""
    ids, mask = pair_inputs(batch, keys)  # (2B, L)
    _, answer = pair_inputs(batch, keys, "response_mask")
    logits = causal_lm_logits(model, ids, mask, padding_free=padding_free)  # (2B, L, V)
    logp = shifted_logprobs(logits, ids)  # (2B, L - 1): token t + 1 from position t
    seq = masked_sum(logp, answer[:, 1:], dim=-1)  # (2B,)
    return seq.view(2, -1).t()  # (B, 2)


def order(
    batch: dict[str, Tensor], method: Method, delta: float
) -> tuple[Tensor | None, Tensor | None]:
    """(swap (B,) bool or None, margin (B,) or None) of a batch: SafeDPO's transformation."""
    if not method.safedpo:
        return None, None
    p = safedpo_pairs(batch["better_is_safe"], batch["worse_is_safe"])
    assert bool(p.keep.all()), "pairs of two unsafe answers are dropped before training"
    margin = safety_margin(p.chosen_unsafe, p.rejected_unsafe, delta) if delta > 0 else None
    return p.swap, margin


def chosen_rejected(logps: Tensor, swap: Tensor | None) -> tuple[Tensor, Tensor]:
    """(chosen (B,), rejected (B,)) from side log-probs (B, 2), swapped where `swap`."""
    if swap is None:
        return logps[:, 0], logps[:, 1]
    return torch.where(swap, logps[:, 1], logps[:, 0]), torch.where(swap, logps[:, 0], logps[:, 1])


@dataclass
class Setup:
    """What a step needs besides the policy engine."""

    method: Method
    beta: float
    label_smoothing: float
    delta: float
    ref: Any  # frozen reference engine, None when its log-probs were precomputed
    synced_gpus: bool = False  # ZeRO-3 over several ranks: generate() steps all ranks together
    padding_free: bool = False  # the policy's and reference's passes on packed rows


def pair_loss(engine: Any, batch: dict[str, Tensor], s: Setup) -> tuple[Tensor, dict[str, float]]:
    """The DPO loss of one micro-batch and its metrics (means over the micro-batch's pairs)."""
    logps = pair_logps(engine, batch, s.method.keys, s.padding_free)
    if "ref_logps" in batch:
        ref = batch["ref_logps"].float()
    else:
        with torch.no_grad():
            ref = pair_logps(s.ref, batch, s.method.keys, s.padding_free)
    swap, margin = order(batch, s.method, s.delta)
    chosen, rejected = chosen_rejected(logps, swap)
    ref_chosen, ref_rejected = chosen_rejected(ref, swap)
    out = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, s.beta, s.label_smoothing, margin)
    metrics = {
        "accuracy": out.accuracy.item(),
        "margin": (out.chosen_rewards - out.rejected_rewards).mean().item(),
        "chosen_reward": out.chosen_rewards.mean().item(),
        "rejected_reward": out.rejected_rewards.mean().item(),
        "chosen_logp": chosen.detach().mean().item(),
        "rejected_logp": rejected.detach().mean().item(),
    }
    return out.loss, metrics


def dpo_step(engine: Any, micro_batches: list[dict[str, Tensor]], s: Setup) -> StepResult:
    """One optimiser step: forward + backward per micro-batch; DeepSpeed steps at the boundary."""
    losses, metrics, tokens, samples = [], [], 0, 0
    for batch in micro_batches:
        batch = to_device(batch, engine.device)
        loss, m = pair_loss(engine, batch, s)
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
        metrics.append(m)
        a, b = s.method.keys
        tokens += int(batch[f"{a}_attention_mask"].sum() + batch[f"{b}_attention_mask"].sum())
        samples += batch[f"{a}_input_ids"].shape[0]
    mean = {f"train/{k}": sum(m[k] for m in metrics) / len(metrics) for k in metrics[0]}
    return StepResult(loss=sum(losses) / len(losses), metrics=mean, tokens=tokens, samples=samples)


@torch.no_grad()
def evaluate(engine: Any, loader: Any, s: Setup, cfg: DPOConfig, tokenizer: Any) -> dict[str, Any]:
    """Loss and reward metrics over the whole evaluation set (pair-weighted, over all ranks),
    and the sampled KL estimate when the reference is held."""
    engine.eval()
    set_position(loader, 0, 0)
    sums: dict[str, float] = {}
    prompts: list[Tensor] = []
    for batch in loader:
        batch = to_device(batch, engine.device)
        loss, m = pair_loss(engine, batch, s)
        n = batch[f"{s.method.keys[0]}_input_ids"].shape[0]
        for k, v in {"loss": loss.item(), **m}.items():
            sums[k] = sums.get(k, 0.0) + v * n
        sums["pairs"] = sums.get("pairs", 0.0) + n
        prompts.extend(_prompts(batch, s.method.keys[0]))
    total = dist.reduce_values(sums, "sum")
    out = {f"eval/{k}": v / total["pairs"] for k, v in total.items() if k != "pairs"}
    kl_n = cfg.dpo.kl_prompts // dist.world_size()
    if s.ref is not None and kl_n > 0:
        out.update(sampled_kl(engine, s.ref, prompts[:kl_n], cfg, tokenizer, s.synced_gpus))
    engine.train()
    return out


def _prompts(batch: dict[str, Tensor], key: str) -> list[Tensor]:
    """The prompt tokens of each pair: the sequence before its answer starts."""
    ids, answer = batch[f"{key}_input_ids"], batch[f"{key}_response_mask"]
    starts = answer.long().argmax(dim=-1)  # first answer token per row
    return [row[:start] for row, start in zip(ids, starts.tolist(), strict=True)]


def sampled_kl(
    policy: Any,
    ref: Any,
    prompts: list[Tensor],
    cfg: DPOConfig,
    tokenizer: Any,
    synced_gpus: bool = False,
) -> dict[str, float]:
    """Mean over sampled answers of sum_t (log pi - log pi_ref) (the k1 estimate of the
    sequence KL), sampled with a fixed seed in a forked RNG so training's randomness is untouched."""
    pad_id = int(tokenizer.pad_token_id)
    ids, mask = pad_batch(prompts, pad_id, "left")  # (N, P)
    ids, mask = ids.to(dist.device()), mask.to(dist.device())
    opts = RolloutOptions(
        generation=cfg.generation,
        eos_token_id=int(tokenizer.eos_token_id),
        pad_token_id=pad_id,
        synced_gpus=synced_gpus,
    )
    devices = [dist.device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.train.seed + dist.rank())
        prompt_ids, prompt_mask, response = sample_responses(policy, ids, mask, opts)
    answer = response_mask(response, opts.eos_token_id).to(prompt_mask.dtype)
    full_ids = torch.cat([prompt_ids, response], dim=1)
    full_mask = torch.cat([prompt_mask, answer], dim=1)
    plen, temp = prompt_ids.shape[1], cfg.generation.temperature
    logp, _ = response_logprobs(policy, full_ids, full_mask, plen, temp)
    ref_logp, _ = response_logprobs(ref, full_ids, full_mask, plen, temp)
    kl = masked_sum(logp - ref_logp, answer, dim=-1)  # (N,)
    sums = {"kl": float(kl.sum()), "length": float(answer.sum()), "n": float(len(kl))}
    total = dist.reduce_values(sums, "sum")
    return {
        "eval/kl": total["kl"] / total["n"],
        "eval/response_length": total["length"] / total["n"],
    }


@torch.no_grad()
def precompute(ref: Any, ds: Any, keys: tuple[str, str], batch_size: int) -> Tensor:
    """(N, 2) reference log-probs of every pair of `ds`: each rank scores its share of the
    items (in order, padded by wrap-around), then every rank gathers the whole table."""
    loader = make_loader(ds, batch_size, shuffle=False, seed=0)
    local = torch.cat([pair_logps(ref, to_device(b, dist.device()), keys) for b in loader])
    parts = dist.gather(local).cpu().view(dist.world_size(), -1, 2)  # (W, N / W, 2)
    # rank r scored items r, r + W, r + 2W, ...: item i W + r is parts[r, i]
    return parts.transpose(0, 1).reshape(-1, 2)[: len(ds)]


def _safedpo_select(ds: TokenizedDataset, run_: Any) -> tuple[list[int], dict[str, int]]:
    """Indices kept by SafeDPO's transformation (pairs of two unsafe answers dropped), counts."""
    better = torch.tensor([bool(x["better_is_safe"]) for x in ds.items])
    worse = torch.tensor([bool(x["worse_is_safe"]) for x in ds.items])
    p = safedpo_pairs(better, worse)
    counts = {
        "pairs": len(ds),
        "dropped_both_unsafe": int((~p.keep).sum()),
        "swapped_to_safe_first": int(p.swap.sum()),
        "safe_vs_unsafe": int((p.keep & p.rejected_unsafe).sum()),
    }
    run_.print(
        "SafeDPO pairs: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    )
    return p.keep.nonzero().flatten().tolist(), counts


def run(cfg: DPOConfig) -> None:
    from beaver.data import make_datasets

    reference = cfg.reference or cfg.model
    check_models("causal LM", model=cfg.model, reference=reference)
    run_ = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)
    method = METHODS[cfg.algorithm]
    train_base, eval_base = make_datasets(method.kind, cfg.data, tokenizer)
    summary: dict[str, Any] = {"algorithm": cfg.algorithm}
    datasets: list[PairData | None] = []
    for name, base in (("train", train_base), ("eval", eval_base)):
        if base is None:
            datasets.append(None)
            continue
        indices = list(range(len(base)))
        if method.safedpo:
            indices, summary[f"safedpo_{name}"] = _safedpo_select(base, run_)
        datasets.append(PairData(base, indices))

    dtype = dtype_of(cfg.deepspeed.precision)
    frozen = make_ds_config(cfg.deepspeed, cfg.train, None)
    ref = init_engine(load_causal_lm(reference, dtype, frozen), frozen)  # partitioned under ZeRO-3
    if cfg.dpo.precompute_ref_logps:
        for data in datasets:
            if data is not None:
                data.ref_logps = precompute(ref, data, method.keys, cfg.train.per_device_batch_size)
        run_.print("reference log-probs precomputed; the reference is freed")
        ref = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    beta = sacpo_beta(cfg.dpo.beta, cfg.dpo.sacpo_lambda) if method.sacpo else cfg.dpo.beta
    synced = frozen.zero3 and dist.world_size() > 1
    s = Setup(
        method, beta, cfg.dpo.label_smoothing, cfg.dpo.safety_margin, ref, synced,
        cfg.train.padding_free,
    )  # fmt: skip

    train_one_model(
        cfg,
        run_,
        cfg.optim,
        (datasets[0], datasets[1]),
        lambda deepspeed: load_causal_lm(cfg.model, dtype, deepspeed, trainable=True),
        step=lambda engine, batches: dpo_step(engine, batches, s),
        evaluate=lambda engine, loader: evaluate(engine, loader, s, cfg, tokenizer),
        save=lambda engine, out: save_hf(engine, tokenizer, out, cfg.model.lora.save_merged),
        summary=summary,
    )
