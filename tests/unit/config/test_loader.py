from __future__ import annotations

import re
from pathlib import Path

import pytest

from log_capturer.config import ConfigError, load_config, load_config_text, parse_duration

SPEC = Path(__file__).resolve().parents[4] / "shared" / "spec" / "kafka-integration.md"


def design_block(title: str) -> str:
    """The YAML block under a heading of the design document, unchanged."""
    text = SPEC.read_text()
    section = text[text.index(f"### {title}") :]
    m = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert m, f"no yaml block under {title}"
    return m.group(1)


@pytest.mark.parametrize("title", ["Basic Configuration", "Advanced Configuration"])
def test_design_document_examples_validate_unchanged(title: str) -> None:
    cfg = load_config_text(design_block(title), env={})
    assert cfg.sinks.kafka.enabled is True
    assert cfg.sinks.kafka.topic == "logs"
    assert cfg.sinks.kafka.compression == "snappy"
    assert cfg.sinks.kafka.batch_timeout == 5.0


def test_advanced_example_values_are_read() -> None:
    cfg = load_config_text(design_block("Advanced Configuration"), env={"KAFKA_PASSWORD": "s3cret"})
    k = cfg.sinks.kafka
    assert k.brokers == ["kafka-1:9092", "kafka-2:9092", "kafka-3:9092"]
    assert k.required_acks == 1 and k.max_message_bytes == 1048576 and k.retry_max == 3
    assert k.partitioning.strategy == "hash" and k.partitioning.key_field == "tenant_id"
    assert k.auth.password.get_secret_value() == "s3cret"
    assert k.backpressure_config.queue_emergency_threshold == 0.95
    assert k.dlq_config.topic == "logs-dlq"


def test_shipped_config_validates(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "config.yaml", env={})
    assert cfg.sinks.kafka.enabled and cfg.files_config.watch_directories == ["./data/logs"]


def test_interpolation_with_defaults() -> None:
    text = """
sinks:
  kafka:
    brokers: ["${HOST}:${PORT:-9092}"]
    topic: "${TOPIC:-logs}-${ENV}"
"""
    cfg = load_config_text(text, env={"HOST": "10.0.0.1", "ENV": "prod"})
    assert cfg.sinks.kafka.brokers == ["10.0.0.1:9092"]
    assert cfg.sinks.kafka.topic == "logs-prod"


def test_environment_overrides() -> None:
    env = {
        "KAFKA_BROKERS": "a:9092, b:9093",
        "KAFKA_USERNAME": "svc",
        "KAFKA_PASSWORD": "pw",
        "KAFKA_COMPRESSION": "lz4",
        "KAFKA_BATCH_SIZE": "2000",
    }
    cfg = load_config_text("sinks: {kafka: {enabled: true, compression: gzip, batch_size: 10}}", env=env)
    k = cfg.sinks.kafka
    assert k.brokers == ["a:9092", "b:9093"]
    assert k.auth.username == "svc" and k.auth.password.get_secret_value() == "pw"
    assert k.compression == "lz4" and k.batch_size == 2000


def test_bad_env_override_names_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text("sinks: {kafka: {enabled: true}}", env={"KAFKA_COMPRESSION": "brotli"})
    assert "sinks.kafka.compression" in str(exc.value)


BROKEN = [
    (
        "sinks: {kafka: {compresion: snappy}}",
        "sinks.kafka.compresion",
        "Did you mean 'sinks.kafka.compression'",
    ),
    ("sinkz: {}", "sinkz", "unknown key"),
    ("sinks: {kafka: {compression: brotli}}", "sinks.kafka.compression", "'zstd'"),
    ("sinks: {kafka: {batch_timeout: 5 seconds}}", "sinks.kafka.batch_timeout", "'5s'"),
    ("sinks: {kafka: {required_acks: 2}}", "sinks.kafka.required_acks", "-1"),
    ("sinks: {kafka: {brokers: 9092}}", "sinks.kafka.brokers", "list"),
    ("sinks: {kafka: {brokers: []}}", "sinks.kafka.brokers", "at least 1"),
    (
        "sinks: {kafka: {partitioning: {strategy: sticky}}}",
        "sinks.kafka.partitioning.strategy",
        "'round-robin'",
    ),
    ("sinks: {kafka: {auth: {enabled: true, username: u}}}", "sinks.kafka.auth", "KAFKA_PASSWORD"),
    ("sinks: {kafka: {tls: {enabled: true, cert_file: c.pem}}}", "sinks.kafka.tls", "key_file"),
    (
        "sinks: {kafka: {backpressure_config: "
        "{queue_warning_threshold: 0.95, queue_critical_threshold: 0.9}}}",
        "sinks.kafka.backpressure_config",
        "queue_warning_threshold <= queue_critical_threshold",
    ),
    ("dispatcher: {queue_size: 0}", "dispatcher.queue_size", "greater than or equal to 1"),
    (
        "dispatcher: {dlq_config: {reprocessing_config: {intervall: 5m}}}",
        "dispatcher.dlq_config.reprocessing_config.intervall",
        "interval",
    ),
    ("files_config: {read_from: middle}", "files_config.read_from", "'beginning' or 'end'"),
    ("files_config: {include_patterns: []}", "files_config", "include_patterns is empty"),
    ("metrics: {port: 70000}", "metrics.port", "less than or equal to 65535"),
    ("server: {port: http}", "server.port", "integer"),
    ("positions: {flush_interval: -1}", "positions.flush_interval", "negative"),
    ("- a\n- b", "(top level)", "mapping"),
    ("sinks: {kafka: {enabled: [}", "", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "key", "hint"), BROKEN)
def test_broken_config_names_the_key_and_the_fix(text: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(text, env={})
    msg = str(exc.value)
    assert key in msg
    assert hint in msg


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text("sinks: {kafka: {compression: x, batch_size: -5, foo: 1}}", env={})
    assert len(exc.value.problems) == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("7d", 604800.0), (3, 3.0), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")
