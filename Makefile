# Everything runs inside .venv, created on first use. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
SWEEP ?=

.DEFAULT_GOAL := help
.PHONY: help install train evaluate export results test test-fast lint format bench loadtest serve tensorboard sweep-report clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install sdc (editable) with its dev tools; idempotent

train: $(STAMP) ## Train the write-up's baseline (extra Hydra overrides: make train ARGS='...')
	$(BIN)/python -m sdc.train experiment=baseline $(ARGS)

evaluate: $(STAMP) ## Test a checkpoint: make evaluate CKPT=path/to.ckpt [ARGS='data.split=...']
	$(BIN)/sdc evaluate ckpt_path=$(CKPT) $(ARGS)

export: $(STAMP) ## ONNX and TorchScript beside a checkpoint: make export CKPT=path/to.ckpt
	$(BIN)/sdc export $(CKPT) --onnx $(basename $(CKPT)).onnx --torchscript $(basename $(CKPT)).pt

results: $(STAMP) ## The results table: every recipe x protocol, trained and evaluated (hours on a CPU)
	$(BIN)/sdc results $(ARGS)

test: $(STAMP) ## Run the test suite (the real-FSDD tests need SDC_DATA_DIR)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP) ## The tests that need neither FSDD nor long training
	$(BIN)/python -m pytest -m "not fsdd and not slow" $(ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: $(STAMP) ## Speed and memory on this machine (skip the full training run: ARGS=bench.full_run=false)
	$(BIN)/sdc bench $(ARGS)

serve: $(STAMP) ## The web page and API on http://127.0.0.1:8000/: make serve MODEL=path/to/model.onnx
	$(BIN)/sdc serve $(MODEL) $(ARGS)

loadtest: $(STAMP) ## sdc serve under load: make loadtest MODEL=path/to/model.onnx [ARGS='--clients 8 --seconds 20']
	$(BIN)/sdc loadtest $(MODEL) $(ARGS)

tensorboard: $(STAMP) ## Every run and sweep under outputs/
	$(BIN)/tensorboard --logdir outputs

sweep-report: $(STAMP) ## Rank a sweep's trials: make sweep-report SWEEP=outputs/multiruns/<date>/<time>_<name>
	$(BIN)/sdc sweep-report $(SWEEP)

clean: ## Remove caches (keeps .venv, data and outputs)
	rm -rf .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
