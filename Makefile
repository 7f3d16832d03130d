# The two commands a newcomer runs are `make demo` and `make test`.
# Everything else here is what they need: uv (installed into .tools/ with the
# system Python), one locked virtualenv per Python x Django pair, and the
# services the integration tests talk to.

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

# The interpreter for each pair: pyenv's when it has one, else whatever is on PATH.
find_python = $(or $(shell pyenv prefix $(1) 2>/dev/null | sed 's|$$|/bin/python$(1)|' | head -n1),$(shell command -v python$(1)))
PY311 := $(call find_python,3.11)
PY312 := $(call find_python,3.12)

ENV_MAIN := .venvs/py311-dj52
ENV_NEXT := .venvs/py312-dj61

.PHONY: demo test lint types migrations-check docs docs-check test-matrix lane-main lane-next reliability release-check soak bench services clean help

help:
	@echo "make demo   run the example shop's scripted scenario on SQLite"
	@echo "make test   lint, types, migrations check and the suite on SQLite and PostgreSQL,"
	@echo "            on Python 3.11 + Django 5.2 and Python 3.12 + Django 6.1, and on MariaDB"
	@echo "make soak   every reliability scenario at full size; the report goes to bench/results/"
	@echo "make release-check  build the wheel and sdist, twine check them, follow the tutorial on the wheel"
	@echo "make docs   serve the documentation site on http://127.0.0.1:8000, rebuilt on every change"
	@echo "make bench  signalbox's dispatch against django.dispatch.Signal"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# One virtualenv per pair, synced from uv.lock (never re-resolved: --locked).
$(ENV_MAIN)/.synced: $(UV) uv.lock pyproject.toml
	@bash .ci/mysql-headers.sh
	UV_PROJECT_ENVIRONMENT=$(ENV_MAIN) $(UV) sync --quiet --locked --python $(PY311) \
		--group django52 --group test --group lint --group bench --group engines --group mysql \
		--group release --group docs
	@touch $@

$(ENV_NEXT)/.synced: $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(ENV_NEXT) $(UV) sync --quiet --locked --python $(PY312) \
		--group django61 --group test --group lint --group engines --group docs
	@touch $@

demo: $(ENV_MAIN)/.synced
	cd example && ../$(ENV_MAIN)/bin/python manage.py migrate --verbosity 0
	cd example && ../$(ENV_MAIN)/bin/python manage.py demo

lint: $(ENV_MAIN)/.synced
	$(ENV_MAIN)/bin/ruff check .
	$(ENV_MAIN)/bin/ruff format --check .

types: $(ENV_MAIN)/.synced $(ENV_NEXT)/.synced
	$(ENV_MAIN)/bin/mypy
	$(ENV_MAIN)/bin/mypy tests/typing
	$(ENV_NEXT)/bin/mypy

migrations-check: $(ENV_MAIN)/.synced $(ENV_NEXT)/.synced
	$(ENV_MAIN)/bin/python -m django makemigrations --check --dry-run --settings=tests.settings --pythonpath=. --pythonpath=src
	$(ENV_NEXT)/bin/python -m django makemigrations --check --dry-run --settings=tests.settings --pythonpath=. --pythonpath=src

services:
	@bash .ci/services.sh

# The documentation site (mkdocs.yml, docs/): `make docs` serves it locally;
# `make test` builds it first with warnings as errors, so a broken link or
# docstring fails in seconds rather than after the matrix (the suite builds
# it again in tests/test_docs_site.py, and runs every sample of the docs in
# tests/test_docs_snippets.py). Never --quiet: MkDocs counts the warnings
# --strict fails on through its log, so a quiet build passes them.
docs: $(ENV_MAIN)/.synced
	NO_MKDOCS_2_WARNING=1 $(ENV_MAIN)/bin/mkdocs serve

docs-check: $(ENV_MAIN)/.synced
	@site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(ENV_MAIN)/bin/mkdocs build --strict \
		--site-dir "$$site"; built=$$?; rm -rf "$$site"; exit $$built

