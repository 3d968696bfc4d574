"""What pyproject.toml cannot say: the repository's `configs/` folder is installed as the package
`beaver.configs` (copied into a wheel; the folder itself in an editable install), beside the
packages under `src/`, and the data files of each. Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

# configs/, configs/toy, configs/toy/sweeps, ... as beaver.configs, beaver.configs.toy, ...
CONFIGS = ["beaver.configs", *(f"beaver.configs.{p}" for p in find_namespace_packages("configs"))]

setup(
    packages=[*find_namespace_packages("src", include=["beaver", "beaver.*"]), *CONFIGS],
    package_dir={"": "src", "beaver.configs": "configs"},
    package_data={
        "beaver": ["py.typed", "**/*.json", "**/*.yaml", "**/*.jsonl"],
        **{p: ["*.yaml"] for p in CONFIGS},
    },
)
