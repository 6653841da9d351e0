from __future__ import annotations

import logging

import orjson
import pytest

from log_capturer.config.secrets import SecretScrubber
from log_capturer.observability.logs import JsonFormatter, TextFormatter, setup_logging


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


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_app_log_stream_chooses_where_the_logs_go(stream: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("info", "json", "svc", stream=stream)
        logging.getLogger("log_capturer.test").info("Kafka sink initialized")
        out, err = capsys.readouterr()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    written, other = (out, err) if stream == "stdout" else (err, out)
    assert orjson.loads(written.strip())["message"] == "Kafka sink initialized"
    assert "Kafka sink initialized" not in other
