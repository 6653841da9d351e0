from __future__ import annotations

import re
from pathlib import Path

import pytest

from log_capturer.config import ConfigError, config_warnings, load_config, load_config_text, parse_duration

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
    # The Advanced example's password is "${KAFKA_PASSWORD}", exported as the document says.
    cfg = load_config_text(design_block(title), env={"KAFKA_PASSWORD": "mypassword"})
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


def test_the_multi_sink_example_validates(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "multi-sink.yaml", env={})
    assert cfg.sinks.kafka.enabled and cfg.sinks.local_file.enabled
    assert cfg.routes[0].source_types == ["syslog"] and cfg.routes[0].sinks == ["local_file"]


@pytest.mark.parametrize("codec", ["raw", "logfmt", "json"])
def test_the_encoding_examples_validate(repo_root: Path, codec: str) -> None:
    cfg = load_config(repo_root / "configs" / "encodings" / f"{codec}.yaml", env={})
    assert cfg.sinks.kafka.enabled and cfg.sinks.kafka.encoding.codec == codec
    assert not cfg.sinks.kafka.encoding.envelope


def test_the_elasticsearch_example_validates(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "elasticsearch.yaml", env={})
    es = cfg.sinks.elasticsearch
    assert es.enabled and not cfg.sinks.kafka.enabled
    assert es.index == "logs-%Y.%m.%d" and es.op_type == "create" and es.document_id == "source_position"


def test_elasticsearch_credentials_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sinks:\n  elasticsearch:\n    enabled: true\n    auth: {type: basic}\n")
    env = {"ELASTICSEARCH_USERNAME": "shipper", "ELASTICSEARCH_PASSWORD": "from-env"}
    auth = load_config(path, env=env).sinks.elasticsearch.auth
    assert auth.username == "shipper" and auth.password.get_secret_value() == "from-env"


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
    ("positions: {write_delay: 0}", "positions.write_delay", "greater than or equal to 0.01"),
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


# -- ${VAR}: Docker Compose's rules -------------------------------------------------------------


def test_an_unset_variable_is_an_error_naming_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text('sinks: {kafka: {brokers: ["${KAFKA_HOST}:9092"]}}', env={})
    # Once, as such: not again as the broker address ':9092' it would have left.
    assert exc.value.problems == [
        "sinks.kafka.brokers[0]: ${KAFKA_HOST} is not set; set KAFKA_HOST in the environment, "
        "or give a default in the file: ${KAFKA_HOST:-value}"
    ]


@pytest.mark.parametrize(
    ("template", "env", "value"),
    [
        ("${T:-dflt}", {}, "dflt"),
        ("${T:-dflt}", {"T": ""}, "dflt"),  # ':-': unset or empty
        ("${T-dflt}", {}, "dflt"),
        ("${T-dflt}", {"T": ""}, ""),  # '-': only unset
        ("${T:-dflt}", {"T": "set"}, "set"),
        ("${T}", {"T": ""}, ""),  # set, even to '', is not an error
        ("a$$b", {}, "a$b"),
        ("$${T}", {"T": "set"}, "${T}"),  # $$ escapes the reference
        ("price: 5$", {}, "price: 5$"),  # a lone $ stays
    ],
)
def test_interpolation_follows_compose(template: str, env: dict[str, str], value: str) -> None:
    assert load_config_text(f"app: {{environment: '{template}'}}", env=env).app.environment == value


def test_a_malformed_reference_is_an_error() -> None:
    with pytest.raises(
        ConfigError, match=r"app\.name: '\$\{1X\}' is not a variable reference.*\$\$ for a literal"
    ):
        load_config_text("app: {name: '${1X}'}", env={})


@pytest.mark.parametrize(
    ("broker", "why"),
    [
        (":9092", "no host"),
        ("kafka-1", "no port"),
        ("kafka-1:", "no port"),
        ("kafka-1:0", "the port is outside 1-65535"),
        ("kafka-1:65536", "the port is outside 1-65535"),
        ("a:9092,b:9092", "one broker per list item"),
        ("PLAINTEXT://a:9092", "not host:port"),
    ],
)
def test_broker_addresses_are_host_and_port(broker: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(f"sinks: {{kafka: {{brokers: ['{broker}']}}}}", env={})
    msg = str(exc.value)
    assert "sinks.kafka.brokers[0]: " in msg and why in msg and "such as 'kafka-1:9092'" in msg


def test_good_broker_addresses() -> None:
    brokers = ["kafka-1.example.com:9092", "10.0.0.1:65535", "[::1]:9092", "broker_2:1"]
    assert (
        load_config_text(f"sinks: {{kafka: {{brokers: {brokers}}}}}", env={}).sinks.kafka.brokers == brokers
    )


# -- environment overrides ----------------------------------------------------------------------


def test_an_error_in_an_environment_override_names_the_variable() -> None:
    env = {"KAFKA_BATCH_SIZE": "abc", "KAFKA_BROKERS": "kafka-1:9092,kafka-2"}
    with pytest.raises(ConfigError) as exc:
        load_config_text("sinks: {kafka: {enabled: true}}", env=env)
    problems = exc.value.problems
    assert (
        "sinks.kafka.batch_size (from KAFKA_BATCH_SIZE): expected an integer, such as "
        "`KAFKA_BATCH_SIZE=1000` (got 'abc')"
    ) in problems
    assert any(p.startswith("sinks.kafka.brokers[1] (from KAFKA_BROKERS): no port") for p in problems)


def test_an_override_does_not_hide_a_section_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError, match="sinks: expected a mapping"):
        load_config_text("sinks: kafka", env={"KAFKA_BROKERS": "kafka-1:9092"})


