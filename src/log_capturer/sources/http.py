"""HTTP ingest: ``POST /api/v1/logs`` on the API server.

The body is one JSON object, a JSON array of objects, or NDJSON (one object
per line). Each object is a record::

    {"message": "text (required, non-empty)",
     "level": "error",                      # optional; else detected from the message
     "source_type": "api", "source_id": "http",   # optional (http_ingest defaults)
     "labels": {"tenant_id": "acme"},       # optional, string values
     "timestamp": "2026-11-25T12:00:00Z",   # optional, RFC 3339 or epoch seconds
     "fields": {...}}                       # optional; other members are added to fields

Answers (always JSON):

- 200 ``{"status": "accepted", "accepted": N}``: every record was queued and,
  with ``http_ingest.acknowledgements``, acknowledged by the sinks;
- 400 ``{"status": "rejected", "error": ...}``: invalid JSON, a record without
  a message, a wrong type...; nothing of the request was queued;
- 413: the body is larger than ``http_ingest.max_body_bytes``;
- 429 (with ``Retry-After``): the dispatcher queue stayed full for
  ``queue_timeout``; nothing was queued, unless ``accepted`` says otherwise
  (a request whose records span several sources is queued one source at a time);
- 503: the agent is stopping, or the records were not acknowledged within
  ``ack_timeout`` (they may still be delivered; resending is at-least-once);
- 500 ``{"status": "error", "error": ...}``: the handler crashed (a bug). The
  server goes on; the crash is logged with its traceback, counted in
  ``errors_total{component="http_ingest",error_type="crash"}``, and
  ``http_ingest`` is degraded in ``/health`` until a request is handled again.
  Records of the request may have been queued: resending is at-least-once.

The event loop never blocks: the dispatcher's blocking ``submit`` runs in the
default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.processing.levels import CANONICAL, level_of_value
from log_capturer.processing.timestamps import NS, parse_epoch, parse_rfc3339
from log_capturer.record import Chunk, Origin
from log_capturer.sources.base import BuildContext, Handler, SourceComponent
from log_capturer.sources.http_config import HttpIngestConfig
from log_capturer.sources.supervise import Supervisor, describe

PATH = "/api/v1/logs"
KNOWN = frozenset({"message", "level", "source_type", "source_id", "labels", "timestamp", "fields"})
MAX_ORIGINS = 1024
_READ = 1 << 16


class IngestError(Exception):
    """The request cannot be accepted; ``status`` is the HTTP code, the message says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Group:
    origin: Origin
    lines: list[str] = field(default_factory=list)
    fields: list[dict[str, Any] | None] = field(default_factory=list)
    levels: list[str | None] = field(default_factory=list)
    stamps: list[int | None] = field(default_factory=list)


