"""Linear merging of model weights: theta = sum_i w_i theta_i (P-SACPO, Wachi et al. 2024).

P-SACPO merges the helpfulness-aligned model and the safety-aligned one (which SACPO trained from
it): theta = (1 - q) theta_r + q theta_g. The public code (line/sacpo) does it with mergekit's
`linear` method; this is the same sum, accumulated in fp32 one model at a time (so only one
model and the fp32 sum are in memory), then cast back to the first model's dtype per tensor.
Weights are used as given (mergekit's `linear` normalises them by their sum by default; P-SACPO's
(1 - q, q) already sums to 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor


def linear_merge(
    states: Iterable[Mapping[str, Tensor]], weights: Sequence[float]
) -> dict[str, Tensor]:
    """sum_i weights[i] * states[i], tensor by tensor. `states` is consumed one at a time.

    Every state must have the same keys and shapes as the first (ValueError naming the first
    difference). Floating tensors are summed in fp32 and returned in the first state's dtype;
    non-floating ones (integer buffers) must be equal and are kept.
    """
    total: dict[str, Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    count = 0
    for i, state in enumerate(states):
        if i >= len(weights):
            raise ValueError(f"more models than weights ({len(weights)})")
        w = float(weights[i])
        if i == 0:
            for key, t in state.items():
                dtypes[key] = t.dtype
                total[key] = t.detach().float() * w if t.is_floating_point() else t.detach().clone()
        else:
            if set(state) != set(total):
                diff = sorted(set(state) ^ set(total))
                raise ValueError(f"model {i} has other weights than model 0 (e.g. {diff[0]!r})")
            for key, t in state.items():
                if t.shape != total[key].shape:
                    raise ValueError(
                        f"model {i}: {key!r} has shape {tuple(t.shape)}, model 0 "
                        f"{tuple(total[key].shape)}"
                    )
                if t.is_floating_point():
                    total[key].add_(t.detach().float(), alpha=w)
                elif not torch.equal(t, total[key]):
                    raise ValueError(f"model {i}: non-float tensor {key!r} differs from model 0")
        count += 1
    if count != len(weights):
        raise ValueError(f"{len(weights)} weights for {count} models")
    return {k: v.to(dtypes[k]) for k, v in total.items()}
