"""One version: the installed package's metadata (pyproject.toml's ``project.version``).

``app.version`` of the config is deprecated and ignored; /health's version is checked against the
metadata in tests/integration/observability/test_endpoints.py (and through the supervisor in
tests/integration/workers/test_endpoints.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

import log_capturer
from log_capturer.cli import app
from log_capturer.config import load_config_text

runner = CliRunner()


def test_the_package_version_is_the_installed_metadata_and_the_version_command_prints_it() -> None:
    assert log_capturer.__version__ == version("log-capturer")
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.strip() == version("log-capturer")


def test_the_version_follows_the_metadata_it_is_not_a_copy(tmp_path: Path) -> None:
    """Metadata that says 9.9.9, found first on the path: the agent says 9.9.9 too."""
    dist = tmp_path / "log_capturer-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: log-capturer\nVersion: 9.9.9\n")
    done = subprocess.run(
        [sys.executable, "-m", "log_capturer", "version"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "9.9.9"


def test_app_version_is_accepted_but_ignored_with_a_warning(tmp_path: Path) -> None:
    assert load_config_text("app:\n  name: x\n", env={}).ignored_settings() == []
    cfg = load_config_text("app:\n  version: v0.0.2\n", env={})
    (note,) = cfg.ignored_settings()
    assert note.startswith("app.version ('v0.0.2') is deprecated and ignored")
    path = tmp_path / "config.yaml"
    path.write_text("app:\n  version: v0.0.2\nsinks:\n  kafka:\n    enabled: true\n")
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output  # an old config still validates
    assert "app.version ('v0.0.2') is deprecated and ignored" in result.output
    assert "valid" in result.output
