"""A real VictoriaLogs server on loopback: the Loki-API (and Elasticsearch-API) store of the tests.

VictoriaLogs (Apache 2.0) is one Go program. :func:`ensure_binary` builds it once with
``go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@<version>`` into the
user cache (``<cache>/victorialogs-<version>/victoria-logs``, see
:func:`~log_capturer.devtools.kafka_local.cache_home`) and reuses it afterwards.

:class:`LocalVictoriaLogs` runs it on ``127.0.0.1:<port>`` with a private
``-storageDataPath`` in its work directory (``victoria-logs.log``, the data, and a
``server.json`` state file, so ``up`` is idempotent and ``down``/``status`` work from another
process). It accepts:

- Loki's push API at ``/insert/loki/api/v1/push`` (protobuf + snappy, or JSON),
- Elasticsearch's ``_bulk`` at ``/insert/elasticsearch/_bulk``,

and answers LogsQL at ``/select/logsql/query``; :meth:`LocalVictoriaLogs.query` first calls
``/internal/force_flush`` so what was just accepted is visible.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from log_capturer.devtools import processes
from log_capturer.devtools.certs import TlsMaterial
from log_capturer.devtools.kafka_local import cache_home, free_port, port_in_use

VERSION = "v1.52.2"
MODULE = "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
STATE_FILE = "server.json"
#: Where it serves Loki's push API (the sink's ``push_endpoint`` for it).
LOKI_PUSH_PATH = "/insert/loki/api/v1/push"
#: Where it serves Elasticsearch's bulk API.
ES_BULK_PATH = "/insert/elasticsearch/_bulk"
INSTALL_HINT = "install Go 1.26 or later (https://go.dev/dl/) so that 'go' is on PATH"


class VictoriaLogsError(RuntimeError):
    """VictoriaLogs could not be built, started or queried; the message carries its log."""


def default_workdir() -> Path:
    return cache_home() / "victorialogs"


def binary_path(version: str = VERSION) -> Path:
    return cache_home() / f"victorialogs-{version}" / "victoria-logs"


def _go() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise VictoriaLogsError(f"Go is not installed; {INSTALL_HINT}")


def ensure_binary(version: str = VERSION, log: Callable[[str], None] = print) -> Path:
    """Return the ``victoria-logs`` executable, built once with ``go install`` into the cache."""
    exe = binary_path(version)
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    go = _go()
    log(f"building VictoriaLogs {version} with 'go install' into {exe.parent} (once, a few minutes)")
    exe.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="victorialogs-", dir=exe.parent.parent))
    try:
        proc = subprocess.run(
            [go, "install", f"{MODULE}@{version}"],
            env={**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            check=False,
        )
        built = staging / "victoria-logs"
        if proc.returncode != 0 or not built.is_file():
            raise VictoriaLogsError(
                f"go install {MODULE}@{version} failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        exe.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, exe)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return exe


def _pid_alive(pid: int | None, workdir: Path) -> bool:
    """``pid`` is a victoria-logs of ``workdir`` (not some recycled pid)."""
    return processes.is_running(pid, b"victoria-logs", workdir)


class LocalVictoriaLogs:
    """One VictoriaLogs in ``workdir`` on ``127.0.0.1:port``; ``up`` is idempotent, ``down`` stops it.

    ``extra_args`` are passed to the server as they are (e.g. ``-retentionPeriod=1d``); ``auth``
    (user, password) turns on its HTTP basic auth (``-httpAuth.*``) for every endpoint, which
    this class then uses itself. ``tls`` (certificates of :mod:`log_capturer.devtools.certs`)
    serves HTTPS with ``server.pem`` (valid for 127.0.0.1 and localhost), trusted through
    ``ca.pem``.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        log: Callable[[str], None] = print,
        auth: tuple[str, str] | None = None,
        tls: TlsMaterial | None = None,
    ) -> None:
        self.workdir = (workdir or default_workdir()).resolve()
        saved = self._load_state()
        self.port = port or int(saved.get("port") or 0) or free_port()
        self.extra_args = tuple(extra_args)
        self.log = log
        self.auth = auth
        self.tls = tls
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=str(tls.ca_file)) if tls is not None else None
        )

    def _auth_headers(self) -> dict[str, str]:
        if self.auth is None:
            return {}
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    # -- paths and state -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def push_url(self) -> str:
        """Loki's push API on this server."""
        return self.url + LOKI_PUSH_PATH

    @property
    def data_path(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "victoria-logs.log"

    @property
    def state_path(self) -> Path:
        return self.workdir / STATE_FILE

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.workdir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def pid(self) -> int | None:
        pid = self._load_state().get("pid")
        return pid if isinstance(pid, int) and _pid_alive(pid, self.workdir) else None

    # -- lifecycle -----------------------------------------------------------------------------
    def answers(self) -> bool:
        try:
            req = urllib.request.Request(self.url + "/health", headers=self._auth_headers())
            with urllib.request.urlopen(req, timeout=2, context=self._ssl) as r:
                return bool(r.status == 200)
        except (OSError, ValueError):
            return False

    def up(self, timeout: float = 60.0) -> str:
        """Start the server (or find it running) and return its base URL."""
        if self.pid() is not None and self.answers():
            return self.url
        exe = ensure_binary(log=self.log)
        if port_in_use(self.port):
            raise VictoriaLogsError(f"port {self.port} is already in use on 127.0.0.1")
        self.data_path.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(exe),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_path}",
            "-loggerLevel=INFO",
            *self.extra_args,
            *(
                (f"-httpAuth.username={self.auth[0]}", f"-httpAuth.password={self.auth[1]}")
                if self.auth
                else ()
            ),
            *(
                ("-tls", f"-tlsCertFile={self.tls.server_cert}", f"-tlsKeyFile={self.tls.server_key}")
                if self.tls
                else ()
            ),
        ]
        proc = processes.spawn(cmd, self.log_path, self.workdir)
        self.state_path.write_text(json.dumps({"pid": proc.pid, "port": self.port, "url": self.url}))
        deadline = time.monotonic() + timeout
        while not self.answers():
            if proc.poll() is not None:
                raise VictoriaLogsError(
                    f"victoria-logs exited with status {proc.returncode} during start-up; its log:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self._stop_pid(proc.pid, 10)
                raise VictoriaLogsError(
                    f"victoria-logs did not answer on {self.url} within {timeout:.0f}s; its log:\n"
                    + self.log_tail()
                )
            time.sleep(0.1)
        return self.url

    def stop(self, wait: float = 30.0) -> bool:
        """Stop the server (SIGTERM, then SIGKILL after ``wait``); its data stays. Whether it ran."""
        pid = self.pid()
        if pid is None:
            return False
        self.resume()
        self._stop_pid(pid, wait)
        return True

    def kill(self) -> bool:
        """SIGKILL the server (a crash); its data stays. Whether it ran."""
        pid = self.pid()
        if pid is None:
            return False
        processes.kill(pid, self._alive)
        return True

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP: the port stays open, requests are accepted by the kernel and never answered.
        Returns once every thread of the server is stopped (a signal reaches them one by one)."""
        pid = self.pid()
        if pid is None:
            raise VictoriaLogsError("victoria-logs is not running: nothing to pause")
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not processes.all_stopped(pid):
            if time.monotonic() > deadline:
                raise VictoriaLogsError(f"victoria-logs (pid {pid}) did not stop within {timeout:g}s")
            time.sleep(0.01)

    def resume(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def _alive(self, pid: int) -> bool:
        return _pid_alive(pid, self.workdir)

    def _stop_pid(self, pid: int, wait: float) -> None:
        def say() -> None:
            self.log(f"victoria-logs (pid {pid}) did not stop within {wait:.0f}s; killing it")

        processes.stop(pid, self._alive, signal.SIGTERM, wait, on_kill=say, poll=0.05)

    def down(self, purge: bool = False, wait: float = 30.0) -> bool:
        """Stop the server; with ``purge`` delete its work directory. Whether it ran."""
        ran = self.stop(wait)
        if purge and self.workdir.exists():
            shutil.rmtree(self.workdir)
        return ran

    def status(self) -> dict[str, object]:
        pid = self.pid()
        answering = pid is not None and self.answers()
        return {
            "workdir": str(self.workdir),
            "url": self.url,
            "loki_push_url": self.push_url,
            "pid": pid,
            "state": "up" if answering else ("starting" if pid else "down"),
        }

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no victoria-logs log>"
        return "\n".join(text.splitlines()[-lines:])

    # -- reading back --------------------------------------------------------------------------
    def flush(self) -> None:
        """Make what was accepted so far visible to queries."""
        self._request("GET", "/internal/force_flush")

    def query(
        self, logsql: str = "*", limit: int | None = None, flush: bool = True, tenant: str = ""
    ) -> list[dict[str, Any]]:
        """The entries matching ``logsql`` (one dict per entry: ``_msg``, ``_time``, ``_stream``,
        fields), of ``tenant`` (``"accountID"`` or ``"accountID:projectID"``, as X-Scope-OrgID
        names it; '' the default tenant)."""
        if flush:
            self.flush()
        params = {"query": logsql}
        if limit is not None:
            params["limit"] = str(limit)
        headers = {}
        if tenant:
            account, _, project = tenant.partition(":")
            headers = {"AccountID": account, "ProjectID": project or "0"}
        body = self._request("POST", "/select/logsql/query", params, headers)
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def count(self, logsql: str = "*", tenant: str = "") -> int:
        rows = self.query(f"{logsql} | stats count() as n", tenant=tenant)
        return int(rows[0]["n"]) if rows else 0

    def _request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={**self._auth_headers(), **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=60, context=self._ssl) as r:
                return bytes(r.read()).decode()
        except urllib.error.HTTPError as exc:
            raise VictoriaLogsError(
                f"{method} {path} answered {exc.code}: {exc.read().decode(errors='replace')[:2000]}"
            ) from None
        except OSError as exc:
            raise VictoriaLogsError(f"{method} {path}: {exc}; its log:\n{self.log_tail()}") from None
