"""The Elasticsearch sink's service: records to ``_bulk`` requests, each record's outcome to the engine.

Roles: :meth:`ElasticsearchService.prepare` (a dispatcher thread) turns a chunk into its documents
(:mod:`.bulk`: index, ``_id``, source); :meth:`~ElasticsearchService.send` adds them to the batch
being filled, which leaves as one ``_bulk`` request once it holds ``batch.max_events`` records or
``batch.max_bytes`` bytes, or ``batch.timeout`` after its first record (sooner when the dispatcher
is idle or a stop flushes). ``concurrency`` sender threads post the requests (the standard
library's HTTP client, one keep-alive connection each, gzip, TLS and mutual TLS) and read each
item of the answer; the service's own thread reports the outcomes to the runner and runs its round
(``runner.tick``).

What an answer means (:func:`.bulk.outcome_of_item`, :func:`.bulk.outcome_of_status`):

- an item 2xx: delivered; 409 ``version_conflict_engine_exception`` with ``op_type: create``: the
  document is there already (a replay after a crash, a retry of a request whose answer was lost):
  delivered;
- an item 429 / ``es_rejected_execution_exception`` (OpenSearch: ``rejected_execution_exception``):
  sent again alone (:attr:`Failure.RETRY_ALONE`), then with back-off for as long as it takes;
  other "not now" items (a shard unavailable, a circuit breaker) are retried with back-off;
- any other item error (a mapping conflict, a parse error, a closed index, a read-only block, an
  ingest pipeline's failure): rejected for the record's own sake (:attr:`Failure.REJECT`), parked
  in the local DLQ with the server's error;
- the whole request refused: connection errors, timeouts, 429, 5xx, 401, 403: every record retried
  with back-off (the breaker opens if it lasts; nothing is lost), reported timed out
  (:attr:`Failure.TIMEOUT`) once it has failed for ``timeout`` so the engine parks it
  (``dlq_config.send_on_timeout``); 413 and other 4xx: each record sent alone.
"""

from __future__ import annotations

import base64
import collections
import http.client
import logging
import queue
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from log_capturer.engine.contract import Failure, Record, Refused, ServiceState
from log_capturer.engine.outcomes import Outcome, ReplayWaiter, report_outcomes
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.sinks.elasticsearch import bulk
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.tls import client_context

if TYPE_CHECKING:
    from log_capturer.engine.contract import Prepared
    from log_capturer.engine.runner import Attempt, Delivery, SinkRunner
    from log_capturer.reliability.dlq.replay import ReplayRecord

log = logging.getLogger(__name__)

#: Only what the sink reads of a _bulk answer (smaller answers, faster to parse).
FILTER_PATH = "errors,items.*.status,items.*.error"


class ElasticsearchPrepared:
    """A chunk's documents."""

    __slots__ = ("chunk", "counts", "nbytes", "records")

    def __init__(self, chunk: Chunk, records: list[Record]) -> None:
        self.chunk = chunk
        self.records = records
        self.nbytes = sum(len(r.value) for r in records)
        counts: collections.Counter[str] = collections.Counter(r.topic for r in records)
        self.counts: Mapping[str, int] = counts


class Item:
    """One record in the sink: a new one (its chunk's ``Delivery``), a retry (its ``Attempt``) or
    a replayed DLQ entry (its waiter)."""

    __slots__ = ("alone", "entry_id", "kind", "owner", "record", "since")

    def __init__(self, record: Record, kind: str, owner: Any, since: float, entry_id: str = "") -> None:
        self.record = record
        self.kind = kind
        self.owner = owner
        self.since = since
        self.entry_id = entry_id
        self.alone = False


@dataclass
class _Batch:
    items: list[Item] = field(default_factory=list)
    nbytes: int = 0
    opened: float = 0.0


class RequestError(Exception):
    """A request got no usable answer: (failure for every record, error type, text)."""

    def __init__(self, failure: Failure, etype: str, text: str, unreachable: bool = False) -> None:
        super().__init__(text)
        self.failure = failure
        self.etype = etype
        self.text = text
        self.unreachable = unreachable