def parse_body(body: bytes) -> list[dict[str, Any]]:
    """The objects of a JSON object, JSON array or NDJSON body."""
    text = body.strip()
    if not text:
        raise IngestError(400, "empty body: send a JSON object, a JSON array or NDJSON")
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError:
        whole = None
        if text[:1] == b"[":
            raise IngestError(400, "invalid JSON array") from None
    else:
        if isinstance(whole, dict):
            return [whole]
        if isinstance(whole, list):
            for i, item in enumerate(whole, 1):
                if not isinstance(item, dict):
                    raise IngestError(400, f"record {i}: must be a JSON object, not {_kind(item)}")
            if not whole:
                raise IngestError(400, "the array holds no record")
            return whole
        raise IngestError(400, f"the body must hold JSON objects, not {_kind(whole)}")
    out = []
    for n, raw in enumerate(text.split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise IngestError(400, f"line {n}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise IngestError(400, f"line {n}: must be a JSON object, not {_kind(obj)}")
        out.append(obj)
    return out


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _text(rec: dict[str, Any], key: str, i: int) -> str | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise IngestError(400, f"record {i}: '{key}' must be a non-empty string")
    return value


def _timestamp(value: Any, i: int) -> int | None:
    if value is None:
        return None
    ns = parse_rfc3339(value) if isinstance(value, str) else parse_epoch(value, NS)
    if ns is None:
        raise IngestError(
            400, f"record {i}: 'timestamp' must be RFC 3339 text or a number of seconds since the epoch"
        )
    return ns


class Records:
    """Validates records and groups them into one chunk per origin (source_type, source_id, labels)."""

    def __init__(self, config: HttpIngestConfig) -> None:
        self.config = config
        self._origins: dict[tuple[str, str, tuple[tuple[str, str], ...]], Origin] = {}

    def origin(self, source_type: str, source_id: str, labels: dict[str, str]) -> Origin:
        key = (source_type, source_id, tuple(sorted(labels.items())))
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) >= MAX_ORIGINS:
                self._origins.clear()
            origin = self._origins[key] = Origin(
                source_type, source_id, labels, pipeline=self.config.pipeline
            )
        return origin

    def chunks(self, records: list[dict[str, Any]]) -> list[Chunk]:
        cfg = self.config
        groups: dict[int, _Group] = {}
        for i, rec in enumerate(records, 1):
            message = rec.get("message")
            if message is None:
                raise IngestError(400, f"record {i}: 'message' is missing")
            if not isinstance(message, str):
                raise IngestError(400, f"record {i}: 'message' must be a string, not {_kind(message)}")
            if not message.strip():
                raise IngestError(400, f"record {i}: 'message' is empty")
            level = self._level(rec.get("level"), i)
            source_type = _text(rec, "source_type", i) or cfg.source_type
            source_id = _text(rec, "source_id", i) or cfg.source_id
            labels = self._labels(rec.get("labels"), i)
            stamp = _timestamp(rec.get("timestamp"), i)
            fields = rec.get("fields")
            if fields is not None and not isinstance(fields, dict):
                raise IngestError(400, f"record {i}: 'fields' must be an object, not {_kind(fields)}")
            extra = {k: v for k, v in rec.items() if k not in KNOWN}
            if extra:
                fields = {**extra, **(fields or {})}
            origin = self.origin(source_type, source_id, labels)
            group = groups.get(id(origin))
            if group is None:
                group = groups[id(origin)] = _Group(origin)
            group.lines.append(message)
            group.fields.append(fields or None)
            group.levels.append(level)
            group.stamps.append(stamp)
        now = time.time_ns()
        out = []
        for g in groups.values():
            chunk = Chunk(g.origin, g.lines, read_time_ns=now)
            if any(f is not None for f in g.fields):
                chunk.meta = g.fields
            if any(lvl is not None for lvl in g.levels):
                chunk.preset_levels = g.levels
            if any(s is not None for s in g.stamps):
                chunk.timestamps = [now if s is None else s for s in g.stamps]
            out.append(chunk)
        return out

    def _labels(self, value: Any, i: int) -> dict[str, str]:
        base = self.config.labels
        if value is None:
            return dict(base)
        if not isinstance(value, dict):
            raise IngestError(400, f"record {i}: 'labels' must be an object, not {_kind(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise IngestError(400, f"record {i}: label '{k}' must be a string, not {_kind(v)}")
        return {**base, **value}

    @staticmethod
    def _level(value: Any, i: int) -> str | None:
        if value is None or value == "":
            return None
        level = level_of_value(value)
        if not level:
            known = ", ".join(sorted(set(CANONICAL.values())))
            raise IngestError(400, f"record {i}: unknown level {value!r}; use one of {known}")
        return level


def _reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


class HttpIngest:
    """The ``POST /api/v1/logs`` handler, served by the API server (no thread of its own)."""

    name = "http_ingest"

    def __init__(self, config: HttpIngestConfig, dispatcher: Dispatcher, metrics: Metrics) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.records = Records(config)
        self.accepted = 0
        #: Crashed requests make ``http_ingest`` degraded until one is handled again.
        self.supervisor = Supervisor(self.name, metrics)

    def start(self) -> None:
        """Nothing to start: the API server serves :meth:`routes`."""

    def stop(self, timeout: float) -> None:
        """Nothing to stop: a request in progress is answered; the API server stops last."""

    def finish(self) -> None:
        """Nothing to save."""

    def routes(self) -> list[tuple[str, Handler]]:
        return [(PATH, self.handle)]

    def health(self) -> dict[str, Any]:
        """The source's state for ``/health`` (see :meth:`Supervisor.health`)."""
        return {**self.supervisor.health(), "path": PATH}

    def stats(self) -> dict[str, Any]:
        return {"accepted": self.accepted}

    async def handle(self, request: web.Request) -> web.Response:
        try:
            status, body, headers = await self._handle(request)
            self.supervisor.ok()
        except IngestError as exc:
            status, body, headers = exc.status, {"status": "rejected", "error": exc.reason}, None
            self.supervisor.ok()
        except Exception as exc:
            self.supervisor.crashed(exc, "answered 500")
            error = f"internal error ({describe(exc)}); some records may have been queued"
            status, body, headers = 500, {"status": "error", "error": error}, None
        self.metrics.http_ingest_requests.labels(str(status)).inc()
        return _reply(status, body, headers)

    async def _handle(self, request: web.Request) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        cfg = self.config
        data = await self._read(request)
        chunks = self.records.chunks(parse_body(data))
        total = sum(len(c.lines) for c in chunks)
        self.metrics.source_lines_received.labels("http_ingest", "http").inc(total)
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[None]] = []
        accepted = 0
        for chunk in chunks:
            try:
                queued = await loop.run_in_executor(
                    None, self.dispatcher.submit, chunk, None, cfg.queue_timeout
                )
            except QueueClosed:
                raise IngestError(503, "the agent is stopping; retry on another instance or later") from None
            if not queued:
                return 429, self._full(accepted, total), {"Retry-After": "1"}
            accepted += len(chunk.lines)
            if cfg.acknowledgements:
                acks.append(self._ack_future(loop, chunk))
        self.accepted += accepted
        if acks:
            try:
                await asyncio.wait_for(asyncio.gather(*acks), cfg.ack_timeout)
            except TimeoutError:
                return (
                    503,
                    {
                        "status": "timeout",
                        "accepted": accepted,
                        "error": f"records queued but not acknowledged by the sinks within "
                        f"{cfg.ack_timeout:g}s; they may still be delivered (resending is at-least-once)",
                    },
                    {"Retry-After": "5"},
                )
        return 200, {"status": "accepted", "accepted": accepted}, None

    @staticmethod
    def _full(accepted: int, total: int) -> dict[str, Any]:
        if not accepted:
            return {
                "status": "rejected",
                "accepted": 0,
                "error": "the dispatcher queue is full; nothing was queued, retry later",
            }
        return {
            "status": "partial",
            "accepted": accepted,
            "error": f"the dispatcher queue is full: {accepted} of {total} records were queued "
            "(whole sources, in request order); retry the rest later",
        }

    @staticmethod
    def _ack_future(loop: asyncio.AbstractEventLoop, chunk: Chunk) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not fut.done():
                fut.set_result(None)

        def done(_: Chunk) -> None:
            # Runs on a sink thread; the loop may already be closed when the agent stops.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve)

        chunk.on_done(done)
        return fut

    async def _read(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        too_large = IngestError(413, f"the body is larger than http_ingest.max_body_bytes ({limit} bytes)")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        parts: list[bytes] = []
        size = 0
        async for part in request.content.iter_chunked(_READ):
            size += len(part)
            if size > limit:
                raise too_large
            parts.append(part)
        return b"".join(parts)


def build(config: HttpIngestConfig, ctx: BuildContext) -> HttpIngest | None:
    """Served on the API server: nothing to build when it is off."""
    if not (config.enabled and ctx.config.server.enabled):
        return None
    return HttpIngest(config, ctx.dispatcher, ctx.metrics)


COMPONENT = SourceComponent(build=build, stats_key="http_ingest", idle_stats={"accepted": 0})
