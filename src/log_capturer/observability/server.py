"""HTTP endpoints, served by aiohttp on a background event loop.

API server (``server.port``, 8401): ``GET /health`` (JSON, 503 unless
healthy), ``GET /stats``, ``GET /positions``, ``GET /dlq/stats``,
``POST /dlq/reprocess`` (``?all=true`` replays every entry, not only those
due), and ``POST /api/v1/logs`` when HTTP ingest is on
(:mod:`log_capturer.sources.http.source`), ``POST /config/reload`` (apply the
configuration file again: :mod:`log_capturer.reload`). Metrics server
(``metrics.port``, 8001): ``GET <metrics.path>`` (Prometheus text) and a plain
``GET /health`` answering ``OK``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

JsonProvider = Callable[[], dict[str, Any]]
Reprocess = Callable[[bool], tuple[int, dict[str, Any]]]
#: ``POST /config/reload`` -> (HTTP status, answer).
Reload = Callable[[], tuple[int, dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Scrub = Callable[[bytes], bytes]


def _json(data: Any, status: int = 200, scrub: Scrub | None = None) -> web.Response:
    body = orjson.dumps(data, default=str)
    if scrub is not None:
        body = scrub(body)
    return web.Response(body=body, status=status, content_type="application/json")


def build_api_app(
    health: JsonProvider,
    stats: JsonProvider,
    positions: JsonProvider,
    routes: Callable[[], Mapping[str, Handler]] = dict,
    *,
    dlq_stats: JsonProvider | None = None,
    dlq_reprocess: Reprocess | None = None,
    config_reload: Reload | None = None,
    scrub: Scrub | None = None,
) -> web.Application:
    """``routes``: the sources' POST routes (HTTP ingest), path -> handler, asked at each request
    (a reload may start or stop the source that serves one). ``scrub`` masks known secret values
    in every JSON answer (see :mod:`log_capturer.config.secrets`)."""

    async def get_health(_: web.Request) -> web.Response:
        h = health()
        return _json(h, 200 if h.get("status") == "healthy" else 503, scrub)

    async def get_stats(_: web.Request) -> web.Response:
        return _json(stats(), scrub=scrub)

    async def get_positions(_: web.Request) -> web.Response:
        return _json(positions(), scrub=scrub)

    async def get_dlq_stats(_: web.Request) -> web.Response:
        assert dlq_stats is not None
        return _json(await asyncio.get_running_loop().run_in_executor(None, dlq_stats), scrub=scrub)

    async def post_dlq_reprocess(request: web.Request) -> web.Response:
        assert dlq_reprocess is not None
        everything = request.query.get("all", "").lower() in ("1", "true", "yes")
        code, body = await asyncio.get_running_loop().run_in_executor(None, dlq_reprocess, everything)
        return _json(body, code, scrub)

    async def post_config_reload(_: web.Request) -> web.Response:
        assert config_reload is not None
        code, answer = await asyncio.get_running_loop().run_in_executor(None, config_reload)
        return _json(answer, code, scrub)

    async def post_source_route(request: web.Request) -> web.StreamResponse:
        handler = routes().get(request.path)
        if handler is None:
            return _json({"error": f"no endpoint POST {request.path}"}, 404)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application()
    app.router.add_get("/health", get_health)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/positions", get_positions)
    if dlq_stats is not None:
        app.router.add_get("/dlq/stats", get_dlq_stats)
    if dlq_reprocess is not None:
        app.router.add_post("/dlq/reprocess", post_dlq_reprocess)
    if config_reload is not None:
        app.router.add_post("/config/reload", post_config_reload)
    app.router.add_post("/{path:.*}", post_source_route)  # last: the sources' (HTTP ingest)
    return app


def build_metrics_app(registry: CollectorRegistry, path: str, scrub: Scrub | None = None) -> web.Application:
    def render() -> bytes:
        body = generate_latest(registry)
        return scrub(body) if scrub is not None else body

    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(None, render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get(path, metrics)
    app.router.add_get("/health", ok)
    return app


class HttpServers:
    """Runs aiohttp applications on one event loop in a daemon thread. The loop exists from
    :meth:`start` to :meth:`stop` only: an agent that fails to start leaves none behind (one left
    to the garbage collector at exit printed a traceback)."""

    def __init__(self) -> None:
        self._apps: list[tuple[web.Application, str, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runners: list[web.AppRunner] = []
        self._thread: threading.Thread | None = None
        self.bound: list[tuple[str, int]] = []

    def add(self, app: web.Application, host: str, port: int) -> None:
        self._apps.append((app, host, port))

    def start(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            for app, host, port in self._apps:
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, host, port, reuse_address=True)
                await site.start()
                # The port really bound: port 0 asks for a free one (the workers of a multi-process agent).
                self.bound.append((host, int(runner.addresses[0][1])))

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                errors.append(exc)
                # A port was busy: release the ones already bound, and end the loop here (the
                # agent's stop then has no server to wait for).
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self._cleanup())
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            self._thread.join(10)
            self._thread = None
            raise errors[0]

    async def _cleanup(self) -> None:
        runners, self._runners = self._runners, []
        for r in runners:
            await r.cleanup()

    def stop(self) -> None:
        loop = self._loop
        if self._thread is None or loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._cleanup(), loop)
        try:
            fut.result(10)
        except Exception:
            log.exception("HTTP server shutdown failed")
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