class Endpoint:
    """One base URL: scheme, host, port and path prefix."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.failed_at = 0.0


class Client:
    """One keep-alive connection of a sender thread, to the first endpoint that answers."""

    def __init__(self, service: ElasticsearchService, timeout: float | None = None) -> None:
        self.service = service
        self.timeout = service.config.request_timeout if timeout is None else timeout
        self.conn: http.client.HTTPConnection | None = None
        self.endpoint: Endpoint | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connect(self) -> tuple[http.client.HTTPConnection, Endpoint]:
        if self.conn is not None and self.endpoint is not None:
            return self.conn, self.endpoint
        svc = self.service
        ep = svc.pick_endpoint()
        timeout = self.timeout
        conn: http.client.HTTPConnection
        if ep.https:
            conn = http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout, context=svc.ssl_context)
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
        self.conn, self.endpoint = conn, ep
        return conn, ep

    def request(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One request: (status, body). Raises RequestError when no answer came."""
        conn, ep = self._connect()
        try:
            conn.request(method, ep.prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            if resp.getheader("Content-Encoding", "") == "gzip":
                raw = zlib.decompress(raw, 31)
            if resp.will_close:
                self.close()
            return resp.status, raw
        except (OSError, http.client.HTTPException, zlib.error) as exc:
            self.close()
            ep.failed_at = time.monotonic()
            what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise RequestError(
                Failure.RETRY, "connection_error", f"{ep.url}: {what}", unreachable=True
            ) from None


class ElasticsearchService:
    """See the module's docstring."""

    def __init__(
        self, config: ElasticsearchSinkConfig, metrics: Metrics, key_field: str | None, name: str
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.key_field = key_field
        self.name = name
        self.docs = bulk.Documents(config, key_field)
        #: Where a record goes when nothing says otherwise (the index pattern).
        self.default_destination = config.index
        self.endpoints = [Endpoint(u) for u in config.endpoints]
        self._next_endpoint = 0
        self.ssl_context: ssl.SSLContext | None = None
        self.headers = self._headers()
        self.op_type = config.op_type
        self.pipeline = config.pipeline
        #: '_doc' for Elasticsearch 6, else '' (found by detect() with api_version: auto).
        self.doc_type = "_doc" if config.api_version == "v6" else ""
        self.server: str = "" if config.api_version == "auto" else config.api_version
        self._detect_lock = threading.Lock()
        self._runner: SinkRunner | None = None
        self._lock = threading.Lock()
        self._pending = _Batch()
        self._cut_now = False
        self._requests: queue.Queue[_Batch | None] = queue.Queue()
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: list[threading.Thread] = []
        self._held = 0
        #: The last connection error ('' once a request got an answer): the cluster is away.
        self.failing = ""
        self.last_error = ""
        self.thread_error = ""
        self.stopped = False
        #: Records still failing this long after they were handed over are reported timed out,
        #: so the engine parks them (0: never; the sink sets it when it has a local DLQ).
        self.park_after = 0.0
        self.requests = 0
        self.bytes_sent = 0
        self.items_rejected = 0
        self.items_retried = 0
        #: Documents that were there already (409 with op_type create: a replay), counted delivered.
        self.items_existing = 0

    @property
    def runner(self) -> SinkRunner:
        assert self._runner is not None, "not started"
        return self._runner

    def _headers(self) -> dict[str, str]:
        c = self.config
        h = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
        if c.compression == "gzip":
            h["Content-Encoding"] = "gzip"
        a = c.auth
        if a.type == "basic":
            token = f"{a.username}:{a.password.get_secret_value()}".encode()
            h["Authorization"] = "Basic " + base64.b64encode(token).decode()
        elif a.type == "api_key":
            h["Authorization"] = "ApiKey " + a.api_key.get_secret_value()
        h.update(c.headers)
        return h

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, runner: SinkRunner) -> None:
        if any(e.https for e in self.endpoints):
            self.ssl_context = tls_context(self.config)
        self._runner = runner
        self._senders = [
            threading.Thread(target=self._sender, name=f"{self.name}-http-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        for t in self._senders:
            t.start()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped = True
        self._stop.set()
        for _ in self._senders:
            self._requests.put(None)
        for t in self._senders:
            t.join(self.config.request_timeout + 5)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- the engine's calls --------------------------------------------------------------------
    def prepare(self, chunk: Chunk) -> ElasticsearchPrepared:
        return ElasticsearchPrepared(chunk, self.records_of(chunk))

    def records_of(self, chunk: Chunk) -> list[Record]:
        return self.docs.records(chunk, self.docs.values(chunk))

    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        assert isinstance(prepared, ElasticsearchPrepared)
        now = time.monotonic()
        self._add([Item(r, "new", delivery, now) for r in prepared.records])
        return []

    def _add(self, items: list[Item]) -> None:
        b = self.config.batch
        with self._lock:
            self._held += len(items)
            p = self._pending
            for item in items:
                size = len(item.record.value) + 128
                if p.items and (len(p.items) >= b.max_events or p.nbytes + size > b.max_bytes):
                    self._requests.put(p)
                    p = self._pending = _Batch()
                if not p.items:
                    p.opened = time.monotonic()
                p.items.append(item)
                p.nbytes += size
            if len(p.items) >= b.max_events or p.nbytes >= b.max_bytes:
                self._requests.put(p)
                self._pending = _Batch()

    def _cut_lingering(self, now: float) -> None:
        with self._lock:
            p = self._pending
            if p.items and (self._cut_now or now - p.opened >= self.config.batch.timeout):
                self._requests.put(p)
                self._pending = _Batch()
            self._cut_now = False

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        item = Item(attempt.record, "attempt", attempt, attempt.delivery.started)
        if alone:
            item.alone = True
            with self._lock:
                self._held += 1
            self._requests.put(_Batch([item], len(attempt.record.value), time.monotonic()))
        else:
            self._add([item])
        return True

    def dead_letter(self, attempt: Attempt) -> bool | None:
        return None  # no dead-letter output of its own: the engine parks in the local store

    def idle(self) -> None:
        self._cut_now = True
        self._wake.set()

    def flush_soon(self) -> None:
        self.idle()

    def queued(self) -> int:
        return self._held

    def state(self) -> ServiceState:
        dead = self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()
        dead = dead or any(not t.is_alive() for t in self._senders if not self._stop.is_set())
        return ServiceState(
            unreachable=bool(self.failing),
            unreachable_as="no Elasticsearch endpoint answers",
            thread_error=self.thread_error,
            thread_dead=dead,
            last_error=self.failing or self.last_error,
            details={
                "endpoints": [e.url for e in self.endpoints],
                "server": self.server or "not detected yet",
                "index": self.config.index,
            },
        )

    def probe(self) -> str:
        """GET / on the endpoints: '' when one answers 200 (within 5 s: the engine's thread waits)."""
        client = Client(self, timeout=min(5.0, self.config.request_timeout))
        try:
            status, raw = client.request("GET", "/", None, self._plain_headers())
        except RequestError as exc:
            return exc.text
        finally:
            client.close()
        if status != 200:
            return f"GET / answered {status}: {raw[:200].decode(errors='replace')}"
        self.failing = ""
        return ""

    def stats(self) -> dict[str, Any]:
        return {
            "endpoints": [e.url for e in self.endpoints],
            "server": self.server,
            "bulk_requests": self.requests,
            "bytes_sent": self.bytes_sent,
            "items_rejected": self.items_rejected,
            "items_retried": self.items_retried,
            "items_existing": self.items_existing,
        }

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Send parked records again, to the index and with the _id they were parked with."""
        if self.stopped:
            return {r.entry_id: "the sink is stopped" for r in records}
        waiter = ReplayWaiter(expected=len(records))
        if not records:
            return {}
        now = time.monotonic()
        self._add([Item(Record(r.topic, r.value, r.key), "replay", waiter, now, r.entry_id) for r in records])
        self.idle()
        waiter.done.wait(timeout)
        return {
            r.entry_id: waiter.results.get(r.entry_id, "not delivered within the timeout") for r in records
        }

    # -- the senders ---------------------------------------------------------------------------
    def pick_endpoint(self) -> Endpoint:
        """The next endpoint, skipping those that failed in the last few seconds if another has not."""
        eps = self.endpoints
        now = time.monotonic()
        for _ in range(len(eps)):
            ep = eps[self._next_endpoint % len(eps)]
            if now - ep.failed_at > 5.0:
                return ep
            self._next_endpoint += 1
        return eps[self._next_endpoint % len(eps)]

    def _plain_headers(self) -> dict[str, str]:
        h = {k: v for k, v in self.headers.items() if k not in ("Content-Type", "Content-Encoding")}
        return h

    def detect(self, client: Client) -> None:
        """Ask the server what it is (GET /), once, with ``api_version: auto``."""
        if self.server:
            return
        with self._detect_lock:
            if self.server:
                return
            status, raw = client.request("GET", "/", None, self._plain_headers())
            if status in (401, 403):
                raise RequestError(Failure.RETRY, f"http_{status}", f"GET / answered {status}: {raw[:300]!r}")
            server = "unknown"
            try:
                info = orjson.loads(raw)
                version = info.get("version", {}) if isinstance(info, dict) else {}
                number = str(version.get("number", ""))
                if version.get("distribution") == "opensearch":
                    server = f"opensearch {number}"
                elif number:
                    server = f"elasticsearch {number}"
                    if number.split(".", maxsplit=1)[0] == "6":
                        self.doc_type = "_doc"
            except (orjson.JSONDecodeError, AttributeError):
                pass
            self.server = server

    def _sender(self) -> None:
        client = Client(self)
        try:
            while True:
                batch = self._requests.get()
                if batch is None:
                    return
                try:
                    self._post(client, batch)
                except Exception as exc:  # a bug: the records are retried, the thread goes on
                    self.thread_error = f"{type(exc).__name__}: {exc}"
                    self.runner.unexpected("bulk_request", exc)
                    self._report(batch.items, Failure.RETRY, "internal_error", self.thread_error)
        finally:
            client.close()

    def _post(self, client: Client, batch: _Batch) -> None:
        items = batch.items
        records = [i.record for i in items]
        data = bulk.body(records, self.op_type, self.pipeline, self.doc_type)
        raw_len = len(data)
        if self.config.compression == "gzip":
            co = zlib.compressobj(self.config.compression_level, zlib.DEFLATED, 31)
            data = co.compress(data) + co.flush()
        m = self.metrics
        started = time.monotonic()
        try:
            self.detect(client)
            status, raw = client.request("POST", f"/_bulk?filter_path={FILTER_PATH}", data, self.headers)
        except RequestError as exc:
            if exc.unreachable:
                self.failing = exc.text
            m.sink_requests.labels("elasticsearch", "error").inc()
            self._report(items, exc.failure, exc.etype, exc.text)
            return
        self.failing = ""
        self.requests += 1
        self.bytes_sent += len(data)
        m.sink_request_duration.labels("elasticsearch").observe(time.monotonic() - started)
        m.sink_request_bytes.labels("elasticsearch", "raw").inc(raw_len)
        m.sink_request_bytes.labels("elasticsearch", "wire").inc(len(data))
        m.sink_requests.labels("elasticsearch", str(status)).inc()
        if status != 200:
            text = f"_bulk answered {status}: {raw[:500].decode(errors='replace')}"
            failure = bulk.outcome_of_status(status)
            if failure is Failure.RETRY_ALONE and len(items) == 1:
                failure = Failure.REJECT
            self._report(items, failure, f"http_{status}", text)
            return
        if bulk.all_delivered(raw):
            self._report(items, None)
            return
        try:
            answer = bulk.parse_response(raw)
        except (orjson.JSONDecodeError, ValueError) as exc:
            self._report(items, Failure.RETRY, "bad_response", f"the _bulk answer is not JSON: {exc}")
            return
        if not answer.get("errors"):
            self._report(items, None)
            return
        answers = answer.get("items")
        if not isinstance(answers, list) or len(answers) != len(items):
            self._report(items, Failure.RETRY, "bad_response", "the _bulk answer does not list every item")
            return
        delivered: list[Item] = []
        for item, entry in zip(items, answers, strict=True):
            result: dict[str, Any] = (
                next(iter(entry.values()), {}) if isinstance(entry, dict) and entry else {}
            )
            outcome, etype, text = bulk.outcome_of_item(result, self.op_type)
            if outcome is None:
                if etype == "exists":
                    self.items_existing += 1
                delivered.append(item)
                continue
            failure = outcome
            if failure is Failure.RETRY_ALONE and item.kind != "new":
                failure = Failure.RETRY  # refused again when sent alone: back-off, for as long as it takes
            if failure is Failure.REJECT:
                self.items_rejected += 1
            else:
                self.items_retried += 1
            m.es_item_errors.labels(self.name, etype).inc()
            self._report([item], failure, etype, text)
        if delivered:
            self._report(delivered, None)

    def _report(self, items: list[Item], failure: Failure | None, etype: str = "", text: str = "") -> None:
        if failure is not None:
            self.last_error = text
        now = time.monotonic()
        outcomes = self._outcomes
        for item in items:
            f = failure
            if f is Failure.RETRY and self.park_after and now - item.since >= self.park_after:
                f = Failure.TIMEOUT
            outcomes.append((item, f, etype, text))
        self._wake.set()

    # -- outcomes (senders -> the service's thread) --------------------------------------------
    def _loop(self) -> None:
        runner = self.runner
        last_probe = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.01)
            self._wake.clear()
            try:
                now = time.monotonic()
                self._cut_lingering(now)
                self._report_outcomes()
                runner.tick(now)
                if self.failing and now - last_probe >= 1.0 and self._held == 0:
                    # Nothing is being sent to find out the cluster is back (all parked): a probe
                    # says so, and clears ``failing`` (replay waits for that).
                    last_probe = now
                    self.probe()
                self.thread_error = ""
            except Exception as exc:  # a bug: counted and logged, the thread goes on
                self.thread_error = f"{type(exc).__name__}: {exc}"
                runner.unexpected("engine_round", exc)
                time.sleep(0.1)
        self._report_outcomes()

    def _report_outcomes(self) -> None:
        n = report_outcomes(self.runner, self._outcomes)
        if n:
            with self._lock:
                self._held -= n


def tls_context(config: ElasticsearchSinkConfig) -> ssl.SSLContext:
    """The TLS context of https:// endpoints (``tls``: CA, verification, client certificate)."""
    return client_context("sinks.elasticsearch.tls", config.tls)
