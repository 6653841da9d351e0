"""The supervisor's HTTP servers: the agent's configured ports, answered from the workers.

``server.port`` (API) and ``metrics.port`` serve the same paths as one
agent does (see :mod:`log_capturer.observability.server`), made from every
worker's answer (:mod:`.aggregate`). The workers listen on free 127.0.0.1
ports. ``POST /api/v1/logs`` (HTTP ingest), ``GET /dlq/stats`` and
``POST /dlq/reprocess`` are forwarded to worker 0, which runs HTTP ingest and
DLQ reprocessing; while it restarts they answer 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from log_capturer.workers import aggregate

if TYPE_CHECKING:
    from log_capturer.workers.supervisor import Supervisor

#: ``sources.http.source.PATH``, written out: importing it would load the whole pipeline (a test checks).
INGEST_PATH = "/api/v1/logs"
#: How long the supervisor waits for a worker's answer.
WORKER_TIMEOUT = 5.0
_SESSION = web.AppKey("session", aiohttp.ClientSession)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), status=status, content_type="application/json")


def _with_session(app: web.Application) -> web.Application:
    async def open_session(app: web.Application) -> None:
        app[_SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT))

    async def close_session(app: web.Application) -> None:
        await app[_SESSION].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url) as r:
            body = orjson.loads(await r.read())
            return body if isinstance(body, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def _get_text(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url) as r:
            return await r.text() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _gather_json(
    session: aiohttp.ClientSession, urls: Sequence[tuple[int, str | None]], path: str
) -> list[aggregate.Answer]:
    async def one(index: int, base: str | None) -> aggregate.Answer:
        return index, (await _get_json(session, base + path) if base else None)

    return list(await asyncio.gather(*(one(i, u) for i, u in urls)))


def build_supervisor_api(sup: Supervisor, ingest: bool) -> web.Application:
    """The API server of the whole agent (``server.port``)."""

    async def health(request: web.Request) -> web.Response:
        answers = await _gather_json(request.app[_SESSION], sup.api_urls(), "/health")
        body = aggregate.merge_health(answers, sup.processes())
        body.update(sup.identity())
        return _json(body, 200 if body["status"] == "healthy" else 503)

    async def stats(request: web.Request) -> web.Response:
        if not sup.running.is_set():
            return _json({"status": "starting", "workers": sup.processes()}, 503)
        answers = await _gather_json(request.app[_SESSION], sup.api_urls(), "/stats")
        body = aggregate.merge_stats(answers, sup.identity())
        for entry, process in zip(body["workers"], sup.processes(), strict=True):
            entry.update({k: v for k, v in process.items() if k != "index"})
        return _json(body)

    async def positions(request: web.Request) -> web.Response:
        answers = await _gather_json(request.app[_SESSION], sup.api_urls(), "/positions")
        return _json(aggregate.merge_positions(answers))

    async def dlq_stats(request: web.Request) -> web.Response:
        answers = await _gather_json(request.app[_SESSION], sup.api_urls(), "/dlq/stats")
        first = answers[0][1]
        if first is None:
            return _json({"status": "unavailable", "reason": "worker 0 is not running"}, 503)
        topic = first.get("kafka_topic")
        if isinstance(topic, dict):
            topic["sent_since_start"] = sum(
                int((body or {}).get("kafka_topic", {}).get("sent_since_start", 0)) for _, body in answers
            )
        return _json(first)

    app = web.Application()

    async def config_reload(_: web.Request) -> web.Response:
        code, answer = await asyncio.get_running_loop().run_in_executor(None, sup.reload)
        return _json(answer, code)

    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.router.add_get("/positions", positions)
    app.router.add_get("/dlq/stats", dlq_stats)
    app.router.add_post("/dlq/reprocess", _forward_to_first(sup))
    app.router.add_post("/config/reload", config_reload)
    if ingest:
        app.router.add_post(INGEST_PATH, _forward_to_first(sup))
    return _with_session(app)


def _forward_to_first(sup: Supervisor) -> Callable[[web.Request], Any]:
    """A handler that passes the request on to worker 0 and its answer back."""

    async def forward(request: web.Request) -> web.StreamResponse:
        base = sup.api_urls()[0][1]
        if base is None:
            return _json({"status": "unavailable", "reason": "worker 0 is restarting; retry"}, 503)
        # Not Content-Encoding: aiohttp hands the body on decompressed.
        headers = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        session: aiohttp.ClientSession = request.app[_SESSION]
        try:
            async with session.post(
                base + request.rel_url.path_qs,
                data=request.content if request.body_exists else None,
                headers=headers,
                # An ingest request may wait up to http_ingest.ack_timeout for acknowledgements.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=WORKER_TIMEOUT),
            ) as r:
                body = await r.read()
                return web.Response(
                    body=body, status=r.status, content_type=r.content_type, headers=_passed(r.headers)
                )
        except aiohttp.ClientError as exc:
            bad = _unreadable_body(exc)
            if bad is None:
                return _json({"status": "unavailable", "reason": f"worker 0 did not answer: {exc}"}, 503)
            request.content.feed_eof()  # else aiohttp reads on after the answer and logs a traceback
            why = str(bad).splitlines()[-1].strip()
            answer = _json({"status": "rejected", "error": f"the body cannot be read: {why}"}, 400)
            answer.force_close()
            return answer

    return forward


def _unreadable_body(exc: BaseException) -> web.RequestPayloadError | None:
    """The client's body that could not be read (say, gzip that is not), if that is why sending
    it on failed: aiohttp wraps it in the error of the request to the worker."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, web.RequestPayloadError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _passed(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() == "retry-after"}


def build_supervisor_metrics(sup: Supervisor, path: str, registry: CollectorRegistry) -> web.Application:
    """The metrics server of the whole agent (``metrics.port``): every worker's, labelled."""

    async def metrics(request: web.Request) -> web.Response:
        session = request.app[_SESSION]

        async def one(index: int, url: str | None) -> tuple[int, str] | None:
            text = await _get_text(session, url) if url else None
            return None if text is None else (index, text)

        texts = [t for t in await asyncio.gather(*(one(i, u) for i, u in sup.metrics_urls())) if t]
        own = generate_latest(registry).decode()
        body = aggregate.merge_metrics(texts, own)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get(path, metrics)
    app.router.add_get("/health", ok)
    return _with_session(app)
