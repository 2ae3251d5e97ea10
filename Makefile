# Two commands on a fresh machine: `make demo` (or `make demo-quick` first) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export AUDIORAG_CACHE ?= $(CURDIR)/data/cache
DEMO_LIB ?= experiments/results/default/libraries/synthetic-96-w10-h2
QUICK_LIB ?= experiments/results/quick/libraries/synthetic-16-w10-h2
PIP := $(BIN)/python -m pip install -q
# pip warns once per configured package location that does not exist on this machine (a find-links folder,
# an extra index without the package): drop those lines only; errors and other warnings still show
QUIET := 2>&1 | sed "/^WARNING: Location '.*' is ignored/d"

.PHONY: install browser demo demo-quick test test-fast lint bench clean docs fuzz

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip $(QUIET)

# torch first, pinned to the CPU build, so nothing later pulls a CUDA torch
$(VENV)/.installed: $(BIN)/python pyproject.toml Makefile notebooks/ipython_kernel_config.py
	$(PIP) torch==2.13.0 $(QUIET)
	# setuptools explains editable installs in a boxed warning at every install: not for us to act on
	PYTHONWARNINGS=ignore::UserWarning $(PIP) -e ".[workbench,models,analysis,scale,stems,test]" $(QUIET)
	# pretrained weights ship in these wheels; their own pins cannot resolve, and audiorag reads only their weights
	$(PIP) --no-deps musicnn==0.1.0 aisfx==0.1.2 $(QUIET)
	# numba's compiled-code cache (librosa's filters: 17 s of CPU once) is filled here, where the user already
	# waits, not by the first features45 query or build
	$(BIN)/python -c "from audiorag.embedders import get_embedder; from audiorag.engines.job import warm_up; warm_up([get_embedder('features45')])"
	# the kernels' configuration (notebooks/ipython_kernel_config.py): errors only, without the noise it lists
	mkdir -p $(VENV)/etc/ipython && rm -f $(VENV)/etc/ipython/ipython_kernel_config.json
	cp notebooks/ipython_kernel_config.py $(VENV)/etc/ipython/
	touch $@

install: $(VENV)/.installed

# ≈2 min: features45 with a Flat and an HNSW index on the generated corpus
demo-quick: install
	$(BIN)/audiorag sweep experiments/quick.yaml
	$(BIN)/audiorag search $(QUICK_LIB) --embedder features45 --track 0 --at 10 -k 5 --exclude-same-track --by track

# the full default sweep: features45, musicnn-mtt and aisfx, each with Flat and HNSW32
demo: install
	$(BIN)/audiorag sweep experiments/default.yaml
	$(BIN)/audiorag search $(DEMO_LIB) --embedder features45 --track 0 --at 10 -k 5 --exclude-same-track --by track
	$(BIN)/audiorag search $(DEMO_LIB) --embedder features45 --audio "$$($(BIN)/python -c 'import audiorag; print(audiorag.Library.open("$(DEMO_LIB)").tracks.uri[5])')" --start 4 --end 24 -k 3

test: install
	$(BIN)/python -m pytest

# the real browser the page and JupyterLab tests drive: Debian's chromium (apt-get, as root). Without it
# those tests skip, except under CI ($$CI set) where they fail
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "no chromium: run 'sudo apt-get install chromium' for the browser tests"; fi

# the inner loop: everything not marked slow (notebook runs, wheel install, model loading, big builds)
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# a long schemathesis run against a real `audiorag serve` (docs/serve.md, API fuzzing); its counts go to FUZZ_RECORD
FUZZ_RECORD ?= experiments/results/fuzz/serve.json
fuzz: install
	AUDIORAG_FUZZ_EXAMPLES=100 AUDIORAG_FUZZ_SECONDS=1800 AUDIORAG_FUZZ_RECORD=$(FUZZ_RECORD) \
		$(BIN)/python -m pytest tests/test_serve_fuzz.py -s -p no:warnings
	@echo "counts: $(FUZZ_RECORD)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/index.py --n 100000
	$(BIN)/python benchmarks/serve.py

# the tables of measured numbers in README.md and docs/, regenerated from experiments/results/ records
docs: install
	$(BIN)/python -m audiorag.report

# experiments/results: only what git ignores goes (tracked records such as index-bench stay)
clean:
	rm -rf $(VENV) data/cache build dist *.egg-info .pytest_cache .ruff_cache
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git clean -fdXq -- experiments/results; \
	else echo "not a git checkout: experiments/results left as it is"; fi
