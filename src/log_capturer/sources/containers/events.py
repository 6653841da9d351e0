"""Container events from the Docker Engine API, over its unix socket.

``GET /events?filters={"type":["container"]}`` answers with a stream of JSON
objects, one per line (``{"Type": "container", "Action": "start", "id": ...}``).
The source only uses them as a signal to scan ``containers_directory`` at
once, so a container that starts is followed within milliseconds instead of
at the next periodic scan; discovery never depends on the socket. When the
socket is missing or the connection drops, the client waits
``reconnect_interval`` and tries again (and asks for a scan after each
reconnection, for what happened meanwhile). Anything else that goes wrong in
the thread (a failing ``on_event``) is a crash: its :class:`Supervisor`
restarts it with back-off and the container source reports it in ``/health``.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson

from log_capturer.sources.supervise import Supervisor

log = logging.getLogger(__name__)

EVENTS_PATH = "/events?filters=" + urllib.parse.quote(
    orjson.dumps({"type": ["container"], "event": ["create", "start", "die", "destroy", "rename"]}).decode()
)


def socket_file(socket_path: str) -> str:
    """``unix:///var/run/docker.sock`` or ``/var/run/docker.sock`` -> the socket's path."""
    return socket_path.removeprefix("unix://")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix stream socket (the Docker Engine API transport)."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerEvents:
    """Follows the event stream in a thread and calls ``on_event`` for each container event."""

    def __init__(
        self,
        socket_path: str,
        on_event: Callable[[dict[str, Any]], None],
        reconnect_interval: float,
        supervisor: Supervisor,
        connect_timeout: float = 5.0,
    ) -> None:
        self.path = socket_file(socket_path)
        self.supervisor = supervisor
        self.on_event = on_event
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self.connected = False
        self.events_received = 0
        self._stop = threading.Event()
        self._conn: UnixHTTPConnection | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reported_down = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        self.supervisor.run(self._loop, self._stop)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if not self._stop.is_set() and not self._reported_down:
                    self._reported_down = True
                    log.info(
                        "Docker events unavailable (%s); containers are found by scanning the "
                        "containers directory",
                        exc,
                        extra={"socket": self.path},
                    )
            finally:
                self.connected = False
                with self._lock:
                    conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()
            self.supervisor.ok()
            self._stop.wait(self.reconnect_interval)

    def _follow(self) -> None:
        conn = UnixHTTPConnection(self.path, timeout=self.connect_timeout)
        with self._lock:
            self._conn = conn
        if self._stop.is_set():
            return
        conn.request("GET", EVENTS_PATH, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise http.client.HTTPException(f"GET /events answered {resp.status} {resp.reason}")
        assert conn.sock is not None
        conn.sock.settimeout(None)  # events may be hours apart
        self.connected = True
        if self._reported_down:
            log.info("Docker events connected", extra={"socket": self.path})
        self._reported_down = False
        self.on_event({"Type": "connected"})
        self.supervisor.ok()
        while not self._stop.is_set():
            line = resp.readline()
            if not line:
                raise http.client.HTTPException("the event stream ended")
            line = line.strip()
            if not line:
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self.events_received += 1
                self.on_event(event)
