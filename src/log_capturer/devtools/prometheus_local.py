"""A real Prometheus server on loopback (Debian's ``prometheus`` package), and promtool.

Used by the integration tests (and by hand) to scrape a running agent:
:class:`LocalPrometheus` writes a scrape config for the given targets, starts
``prometheus`` on ``127.0.0.1`` with a private storage directory, waits for
``/-/ready``, and queries the HTTP API. When it cannot start, the error
carries its log. ``scripts/system-deps.sh`` installs the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from log_capturer.devtools.kafka_local import free_port, port_in_use

INSTALL_HINT = "install Debian's prometheus package (scripts/system-deps.sh does: apt-get install prometheus)"


class PrometheusError(RuntimeError):
    """Prometheus (or promtool) is missing, did not start, or refused a query; the message says why."""


def binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusError(f"{name} not found on PATH: {INSTALL_HINT}")
    return path


def promtool(
    *args: str, cwd: Path | None = None, input_text: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run promtool (``input_text`` on its stdin); the result is the caller's to judge."""
    return subprocess.run(
        [binary("promtool"), *args],
        input=input_text,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


class LocalPrometheus:
    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        scrape_interval: str = "1s",
        rule_files: Sequence[Path] = (),
        job: str = "log-capturer",
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.job = job
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}],
        }

    def start(self, timeout: float = 60) -> LocalPrometheus:
        exe = binary("prometheus")
        if port_in_use(self.port):
            raise PrometheusError(f"port {self.port} is already in use on 127.0.0.1")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={conf}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with code {self.proc.returncode} at start-up:\n{self.log()}"
                )
            if self._ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus was not ready within {timeout:g}s:\n{self.log()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log(self, tail: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return "<no log>"

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a ``/api/v1/...`` answer; raises with Prometheus's error text otherwise."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        except OSError as exc:
            raise PrometheusError(f"{url}: {exc}\n{self.log()}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [time, "text"]}, ...]``."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[float]:
        return [float(r["value"][1]) for r in self.query(expr)]

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return targets
