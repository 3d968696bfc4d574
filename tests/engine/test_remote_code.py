"""Repository code runs only with `trust_remote_code: true`, on every path that loads a model:
the causal LM, a score model's backbone, the tokenizer, an adapter's base and `beaver merge`.

The model folder's own Python files append to a marker file when they are imported, so "the
code did not run" is observed, not assumed; the same folder with the flag on must run it
(else the refusal would prove nothing)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_helpers import tiny_llama, tiny_tokenizer

from beaver.config.dpo import MergeConfig
from beaver.config.sections import LoraCfg, ModelCfg
from beaver.errors import UserError
from beaver.models import load_causal_lm, load_tokenizer
from beaver.models.adapters import add_adapter
from beaver.models.merge import run as merge
from beaver.models.score import load_score_model


def _remote_code_folder(path: Path, marker: Path) -> Path:
    """A tiny Llama + tokenizer whose config, model and tokenizer classes live in the folder's
    own .py files (as Baichuan's or InternLM's do); importing any of them writes to `marker`."""
    tiny_llama(0).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    ran = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (path / "configuration_custom.py").write_text(
        f"{ran}from transformers import LlamaConfig\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'custom_llama'\n"
    )
    (path / "modeling_custom.py").write_text(
        f"{ran}from transformers import LlamaForCausalLM, LlamaModel\n"
        "from .configuration_custom import CustomConfig\n\n"
        "class CustomModel(LlamaModel):\n    config_class = CustomConfig\n\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    (path / "tokenization_custom.py").write_text(
        f"{ran}from transformers import PreTrainedTokenizerFast\n\n"
        "class CustomTokenizerFast(PreTrainedTokenizerFast):\n    pass\n"
    )
    config = json.loads((path / "config.json").read_text())
    config.update(
        model_type="custom_llama",
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModel": "modeling_custom.CustomModel",
            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
        },
    )
    (path / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((path / "tokenizer_config.json").read_text())
    tok_config.update(
        tokenizer_class="CustomTokenizerFast",
        auto_map={"AutoTokenizer": [None, "tokenization_custom.CustomTokenizerFast"]},
    )
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return path


def _adapter_on(base: Path, out: Path) -> Path:
    """A LoRA adapter folder whose `base_model_name_or_path` is `base` (trained on a plain Llama
    of the same shapes, so making it runs no code of `base`)."""
    model = add_adapter(tiny_llama(0), LoraCfg(enabled=True, r=2, alpha=4), str(base), True)
    model.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base)
    return out


def _causal_lm(folder: Path, trust: bool, _tmp: Path) -> Any:
    return load_causal_lm(
        ModelCfg(name_or_path=str(folder), trust_remote_code=trust), torch.float32
    )


def _score_backbone(folder: Path, trust: bool, _tmp: Path) -> Any:
    model_cfg = ModelCfg(name_or_path=str(folder), trust_remote_code=trust)
    return load_score_model(model_cfg, torch.float32, "reward").backbone


def _tokenizer(folder: Path, trust: bool, _tmp: Path) -> Any:
    return load_tokenizer(ModelCfg(name_or_path=str(folder), trust_remote_code=trust))


def _adapter_base(folder: Path, trust: bool, tmp: Path) -> Any:
    adapter = _adapter_on(folder, tmp / f"adapter-{trust}")
    return load_causal_lm(
        ModelCfg(name_or_path=str(adapter), trust_remote_code=trust), torch.float32
    )


def _merge(folder: Path, trust: bool, tmp: Path) -> Any:
    model = ModelCfg(name_or_path=str(folder), trust_remote_code=trust)
    out = merge(MergeConfig(models=[model, model], weights=[0.5, 0.5], output_dir=str(tmp / "m")))
    return json.loads((out / "config.json").read_text())


PATHS: dict[str, tuple[Callable[[Path, bool, Path], Any], str]] = {
    # path: (loader, the class name the folder's own code gives the loaded object)
    "causal LM": (_causal_lm, "CustomForCausalLM"),
    "score backbone": (_score_backbone, "CustomModel"),
    "tokenizer": (_tokenizer, "CustomTokenizerFast"),
    "adapter base": (_adapter_base, "CustomForCausalLM"),
    "merge": (_merge, "CustomForCausalLM"),
}


def _class_name(loaded: Any) -> str:
    return loaded["architectures"][0] if isinstance(loaded, dict) else type(loaded).__name__


@pytest.mark.parametrize("path", sorted(PATHS))
def test_repository_code_runs_only_when_trusted(tmp_path: Path, path: str) -> None:
    load, custom_class = PATHS[path]
    marker = tmp_path / "code-ran.txt"
    folder = _remote_code_folder(tmp_path / f"custom_{path.replace(' ', '_')}", marker)
    with pytest.raises(UserError, match=r"trust_remote_code=true") as err:
        load(folder, False, tmp_path)
    assert "own Python code" in str(err.value)
    assert not marker.exists(), marker.read_text()  # refused before any of its code ran
    loaded = load(folder, True, tmp_path)
    assert marker.is_file()  # the same folder, trusted: its code ran ...
    assert _class_name(loaded) == custom_class  # ... and made what was loaded
