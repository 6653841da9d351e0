# Two commands on a fresh machine:
#   make run    install, start a local Kafka broker, create the topics, run the agent
#   make test   install, fetch Kafka, run lint and the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= configs/config.yaml

.PHONY: run test install system-deps kafka-jars kafka-up kafka-down topics fmt lint unit integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian packages some tests and tools use (Java and Maven run the Kafka broker).
system-deps:
	@bash scripts/system-deps.sh

kafka-jars: install
	$(BIN)/python -c "from log_capturer.devtools.kafka_local import ensure_jars; ensure_jars()"

kafka-up: kafka-jars
	$(BIN)/log-capturer kafka up

kafka-down: install
	$(BIN)/log-capturer kafka down

topics: kafka-up
	$(BIN)/log-capturer kafka create-topics

run: system-deps topics
	mkdir -p data/logs
	$(BIN)/log-capturer run --config $(CONFIG)

fmt: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: kafka-jars
	$(BIN)/pytest tests/integration

test: system-deps kafka-jars lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
