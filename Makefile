# The two commands: `make test` and `make demo`. Everything runs from .venv,
# created on first use with only Python 3.11+ and make.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := asgigreen tests benchmarks tools examples
# Every install takes the versions CI tested (`make constraints` refreshes them).
CONSTRAINTS := constraints/tests.txt
PIP_INSTALL := $(PY) -m pip install --quiet -c $(CONSTRAINTS)

.PHONY: test lint typecheck test-threads test-gevent compat bench clean demo bench-wsgi \
	rootfs test-pythons table dist wheel-smoke constraints docs doctest docs-check

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[tests]'
	touch $@

## test: lint, type-check, and run the test suite in both modes.
test: lint typecheck test-threads test-gevent

lint: $(STAMP)
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(PY) -m mypy asgigreen

# The test runs go through tools/matrix.py: a time limit on the whole run,
# and its log, JUnit XML and timing in build/results/ as <python>-<mode>.*
# (<python> is the venv's version), for `make table`.

# A plain process: the threads hub.
test-threads: $(STAMP)
	$(PY) tools/matrix.py host plain

# A gevent-monkeypatched process: the gevent hub.
test-gevent: $(STAMP)
	$(PY) tools/matrix.py host patched

## compat: asgiref 3.13.0's own test suite, imports rewritten, in both modes.
compat: $(STAMP)
	$(PY) tools/matrix.py host compat

## rootfs: a Debian sid root filesystem with CPython 3.13, 3.14 and 3.15 in
## build/rootfs-sid (tools/pythons.sh; needs root; skipped when up to date).
rootfs:
	bash tools/pythons.sh build

## test-pythons: the tests in both modes and compat on each of PYTHONS, in
## the rootfs (as CI does), then the table of all results.
PYTHONS ?= 3.13 3.14 3.15
test-pythons: rootfs
	status=0; $(PYTHON) tools/matrix.py pythons $(PYTHONS) || status=1; \
	$(PYTHON) tools/matrix.py table || status=1; exit $$status

## table: one table of the runs in build/results (exit 1 if one failed).
table:
	$(PYTHON) tools/matrix.py table

## bench: the bridges benchmark against asgiref, in both modes.
bench: $(STAMP)
	$(PIP_INSTALL) -e '.[bench]'
	$(PY) benchmarks/bridges.py
	$(PY) -m gevent.monkey benchmarks/bridges.py

## demo: the migration example (a WSGI app) under asgigreen serve, against
## asgiref's WsgiToAsgi and a2wsgi; the server then stays up until Ctrl-C
## (not in CI, without a terminal, or with DEMO_NO_WAIT=1).
demo: $(STAMP)
	$(PIP_INSTALL) -e '.[demo]'
	$(PY) examples/migration/demo.py

## bench-wsgi: the WSGI <-> ASGI adapters under real servers (benchmarks/wsgi.py).
bench-wsgi: $(STAMP)
	$(PIP_INSTALL) -e '.[bench]'
	$(PY) benchmarks/wsgi.py

# The docs: Sphinx with every warning an error (-W) and every cross-reference
# checked (-n), from a fresh environment each time (-E), so a warning is never
# hidden by an earlier build.
DOCS_STAMP := $(VENV)/.installed-docs
SPHINX := $(PY) -m sphinx -E -W --keep-going -n -q -d docs/_build/doctrees

$(DOCS_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[docs]'
	touch $@

## docs: the documentation site, built into docs/_build/html.
docs: $(DOCS_STAMP)
	rm -rf docs/_build/html
	$(SPHINX) -a -b html docs docs/_build/html

## doctest: run the documentation's code samples (sphinx.ext.doctest).
doctest: $(DOCS_STAMP)
	$(SPHINX) -b doctest docs docs/_build/doctest
	@sed -n '/^Doctest summary/,$$p' docs/_build/doctest/output.txt

## docs-check: the built site in headless Chromium (tools/docs_check.py):
## navigation, internal links, screenshots in build/docs-screenshots/.
docs-check: docs
	$(PY) tools/docs_check.py docs/_build/html

RELEASE_STAMP := $(VENV)/.installed-release

$(RELEASE_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[release]'
	touch $@

## dist: the sdist and wheel in dist/ (python -m build), checked by twine.
dist: $(RELEASE_STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

## wheel-smoke: the built wheel in a fresh venv, away from the checkout
## (tools/wheel_smoke.py: import, both bridges in both modes, the CLI, the alias).
wheel-smoke: dist
	$(PY) tools/wheel_smoke.py dist

## constraints: upgrade .venv and each of PYTHONS' rootfs venvs to the newest
## versions pyproject.toml allows and write them to constraints/tests.txt
## (tools/refresh_constraints.py; needs root for the rootfs). Then run the tests.
constraints: $(STAMP) rootfs
	$(PY) tools/refresh_constraints.py --upgrade $(PYTHONS)

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache docs/_build
