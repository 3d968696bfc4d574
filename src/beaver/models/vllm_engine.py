"""vLLM as PPO's rollout engine (`generation.engine: vllm`), colocated in the training process.

The engine is built once per run from the actor (written to a temporary HF folder with its
tokenizer) and samples responses from prompt token ids; log-probs are still computed by the
training actor, so PPO's ratios do not depend on the engine.

Weight sync: after every actor update the actor's tensors are pushed into vLLM through its own
in-place reload, `LLM.collective_rpc("reload_weights", weights_iterator=..., is_checkpoint_format
=True)`: vLLM swaps its parameters for loadable ones, runs the model's `load_weights` on the HF
names, then re-runs the backend's post-processing (the CPU backend repacks linear weights after
loading, which is why calling `model.load_weights` directly, as TRL and OpenRLHF do on GPUs,
fails there). Under ZeRO-3 each parameter is gathered before it is pushed. A tied LM head
(`tie_word_embeddings`, as the toy world's Llama) has no weight of its own in the pushed names,
so vLLM's reload skips its post-processing; on CPU that keeps the head's packed copy of the
*old* embeddings (the model then samples from a policy that is neither the old nor the new
one), so `push` re-runs it (`_refresh_tied_head`). In process only
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the tensors pass by reference, not through a pipe.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from beaver.config.sections import GenerationCfg
from beaver.models.batching import pad_batch
from beaver.models.generation import cut_at_eos
from beaver.models.saving import unwrap


def sampling_options(gen: GenerationCfg, eos_token_id: int) -> dict[str, Any]:
    """`vllm.SamplingParams` keywords from beaver's sampling options (temperature 0: greedy;
    top_k 0: no limit, as in HF; EOS kept in the output, as HF `generate` keeps it)."""
    return {
        "n": gen.num_return_sequences,
        "temperature": gen.temperature,
        "top_p": gen.top_p if gen.temperature > 0 else 1.0,
        "top_k": gen.top_k if gen.temperature > 0 and gen.top_k > 0 else 0,
        "repetition_penalty": gen.repetition_penalty,
        "max_tokens": gen.max_new_tokens,
        "stop_token_ids": [eos_token_id],
        "skip_special_tokens": False,
        "detokenize": False,
    }


def responses_tensor(rows: list[list[int]], eos_token_id: int, pad_token_id: int) -> Tensor:
    """(B, T) response ids, each row cut after its first EOS and right padded with PAD to the
    longest row (as `sample_responses` returns HF `generate`'s)."""
    cut = [cut_at_eos(r, eos_token_id)[0] for r in rows]
    ids, _ = pad_batch(cut, pad_token_id, "right")
    return ids


def request_seeds(seed: int | None, prompts: int, n: int) -> list[int | None]:
    """One seed per prompt's request: `seed + i * n` for prompt i (vLLM seeds the n answers of a
    request `seed + j`, so no two answers share one). One seed for the whole batch would give
    every prompt the same random draws: answers correlated across the batch (a noisier batch
    mean, and identical answers to identical prompts). None: vLLM's own unseeded sampling."""
    if seed is None:
        return [None] * prompts
    return [seed + i * n for i in range(prompts)]


def prompt_rows(prompt_ids: Tensor, prompt_mask: Tensor) -> list[list[int]]:
    """The prompts' tokens without their left padding."""
    return [ids[m.bool()].tolist() for ids, m in zip(prompt_ids, prompt_mask, strict=True)]


def _gathered(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(HF name, full tensor) of every parameter; ZeRO-3 partitions gathered one at a time."""
    for name, param in module.named_parameters():
        if hasattr(param, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                yield name, param.detach().clone()
        else:
            yield name, param.detach()


def _refresh_tied_head(worker: Any) -> None:
    """Re-run the post-processing of a tied LM head on a vLLM worker (`collective_rpc`).

    Its weight is the embedding's, already reloaded, but vLLM's CPU backend multiplies with a
    packed copy made when the head was processed, and the reload does not process a layer that
    got no weights of its own. On GPUs the step only re-reads the weight: harmless."""
    model = worker.model_runner.get_model()
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if method is not None and getattr(model.config, "tie_word_embeddings", False):
        method.process_weights_after_loading(head)


class VLLMSampler:
    """A vLLM engine holding a copy of the actor's weights; `sample` and `push`."""

    def __init__(
        self,
        actor: Any,
        tokenizer: Any,
        gen: GenerationCfg,
        max_model_len: int,
        seed: int,
        **llm_kwargs: Any,
    ):
        """`llm_kwargs`: more `vllm.LLM` keywords, e.g. `gpu_memory_utilization` (vLLM's
        default, 0.9 of the GPU, leaves a colocated trainer little room)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in process: shared tensors
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's default is 4
        from vllm import LLM

        from beaver.engine import dist
        from beaver.models.saving import full_state_dict, write_hf_folders

        module = unwrap(actor)
        self._dir = tempfile.TemporaryDirectory(prefix="beaver-vllm-")
        state = full_state_dict(module)  # collective under ZeRO-3; full on rank 0
        if dist.is_main():
            assert state is not None
            write_hf_folders(module, state, self._dir.name, tokenizer)
        dist.barrier()
        dtype = next(module.parameters()).dtype
        kwargs: dict[str, Any] = dict(llm_kwargs)
        if dist.world_size() > 1:  # one engine per rank, as TRL's colocate mode (untested here)
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(
            model=self._dir.name,
            dtype="float32" if dtype == torch.float32 else "bfloat16",
            enforce_eager=True,
            max_model_len=max_model_len,
            seed=seed,
            **kwargs,
        )
        self.gen = gen
        self.eos, self.pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def sample(self, prompt_ids: Tensor, prompt_mask: Tensor, seed: int | None = None) -> Tensor:
        """(B * n, T) response ids for (B, P) left-padded prompts, n per prompt in order."""
        from vllm import SamplingParams

        options = sampling_options(self.gen, self.eos)
        prompts = [{"prompt_token_ids": r} for r in prompt_rows(prompt_ids, prompt_mask)]
        params = [
            SamplingParams(**options, seed=s)
            for s in request_seeds(seed, len(prompts), self.gen.num_return_sequences)
        ]
        outs = self.llm.generate(prompts, params, use_tqdm=False)  # type: ignore[arg-type]
        rows = [list(c.token_ids) for o in outs for c in o.outputs]
        return responses_tensor(rows, self.eos, self.pad).to(prompt_ids.device)

    @torch.no_grad()
    def push(self, actor: Any) -> float:
        """Load the actor's current weights into vLLM in place; returns the seconds it took."""
        start = time.perf_counter()
        module = unwrap(actor)
        self.llm.collective_rpc(
            "reload_weights",
            kwargs={"weights_iterator": _gathered(module), "is_checkpoint_format": True},
        )
        self.llm.collective_rpc(_refresh_tied_head)
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        return time.perf_counter() - start
