# livewindows developer entry points. `make run` and `make test` are all a new
# machine needs (Python 3.11+, Java 17+, Maven); everything else installs itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.livewindows-setup
PYTEST_ARGS ?=

.PHONY: setup run test lint bench clean send

setup: $(STAMP)

# Redone only when the dependencies or the Kafka runtime change.
$(STAMP): pyproject.toml livewindows/kafka/pom.xml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -c 'from livewindows.kafka.runtime import ensure_jars; ensure_jars()'
	@touch $@

run: setup
	$(BIN)/livewindows dev

test: setup
	$(BIN)/pytest -q -p no:cacheprovider --timeout=300 $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy producer processor schemas livewindows

bench: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench

# Leaves .venv and the Kafka jar cache (~/.cache/livewindows) in place.
clean:
	rm -rf .data build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Sends signed sample webhooks to the pipeline that `make run` started.
PROVIDER ?= cloudflare
send: setup
	$(BIN)/livewindows --env-file .data/dev/dev.env send-test-events --provider $(PROVIDER) --url http://127.0.0.1:8080
