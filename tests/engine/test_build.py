"""DeepSpeed config, optimiser parameter groups and schedules, built from the validated config."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import tiny_llama

from beaver.config.sections import DeepSpeedCfg, OptimCfg, TrainCfg
from beaver.engine.build import make_ds_config, make_optimizer, make_scheduler, param_groups
from beaver.errors import UserError

TRAIN = TrainCfg(per_device_batch_size=3, gradient_accumulation_steps=5)


@pytest.mark.parametrize("world", [1, 2, 8])
def test_batch_sizes_are_consistent(world: int) -> None:
    cfg = make_ds_config(DeepSpeedCfg(zero_stage=2), TRAIN, OptimCfg(), world_size=world).config
    assert cfg["train_micro_batch_size_per_gpu"] == 3
    assert cfg["gradient_accumulation_steps"] == 5
    assert cfg["train_batch_size"] == 3 * 5 * world


@pytest.mark.parametrize(
    ("ds", "zero", "offload_opt", "offload_param"),
    [
        (DeepSpeedCfg(zero_stage=0, precision="fp32"), 0, False, False),
        (DeepSpeedCfg(zero_stage=1, offload="optimizer"), 1, True, False),
        (DeepSpeedCfg(zero_stage=3, offload="parameter"), 3, False, True),
        (DeepSpeedCfg(zero_stage=3, offload="all"), 3, True, True),
    ],
)
def test_zero_and_offload(
    ds: DeepSpeedCfg, zero: int, offload_opt: bool, offload_param: bool
) -> None:
    spec = make_ds_config(ds, TRAIN, OptimCfg(), world_size=1)
    z = spec.config["zero_optimization"]
    assert z["stage"] == zero and spec.zero3 == (zero == 3)
    assert ("offload_optimizer" in z) == offload_opt
    assert ("offload_param" in z) == offload_param


def test_precision_and_clipping() -> None:
    bf16 = make_ds_config(
        DeepSpeedCfg(zero_stage=2, precision="bf16"), TRAIN, OptimCfg(clip_grad_norm=0.5), 1
    )
    assert bf16.config["bf16"]["enabled"] and not bf16.config["fp16"]["enabled"]
    assert bf16.config["gradient_clipping"] == 0.5 and bf16.client_clip_norm is None
    # plain ZeRO 0 fp32: beaver's optimiser wrapper clips (and skips non-finite steps)
    fp32 = make_ds_config(
        DeepSpeedCfg(zero_stage=0, precision="fp32"), TRAIN, OptimCfg(clip_grad_norm=0.5), 1
    )
    assert fp32.config["gradient_clipping"] == 0.0 and fp32.client_clip_norm == 0.5
    assert not any(k.startswith("beaver") for k in fp32.config)  # DeepSpeed's keys only
    opt = make_optimizer(param_groups(tiny_llama(), 0.0), OptimCfg(), fp32)
    assert isinstance(opt, torch.optim.AdamW) and opt.max_norm == 0.5  # type: ignore[attr-defined]


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused on CPU only")
def test_fp16_on_cpu_is_a_user_error() -> None:
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        make_ds_config(DeepSpeedCfg(precision="fp16"), TRAIN, OptimCfg(), 1)


def test_frozen_engine_config() -> None:
    frozen = make_ds_config(DeepSpeedCfg(zero_stage=2), TRAIN, None, 1)
    assert frozen.config["zero_optimization"] == {"stage": 0} and not frozen.zero3
    z3 = make_ds_config(DeepSpeedCfg(zero_stage=3, offload="all"), TRAIN, None, 1)
    zero = z3.config["zero_optimization"]
    assert zero["stage"] == 3 and "offload_optimizer" not in zero and z3.zero3


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = tiny_llama()
    model.model.layers[0].self_attn.q_proj.bias = torch.nn.Parameter(torch.zeros(32))
    groups = param_groups(model, 0.1)
    by_id = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert by_id[id(names["model.layers.0.self_attn.q_proj.bias"])] == 0.0
    assert by_id[id(names["model.layers.0.input_layernorm.weight"])] == 0.0
    assert by_id[id(names["model.norm.weight"])] == 0.0
    assert by_id[id(names["model.layers.0.mlp.up_proj.weight"])] == 0.1
    assert by_id[id(names["model.embed_tokens.weight"])] == 0.1
    assert len(by_id) == len(names)  # every trainable parameter exactly once


def _lrs(kind: str, total: int = 20, warmup: float = 0.1) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, OptimCfg(lr=1.0, scheduler=kind, warmup_ratio=warmup), total)  # type: ignore[arg-type]
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules() -> None:
    cosine, linear, constant = _lrs("cosine"), _lrs("linear"), _lrs("constant")
    for lrs in (cosine, linear, constant):
        assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.5) and lrs[2] == pytest.approx(1.0)
    assert constant[-1] == 1.0
    assert linear[11] == pytest.approx(0.5)  # halfway through the 18 decay steps
    assert cosine[11] == pytest.approx(0.5)
    assert cosine[5] > linear[5] and cosine[-1] < 0.01 and linear[-1] < 0.06
