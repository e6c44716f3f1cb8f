# churnfs: a churn-prediction feature store on Feast. `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
USERS ?= 100000
SEED ?= 42
DATA_DIR ?= data
REDIS_CONNECTION_STRING ?= 127.0.0.1:6379
REDIS_TYPE ?= redis
export DATA_DIR REDIS_CONNECTION_STRING REDIS_TYPE
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help setup test lint format data features apply materialize train serve monitor demo stream-demo bench clean

help: ## Show this help (the default target)
	@echo "Usage: make TARGET [USERS=100000] [SEED=42] [DATA_DIR=data] [CLUSTER=3]"
	@echo "Online store: REDIS_CONNECTION_STRING (default 127.0.0.1:6379); a Redis Cluster: REDIS_TYPE=redis_cluster"
	@echo "  REDIS_CONNECTION_STRING=host:port,host:port,...; make demo CLUSTER=3 starts a private one under DATA_DIR"
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}'

# torch first, pinned: the CPU build on local disk (a looser pin pulls a multi-GB CUDA build).
# The editable install uses compat mode (a .pth on the repository root) so the top-level
# packages and feature_repo/ import as they are in the tree.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,spark]' --config-settings editable_mode=compat
	touch $@

setup: $(VENV)/.installed ## Create .venv and install everything (idempotent)

test: setup ## Run the whole test suite (starts a private Redis when none answers)
	$(BIN)/pytest

lint: setup ## ruff check, ruff format --check and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy churnfs datagen transformations training serving monitoring

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

data: setup ## Generate the raw world into DATA_DIR/raw (USERS, SEED, END=YYYY-MM-DD its last day)
	$(BIN)/churnfs generate --users $(USERS) --seed $(SEED) $(if $(END),--end $(END))

features: setup ## Build the offline store (profile, activity, review, labels) from DATA_DIR/raw (ENGINE=duckdb|spark)
	$(BIN)/churnfs features $(if $(ENGINE),--engine $(ENGINE))

apply: setup ## Register the Feast repository in DATA_DIR/registry.db (feast apply)
	$(BIN)/feast apply

materialize: setup ## Load Redis up to the world's end (feast materialize), then check it against the offline store
	$(BIN)/feast materialize $$($(BIN)/churnfs materialize-window)
	$(BIN)/churnfs check-consistency

train: setup ## Train four churn models on point-in-time features; register churn-model@champion in MLflow
	$(BIN)/churnfs train

serve: setup ## Serve features and predictions over HTTP on HOST:PORT (default 127.0.0.1:8000)
	$(BIN)/churnfs serve

monitor: setup ## Drift report: training period vs latest snapshots and the prediction log (exit 3 on drift)
	$(BIN)/churnfs monitor

demo: setup ## Run the product end to end at USERS users (data to monitoring), then summarise it; CLUSTER=3: on a private 3-master Redis Cluster
	@mkdir -p "$(DATA_DIR)" && date +%s > "$(DATA_DIR)/.demo-started"
	$(BIN)/churnfs generate --users $(USERS) --seed $(SEED) $(if $(END),--end $(END))
	$(BIN)/churnfs features
	$(BIN)/churnfs online-store up $(if $(CLUSTER),--cluster $(CLUSTER))
	$(BIN)/churnfs apply
	$(BIN)/churnfs materialize --replace
	$(BIN)/churnfs check-consistency
	$(BIN)/churnfs train
	$(BIN)/churnfs smoke
	$(BIN)/churnfs monitor || test $$? -eq 3
	$(BIN)/churnfs online-store down
	@$(BIN)/churnfs summary --started-at $$(cat "$(DATA_DIR)/.demo-started")
	@echo "Next: make serve (API on http://127.0.0.1:8000/docs), mlflow ui --backend-store-uri sqlite:///$(DATA_DIR)/mlflow.db"

stream-demo: setup ## Stream a world's last WEEKS (3) of events through CONSUMERS (2) while the API serves, then check online == batch (STREAM_USERS=20000; replaces DATA_DIR's world)
	$(BIN)/churnfs online-store up
	$(BIN)/churnfs stream demo --users $(or $(STREAM_USERS),20000) --seed $(SEED) --weeks $(or $(WEEKS),3) --consumers $(or $(CONSUMERS),2)
	$(BIN)/churnfs online-store down

bench: setup ## Run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m bench

clean: ## Remove DATA_DIR (the generated world) and caches
	rm -rf "$(DATA_DIR)"/raw "$(DATA_DIR)"/offline_store "$(DATA_DIR)"/quarantine "$(DATA_DIR)"/registry.db "$(DATA_DIR)"/online_store .pytest_cache .ruff_cache .mypy_cache