def test_an_overridden_key_needs_no_variable_of_its_own() -> None:
    text = 'sinks: {kafka: {brokers: ["${KAFKA_HOST}:9092"]}}'
    assert load_config_text(text, env={"KAFKA_BROKERS": "b:1"}).sinks.kafka.brokers == ["b:1"]


# -- type errors: the shape expected, with an example, never a Python class ---------------------

TYPE_ERRORS = [
    (
        "sinks: {kafka: {partitioning: hash}}",
        "sinks.kafka.partitioning: expected a mapping, such as "
        "`partitioning: {enabled: true, strategy: hash}` (got 'hash')",
    ),
    (
        "sinks: kafka",
        'sinks: expected a mapping, such as `sinks: {kafka: {enabled: true, brokers: ["127.0.0.1:9092"]}}`',
    ),
    (
        "sinks: {kafka: {brokers: 9092}}",
        'sinks.kafka.brokers: expected a list, such as `brokers: ["127.0.0.1:9092"]`',
    ),
    ("server: {port: http}", "server.port: expected an integer, such as `port: 8401` (got 'http')"),
    (
        "sinks: {kafka: {batch_size: 1.5}}",
        "sinks.kafka.batch_size: expected an integer, such as `batch_size: 1000`",
    ),
    (
        "sinks: {kafka: {enabled: maybe}}",
        "sinks.kafka.enabled: expected true or false, such as `enabled: true`",
    ),
    (
        "sinks: {kafka: {backpressure_config: {queue_warning_threshold: high}}}",
        "sinks.kafka.backpressure_config.queue_warning_threshold: expected a number, such as "
        "`queue_warning_threshold: 0.75`",
    ),
    (
        "files_config: {labels: {tier: 1}}",
        'files_config.labels.tier: expected text, such as `tier: "1"` (got 1)',
    ),
    (
        "sinks: {kafka: {compression: brotli}}",
        "sinks.kafka.compression: expected one of 'none', 'gzip', 'snappy', 'lz4' or 'zstd', such as "
        "`compression: snappy` (got 'brotli')",
    ),
    ("sinks: {kafka: {headers: [lvl]}}", "sinks.kafka.headers[0]: expected one of 'level', 'source_type'"),
    (
        "dispatcher: {dlq_config: [a]}",
        "dispatcher.dlq_config: expected a mapping, such as `dlq_config: {enabled: true",
    ),
    ("files_config: {watch_directories: /var/log}", 'expected a list, such as `watch_directories: ["..."]`'),
    ("metrics: {path: metrics}", "metrics.path: expected text matching '^/', such as `path: /metrics`"),
    (
        "sinks: {kafka: {librdkafka_options: {linger.ms: [5]}}}",
        "sinks.kafka.librdkafka_options.linger.ms: expected text, a number or true/false",
    ),
    ("files_config: {labels: {1: a}}", "files_config.labels.1: the name must be text (got 1)"),
]


@pytest.mark.parametrize(("text", "message"), TYPE_ERRORS)
def test_a_type_error_says_what_shape_is_expected(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(text, env={})
    assert len(exc.value.problems) == 1
    problem = exc.value.problems[0]
    assert message in problem
    assert not re.search(r"[A-Z][a-z]+Config|Input should|instance of|\b(str|int|float|bool|dict)\b", problem)


# -- files that are not UTF-8 -------------------------------------------------------------------


def test_a_file_that_is_not_utf8_names_the_byte_and_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("app:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert str(exc.value) == (
        f"invalid configuration in {path}:\n"
        "  - not UTF-8: byte 0xe9 at byte offset 16 (line 2); save the file as UTF-8"
    )


# -- warnings -----------------------------------------------------------------------------------


def test_acks_0_is_valid_but_warned_about() -> None:
    cfg = load_config_text("sinks: {kafka: {enabled: true, required_acks: 0}}", env={})
    [warning] = config_warnings(cfg)
    assert warning.startswith("sinks.kafka.required_acks: 0: the broker confirms nothing")
    assert "checkpointed" in warning and "lost" in warning and "required_acks: -1" in warning
    for text in ("sinks: {kafka: {enabled: true, required_acks: -1}}", "sinks: {kafka: {required_acks: 0}}"):
        assert config_warnings(load_config_text(text, env={})) == []


@pytest.mark.parametrize("name", ["consumer-loki", "consumer-elasticsearch"])
def test_the_consumer_examples_validate(repo_root: Path, name: str) -> None:
    cfg = load_config(repo_root / "configs" / f"{name}.yaml", env={})
    assert cfg.kafka.enabled and not cfg.sinks.kafka.enabled and not cfg.files_config.enabled
    assert cfg.kafka.group_id.startswith("log-capturer-")
