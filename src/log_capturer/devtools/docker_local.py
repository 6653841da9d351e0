"""A private Docker Engine on this machine, started and stopped by the project itself.

``dockerd`` (Debian's ``docker.io``, installed by ``scripts/system-deps.sh``)
runs as a plain child process, never through systemd and never on the
system's ``/var/run/docker.sock``. Everything it owns lives in one work
directory (default ``<cache>/docker``, see :func:`cache_home`)::

    data/         --data-root: images, containers, their json-file logs
    exec/         --exec-root: containerd's state and sockets
    docker.sock   the Engine API (DOCKER_HOST=unix://<workdir>/docker.sock)
    dockerd.pid   dockerd.log   engine.json (the pid, read by down/status)

It is started with ``--iptables=false --bridge=none``: no docker0 bridge, no
iptables rule, the host's network stays as it was. Containers therefore run
with ``--network none``, or ``--network host`` to reach a broker on
127.0.0.1. ``down`` removes every container first (their mounts go with
them), stops the engine, and checks that no mount under the work directory
is left behind.

Images come from local files only (no registry is reachable): see
:mod:`log_capturer.devtools.docker_images`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from log_capturer.devtools import processes
from log_capturer.devtools.kafka_local import cache_home
from log_capturer.sources.containers.events import UnixHTTPConnection

STATE_FILE = "engine.json"
#: Options that leave the host's network alone (no bridge, no iptables rules).
NETWORK_OPTIONS = ("--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false")
INSTALL_HINT = "install it with 'make system-deps' (Debian packages docker.io, docker-compose)"


class LocalDockerError(RuntimeError):
    """The private engine could not be started or reached; the message carries its log."""


def default_workdir() -> Path:
    return cache_home() / "docker"


def _pid_alive(pid: int | None, workdir: Path) -> bool:
    """``pid`` is a dockerd of ``workdir`` (not some recycled pid)."""
    return processes.is_running(pid, b"dockerd", workdir)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    prefix = str(path.resolve())
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


class LocalDocker:
    """One private Docker Engine in ``workdir``; ``up`` is idempotent, ``down`` leaves nothing running."""

    def __init__(self, workdir: Path | None = None, log: Callable[[str], None] = print) -> None:
        self.workdir = (workdir or default_workdir()).resolve()
        self.log = log

    # -- paths ---------------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        return self.workdir / "data"

    @property
    def exec_root(self) -> Path:
        return self.workdir / "exec"

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def host(self) -> str:
        """The value of ``DOCKER_HOST`` for this engine."""
        return f"unix://{self.socket}"

    @property
    def containers_directory(self) -> Path:
        """Where the engine keeps ``<id>/config.v2.json`` and ``<id>/<id>-json.log``."""
        return self.data_root / "containers"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dockerd.log"

    @property
    def state_path(self) -> Path:
        return self.workdir / STATE_FILE

    def env(self) -> dict[str, str]:
        """The environment for the ``docker`` and ``docker-compose`` commands of this engine."""
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }

    def pid(self) -> int | None:
        try:
            pid = json.loads(self.state_path.read_text()).get("pid")
        except (OSError, ValueError):
            return None
        return pid if isinstance(pid, int) and _pid_alive(pid, self.workdir) else None

    # -- the Engine API ------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """One Engine API call over the socket: (status, decoded JSON or text)."""
        conn = UnixHTTPConnection(str(self.socket), timeout=timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def answers(self) -> bool:
        try:
            status, body = self.api("GET", "/_ping", timeout=2)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and body == "OK"

    def container_ids(self) -> list[str]:
        status, body = self.api("GET", "/containers/json?all=1")
        if status != 200 or not isinstance(body, list):
            raise LocalDockerError(f"GET /containers/json answered {status}: {body}")
        return [str(c["Id"]) for c in body]

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, timeout: float = 60.0) -> str:
        """Start the engine (or find it running) and return its ``DOCKER_HOST``."""
        if self.pid() is not None and self.answers():
            return self.host
        dockerd = shutil.which("dockerd") or next(
            (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None
        )
        if dockerd is None:
            raise LocalDockerError(f"dockerd is not installed; {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise LocalDockerError("the private Docker Engine runs as root (dockerd needs it); run as root")
        if len(str(self.socket)) > 100:
            raise LocalDockerError(f"{self.socket}: too long for a unix socket; choose a shorter --workdir")
        for d in (self.data_root, self.exec_root):
            d.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # left by an engine that was killed
        cmd = [
            dockerd,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.workdir / "dockerd.pid"),
            "--host",
            self.host,
            *NETWORK_OPTIONS,
            "--storage-driver",
            "overlay2",
            "--log-driver",
            "json-file",
        ]
        proc = processes.spawn(cmd, self.log_path, self.workdir)
        self.state_path.write_text(json.dumps({"pid": proc.pid, "host": self.host}))
        deadline = time.monotonic() + timeout
        while not self.answers():
            if proc.poll() is not None:
                raise LocalDockerError(
                    f"dockerd exited with status {proc.returncode} during start-up; its log:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self._stop_pid(proc.pid, 10)
                raise LocalDockerError(
                    f"dockerd did not answer on {self.socket} within {timeout:.0f}s; its log:\n"
                    + self.log_tail()
                )
            time.sleep(0.1)
        return self.host

    def remove_containers(self) -> int:
        """Remove every container of the engine (running ones are killed). Returns how many."""
        ids = self.container_ids()
        for cid in ids:
            status, body = self.api("DELETE", f"/containers/{cid}?force=1&v=1", timeout=60)
            if status not in (204, 404):
                raise LocalDockerError(f"cannot remove container {cid[:12]}: {status} {body}")
        return len(ids)

    def stop_engine(self, wait: float = 60.0) -> bool:
        """Stop dockerd (SIGTERM: it stops its containers and containerd). Returns whether it ran."""
        pid = self.pid()
        if pid is None:
            return False
        self._stop_pid(pid, wait)
        return True

    def _stop_pid(self, pid: int, wait: float) -> None:
        def say() -> None:
            self.log(f"dockerd (pid {pid}) did not stop within {wait:.0f}s; killing it")

        processes.stop(pid, lambda p: _pid_alive(p, self.workdir), signal.SIGTERM, wait, on_kill=say)

    def down(self, purge: bool = False, wait: float = 60.0) -> bool:
        """Remove the containers, stop the engine, unmount what it left; with ``purge`` delete
        the work directory (images, logs). Returns whether the engine ran."""
        ran = self.pid() is not None
        if ran and self.answers():
            self.remove_containers()
        self.stop_engine(wait)
        left = mounts_under(self.workdir)
        for point in left:
            self.log(f"unmounting {point}, left behind by dockerd")
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        if purge and self.workdir.exists():
            shutil.rmtree(self.workdir)
        else:
            shutil.rmtree(self.exec_root, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
        return ran

    def status(self) -> dict[str, object]:
        pid = self.pid()
        answering = pid is not None and self.answers()
        out: dict[str, object] = {
            "workdir": str(self.workdir),
            "docker_host": self.host,
            "containers_directory": str(self.containers_directory),
            "pid": pid,
            "state": "up" if answering else ("starting" if pid else "down"),
        }
        if answering:
            status, info = self.api("GET", "/version")
            if status == 200 and isinstance(info, dict):
                out["version"] = info.get("Version")
                out["api_version"] = info.get("ApiVersion")
            out["containers"] = len(self.container_ids())
        return out

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no dockerd log>"
        return "\n".join(text.splitlines()[-lines:])

    # -- the docker command --------------------------------------------------------------------
    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """``docker ARGS`` against this engine; with ``check`` a failure raises with its output."""
        exe = shutil.which("docker")
        if exe is None:
            raise LocalDockerError(f"the docker command is not installed; {INSTALL_HINT}")
        proc = subprocess.run(
            [exe, *args], input=input, capture_output=True, timeout=timeout, env=self.env(), check=False
        )
        if check and proc.returncode != 0:
            raise LocalDockerError(
                f"docker {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout.decode(errors='replace')[-4000:]}\n{proc.stderr.decode(errors='replace')[-4000:]}"
            )
        return proc
