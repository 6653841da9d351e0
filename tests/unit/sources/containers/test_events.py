"""Our Docker events client: HTTP/1.1 over a unix socket, a streamed NDJSON body, reconnection.

No Docker engine runs on the test machines. This exercises our client code
against a real HTTP server (aiohttp) listening on a unix socket that streams
event lines in the shape the Docker Engine API documents for ``GET /events``.
It tests the client's transport, chunked stream parsing and reconnection; it
does not prove compatibility with a particular Docker version.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from log_capturer.observability.metrics import Metrics
from log_capturer.sources.containers.events import DockerEvents
from log_capturer.sources.supervise import Backoff, Supervisor
from tests.support import wait_until


class EventServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.send: asyncio.Queue[bytes | None] | None = None
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"path": request.path, "filters": orjson.loads(request.query["filters"])})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        assert self.send is not None
        while (item := await self.send.get()) is not None:
            await resp.write(item)
        return resp

    def start(self) -> None:
        async def boot() -> None:
            self.send = asyncio.Queue()
            app = web.Application()
            app.router.add_get("/events", self.events)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.UnixSite(self.runner, str(self.path)).start()

        asyncio.run_coroutine_threadsafe(boot(), self.loop).result(10)

    def push(self, data: bytes | None) -> None:
        assert self.send is not None
        self.loop.call_soon_threadsafe(self.send.put_nowait, data)

    def stop(self) -> None:
        if self.runner is not None:
            self.push(None)
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.runner = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EventServer]:
    s = EventServer(tmp_path / "docker.sock")
    yield s
    s.close()


def event(action: str, cid: str) -> bytes:
    return orjson.dumps({"Type": "container", "Action": action, "id": cid, "time": int(time.time())}) + b"\n"


def test_events_stream_reconnects_and_stops(server: EventServer) -> None:
    got: list[dict[str, Any]] = []
    client = DockerEvents(
        f"unix://{server.path}", got.append, 0.05, Supervisor("container_source", Metrics())
    )
    client.start()  # the socket does not exist yet: the client waits and retries
    try:
        time.sleep(0.2)
        assert not client.connected and got == []
        server.start()
        wait_until(lambda: client.connected, 10, "the client to connect")
        assert server.requests[0]["path"] == "/events"
        assert server.requests[0]["filters"]["type"] == ["container"]
        assert "start" in server.requests[0]["filters"]["event"]
        # One event split over two HTTP chunks, then two in one chunk, and a blank keep-alive line.
        e1 = event("start", "a" * 64)
        server.push(e1[:10])
        server.push(e1[10:])
        server.push(event("die", "b" * 64) + b"\n" + event("destroy", "b" * 64))
        wait_until(lambda: len(got) == 4, 10, "three events after the connection signal")
        assert [e.get("Action") for e in got] == [None, "start", "die", "destroy"]
        assert got[0] == {"Type": "connected"}
        server.stop()  # the daemon restarts: the client reconnects and signals it
        server.start()
        wait_until(lambda: got.count({"Type": "connected"}) == 2, 10, "a reconnection")
        server.push(event("start", "c" * 64))
        wait_until(lambda: got[-1].get("id") == "c" * 64, 10, "an event after reconnecting")
    finally:
        client.stop()
    assert not client.running and not client.connected


def test_a_crash_in_the_event_handler_restarts_the_thread(server: EventServer) -> None:
    got: list[dict[str, Any]] = []
    metrics = Metrics()

    def on_event(e: dict[str, Any]) -> None:
        if e.get("Action") == "die" and not any(x.get("Action") == "die" for x in got):
            got.append(e)
            raise RuntimeError("handler failed")
        got.append(e)

    sup = Supervisor("container_source", metrics, Backoff(0.01, 0.01))
    client = DockerEvents(f"unix://{server.path}", on_event, 0.05, sup)
    server.start()
    client.start()
    try:
        wait_until(lambda: client.connected, 10, "the client to connect")
        server.push(event("die", "a" * 64))
        wait_until(lambda: got.count({"Type": "connected"}) == 2, 10, "the restarted thread to reconnect")
        assert sup.restarts == 1
        server.push(None)  # ends the stream of the connection the crash left behind
        server.push(event("start", "c" * 64))
        wait_until(lambda: got[-1].get("id") == "c" * 64, 10, "an event after the restart")
        h = sup.health()
        assert h["status"] == "healthy" and h["last_error"] == "RuntimeError: handler failed"
        sample = {"component": "container_source", "error_type": "crash"}
        assert metrics.registry.get_sample_value("errors_total", sample) == 1
    finally:
        client.stop()
    assert not client.running
