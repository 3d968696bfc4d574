# beaver on a CUDA machine. Build: `make docker-build`; run: `make docker-run`.
FROM nvcr.io/nvidia/pytorch:24.10-py3

ENV PIP_NO_CACHE_DIR=1 \
    HF_HOME=/workspace/.cache/huggingface \
    TOKENIZERS_PARALLELISM=false

WORKDIR /opt/beaver
COPY pyproject.toml setup.py README.md LICENSE ./
COPY src ./src
COPY configs ./configs
# The base image's CUDA torch satisfies beaver's torch range, so pip keeps it.
RUN python -m pip install -e ".[tensorboard]"

WORKDIR /workspace
ENTRYPOINT ["beaver"]
CMD ["--help"]
