"""A real nginx on loopback: a reverse proxy in front of a local server, for faults the server
itself never produces (a rate limit answering 429 with ``Retry-After``, TLS or credentials checks).

nginx is Debian's ``nginx-light`` (``scripts/system-deps.sh`` installs it); the system service is
never used. :class:`LocalNginx` runs its own master process in the foreground (``daemon off``)
with everything under its work directory: ``-p <workdir>`` as the prefix, ``nginx.conf``, the
pid file, ``error.log``, ``access.log`` (one line per request: its status and request time, see
:data:`ACCESS_FORMAT`) and the temp paths. The caller gives the ``server { ... }`` blocks (and any
other ``http``-level directives), each listening on 127.0.0.1 ports it chose (see
:func:`~log_capturer.devtools.kafka_local.free_port`); :meth:`LocalNginx.up` returns once every
one of them accepts connections, :meth:`LocalNginx.down` stops the master (SIGQUIT: a graceful
stop, then SIGKILL) and its workers with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from log_capturer.devtools import processes

#: The access log's format: ``<status> <end (Unix time, ms resolution)> <request_time> <bytes
#: received> <method> <uri>``.
ACCESS_FORMAT = "$status $msec $request_time $request_length $request_method $uri"
INSTALL_HINT = "install Debian's nginx-light (scripts/system-deps.sh does: apt-get install nginx-light)"


class Request(NamedTuple):
    """One request of the access log: its status, when nginx began reading it and answered (Unix
    time, seconds), and its method."""

    status: int
    start: float
    end: float
    method: str


class NginxError(RuntimeError):
    """nginx is missing, refused its configuration or did not start; the message carries its log."""


def nginx_binary() -> str:
    found = shutil.which("nginx")
    if found:
        return found
    if os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    raise NginxError(f"nginx is not installed; {INSTALL_HINT}")


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def rate_limited_proxy(port: int, upstream: str, rate: int, burst: int, retry_after: int | None) -> str:
    """An ``http`` body for :class:`LocalNginx`: a reverse proxy on ``127.0.0.1:port`` to
    ``upstream`` that lets ``rate`` requests a second through (and a burst of ``burst`` more at
    once) and answers the others 429, with ``Retry-After: <retry_after>`` unless None."""
    header = f'"{retry_after}"' if retry_after is not None else '""'
    return f"""
  limit_req_zone $server_port zone=throttle:1m rate={rate}r/s;
  limit_req_status 429;
  map $status $retry_after {{ 429 {header}; default ""; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 256m;
    location / {{
      limit_req zone=throttle burst={burst} nodelay;
      add_header Retry-After $retry_after always;
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""


def share_refusing_proxy(port: int, upstream: str, percent: int, status: int = 429) -> str:
    """An ``http`` body for :class:`LocalNginx`: a reverse proxy on ``127.0.0.1:port`` to
    ``upstream`` that answers ``status`` to ``percent`` % of the requests, drawn per request
    (``split_clients`` on ``$request_id``), whatever their rate: a quota gateway, independent of
    how fast the client is."""
    return f"""
  split_clients "${{request_id}}" $refuse {{ {percent}% 1; * 0; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 256m;
    location / {{
      if ($refuse) {{ return {status}; }}
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""


class LocalNginx:
    """One nginx in ``workdir``, serving ``http_conf`` (server blocks and ``http``-level directives)
    on the loopback ``ports`` those blocks listen on."""

    def __init__(
        self,
        workdir: Path,
        http_conf: str,
        ports: Sequence[int],
        log: Callable[[str], None] = print,
    ) -> None:
        self.workdir = workdir.resolve()
        self.http_conf = http_conf
        self.ports = tuple(ports)
        self.log = log
        self._pid: int | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def config(self) -> str:
        """The whole ``nginx.conf``: the caller's ``http`` content inside this manager's frame."""
        w = self.workdir
        temp = "\n".join(
            f"  {k}_temp_path {w / 'temp' / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # Run as root, nginx's workers would become 'nobody', who cannot read a 0700 work directory.
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""{user}
worker_processes 1;
daemon off;
pid {w / "nginx.pid"};
error_log {self.error_log} info;
events {{ worker_connections 1024; }}
http {{
  log_format capturer '{ACCESS_FORMAT}';
  access_log {self.access_log} capturer;
{temp}
{self.http_conf}
}}
"""

    def _alive(self, pid: int) -> bool:
        return processes.is_running(pid, b"nginx", self.workdir)

    def pid(self) -> int | None:
        return self._pid if self._pid is not None and self._alive(self._pid) else None

    def up(self, timeout: float = 20.0) -> None:
        """Check the configuration (``nginx -t``), start nginx, wait until every port accepts."""
        if self.pid() is not None:
            return
        exe = nginx_binary()
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "temp" / k).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config())
        cmd = [exe, "-p", str(self.workdir), "-c", str(self.conf_path), "-e", str(self.error_log)]
        check = processes.spawn([*cmd, "-t", "-q"], self.workdir / "nginx-t.log", self.workdir)
        if check.wait(timeout) != 0:
            raise NginxError(
                f"nginx refused its configuration {self.conf_path}:\n"
                + (self.workdir / "nginx-t.log").read_text(errors="replace")
            )
        proc = processes.spawn(cmd, self.workdir / "stderr.log", self.workdir)
        processes.wait_exec(proc, self._alive)
        self._pid = proc.pid
        deadline = time.monotonic() + timeout
        while not all(_accepts(p) for p in self.ports):
            if proc.poll() is not None:
                self._pid = None
                raise NginxError(
                    f"nginx exited with status {proc.returncode} at start-up:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.down()
                raise NginxError(
                    f"nginx did not listen on {self.ports} within {timeout:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def down(self, wait: float = 10.0) -> bool:
        """Stop nginx (SIGQUIT, a graceful stop; SIGKILL after ``wait``). Whether it ran."""
        pid = self.pid()
        self._pid = None
        if pid is None:
            return False
        processes.stop(pid, self._alive, signal.SIGQUIT, wait, poll=0.05)
        return True

    def requests(self) -> list[Request]:
        """Every request logged so far, in the access log's order (the order they ended)."""
        try:
            text = self.access_log.read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split(" ", 5)
            if len(parts) < 5 or not parts[0].isdigit():
                continue
            end, took = float(parts[1]), float(parts[2])
            out.append(Request(int(parts[0]), end - took, end, parts[4]))
        return out

    def statuses(self) -> list[int]:
        """The status of every request logged so far, in the access log's order."""
        return [r.status for r in self.requests()]

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.workdir / "stderr.log", self.error_log):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                text = [f"<no log: {exc}>"]
            out.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(out)
