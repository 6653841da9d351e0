"""OpenTelemetry logs over OTLP/HTTP: ``POST /v1/logs`` on a listener of its own.

The listener is its own (``otlp.host``, ``otlp.port``, 127.0.0.1:4318 by default), not a route
of the API server: exporters are configured with a base URL and append ``/v1/logs``
(``OTEL_EXPORTER_OTLP_ENDPOINT=http://host:4318``), 4318 is the port every OTLP client and
receiver (the Collector, Vector's ``opentelemetry`` source) uses by default, and the API server
has its own host, port and endpoints (``/health``, ``/config/reload``...) that should not be
opened to every instrumented application. It runs an aiohttp server on an event loop in its own
thread (``otlp``); decoding, the dispatcher's blocking ``submit`` and the DLQ's durable writes run
in that loop's default executor, so the loop never blocks.

Bodies are ``application/x-protobuf`` or ``application/json`` (OTLP/JSON), gzip-compressed or not
(``Content-Encoding: gzip``, decompressed by aiohttp); :mod:`.decode` turns them into chunks
(``checkpoint=None``: OTLP has no positions, the client keeps what was not acknowledged). The
answer has the request's content type:

- 200 ``ExportLogsServiceResponse``, once every record was acknowledged by the sinks (delivered or
  parked). Records that cannot be shipped (no body, a bad trace id...) are parked in the local DLQ
  with their reason (``failed_sink: otlp``, ``error_type: invalid_record``), counted, logged at
  most once per ``http.source.REJECT_LOG_INTERVAL``, and the answer's ``partial_success`` gives their
  number and why: the client must not resend them (OTLP's rule), and the others were shipped;
- 400 (``google.rpc.Status``): the body cannot be read at all; 413: it is larger than
  ``otlp.max_body_bytes``; 415: neither protobuf nor JSON. Exporters do not retry these;
- 429 with ``Retry-After``: the sinks hold the agent back (the dispatcher queue stayed full for
  ``otlp.queue_timeout``); 503 with ``Retry-After``: the agent is stopping, or the records were
  not acknowledged within ``otlp.ack_timeout``. Exporters retry both. A request whose records
  span several label sets is queued one set at a time, so a 429 after some of them were queued
  makes the retry send those again (at-least-once);
- 500: the handler crashed (a bug): logged with its traceback, counted in
  ``errors_total{component="otlp",error_type="crash"}``, ``otlp`` degraded in ``/health`` until a
  request is handled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.record import Chunk
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.http.source import Rejected, _RejectionLog, park_rejected
from log_capturer.sources.listener import Receiver, all_acked_future, read_body, start_listener
from log_capturer.sources.otlp.config import OtlpConfig
from log_capturer.sources.otlp.decode import EMPTY_BODY, FORMATS, JSON, PROTOBUF, Decoder, OtlpError
from log_capturer.sources.supervise import describe

log = logging.getLogger(__name__)

PATH = "/v1/logs"
#: ``failed_sink`` of the DLQ entries of rejected records, and the component's name.
NAME = "otlp"
#: Rejected records the partial success's error_message describes one by one.
MAX_ERRORS = 5
PARKED, SKIPPED, DROPPED = "parked", "skipped", "dropped"
#: HTTP status -> google.rpc.Code of the Status body.
_GRPC_CODE = {400: 3, 413: 3, 415: 3, 429: 8, 500: 13, 503: 14}


def status_message(code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` in protobuf (code = 1, message = 2): OTLP's error body. Written by
    hand: it is two fields, and its generated class is in another distribution."""
    text = message.encode()
    out = bytearray()
    if code:
        out += b"\x08" + _varint(code)
    out += b"\x12" + _varint(len(text)) + text
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def export_response(mime: str, rejected: int = 0, error: str = "") -> bytes:
    """An ``ExportLogsServiceResponse`` in ``mime``'s encoding; ``partial_success`` when records
    were rejected."""
    if mime == PROTOBUF:
        response = ExportLogsServiceResponse()
        if rejected or error:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = error
        return response.SerializeToString()
    if not (rejected or error):
        return b"{}"
    return orjson.dumps({"partialSuccess": {"rejectedLogRecords": str(rejected), "errorMessage": error}})


def error_body(mime: str, status: int, message: str) -> bytes:
    code = _GRPC_CODE.get(status, 2)
    if mime == PROTOBUF:
        return status_message(code, message)
    return orjson.dumps({"code": code, "message": message})


