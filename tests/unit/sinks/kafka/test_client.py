from __future__ import annotations

import pytest

from log_capturer.config import ConfigError, load_config_text
from log_capturer.sinks.kafka.client import producer_config, redacted


def kafka(text: str) -> dict[str, object]:
    cfg = load_config_text(
        "sinks:\n  kafka:\n" + "".join(f"    {line}\n" for line in text.splitlines()), env={}
    )
    return producer_config(cfg.sinks.kafka)


def test_every_key_maps_onto_librdkafka() -> None:
    conf = kafka(
        "brokers: [a:1, b:2]\ncompression: lz4\nmax_message_bytes: 2048\nrequired_acks: 0\n"
        "batch_size: 123\nbatch_timeout: 250ms\nqueue_size: 777\ntimeout: 45s\nretry_max: 9\n"
        "queue_max_bytes: 8388608"
    )
    assert conf["bootstrap.servers"] == "a:1,b:2"
    assert conf["compression.type"] == "lz4"
    assert conf["message.max.bytes"] == 2048 + 512
    assert conf["acks"] == "0" and conf["enable.idempotence"] is False
    assert conf["batch.num.messages"] == 123 and conf["linger.ms"] == 250
    assert conf["queue.buffering.max.messages"] == 777
    assert conf["queue.buffering.max.kbytes"] == 8192
    assert conf["message.timeout.ms"] == 45000 and conf["request.timeout.ms"] == 30000
    assert conf["retries"] == 9
    assert conf["security.protocol"] == "PLAINTEXT"


@pytest.mark.parametrize("dlq", ["{send_on_timeout: false}", "{enabled: false}"])
def test_without_parking_on_timeout_librdkafka_retries_with_no_time_limit(dlq: str) -> None:
    conf = kafka(f"timeout: 45s\ndlq_config: {dlq}")
    assert conf["message.timeout.ms"] == 0 and conf["request.timeout.ms"] == 30000


def test_acks_all_turns_idempotence_on() -> None:
    conf = kafka("required_acks: -1\nretry_max: 0")
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True and conf["retries"] == 1


@pytest.mark.parametrize(
    ("strategy", "partitioner"),
    [("hash", "murmur2_random"), ("random", "random"), ("round-robin", "murmur2_random")],
)
def test_partitioner(strategy: str, partitioner: str) -> None:
    assert kafka(f"partitioning: {{strategy: {strategy}}}")["partitioner"] == partitioner


def test_sasl_and_tls() -> None:
    conf = kafka(
        "auth: {enabled: true, mechanism: SCRAM-SHA-512, username: u, password: p}\n"
        "tls: {enabled: true, ca_file: /ca, cert_file: /c, key_file: /k, verify_certificate: false}"
    )
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "u" and conf["sasl.password"] == "p"
    assert conf["ssl.ca.location"] == "/ca" and conf["ssl.certificate.location"] == "/c"
    assert conf["ssl.key.location"] == "/k"
    assert conf["enable.ssl.certificate.verification"] is False
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert redacted(conf)["sasl.password"] == "***"


def test_librdkafka_options_pass_through_but_cannot_override_managed_keys() -> None:
    assert kafka("librdkafka_options: {socket.timeout.ms: 1234}")["socket.timeout.ms"] == 1234
    with pytest.raises(ConfigError, match=r"librdkafka_options may not set acks"):
        kafka("librdkafka_options: {acks: all}")


def test_timeout_must_exceed_batch_timeout() -> None:
    with pytest.raises(ConfigError, match="must be longer than batch_timeout"):
        kafka("batch_timeout: 10s\ntimeout: 5s")


def test_compression_level_maps_onto_librdkafka_within_the_codecs_range() -> None:
    assert "compression.level" not in kafka("compression: zstd")
    assert kafka("compression: zstd\ncompression_level: 1")["compression.level"] == 1
    assert kafka("compression: gzip\ncompression_level: 9")["compression.level"] == 9
    with pytest.raises(
        ConfigError, match=r"sinks.kafka.*compression_level 13 is out of range for zstd: use 1 to 12"
    ):
        kafka("compression: zstd\ncompression_level: 13")
    with pytest.raises(
        ConfigError, match=r"compression_level does not apply to compression: snappy; remove it"
    ):
        kafka("compression: snappy\ncompression_level: 1")
    with pytest.raises(ConfigError, match=r"librdkafka_options may not set compression.level"):
        kafka("librdkafka_options: {compression.level: 5}")
