# Every target creates the virtualenv it needs: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo demo-inbox browser test test-fast test-heavy lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The IT-operations demo on the embedded server: no Redis URL, no Slack tokens needed.
demo: $(STAMP)
	env -u HITL_REDIS_URL $(VENV)/bin/hitl demo

## The same demo with the requests left pending: decide them in the web inbox (it prints the
## address and a one-time sign-in link) or with `hitl approve`.
demo-inbox: $(STAMP)
	env -u HITL_REDIS_URL $(VENV)/bin/hitl demo --interactive

## Debian's chromium for the inbox's browser tests (Playwright drives it; nothing is downloaded
## by Playwright). Without it those tests skip and say so.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }

## The whole suite (starts its own redis-server on a free port).
test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

## CrewAI and Semantic Kernel: too heavy for `make test` (minutes and ~1.4 GB to install) and
## pinned to mcp<2, so they get a virtualenv of their own.
HEAVY := .venv-heavy
$(HEAVY)/.installed-stamp: pyproject.toml
	$(PYTHON) -m venv $(HEAVY)
	$(HEAVY)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,crewai,semantic-kernel]"
	touch $(HEAVY)/.installed-stamp

test-heavy: $(HEAVY)/.installed-stamp
	$(HEAVY)/bin/python -m pytest -q tests/integrations/test_crewai.py tests/integrations/test_semantic_kernel.py

lint: $(STAMP)
	$(VENV)/bin/ruff check hitl tests bench examples
	$(VENV)/bin/ruff format --check hitl tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix hitl tests bench examples
	$(VENV)/bin/ruff format hitl tests bench examples

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(HEAVY) .pytest_cache .mypy_cache .ruff_cache *.egg-info
