# Quick start: `make demo` (the main job on a small CPU default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
RUN_STAMP := $(VENV)/.setup-run
DEMO ?=
# e.g. make demo DEMO="--dtype float32 --fresh" (options of `trm demo`)

.PHONY: setup demo test test-slow lint bench clean

# The demo and the bench need trm and its plotting extra; the tests and lint add their tools.
$(RUN_STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) ./scripts/setup.sh run
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) ./scripts/setup.sh
	touch $(STAMP) $(RUN_STAMP)

setup: $(STAMP)

demo: $(RUN_STAMP)
	$(PY) -m trm demo $(DEMO)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy src/trm

bench: $(RUN_STAMP)
	$(PY) -m trm bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
