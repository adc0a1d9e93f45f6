# livewindows developer entry points. `make run` and `make test` are all a new
# machine needs (Python 3.11+, Java 17+, Maven); everything else installs itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.livewindows-setup
PYTEST_ARGS ?=

.PHONY: setup run test chaos lint bench clean send constraints

setup: $(STAMP)

# Redone only when the dependencies or the Kafka runtime change. pyproject.toml
# says which versions work; constraints.txt pins the set CI last passed with, so
# a fresh clone installs what was tested (`make constraints` refreshes it).
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
$(STAMP): pyproject.toml constraints.txt livewindows/kafka/pom.xml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev]'
	$(BIN)/python -c 'from livewindows.kafka.runtime import ensure_jars; ensure_jars()'
	@touch $@

run: setup
	$(BIN)/livewindows dev

# Two passes. First every test but the `alone` ones on TEST_WORKERS pytest-xdist
# workers sharing one broker (the 3-node cluster's tests stay on one worker): most
# wait on brokers and worker processes rather than compute, so two halve the wall
# time on 2 cores. Then the `alone` ones, one at a time with nothing beside them:
# fault tests bound by wall-clock waits (SIGSTOPped and killed workers, killed
# nodes), which the other worker's load made fail now and then on 2 cores.
# Exit 5 is pytest's "no test selected" (a PYTEST_ARGS path with none of a pass's).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -p no:cacheprovider --timeout=300
test: setup
	@echo "--- every test but those that run alone, on $(TEST_WORKERS) xdist worker(s)"; rc=0; \
	$(PYTEST) -n $(TEST_WORKERS) --dist loadgroup -m 'not alone' $(PYTEST_ARGS) || rc=$$?; \
	[ $$rc = 5 ] && rc=0; \
	echo "--- the tests that run alone"; \
	$(PYTEST) -n 0 -m alone $(PYTEST_ARGS) || { r=$$?; [ $$r = 5 ] || rc=$$r; }; \
	exit $$rc

# Fault tests (README "Fault tests"), a few minutes: webhooks under load while
# broker nodes, workers and the producer are killed (tests/chaos/), then workers
# started together, repeated. `make test` runs a short version of each.
CHAOS_START_ROUNDS ?= 3
chaos: setup
	$(BIN)/python -m tests.chaos
	LIVEWINDOWS_START_ROUNDS=$(CHAOS_START_ROUNDS) $(BIN)/pytest -q -p no:cacheprovider \
	  --timeout=600 tests/processor/test_workers_start_together.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy plumbing producer processor schemas livewindows

bench: setup
	$(PIP) -e '.[dev,bench]'
	$(BIN)/python -m bench

# The newest versions pyproject.toml allows, in a scratch venv; run `make test` after.
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	.venv-constraints/bin/python -m pip freeze --exclude-editable --disable-pip-version-check \
	  | grep -v '^livewindows' > constraints.txt
	rm -rf .venv-constraints

# Leaves .venv and the Kafka jar cache (~/.cache/livewindows) in place.
clean:
	rm -rf .data build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Sends signed sample webhooks to the pipeline that `make run` started.
PROVIDER ?= cloudflare
send: setup
	$(BIN)/livewindows --env-file .data/dev/dev.env send-test-events --provider $(PROVIDER) --url http://127.0.0.1:8080
