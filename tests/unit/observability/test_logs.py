from __future__ import annotations

import logging

import orjson

from log_capturer.config.secrets import SecretScrubber
from log_capturer.observability.logs import JsonFormatter, TextFormatter


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("librdkafka", logging.DEBUG, __file__, 1, msg, args, None)
    r.__dict__.update(extra)
    return r


def test_json_lines_carry_service_environment_and_fields() -> None:
    f = JsonFormatter("ssw-logs-capture", "staging")
    line = orjson.loads(f.format(record("Kafka sink initialized", sink="kafka_sink")))
    assert line["message"] == "Kafka sink initialized"
    assert line["service"] == "ssw-logs-capture" and line["environment"] == "staging"
    assert line["sink"] == "kafka_sink" and line["level"] == "debug" and line["logger"] == "librdkafka"


def test_secret_fields_and_values_never_reach_a_line() -> None:
    scrubber = SecretScrubber(["alice-secret"])
    f = JsonFormatter("svc", scrubber=scrubber)
    text = f.format(
        record(
            "SASL auth with %s",
            "alice-secret",
            producer_config={"sasl.password": "other-secret", "sasl.username": "alice"},
            password="x",
        )
    )
    assert "alice-secret" not in text and "other-secret" not in text
    line = orjson.loads(text)
    assert line["message"] == "SASL auth with ***"
    assert line["producer_config"] == {"sasl.password": "***", "sasl.username": "alice"}
    assert line["password"] == "***"
    plain = TextFormatter(scrubber).format(record("password is alice-secret"))
    assert "alice-secret" not in plain and plain.endswith("password is ***")
