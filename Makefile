# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export AUDIORAG_CACHE ?= $(CURDIR)/data/cache
DEMO_LIB ?= experiments/results/default/libraries/synthetic-96-w10-h2

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build, so nothing later pulls a CUDA torch
$(VENV)/.installed: $(BIN)/python pyproject.toml Makefile
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[workbench,models,analysis,test]"
	# pretrained weights ship in these wheels; their own pins cannot resolve, and audiorag reads only their weights
	$(BIN)/pip install -q --no-deps musicnn==0.1.0 aisfx==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/audiorag sweep experiments/default.yaml
	$(BIN)/audiorag search $(DEMO_LIB) --embedder features45 --track 0 --at 10 -k 5 --exclude-same-track --by track
	$(BIN)/audiorag search $(DEMO_LIB) --embedder features45 --audio "$$($(BIN)/python -c 'import audiorag; print(audiorag.Library.open("$(DEMO_LIB)").tracks.uri[5])')" --start 4 --end 24 -k 3

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/index.py --n 100000

clean:
	rm -rf $(VENV) experiments/results data/cache
