from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import yaml
from typer.testing import CliRunner

from log_capturer.cli import app

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
