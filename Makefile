# Quick start: `make demo` (the main job on a small CPU default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test test-slow lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) ./scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m trm demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy src/trm

bench: $(STAMP)
	$(PY) -m trm bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
