"""A second broker with SASL and TLS listeners, shared by the security tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from log_capturer.devtools.kafka_local import (
    BOTH_LISTENERS,
    SASL_LISTENERS,
    TLS_LISTENERS,
    LocalKafka,
    LocalKafkaError,
    free_port,
)


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    names = [*SASL_LISTENERS, *TLS_LISTENERS, *BOTH_LISTENERS]
    cluster = LocalKafka(
        tmp_path_factory.mktemp("secure-kafka"),
        port=free_port(),
        controller_ports=[free_port()],
        sasl=True,
        tls=True,
        listener_ports={n: [free_port()] for n in names},
        log=print,
    )
    try:
        cluster.up(timeout=120)
    except LocalKafkaError as exc:
        cluster.down()
        pytest.fail(f"the SASL/TLS Kafka broker did not start:\n{exc}", pytrace=False)
    yield cluster
    cluster.down()
