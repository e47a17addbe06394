# telewatch: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DB ?= data/demo.db

.PHONY: setup demo run serve test screenshots lint check container-test bench lock clean

$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## setup: create .venv with the pinned dependencies and telewatch itself
setup: $(STAMP)

## demo: the whole pipeline on the bundled sample channel (no Telegram credentials needed)
demo: setup
	$(BIN)/telewatch --db $(DEMO_DB) demo

## run: follow the configured channels (needs config.toml and `telewatch login`)
run: setup
	$(BIN)/telewatch run

## serve: the demo archive in a browser (http://127.0.0.1:8001/; docs/web.md)
serve: setup
	test -f $(DEMO_DB) || $(BIN)/telewatch --db $(DEMO_DB) demo
	$(BIN)/telewatch --db $(DEMO_DB) serve

## test: the test suite (no network, no Telegram)
test: setup
	$(BIN)/python -m pytest -q

## screenshots: the browser tests, writing docs/img/web-*.png for docs/web.md (needs chromium)
screenshots: setup
	TELEWATCH_SCREENSHOTS=docs/img $(BIN)/python -m pytest -q tests/web/test_browser.py

## lint: ruff, ruff format --check, mypy --strict, hadolint
lint: setup
	$(BIN)/ruff check archiver bot web tests bench
	$(BIN)/ruff format --check archiver bot web tests bench
	$(BIN)/mypy --strict archiver bot web
	$(BIN)/hadolint Dockerfile

check: test lint

## container-test: build the image with podman (as root) and run the README's container commands
container-test: setup
	bash .ci/container-test.sh

## bench: the benchmarks (minutes; figures go to docs/benchmarks.md)
bench: setup
	$(BIN)/python bench/run_all.py

## lock: regenerate the pinned requirement files from pyproject.toml
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet --upgrade pip
	.lockvenv/bin/pip install --quiet ".[web]"
	(echo "# Pinned runtime dependencies (pip freeze of a clean install of .[web]). Regenerate: make lock"; \
		.lockvenv/bin/pip freeze --exclude telewatch) > requirements.lock
	.lockvenv/bin/pip install --quiet ".[dev]"
	(echo "# Pinned runtime + development dependencies. Regenerate: make lock"; \
		.lockvenv/bin/pip freeze --exclude telewatch) > requirements-dev.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
