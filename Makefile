# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,torch,onnx,postgres,redis,langchain,llamaindex,serve,qdrant,eval,plots,otel
# Ranges in pyproject.toml, exact versions in constraints.txt: either changing reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: demo test lint typecheck unit bench bench-deps bench-litellm bench-fastembed bench-gateway bench-ingest bench-engine clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(BIN)/leanrank demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/retrieval.py

# Everything the commands in README.md and bench/README.md need: the `bench` extra (sentence-transformers,
# FlashRank, pyinstrument) and LiteLLM's proxy.
BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
LITELLM_VENV := bench/out/litellm-venv
FASTEMBED_VENV := bench/out/fastembed-venv

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[$(EXTRAS),bench]'
	rm -f $(VENV)/.bench-* && touch $(BENCH_STAMP)

bench-deps: $(BENCH_STAMP) bench-litellm bench-fastembed

# LiteLLM's proxy (a peer in bench/gateway.py) gets a venv of its own: its `proxy` extra pulls ~120 packages
# (boto3, Azure and Google Cloud SDKs, 750 MB) and would move the FastAPI, Starlette and cryptography
# versions leanrank's service is tested with. It runs as its own process, as it is deployed.
bench-litellm: $(LITELLM_VENV)/bin/litellm

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet 'litellm[proxy]==1.108.7'

# fastembed (a peer in bench/engine.py) wants huggingface-hub<2.0, which leanrank's torch and onnx extras are
# not tested with: its own venv, driven as a worker process (bench/fastembed_worker.py).
bench-fastembed: $(FASTEMBED_VENV)/bin/python

$(FASTEMBED_VENV)/bin/python:
	$(PYTHON) -m venv $(FASTEMBED_VENV)
	$(FASTEMBED_VENV)/bin/pip install --quiet 'fastembed==0.9.1' || (rm -rf $(FASTEMBED_VENV) && false)

bench-gateway: bench-deps
	$(BIN)/python -m bench.gateway

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-engine: bench-deps
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
