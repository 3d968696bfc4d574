"""The dataset layer: raw datasets (a registry), specs, the dataset kinds, templates.

```python
from beaver.data import make_datasets
train_ds, eval_ds = make_datasets("supervised", cfg.data, tokenizer)
loader = DataLoader(train_ds, batch_size=8, shuffle=True, collate_fn=train_ds.collate)
print(train_ds.stats.summary())
```

Kinds: `supervised`, `preference`, `safety_preference`, `labeled_preference`, `prompt_only`
(batch keys in `beaver.data.kinds`). Specs: `NAME[:PROPORTION[:PATH]]` (`beaver.data.spec`). Built-in raw
datasets: `beaver.data.sources`; custom ones: `beaver.data.plugins`.
"""

from beaver.data import sources as _sources  # registers the built-in datasets first
from beaver.data.build import build_dataset, dataset_class, make_datasets
from beaver.data.kinds import (
    KINDS,
    LabeledPreferenceDataset,
    PreferenceDataset,
    PromptOnlyDataset,
    SafetyPreferenceDataset,
    SupervisedDataset,
)
from beaver.data.loading import DataWarning, load_raw, load_source, mix
from beaver.data.plugins import import_modules
from beaver.data.raw import (
    BadRow,
    RawDataset,
    RawSample,
    dataset_names,
    get_dataset_class,
    register,
)
from beaver.data.spec import DatasetSpec, parse_spec, parse_specs
from beaver.data.templates import (
    PROMPT_ASSISTANT,
    PROMPT_BEGIN,
    PROMPT_USER,
    encode_prompt,
    format_prompt,
    resolve_template,
)
from beaver.data.tokenized import IGNORE_INDEX, DataStats, TokenizedDataset

del _sources

__all__ = [
    "IGNORE_INDEX",
    "KINDS",
    "PROMPT_ASSISTANT",
    "PROMPT_BEGIN",
    "PROMPT_USER",
    "BadRow",
    "DataStats",
    "DataWarning",
    "DatasetSpec",
    "LabeledPreferenceDataset",
    "PreferenceDataset",
    "PromptOnlyDataset",
    "RawDataset",
    "RawSample",
    "SafetyPreferenceDataset",
    "SupervisedDataset",
    "TokenizedDataset",
    "build_dataset",
    "dataset_class",
    "dataset_names",
    "encode_prompt",
    "format_prompt",
    "get_dataset_class",
    "import_modules",
    "load_raw",
    "load_source",
    "make_datasets",
    "mix",
    "parse_spec",
    "parse_specs",
    "register",
    "resolve_template",
]
