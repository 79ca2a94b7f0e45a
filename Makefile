# The two commands: `make test` and `make demo`. Everything runs from .venv,
# created on first use with only Python 3.10+ and make.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := asgigreen tests benchmarks tools examples

.PHONY: test lint typecheck test-threads test-gevent compat bench clean demo bench-wsgi

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tests]'
	touch $@

## test: lint, type-check, and run the test suite in both modes.
test: lint typecheck test-threads test-gevent

lint: $(STAMP)
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(PY) -m mypy asgigreen

# A plain process: the threads hub.
test-threads: $(STAMP)
	$(PY) -m pytest

# A gevent-monkeypatched process: the gevent hub.
test-gevent: $(STAMP)
	$(PY) -m gevent.monkey --module pytest

## compat: asgiref 3.13.0's own test suite, imports rewritten, in both modes.
compat: $(STAMP)
	$(PY) tools/asgiref_suite.py

## bench: the bridges benchmark against asgiref, in both modes.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/bridges.py
	$(PY) -m gevent.monkey benchmarks/bridges.py

## demo: the migration example (a WSGI app) under asgigreen serve, against
## asgiref's WsgiToAsgi and a2wsgi; the server then stays up until Ctrl-C
## (not in CI, without a terminal, or with DEMO_NO_WAIT=1).
demo: $(STAMP)
	$(PY) -m pip install --quiet -e '.[demo]'
	$(PY) examples/migration/demo.py

## bench-wsgi: the WSGI <-> ASGI adapters under real servers (benchmarks/wsgi.py).
bench-wsgi: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/wsgi.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
