"""The ``kafka`` section."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.kafka.source import PREFETCH, consumer_config


def test_the_consumer_never_commits_or_stores_offsets_by_itself() -> None:
    conf = consumer_config(KafkaSourceConfig(brokers=["k1:9092", "k2:9092"], group_id="g"))
    assert conf["bootstrap.servers"] == "k1:9092,k2:9092"
    assert conf["group.id"] == "g"
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["isolation.level"] == "read_committed"
    assert conf["security.protocol"] == "PLAINTEXT"


def test_security_is_the_kafka_sinks() -> None:
    cfg = KafkaSourceConfig(
        auth={"enabled": True, "mechanism": "PLAIN", "username": "u", "password": "p"},
        tls={"enabled": True, "verify_certificate": False},
    )
    conf = consumer_config(cfg)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "PLAIN"
    assert conf["sasl.password"] == "p"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"


def test_options_pass_through_but_not_the_ones_the_section_sets() -> None:
    assert (
        consumer_config(KafkaSourceConfig(librdkafka_options={"fetch.max.bytes": 1 << 20}))["fetch.max.bytes"]
        == 1 << 20
    )
    with pytest.raises(ValidationError, match=r"enable\.auto\.commit cannot be set here"):
        KafkaSourceConfig(librdkafka_options={"enable.auto.commit": True})


def test_the_prefetch_is_bounded_unless_the_options_say_otherwise() -> None:
    conf = consumer_config(KafkaSourceConfig())
    assert {k: conf[k] for k in PREFETCH} == PREFETCH
    assert conf["queued.max.messages.kbytes"] == 16384
    assert conf["fetch.queue.backoff.ms"] == 20
    mine = {
        "queued.min.messages": 100_000,
        "queued.max.messages.kbytes": 65536,
        "fetch.queue.backoff.ms": 1000,
    }
    conf = consumer_config(KafkaSourceConfig(librdkafka_options=mine))
    assert {k: conf[k] for k in mine} == mine


@pytest.mark.parametrize(
    ("options", "fetch_max"),
    [({}, 1 << 20), ({"message.max.bytes": 10_000_000}, 10_000_000), ({"fetch.max.bytes": 2 << 20}, 2 << 20)],
)
def test_librdkafka_accepts_the_consumer_config(options: dict[str, int], fetch_max: int) -> None:
    """librdkafka checks the properties when the consumer is made (it refuses a fetch.max.bytes
    below message.max.bytes): the prefetch bounds must pass with what users set beside them."""
    from confluent_kafka import Consumer

    conf = consumer_config(
        KafkaSourceConfig(brokers=["127.0.0.1:1"], group_id="g", librdkafka_options=options)
    )
    assert conf["fetch.max.bytes"] == fetch_max
    Consumer(conf).close()


def test_a_message_max_bytes_that_is_no_number_is_left_for_librdkafka_to_name() -> None:
    """The fetch bound does not turn a wrong value into a traceback: librdkafka names the property
    (the agent then says so and exits 2)."""
    from confluent_kafka import Consumer, KafkaException

    conf = consumer_config(
        KafkaSourceConfig(
            brokers=["127.0.0.1:1"], group_id="g", librdkafka_options={"message.max.bytes": "ten"}
        )
    )
    assert conf["fetch.max.bytes"] == PREFETCH["fetch.max.bytes"]
    with pytest.raises(KafkaException, match=r"message\.max\.bytes"):
        Consumer(conf)


def test_a_topic_pattern_must_be_a_regular_expression() -> None:
    assert KafkaSourceConfig(topics=["^logs-.*"]).topics == ["^logs-.*"]
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        KafkaSourceConfig(topics=["^logs-("])


def test_durations() -> None:
    cfg = KafkaSourceConfig(session_timeout="10s", poll_timeout="100ms", max_poll_interval="1m")
    conf = consumer_config(cfg)
    assert conf["session.timeout.ms"] == 10_000
    assert conf["max.poll.interval.ms"] == 60_000
    with pytest.raises(ValidationError, match="max_poll_interval"):
        KafkaSourceConfig(session_timeout="60s", max_poll_interval="30s")
