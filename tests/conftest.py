"""Session fixtures: a real Apache Kafka broker (KRaft) started from Maven Central jars."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError, free_port


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node broker on free ports, for the whole session. Fails (never skips) with its log."""
    workdir = tmp_path_factory.mktemp("kafka")
    cluster = LocalKafka(workdir, nodes=1, port=free_port(), controller_ports=[free_port()], log=print)
    try:
        cluster.up(timeout=120)
    except LocalKafkaError as exc:
        cluster.down()
        pytest.fail(f"the Kafka broker did not start:\n{exc}", pytrace=False)
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
def bootstrap(kafka: LocalKafka) -> str:
    state = kafka.load_state()
    assert state is not None
    return state.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
