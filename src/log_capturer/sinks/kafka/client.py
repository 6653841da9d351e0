"""Mapping of ``sinks.kafka`` onto librdkafka producer properties.

| key | librdkafka property |
|---|---|
| brokers | bootstrap.servers |
| compression | compression.type |
| compression_level | compression.level (unset: the codec's default) |
| required_acks | acks (-1 -> all, and enable.idempotence=true) |
| batch_size | batch.num.messages |
| batch_timeout | linger.ms |
| queue_size | queue.buffering.max.messages |
| timeout | message.timeout.ms (and request.timeout.ms, capped at 30 s); with |
|         | dlq_config.send_on_timeout false, message.timeout.ms=0 (librdkafka retries in order forever) |
| queue_max_bytes | queue.buffering.max.kbytes |
| retry_max | retries |
| max_message_bytes | message.max.bytes (plus record overhead) |
| partitioning.strategy | partitioner: murmur2_random for hash, random for random |
| librdkafka_options | any other property, passed through |
| auth.* | security.protocol, sasl.mechanism, sasl.username, sasl.password |
| tls.* | security.protocol, ssl.ca.location, ssl.certificate.location, ssl.key.location, |
|       | enable.ssl.certificate.verification, ssl.endpoint.identification.algorithm |
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from log_capturer.config.secrets import MASK, is_secret_key
from log_capturer.sinks.kafka.config import AuthConfig, KafkaSinkConfig
from log_capturer.sinks.tls import TLSConfig, file_problems

if TYPE_CHECKING:
    from confluent_kafka import Producer

#: Room for the record batch header and per-record overhead on top of the value.
RECORD_OVERHEAD = 512


def parks_on_timeout(cfg: KafkaSinkConfig) -> bool:
    """Records not delivered within ``timeout`` are parked in the local DLQ (else re-sent in place)."""
    return cfg.dlq_config.enabled and cfg.dlq_config.send_on_timeout


def producer_config(cfg: KafkaSinkConfig, client_id: str = "log-capturer") -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(cfg.brokers),
        "client.id": client_id,
        "compression.type": cfg.compression,
        "acks": "all" if cfg.required_acks == -1 else str(cfg.required_acks),
        "enable.idempotence": cfg.required_acks == -1,
        "batch.num.messages": cfg.batch_size,
        "linger.ms": int(cfg.batch_timeout * 1000),
        "queue.buffering.max.messages": cfg.queue_size,
        # send_on_timeout: a record not delivered in time is parked (and replayed later); without
        # it (or with the sink's DLQ off), librdkafka itself retries for ever (0 = no timeout),
        # which keeps the order.
        "message.timeout.ms": int(cfg.timeout * 1000) if parks_on_timeout(cfg) else 0,
        "queue.buffering.max.kbytes": cfg.queue_max_bytes // 1024,
        "request.timeout.ms": int(min(cfg.timeout, 30.0) * 1000),
        "retries": cfg.retry_max if cfg.required_acks != -1 else max(cfg.retry_max, 1),
        "message.max.bytes": cfg.max_message_bytes + RECORD_OVERHEAD,
        # hash: the Java client's partitioner; random: librdkafka's; round-robin and manual
        # choose the partition explicitly per record (see partitioning.py).
        "partitioner": "random" if cfg.partitioning.strategy == "random" else "murmur2_random",
        # A dead connection should be noticed quickly: health reflects it within seconds.
        "socket.keepalive.enable": True,
        "reconnect.backoff.max.ms": 2000,
        "topic.metadata.refresh.interval.ms": 30000,
    }
    if cfg.compression_level is not None:
        conf["compression.level"] = cfg.compression_level
    conf.update(security_config(cfg.auth, cfg.tls))
    conf.update(cfg.librdkafka_options)
    return conf


def security_config(auth: AuthConfig, tls: TLSConfig) -> dict[str, Any]:
    """The librdkafka properties of an ``auth`` and a ``tls`` block (the Kafka sink's and the
    Kafka source's)."""
    conf: dict[str, Any] = {}
    protocol = "PLAINTEXT"
    if auth.enabled and tls.enabled:
        protocol = "SASL_SSL"
    elif auth.enabled:
        protocol = "SASL_PLAINTEXT"
    elif tls.enabled:
        protocol = "SSL"
    conf["security.protocol"] = protocol
    if auth.enabled:
        conf["sasl.mechanism"] = auth.mechanism
        conf["sasl.username"] = auth.username
        conf["sasl.password"] = auth.password.get_secret_value()
    if tls.enabled:
        if tls.ca_file:
            conf["ssl.ca.location"] = tls.ca_file
        if tls.cert_file:
            conf["ssl.certificate.location"] = tls.cert_file
            conf["ssl.key.location"] = tls.key_file
        conf["enable.ssl.certificate.verification"] = tls.verify_certificate
        conf["ssl.endpoint.identification.algorithm"] = "https" if tls.verify_certificate else "none"
    return conf


def tls_file_problems(tls: TLSConfig) -> list[str]:
    """The files of ``sinks.kafka.tls`` the agent cannot read, one message each.

    Checked by ``KafkaSink.start`` and by ``log-capturer validate`` (as the user running it):
    librdkafka would otherwise fail later, on the first connection, with a less clear error.
    """
    return file_problems("sinks.kafka.tls", tls) if tls.enabled else []


def start_problems(cfg: KafkaSinkConfig) -> list[str]:
    """What ``KafkaSink.start`` would refuse in this configuration, found without a broker.

    The TLS files (:func:`tls_file_problems`); then librdkafka is given the producer
    configuration without ``bootstrap.servers`` (so it contacts nothing), which is where an
    unknown ``librdkafka_options`` property or a CA file that is not PEM fails; and the chunk
    producer's library must load when ``native_producer`` is on.
    """
    problems = tls_file_problems(cfg.tls)
    if problems:
        return problems
    from confluent_kafka import KafkaException
    from confluent_kafka import Producer as ConfluentProducer

    from log_capturer.sinks.kafka.native import NativeUnavailable, load

    silent = logging.Logger("log_capturer.preflight")  # librdkafka warns that no broker is set
    silent.addHandler(logging.NullHandler())
    conf = {k: v for k, v in producer_config(cfg).items() if k != "bootstrap.servers"}
    try:
        close_producer(ConfluentProducer({**conf, "logger": silent}))
    except KafkaException as exc:
        problems.append(
            f"sinks.kafka: librdkafka refuses the producer configuration: {exc.args[0].str()}; "
            "check sinks.kafka.librdkafka_options and the files of sinks.kafka.tls"
        )
    if cfg.native_producer:
        try:
            load()
        except NativeUnavailable as exc:
            problems.append(f"sinks.kafka.native_producer: {exc}")
    return problems


def redacted(conf: dict[str, Any]) -> dict[str, Any]:
    """The producer config with secrets masked, safe to log."""
    return {k: (MASK if is_secret_key(k) else v) for k, v in conf.items()}


def close_producer(producer: Producer) -> None:
    """End a producer now, librdkafka's threads with it, dropping what it still holds.

    A producer left for the interpreter's exit keeps its broker threads running while the
    process exits, and one of them can be inside OpenSSL (a SCRAM handshake) when libc's exit
    handlers free OpenSSL: SIGSEGV after a clean stop. What it holds is purged first (close()
    alone would wait for it for ever); its delivery reports come with a purge error.
    """
    producer.purge(in_queue=True, in_flight=True, blocking=False)
    producer.close()