class OtlpSource(Receiver[OtlpConfig]):
    """The OTLP/HTTP listener (thread ``otlp``)."""

    name = NAME

    def __init__(
        self,
        config: OtlpConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
        dlq: DeadLetterStore | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(config, dispatcher, metrics, dlq)
        #: The port is shared with the other workers of a multi-process agent (SO_REUSEPORT).
        self.reuse_port = reuse_port
        self.decoder = Decoder(config)
        self.accepted = 0
        self.rejected = 0
        self.requests = 0
        #: (host, port) actually bound, for logs and tests.
        self.bound: tuple[str, int] | None = None
        self._rejections = _RejectionLog("OTLP:", "requests", "log records")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._stop_timeout = 10.0
        #: ``accepted`` is counted by the executor's threads.
        self._count_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the listener and serve. Raises SourceStartError naming otlp.port / otlp.host."""
        loop = self._loop = asyncio.new_event_loop()

        def serve() -> None:
            try:
                loop.run_until_complete(self._serve())
            except Exception:
                log.exception("OTLP listener shutdown failed")
            finally:
                loop.close()

        def cannot_listen(exc: OSError) -> str:
            return (
                f"cannot listen for OTLP on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}; change otlp.port (or otlp.host)"
            )

        self._thread = start_listener("otlp", loop, self._bind, serve, cannot_listen)
        assert self.bound is not None
        log.info("OTLP/HTTP listening", extra={"listener": f"http://{self.bound[0]}:{self.bound[1]}{PATH}"})

    async def _bind(self) -> None:
        self._stop_requested = asyncio.Event()
        # The body is read by the handler, bounded by max_body_bytes (after decompression).
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post(PATH, self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            cfg = self.config
            reuse_port = self.reuse_port or None
            site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True, reuse_port=reuse_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.bound = (str(host), int(port))

    async def _serve(self) -> None:
        assert self._stop_requested is not None and self._runner is not None
        await self._stop_requested.wait()
        # Stops listening; requests in progress get their answer (their records are queued: the
        # dispatcher drains after the sources) within the stop's timeout.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._runner.cleanup(), self._stop_timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening; requests in progress are answered within ``timeout`` seconds."""
        if self._thread is None or not self._thread.is_alive() or self._loop is None:
            return
        self._stop_timeout = timeout
        event = self._stop_requested
        assert event is not None
        with contextlib.suppress(RuntimeError):  # the loop ended on its own
            self._loop.call_soon_threadsafe(event.set)
        self._thread.join(timeout + 10)

    def finish(self) -> None:
        """Nothing to save: OTLP has no positions (the exporter keeps what was not answered)."""

    def health(self) -> dict[str, Any]:
        listener = f"http://{self.bound[0]}:{self.bound[1]}{PATH}" if self.bound else ""
        return {**self.supervisor.health(), "listener": listener}

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "accepted": self.accepted, "rejected": self.rejected}

    # -- requests (loop thread) ----------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        mime = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        reply_mime = PROTOBUF if mime == PROTOBUF else JSON
        headers: dict[str, str] | None = None
        close = False
        try:
            status, body, headers = await self._handle(request, mime)
            self.supervisor.ok()
        except OtlpError as exc:
            status, body = exc.status, error_body(reply_mime, exc.status, exc.reason)
            close = exc.close
            self.supervisor.ok()
        except Exception as exc:
            self.supervisor.crashed(exc, "answered 500")
            message = f"internal error ({describe(exc)}); some records may have been queued"
            status, body = 500, error_body(reply_mime, 500, message)
        self.requests += 1
        self.metrics.otlp_requests.labels(str(status)).inc()
        response = web.Response(body=body, status=status, content_type=reply_mime, headers=headers)
        if close:
            response.force_close()
        return response

    async def _handle(self, request: web.Request, mime: str) -> tuple[int, bytes, dict[str, str] | None]:
        if mime not in (PROTOBUF, JSON):
            raise OtlpError(415, f"Content-Type {mime or '(none)'} is not supported: send {FORMATS}")
        cfg = self.config
        data = await self._read(request)
        loop = asyncio.get_running_loop()
        # Decoded and queued in one trip to the executor, its chunks handed to the dispatcher
        # together; the loop is woken once when the last of them is acknowledged.
        chunks, rejected, queued, closed = await loop.run_in_executor(None, self._decode_submit, data, mime)
        if closed:
            return 503, error_body(mime, 503, "the agent is stopping; retry later"), {"Retry-After": "5"}
        if queued < len(chunks):
            message = "the agent is held back by its sinks (dispatcher queue full); retry later"
            return 429, error_body(mime, 429, message), {"Retry-After": "1"}
        error = ""
        if rejected:
            # Only once the good records are queued: a request answered 429 parks nothing, so the
            # client's resend parks each bad record once.
            outcomes, dlq_error = await loop.run_in_executor(None, self._reject, rejected)
            self._rejections.add(loop, outcomes, "")
            error = _described(outcomes, dlq_error)
        if queued:
            try:
                await asyncio.wait_for(all_acked_future(loop, chunks), cfg.ack_timeout)
            except TimeoutError:
                message = (
                    f"records queued but not acknowledged by the sinks within {cfg.ack_timeout:g}s; "
                    "they may still be delivered (resending is at-least-once)"
                )
                return 503, error_body(mime, 503, message), {"Retry-After": "5"}
        return 200, export_response(mime, len(rejected), error), None

    def _decode_submit(self, data: bytes, mime: str) -> tuple[list[Chunk], list[Rejected], int, bool]:
        """In the executor: decode a body and queue its chunks (``otlp.queue_timeout`` at most).
        Returns the chunks, the rejected records, how many chunks were queued (the first ones)
        and whether the agent is stopping."""
        chunks, rejected = self.decoder.decode(data, mime)
        total = sum(len(c.lines) for c in chunks)
        self.metrics.source_lines_received.labels(NAME, "http").inc(total + len(rejected))
        queued, closed = self.dispatcher.submit_request(chunks, self.config.queue_timeout)
        with self._count_lock:
            self.accepted += sum(len(c.lines) for c in chunks[:queued])
        return chunks, rejected, queued, closed

    def _reject(self, rejected: list[Rejected]) -> tuple[list[tuple[Rejected, str]], str]:
        """Park ``rejected`` in the local DLQ (empty bodies are skipped instead with
        ``empty_bodies: skip``) and count them. Runs in the executor: parking is a durable write.
        Returns each with its outcome, and why the DLQ could not take them ('' if it could)."""
        skip = self.config.empty_bodies == "skip"
        counter = self.metrics.otlp_records_rejected
        outcomes, dlq_error = park_rejected(rejected, self.dlq, skip, counter, NAME, EMPTY_BODY)
        self.rejected += len(rejected)
        return outcomes, dlq_error

    async def _read(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        too_large = OtlpError(413, f"the body is larger than otlp.max_body_bytes ({limit} bytes)")
        return await read_body(
            request, limit, too_large, lambda why: OtlpError(400, f"{why}; send {FORMATS}", close=True)
        )


def _described(outcomes: list[tuple[Rejected, str]], dlq_error: str) -> str:
    """The partial success's error_message: how many were rejected, why, and the first few."""
    reasons = ", ".join(f"{n} {reason}" for reason, n in Counter(r.reason for r, _ in outcomes).most_common())
    first = "; ".join(r.error for r, _ in outcomes[:MAX_ERRORS])
    more = f" (and {len(outcomes) - MAX_ERRORS} more)" if len(outcomes) > MAX_ERRORS else ""
    done = Counter(o for _, o in outcomes)
    where = ", ".join(
        f"{done[o]} {text}"
        for o, text in (
            (PARKED, "parked in the agent's DLQ"),
            (SKIPPED, "skipped (otlp.empty_bodies: skip)"),
            (DROPPED, f"dropped ({dlq_error})"),
        )
        if done[o]
    )
    return f"{len(outcomes)} log records rejected ({reasons}; {where}): {first}{more}"


def build(config: OtlpConfig, ctx: BuildContext) -> OtlpSource | None:
    """Off unless enabled; in a multi-process agent every worker listens on the port (or only
    worker 0 with ``every_worker: false``)."""
    reuse_port = ctx.listener(config.every_worker)
    if not config.enabled or reuse_port is None:
        return None
    return OtlpSource(config, ctx.dispatcher, ctx.metrics, ctx.dlq, reuse_port)


COMPONENT = SourceComponent(
    build=build, stats_key=NAME, idle_stats={"requests": 0, "accepted": 0, "rejected": 0}
)
