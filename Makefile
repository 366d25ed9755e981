# Set-up and the usual tasks. Every target installs into .venv first (once per
# requirements change), so `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: install demo test test-slurm test-fast bench gpu-bench gpu-check lint format clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Run the whole workflow on config/config.yaml (built-in tiny models: noise, offline).
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES)

## All tests, the end-to-end workflow runs included; each test file on one of the cores
## (pytest-xdist), the slowest 15 tests listed at the end.
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -n auto --dist loadfile --durations=15

## The SLURM suite: starts a one-node SLURM cluster (root; Debian's munge, slurmctld,
## slurmd; add T2IBENCH_SLURM_INSTALL=1 to apt-get them), runs the workflow through
## profiles/slurm and locally, compares, stops the cluster. See docs/slurm.md.
test-slurm: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" T2IBENCH_SLURM=1 $(BIN)/pytest -q -s -p no:xdist tests/test_slurm.py

## Unit tests only (skips the end-to-end Snakemake runs).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" -n auto --dist loadfile --durations=15

## Figures: dry-run time of large plans (per image and in chunks), workflow vs plain loop,
## peak RSS, CLIP scoring throughput, the viewer's build and load time (2,000 images),
## VQAScore throughput (tiny VLM, batched vs one at a time).
bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/bench.py
	$(BIN)/python tools/bench_metrics.py --json bench/out/bench_metrics.json
	$(BIN)/python tools/bench_viewer.py --json bench/out/bench_viewer.json
	$(BIN)/python tools/bench_vqascore.py --images 128 --json bench/out/bench_vqascore.json

## On a GPU: the engine against a plain diffusers loop, full-size SDXL (random weights)
## at 1024x1024, 28 steps, bf16; profiler table; each speed option (tools/gpu_bench.py).
gpu-bench: $(STAMP)
	$(BIN)/python tools/gpu_bench.py $(GPU_BENCH_ARGS)

## On a GPU: full-size SDXL (random weights) at 1024x1024, bf16 and fp16: s/image, NaN.
gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py --offload

lint: $(STAMP)
	$(BIN)/ruff check scripts tools tests
	$(BIN)/ruff format --check scripts tools tests
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff check --fix scripts tools tests
	$(BIN)/ruff format scripts tools tests
	$(BIN)/snakefmt Snakefile rules

clean:
	rm -rf results resources .snakemake