# The suite runs once per database for each pair, and on MariaDB (or MySQL)
# on the first pair only, without the tests of the engines on Redis and
# RabbitMQ: those exercise their brokers, and what they ask of the database
# (the relay's hand-over query, the claim of one row by id) is what
# test_engines.py and the Tasks and Django-Q ORM engines' tests cover there.
# That run took 84 to 100 s on two shared cores.
#
# Two lanes run side by side, each run's output printed whole when it ends:
# the first pair's runs, and the second pair's without the broker tests, then
# the fault-injection scenarios. The second pair's broker tests run after
# both lanes, because every run's broker tests share the same Redis databases,
# queue names and private broker ports. The lanes' PostgreSQL test databases
# differ by name (SIGNALBOX_TEST_DB_SUFFIX); SQLite files are per process.
BROKERS := -m "redis or rabbitmq"
# The RabbitMQ crash-and-restart scenario runs after the lanes, on its own:
# beside the second lane's fault scenarios on two cores it missed its
# 90-second budget twice (it passes in 20-36 s alone).
BROKER_RESTART := tests/test_engine_rabbitmq_restart.py
NO_BROKERS := -m "not redis and not rabbitmq"

test-matrix: $(ENV_MAIN)/.synced $(ENV_NEXT)/.synced services
	@$(MAKE) --no-print-directory -j2 --output-sync=line lane-main lane-next
	SIGNALBOX_TEST_DB=postgres $(ENV_MAIN)/bin/pytest -q $(BROKER_RESTART)
	SIGNALBOX_TEST_DB=sqlite   $(ENV_NEXT)/bin/pytest -q $(BROKERS)
	SIGNALBOX_TEST_DB=postgres $(ENV_NEXT)/bin/pytest -q $(BROKERS)

# The first pair's SQLite run also builds the wheel and follows the tutorial
# on it once per `make test` (tests/test_release.py, about 30 s on two cores).
lane-main:
	SIGNALBOX_TEST_DB=sqlite   SIGNALBOX_RELEASE=1 $(ENV_MAIN)/bin/pytest -q
	SIGNALBOX_TEST_DB=postgres $(ENV_MAIN)/bin/pytest -q --ignore=$(BROKER_RESTART)
	SIGNALBOX_TEST_DB=mysql    $(ENV_MAIN)/bin/pytest -q $(NO_BROKERS)

lane-next:
	SIGNALBOX_TEST_DB=sqlite   SIGNALBOX_TEST_DB_SUFFIX=_next $(ENV_NEXT)/bin/pytest -q $(NO_BROKERS)
	SIGNALBOX_TEST_DB=postgres SIGNALBOX_TEST_DB_SUFFIX=_next $(ENV_NEXT)/bin/pytest -q $(NO_BROKERS)
	SIGNALBOX_RELIABILITY=ci $(RELIABILITY)

# The fault-injection scenarios (tests/reliability/), once, on the first pair:
# real worker processes against a private PostgreSQL cluster that they start
# and crash themselves (never the shared server), and a SQLite file.
RELIABILITY = $(ENV_MAIN)/bin/pytest -q --ds=tests.reliability.settings tests/reliability

reliability: $(ENV_MAIN)/.synced
	SIGNALBOX_RELIABILITY=ci $(RELIABILITY)

# The release's artifacts (docs/development.md, "Releasing"): the wheel and
# sdist built and checked, and the tutorial followed on the wheel.
release-check: $(ENV_MAIN)/.synced
	SIGNALBOX_RELEASE=1 $(ENV_MAIN)/bin/pytest -q tests/test_release.py

soak: $(ENV_MAIN)/.synced
	SIGNALBOX_RELIABILITY=full SIGNALBOX_RELIABILITY_REPORT=bench/results/reliability-latest.md \
		SIGNALBOX_RELIABILITY_DOCS=docs/reliability.md $(RELIABILITY)

test: lint types migrations-check docs-check test-matrix

bench: $(ENV_MAIN)/.synced services
	$(ENV_MAIN)/bin/python bench/run.py
	$(ENV_MAIN)/bin/python bench/outbox.py
	$(ENV_MAIN)/bin/python bench/engines.py

clean:
	rm -rf $(TOOLS) .venvs example/db.sqlite3 .pytest_cache .mypy_cache .ruff_cache dist site
