# Quick start: `make demo` (fit the sample mixture on a local Dask cluster), `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m dgmm.cli.demo --config configs/demo.yaml

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check dgmm tests benchmarks
	$(VENV)/bin/ruff format --check dgmm tests benchmarks
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed-test  # the unit tests: no clusters, processes, servers or notebooks
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo-data .pytest_cache .hypothesis
