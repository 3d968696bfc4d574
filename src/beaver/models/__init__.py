"""Models, and everything that runs one over token sequences, once for training, eval and chat.

- `loading` (tokenizers and HF models, user errors), `saving` (HF format), `score` (the score
  model), `inference` (models on the best device in eval mode);
- `batching` (the one padding routine), `forward` (end scores, response log-probs, critic
  values), `generation` (sampling responses), `pairs` (a score model on preference pairs),
  `scorer` (reward and cost of answers to conversations).
"""

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
