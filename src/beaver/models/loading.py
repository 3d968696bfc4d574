"""Load tokenizers and HF models for training, with the user's mistakes as `UserError`s.

- Any HF architecture through the Auto classes. Repository code (Baichuan, InternLM) runs only
  with `model.trust_remote_code: true`.
- Under ZeRO-3 (a `DeepSpeedSpec` with `zero3`) the weights are loaded straight into
  partitions: an `HfDeepSpeedConfig` is kept alive while loading, so `from_pretrained` runs
  inside `deepspeed.zero.Init`. Loading without ZeRO-3 clears it again.
- A PEFT adapter folder loads as its base with the adapter merged in; a model the stage trains
  with `lora.enabled` gets a fresh adapter (`beaver.models.adapters`).
- Tokenizers must have an EOS token (training appends it; generation stops on it). A tokenizer
  without a PAD token gets PAD = EOS, with a warning: beaver finds padding from the attention
  mask and masks labels explicitly, so pad == eos is safe (Llama-3 and Qwen ship it).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from safetensors import SafetensorError
from torch import nn

from beaver.config.sections import ModelCfg
from beaver.errors import UserError
from beaver.files import looks_local, read_json
from beaver.models.score import CONFIG_FILE

if TYPE_CHECKING:
    from beaver.engine.build import DeepSpeedSpec

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_hf_ds_config: Any = None  # keeps transformers' weak reference to the ZeRO-3 config alive


def dtype_of(precision: str) -> torch.dtype:
    """torch dtype of a `deepspeed.precision` value."""
    return _DTYPES[precision]


Role = Literal["causal LM", "reward", "cost"]
"""What a config key needs: a causal LM (actor, SFT base, chat), or a score model of a kind."""

_TRAINED_BY = {"reward": "beaver rm", "cost": "beaver cm"}


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set: a hub name can only come from the cache."""
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _in_hub_cache(name: str) -> bool:
    """True when the hub cache holds a snapshot of repository `name`."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}").is_dir()


def _missing(name: str) -> bool:
    """`name` names a local folder that is not there: it looks like a path, or `a/b` where
    `a` is a local folder, or the hub is offline and its cache does not hold it either.
    (Otherwise `a/b` goes to the hub, which retries for most of a minute before failing.)"""
    path = Path(name).expanduser()
    if path.exists():
        return False
    parent = path.parent
    return (
        looks_local(name)
        or (str(parent) not in ("", ".") and parent.is_dir())
        or (_hub_offline() and not _in_hub_cache(name))
    )


def check_model_source(name: str, what: str = "model", key: str | None = None) -> None:
    """Refuse a local path that does not exist before transformers gives a long hub error;
    `key` (`reward_model`, `models[1]`) names the config key in the message."""
    path = Path(name).expanduser()
    where = f"{key}: " if key else ""
    if _missing(name):
        offline = (
            " HF_HUB_OFFLINE is set and the hub cache does not hold it either."
            if _hub_offline() and not looks_local(name)
            else ""
        )
        raise UserError(
            f"{where}{what} folder not found: {name} (a model is a local folder in HF format "
            f"or a hub name).{offline}"
        )
    if path.exists() and not path.is_dir():
        raise UserError(f"{where}{what} path {name} is a file; expected a folder in HF format.")


def score_kind(name: str) -> str | None:
    """The `score_type` a beaver score model folder records (`reward`, `cost`, `critic`), or
    None when `name` is not one (a causal LM, a hub name)."""
    config = Path(name).expanduser() / CONFIG_FILE
    if not config.is_file():
        return None
    return str(read_json(config).get("score_type", "unknown"))


def check_role(name: str, role: Role, key: str | None = None) -> None:
    """Refuse a local model folder of the wrong kind for `role`: a cost model given as the
    reward model (PPO-Lag would then maximise harm), a score model as a causal LM (its
    backbone would load with a tied head). Hub names are not checked (nothing to read)."""
    where = key or "the model"
    path = Path(name).expanduser()
    if not path.is_dir():
        return
    kind = score_kind(name)
    if role == "causal LM":
        if kind is not None:
            raise UserError(
                f"{where}: {name} is a {kind} model (a beaver score model: it has "
                f"{CONFIG_FILE}), but {where} must be a causal LM (an SFT or base model)."
            )
        return
    train = f"train one with `{_TRAINED_BY[role]}`"
    if kind is None:
        what = "a causal LM" if (path / "config.json").is_file() else "not a beaver score model"
        raise UserError(
            f"{where}: {name} is {what} (it has no {CONFIG_FILE}), but {where} must be a "
            f"{role} model; {train}."
        )
    if kind != role:
        raise UserError(
            f"{where}: {name} is a {kind} model ({CONFIG_FILE} says score_type {kind}), but "
            f"{where} must be a {role} model; {train}."
        )


def check_models(role: Role | None, **models: ModelCfg | None) -> None:
    """`check_model_source` of every model (and its own tokenizer) given by config key, and
    `check_role` when the keys have a `role` (None: any model, e.g. a critic's start), before
    anything loads."""
    for key, model in models.items():
        if model is not None:
            check_model_source(model.name_or_path, key=key)
            if model.tokenizer is not None:
                check_model_source(model.tokenizer, "tokenizer", key=f"{key}.tokenizer")
            if role is not None:
                check_role(model.name_or_path, role, key)


def _from_pretrained(
    loader: Any, name: str, what: str, trust_remote_code: bool, **kwargs: Any
) -> Any:
    check_model_source(name, what)
    try:
        return loader.from_pretrained(
            str(Path(name).expanduser()), trust_remote_code=trust_remote_code, **kwargs
        )
    except SafetensorError as err:  # a file cut short (a copy or a download interrupted)
        raise UserError(
            f"cannot load {what} {name!r}: a .safetensors file in it is damaged or incomplete "
            f"({' '.join(str(err).split())}); copy or save the model again."
        ) from None
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met more than tensors
        raise UserError(
            f"cannot load {what} {name!r}: its pickled weights file (.bin) holds more than "
            "tensors, so it was not loaded (unpickling it could run code). Convert it to "
            "safetensors where you trust it, or use a copy in safetensors format."
        ) from None
    except (OSError, ValueError, KeyError) as err:
        text = str(err)
        if "trust_remote_code" in text and not trust_remote_code:
            raise UserError(
                f"{what} {name!r} needs its repository's own Python code; if you trust "
                "it, set model.trust_remote_code=true."
            ) from None
        raise UserError(f"cannot load {what} {name!r}: {_why(err, name, what)}") from None


def _why(err: Exception, name: str, what: str) -> str:
    """The whole of transformers' message on one line, or what the folder lacks."""
    folder = Path(name).expanduser()
    wanted = (
        ("tokenizer.json", "tokenizer_config.json") if what == "tokenizer" else ("config.json",)
    )
    if folder.is_dir() and not any((folder / f).is_file() for f in wanted):
        return f"{folder} is not a {what} folder in HF format (it has no {' or '.join(wanted)})"
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or repr(err)


def load_tokenizer(model_cfg: ModelCfg, padding_side: str = "right") -> Any:
    """The tokenizer of `model_cfg` (its `tokenizer`, else `name_or_path`), with EOS and PAD."""
    from transformers import AutoTokenizer

    name = model_cfg.tokenizer or model_cfg.name_or_path
    tokenizer = _from_pretrained(AutoTokenizer, name, "tokenizer", model_cfg.trust_remote_code)
    if tokenizer.eos_token is None:
        raise UserError(
            f"tokenizer {name!r} has no EOS token: beaver appends EOS to every answer "
            "and stops generation on it. Set `eos_token` in its tokenizer_config.json."
        )
    if tokenizer.pad_token is None:
        log.warning(
            "tokenizer %s has no PAD token; using EOS (%r) as PAD", name, tokenizer.eos_token
        )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def _set_zero3(deepspeed: DeepSpeedSpec | None) -> None:
    """Make transformers load under `deepspeed.zero.Init` iff `deepspeed` is ZeRO-3."""
    global _hf_ds_config
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    if deepspeed is not None and deepspeed.zero3:
        _hf_ds_config = HfDeepSpeedConfig(deepspeed.config)
    else:
        _hf_ds_config = None
        unset_hf_deepspeed_config()


def load_pretrained(
    auto_class: Any,
    model_cfg: ModelCfg,
    dtype: torch.dtype,
    deepspeed: DeepSpeedSpec | None = None,
    trainable: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """`auto_class.from_pretrained` of `model_cfg` in `dtype`; partitioned when the engine it
    is for is ZeRO-3. Reusable for backbones (`AutoModel`) of score models.

    An adapter folder is loaded onto its base and merged (`beaver.models.adapters`). When the
    stage trains the model (`trainable`) and its config enables `lora`, it comes back under a
    fresh LoRA adapter."""
    from beaver.models import adapters

    lora = getattr(model_cfg, "lora", None) if trainable else None
    lora = lora if lora is not None and lora.enabled else None
    if lora is not None and lora.quantization == "4bit":
        kwargs["quantization_config"] = _four_bit(dtype)
    if adapters.is_adapter_dir(model_cfg.name_or_path):
        # Loaded whole and merged; a ZeRO-3 engine partitions it when it is built.
        base = load_pretrained(
            auto_class, adapters.base_cfg(model_cfg, model_cfg.name_or_path), dtype, **kwargs
        )
        model = adapters.load_adapter_folder(base, model_cfg.name_or_path)
    else:
        model = _load(auto_class, model_cfg, dtype, deepspeed, **kwargs)
    if lora is None:
        return model
    if lora.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    causal = auto_class.__name__ == "AutoModelForCausalLM"
    return adapters.add_adapter(model, lora, model_cfg.name_or_path, causal)


def _load(
    auto_class: Any,
    model_cfg: ModelCfg,
    dtype: torch.dtype,
    deepspeed: DeepSpeedSpec | None,
    **kwargs: Any,
) -> nn.Module:
    _set_zero3(deepspeed)
    try:
        return _from_pretrained(
            auto_class,
            model_cfg.name_or_path,
            "model",
            model_cfg.trust_remote_code,
            dtype=dtype,
            **kwargs,
        )
    finally:
        # transformers keeps the ZeRO-3 config in a global: a later plain `from_pretrained`
        # in this process (evaluation, a frozen model) must not come out partitioned.
        _set_zero3(None)


def _four_bit(dtype: torch.dtype) -> Any:
    """The bitsandbytes set-up of QLoRA (NF4, double quantisation, computing in `dtype`), or a
    `UserError` on a machine where it cannot run."""
    if not torch.cuda.is_available():
        raise UserError(
            "lora.quantization=4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit layers do not "
            "run on this machine's CPU. Use lora.quantization=none (plain LoRA) here."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            "lora.quantization=4bit (QLoRA) needs bitsandbytes: pip install 'beaver[qlora]'"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


def load_causal_lm(
    model_cfg: ModelCfg,
    dtype: torch.dtype,
    deepspeed: DeepSpeedSpec | None = None,
    trainable: bool = False,
) -> nn.Module:
    """A causal LM (`AutoModelForCausalLM`); partitioned when `deepspeed` is ZeRO-3; under a
    LoRA adapter when the stage trains it (`trainable`) and `model_cfg.lora` is enabled. A score
    model is refused (its backbone would load, with a tied head)."""
    from transformers import AutoModelForCausalLM

    check_role(model_cfg.name_or_path, "causal LM")

    return load_pretrained(AutoModelForCausalLM, model_cfg, dtype, deepspeed, trainable)


def fit_embeddings(
    model: nn.Module, tokenizer: Any, deepspeed: DeepSpeedSpec | None = None
) -> None:
    """Grow the embedding matrix when the tokenizer has more tokens than the model (added
    special tokens); never shrink it (vocabularies are often padded to a multiple of 64).
    Pass the `deepspeed` spec the model was loaded with: resizing partitioned embeddings
    gathers them, which transformers only does while it knows about ZeRO-3."""
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    size = getattr(embeddings, "num_embeddings", None)
    if size is None or len(tokenizer) <= size:
        return
    log.warning("tokenizer has %d tokens, model embeddings %d: resizing", len(tokenizer), size)
    _set_zero3(deepspeed)
    try:
        model.resize_token_embeddings(len(tokenizer))  # type: ignore[operator]
    finally:
        _set_zero3(None)
