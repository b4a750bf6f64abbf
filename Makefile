# Two entry points (see README): `make quick` runs the quick ablation on the embedded data,
# `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install quick test bench

install: $(VENV)/.installed

# torch first, pinned: an unpinned torch requirement resolves to a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test]'
	touch $@

quick: install
	$(BIN)/remdi-exp ablate --preset quick

# Two xdist workers: most tests run one thread in one process, so a serial run leaves a core idle.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

bench: install
	$(BIN)/python benchmarks/run.py
