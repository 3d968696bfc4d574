"""Models: loading tokenizers and HF models (`loading`), saving in HF format (`saving`),
sampling responses (`generation`), and the score model (`score`)."""

from beaver.models.loading import (
    check_model_source,
    dtype_of,
    load_causal_lm,
    load_pretrained,
    load_tokenizer,
)
from beaver.models.saving import full_state_dict, save_hf, unwrap

__all__ = [
    "check_model_source",
    "dtype_of",
    "full_state_dict",
    "load_causal_lm",
    "load_pretrained",
    "load_tokenizer",
    "save_hf",
    "unwrap",
]
