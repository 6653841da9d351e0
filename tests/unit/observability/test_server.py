"""HttpServers: the aiohttp servers of the API and the metrics, on 127.0.0.1."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from aiohttp import web

from log_capturer.observability.server import HttpServers


def hello_app() -> web.Application:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


def test_serves_on_the_ports_asked_and_stops() -> None:
    servers = HttpServers()
    servers.add(hello_app(), "127.0.0.1", 0)
    servers.start()
    try:
        (host, port) = servers.bound[0]
        assert port > 0
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as resp:
            assert resp.read() == b"hello"
    finally:
        servers.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_a_busy_port_releases_the_ports_already_bound_and_stop_has_nothing_to_wait_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        servers = HttpServers()
        servers.add(hello_app(), "127.0.0.1", 0)  # binds
        servers.add(hello_app(), "127.0.0.1", busy.getsockname()[1])  # fails
        with pytest.raises(OSError):
            servers.start()
        first = servers.bound[0][1]
        # The first server's port was released (connecting is refused) ...
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", first), timeout=5):
            pass
        # ... and stop() returns without a failed shutdown (it used to wait 10 s and log one).
        servers.stop()
        assert "shutdown failed" not in caplog.text
    finally:
        busy.close()
