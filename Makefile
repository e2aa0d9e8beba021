# Targets a newcomer guesses: install, run, test, bench, lint, clean.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: install run test bench lint clean

# `make run` needs only the runtime dependencies; tests, benchmarks and lint add the test extra
$(RUNTIME): pyproject.toml
	@echo "make: installing Gonets and its runtime dependencies into $(VENV)…"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	@echo "make: installing the test dependencies into $(VENV)…"
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUNTIME)
	$(VENV)/bin/gonets run

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench

# ruff (config in pyproject.toml) on everything; mypy strict on core, workers, producers, scheduler
lint: $(STAMP)
	$(PY) -m compileall -q core producers workers scheduler sandbox cli bench
	$(VENV)/bin/ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .gonets .pytest_cache .mypy_cache .ruff_cache
