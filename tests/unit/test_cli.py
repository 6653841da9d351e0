from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner, Result

from log_capturer.cli import app
from log_capturer.devtools.kafka_local import free_port

runner = CliRunner()


def test_validate_ok(repo_root: Path) -> None:
    result = runner.invoke(app, ["validate", "--config", str(repo_root / "configs" / "config.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_prints_every_problem_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks:\n  kafka:\n    compression: brotli\n    batch_sise: 10\n")
    result = runner.invoke(app, ["validate", "--config", str(bad)])
    assert result.exit_code == 2
    assert "sinks.kafka.compression" in result.output
    assert "sinks.kafka.batch_sise" in result.output
    assert "Did you mean 'sinks.kafka.batch_size'" in result.output


def pipeline_test(repo_root: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "log_capturer", "pipeline", "test", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        cwd=repo_root,
        check=False,
    )


def test_pipeline_test_prints_the_records_the_agent_would_ship(repo_root: Path) -> None:
    sample = (repo_root / "configs" / "samples" / "nginx-access.log").read_bytes()
    done = pipeline_test(repo_root, "configs/pipelines.yaml", "--pipeline", "nginx-access", stdin=sample)
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 4
    first, server_error, not_found, other = records
    assert first["timestamp"] == "2026-11-25T11:00:00.000000000Z"
    assert first["level"] == "info"
    assert first["fields"]["path"] == "/api/orders?token=[REDACTED]"
    assert first["fields"]["http"] == {"route": "GET /api/orders?token=[REDACTED]"}
    assert "token=[REDACTED]" in first["message"]
    assert (server_error["level"], server_error["fields"]["status"]) == ("error", "502")
    assert not_found["level"] == "warn"
    assert (other["message"], other["fields"], other["level"]) == (
        "this line is not an access log line",
        {},
        "",
    )
    assert b"4 lines through pipeline 'nginx-access'" in done.stderr
    assert b"0:regex_extract=1" in done.stderr


def test_pipeline_test_json_app_sample(repo_root: Path) -> None:
    sample = (repo_root / "configs" / "samples" / "json-app.log").read_bytes()
    done = pipeline_test(repo_root, "configs/pipelines.yaml", "-p", "json-app", stdin=sample)
    assert done.returncode == 0, done.stderr
    first, second, plain = (orjson.loads(line) for line in done.stdout.splitlines())
    assert first["message"] == "payment retry" and first["level"] == "warn"
    assert first["fields"] == {"tenant_id": "acme", "card": "[REDACTED]"}
    assert second["timestamp"] == "2026-11-25T11:00:00.500000000Z"
    assert second["fields"]["dsn"] == "postgres://app:[REDACTED]@db/prod"
    assert plain["message"] == "plain text, not JSON: password=[REDACTED]"


def test_pipeline_test_needs_a_known_pipeline(repo_root: Path, tmp_path: Path) -> None:
    done = pipeline_test(repo_root, "configs/pipelines.yaml", stdin=b"x\n")
    assert done.returncode == 2 and b"choose one with --pipeline" in done.stderr
    done = pipeline_test(repo_root, "configs/pipelines.yaml", "-p", "nope", stdin=b"x\n")
    assert done.returncode == 2 and b"no pipeline named 'nope'" in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines:\n  p:\n    - type: regex_extract\n      pattern: '('\n")
    done = pipeline_test(repo_root, str(bad), stdin=b"x\n")
    assert done.returncode == 2 and b"p[0].pattern: invalid regular expression" in done.stderr


def test_pipeline_test_single_pipeline_file_needs_no_name(repo_root: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("pipelines:\n  only:\n    - type: logfmt_parse\n")
    done = pipeline_test(repo_root, str(one), stdin=b"a=1 level=error\n")
    assert done.returncode == 0, done.stderr
    rec = orjson.loads(done.stdout)
    assert (rec["fields"], rec["level"]) == ({"a": "1", "level": "error"}, "error")


def test_validate_checks_the_pipelines_file(tmp_path: Path, repo_root: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sinks: {kafka: {enabled: true}}\n"
        "processing:\n"
        "  enabled: true\n"
        f"  pipelines_file: {repo_root / 'configs' / 'pipelines.yaml'}\n"
        "syslog:\n"
        "  pipeline: syslg\n"
    )
    result = runner.invoke(app, ["validate", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "syslog.pipeline: no pipeline named 'syslg'" in result.output
    cfg.write_text(cfg.read_text().replace("syslg", "syslog"))
    result = runner.invoke(app, ["validate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output


def test_validate_show_prints_the_effective_config_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "sinks:\n  kafka:\n    enabled: true\n    auth: {enabled: true, username: alice}\n"
        '    librdkafka_options: {"sasl.oauthbearer.client.secret": "oauth-secret-1"}\n'
    )
    env = {"KAFKA_PASSWORD": "env-password-42", "KAFKA_BROKERS": "b1:9092,b2:9092"}
    proc = subprocess.run(
        [sys.executable, "-m", "log_capturer", "validate", "--show", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "env-password-42" not in proc.stdout + proc.stderr
    assert "oauth-secret-1" not in proc.stdout + proc.stderr
    shown = yaml.safe_load(proc.stdout)
    kafka = shown["sinks"]["kafka"]
    assert kafka["brokers"] == ["b1:9092", "b2:9092"]  # environment overrides applied
    assert kafka["auth"] == {
        "enabled": True,
        "mechanism": "SCRAM-SHA-256",
        "username": "alice",
        "password": "***",
    }
    assert kafka["librdkafka_options"] == {"sasl.oauthbearer.client.secret": "***"}
    assert shown["dispatcher"]["queue_size"] == 50000  # defaults included


def test_no_plain_status_lines_among_json_logs() -> None:
    from log_capturer.cli import wants_status_line

    assert wants_status_line(True, True, "json")  # a terminal shows the live line
    assert not wants_status_line(True, False, "json")  # a pipe or a container gets JSON only
    assert wants_status_line(True, False, "text")
    assert not wants_status_line(False, True, "text")


# -- bad input: a named error, exit 2, never a traceback ------------------------------------------


def cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line in a process of its own (a traceback would show on its stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "log_capturer", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize("command", ["validate", "run", "pipeline"])
def test_a_file_that_is_not_utf8_is_a_named_error(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("pipelines:\n  caf\xe9: []\n".encode("latin-1"))
    args = {
        "validate": ["validate", "-c", str(bad)],
        "run": ["run", "-c", str(bad), "--no-status"],
        "pipeline": ["pipeline", "test", str(bad)],
    }[command]
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert str(bad) in done.stderr
    assert "not UTF-8: byte 0xe9 at byte offset 16 (line 2); save the file as UTF-8" in done.stderr
    assert "Traceback" not in done.stderr


def validate_text(tmp_path: Path, text: str, env: dict[str, str | None] | None = None) -> Result:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    result = runner.invoke(app, ["validate", "--config", str(cfg)], env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def test_validate_names_an_unset_variable_and_its_key(tmp_path: Path) -> None:
    result = validate_text(
        tmp_path,
        'sinks: {kafka: {enabled: true, brokers: ["${KAFKA_HOST}:9092"]}}\n',
        env={"KAFKA_HOST": None},
    )
    assert result.exit_code == 2
    assert "sinks.kafka.brokers[0]: ${KAFKA_HOST} is not set" in result.output
    assert "${KAFKA_HOST:-value}" in result.output


def test_validate_blames_an_environment_override_on_its_variable(tmp_path: Path) -> None:
    result = validate_text(tmp_path, "sinks: {kafka: {enabled: true}}\n", env={"KAFKA_BATCH_SIZE": "abc"})
    assert result.exit_code == 2
    assert "sinks.kafka.batch_size (from KAFKA_BATCH_SIZE): expected an integer" in result.output


def test_validate_says_what_shape_a_section_has(tmp_path: Path) -> None:
    result = validate_text(tmp_path, "sinks: {kafka: {enabled: true, partitioning: hash}}\n")
    assert result.exit_code == 2
    assert (
        "sinks.kafka.partitioning: expected a mapping, such as "
        "`partitioning: {enabled: true, strategy: hash}` (got 'hash')"
    ) in result.output
    assert "PartitioningConfig" not in result.output


# -- required_acks: 0 -----------------------------------------------------------------------------

ACKS_0 = "sinks.kafka.required_acks: 0: the broker confirms nothing"


def test_validate_warns_about_acks_0_and_succeeds(tmp_path: Path) -> None:
    result = validate_text(tmp_path, "sinks: {kafka: {enabled: true, required_acks: 0}}\n")
    assert result.exit_code == 0, result.output
    assert f"warning: {ACKS_0}" in result.output
    assert "set required_acks: -1" in result.output
    assert "valid" in result.output
    result = validate_text(tmp_path, "sinks: {kafka: {enabled: true, required_acks: -1}}\n")
    assert result.exit_code == 0 and "warning" not in result.output


def test_the_agent_logs_the_acks_0_warning_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "app: {log_format: json}\n"
        "server: {enabled: false}\n"
        "metrics: {enabled: false}\n"
        f"positions: {{directory: {tmp_path / 'positions'}}}\n"
        f"dispatcher: {{dlq_config: {{directory: {tmp_path / 'dlq'}}}}}\n"
        f"sinks: {{kafka: {{enabled: true, required_acks: 0, brokers: ['127.0.0.1:{free_port()}']}}}}\n"
    )
    done = cli("run", "-c", str(cfg), "--stdin", "--no-status")  # no input: starts, drains, exits
    assert done.returncode == 0, done.stderr
    logs = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    warned = [r for r in logs if r["message"].startswith(ACKS_0)]
    assert [r["level"] for r in warned] == ["warning"]
    started = next(i for i, r in enumerate(logs) if r["message"] == "agent started")
    assert logs.index(warned[0]) < started


# -- validate reports everything run would refuse, in one run ---------------------------------------


def test_validate_reports_the_config_and_the_pipelines_file_together(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text("pipelines:\n  web:\n    - type: regex_extract\n      patern: '(?P<a>.)'\n")
    result = validate_text(
        tmp_path,
        "sinks: {kafka: {enabled: true, compresion: zstd}}\n"
        f"processing: {{enabled: true, pipelines_file: {pipelines}}}\n",
    )
    assert result.exit_code == 2
    assert "sinks.kafka.compresion: unknown key. Did you mean 'sinks.kafka.compression'?" in result.output
    assert f"processing.pipelines_file: invalid pipelines in {pipelines}" in result.output
    assert "pipelines.web[0].patern: unknown key. Did you mean 'pipelines.web[0].pattern'?" in result.output


def test_validate_reports_missing_tls_files_of_an_invalid_config(tmp_path: Path) -> None:
    result = validate_text(
        tmp_path,
        "sinks: {kafka: {enabled: true, batch_size: x, "
        f"tls: {{enabled: true, ca_file: {tmp_path}/ca.pem}}}}}}\n",
    )
    assert result.exit_code == 2
    assert "sinks.kafka.batch_size: expected an integer" in result.output
    assert f"sinks.kafka.tls.ca_file: {tmp_path}/ca.pem does not exist" in result.output


REFUSED = [
    ("tls: {enabled: true, ca_file: $D/absent.pem}", "sinks.kafka.tls.ca_file: $D/absent.pem does not exist"),
    (
        "tls: {enabled: true, cert_file: $D, key_file: $D/config.yaml}",
        "sinks.kafka.tls.cert_file: $D is a directory",
    ),
    ("tls: {enabled: true, ca_file: $D/config.yaml}", "ssl.ca.location failed"),
    (
        "librdkafka_options: {linger.mss: 5}",
        "sinks.kafka: librdkafka refuses the producer configuration: "
        'No such configuration property: "linger.mss"',
    ),
]


@pytest.mark.parametrize(("kafka", "message"), REFUSED)
def test_validate_refuses_what_run_refuses(tmp_path: Path, kafka: str, message: str) -> None:
    kafka = kafka.replace("$D", str(tmp_path))
    message = message.replace("$D", str(tmp_path))
    text = (
        "server: {enabled: false}\n"
        "metrics: {enabled: false}\n"
        f"positions: {{directory: {tmp_path / 'positions'}}}\n"
        f"dispatcher: {{dlq_config: {{directory: {tmp_path / 'dlq'}}}}}\n"
        f"sinks: {{kafka: {{enabled: true, brokers: ['127.0.0.1:{free_port()}'], {kafka}}}}}\n"
    )
    result = validate_text(tmp_path, text)
    assert result.exit_code == 2
    assert message in result.output
    done = cli("run", "-c", str(tmp_path / "config.yaml"), "--no-status", "--stdin")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    if "tls.ca_file" in message or "tls.cert_file" in message:
        assert message in done.stderr  # the same check, the same words


def test_validate_needs_a_sink_as_run_does(tmp_path: Path) -> None:
    result = validate_text(tmp_path, "app: {name: x}\n")
    assert result.exit_code == 2
    assert "no sink is enabled: set sinks.kafka.enabled: true" in result.output
    done = cli("run", "-c", str(tmp_path / "config.yaml"), "--no-status", "--stdin")
    assert done.returncode == 2 and "no sink is enabled: set sinks.kafka.enabled: true" in done.stderr


def test_validate_and_run_refuse_a_log_file_and_positions_they_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "a-file").write_text("")
    result = validate_text(
        tmp_path,
        f"app: {{log_file: {tmp_path}/absent/agent.log}}\n"
        f"files_config: {{watch_directories: [{tmp_path}/logs]}}\n"
        f"positions: {{directory: {tmp_path}/a-file/positions}}\n"
        "sinks: {kafka: {enabled: true}}\n",
    )
    log_file = f"app.log_file: {tmp_path}/absent/agent.log cannot be created: the directory {tmp_path}/absent"
    positions = (
        f"positions.directory: {tmp_path}/a-file/positions cannot be created: {tmp_path}/a-file is not"
    )
    assert result.exit_code == 2
    assert log_file in result.output and positions in result.output
    done = cli("run", "-c", str(tmp_path / "config.yaml"), "--no-status")
    assert done.returncode == 2, done.stderr
    assert log_file in done.stderr and positions in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_names_conflicting_encoding_choices_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks:\n  kafka:\n    encoding:\n      codec: raw\n      only_fields: [message]\n")
    result = runner.invoke(app, ["validate", "--config", str(bad)])
    assert result.exit_code == 2, result.output
    assert "sinks.kafka.encoding" in result.output
    assert "encoding.only_fields does not apply to codec: raw" in result.output
    assert "remove encoding.only_fields, or use codec: json or logfmt" in result.output


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        (
            "sinks:\n  local_file:\n    output_format: text\n    encoding:\n      codec: raw\n",
            ["sinks.local_file.encoding and sinks.local_file.output_format: text", "keep one"],
        ),
        (
            "sinks:\n  local_file:\n    encoding:\n      codec: raw\n      except_fields: [labels]\n",
            ["sinks.local_file.encoding", "encoding.except_fields does not apply to codec: raw"],
        ),
        (
            "sinks:\n  loki:\n    line_format: key_value\n    encoding:\n      codec: json\n",
            ["sinks.loki", "line_format: key_value and encoding.codec: json disagree", "keep one"],
        ),
        (
            "sinks:\n  loki:\n    line_format: message\n    encoding:\n      only_fields: [message]\n",
            ["sinks.loki", "encoding.only_fields does not apply to codec: raw", "line_format: message"],
        ),
        (
            "sinks:\n  elasticsearch:\n    encoding:\n      codec: logfmt\n      only_fields: [level.x]\n",
            ["sinks.elasticsearch.encoding", "'level.x' is not a path into labels or fields"],
        ),
    ],
)
def test_validate_names_conflicting_encoding_choices_of_every_sink(
    tmp_path: Path, yaml_text: str, says: list[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    result = runner.invoke(app, ["validate", "--config", str(bad)])
    assert result.exit_code == 2, result.output
    for text in says:
        assert text in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("flag", [["--stdin"]])
def test_run_refuses_flags_exactly_once_does_not_cover(tmp_path: Path, flag: list[str]) -> None:
    """Standard input has no position to commit. (``--workers N`` is covered: each worker has its
    own transactional id, tests/integration/workers/test_exactly_once.py.)"""
    cfg = tmp_path / "eos.yaml"
    cfg.write_text(
        "http_ingest: {enabled: false}\n"
        f"files_config: {{watch_directories: [{tmp_path}]}}\n"
        "sinks: {kafka: {enabled: true, required_acks: -1, delivery: exactly_once}}\n"
    )
    result = runner.invoke(app, ["run", "--config", str(cfg), *flag])
    assert result.exit_code == 2, result.output
    assert "sinks.kafka.delivery: exactly_once" in result.output
    assert "delivery: at_least_once" in result.output
