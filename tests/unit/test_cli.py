from __future__ import annotations

from pathlib import Path

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
