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
import bisect
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
from isal import isal_zlib

from log_capturer.engine.contract import Failure, Record, Refused, ServiceState
from log_capturer.engine.outcomes import ReplayWaiter
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
    """A chunk's documents, as columns (:class:`.bulk.Docs`)."""

    __slots__ = ("chunk", "counts", "docs", "nbytes")

    def __init__(self, chunk: Chunk, docs: bulk.Docs) -> None:
        self.chunk = chunk
        self.docs = docs
        self.nbytes = docs.nbytes
        self.counts: Mapping[str, int] = docs.counts()


#: Bytes a document adds to a request besides its source (its action line), for ``batch.max_bytes``.
ACTION_BYTES = 128


class Part:
    """Records in the sink, reported together while they share an outcome: documents lo..hi-1 of
    a chunk (``new``: its ``Delivery`` owns them), or one record sent again (``attempt``: its
    ``Attempt``) or replayed from the DLQ (``replay``: its waiter, with the entry's id)."""

    __slots__ = ("docs", "entry_id", "hi", "kind", "lo", "owner", "record", "since")

    def __init__(
        self,
        kind: str,
        owner: Any,
        since: float,
        docs: bulk.Docs | None = None,
        lo: int = 0,
        hi: int = 1,
        record: Record | None = None,
        entry_id: str = "",
    ) -> None:
        self.kind = kind
        self.owner = owner
        self.since = since
        self.docs = docs
        self.lo = lo
        self.hi = hi
        self.record = record
        self.entry_id = entry_id

    def __len__(self) -> int:
        return self.hi - self.lo

    def record_at(self, i: int) -> Record:
        """Its record ``i`` (lo <= i < hi), made from the documents when it has them."""
        if self.docs is not None:
            return self.docs.record(i)
        assert self.record is not None
        return self.record

    def size(self, lo: int, hi: int) -> int:
        """Bytes of records lo..hi-1 in a request (``batch.max_bytes``)."""
        per = ACTION_BYTES * (hi - lo)
        if self.docs is not None:
            return self.docs.size(lo, hi) + per
        assert self.record is not None
        return len(self.record.value) + per

    def cut(self, lo: int, room: int) -> int:
        """The end of the longest run of records from ``lo`` whose bytes fit in ``room``."""
        if self.docs is None:
            return lo + 1 if self.size(lo, lo + 1) <= room else lo
        cum = self.docs.cumulative
        limit = room + cum[lo] + ACTION_BYTES * lo
        return (
            bisect.bisect_right(range(self.hi + 1), limit, lo=lo, key=lambda k: cum[k] + ACTION_BYTES * k) - 1
        )

    def part(self, lo: int, hi: int) -> Part:
        """Records lo..hi-1 of it, as a part of their own."""
        if lo == self.lo and hi == self.hi:
            return self
        return Part(self.kind, self.owner, self.since, self.docs, lo, hi, self.record, self.entry_id)

    def body(self, op_type: str, pipeline: str, doc_type: str) -> bytes:
        if self.docs is not None:
            return self.docs.body(self.lo, self.hi, op_type, pipeline, doc_type)
        assert self.record is not None
        return bulk.body([self.record], op_type, pipeline, doc_type)


@dataclass
class _Batch:
    parts: list[Part] = field(default_factory=list)
    count: int = 0
    nbytes: int = 0
    opened: float = 0.0


#: What a sender reports to the service's thread: a part, the index of one of its records or -1
#: for all of them, the failure (None: delivered), the error's type and text.
PartOutcome = tuple[Part, int, Failure | None, str, str]


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

    #: A chunk's documents are made whole in ``prepare`` (sources, indexes, ids), and retries and
    #: the DLQ take them from there: the chunk's lines may be dropped once it was handed over.
    releases_text = True

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
        self._outcomes: collections.deque[PartOutcome] = collections.deque()
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
        return ElasticsearchPrepared(chunk, self.docs.docs(chunk))

    def records_of(self, chunk: Chunk) -> list[Record]:
        return self.docs.records(chunk, self.docs.values(chunk))

    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        assert isinstance(prepared, ElasticsearchPrepared)
        docs = prepared.docs
        if len(docs):
            self._add([Part("new", delivery, time.monotonic(), docs, 0, len(docs))])
        return []

    def _add(self, parts: list[Part]) -> None:
        """Add records to the batch being filled; each full batch leaves (a part is cut where a
        batch fills: by ``batch.max_events``, or ``batch.max_bytes`` with at least one record)."""
        b = self.config.batch
        max_n, max_b = b.max_events, b.max_bytes
        with self._lock:
            p = self._pending
            for part in parts:
                self._held += len(part)
                lo, end = part.lo, part.hi
                while lo < end:
                    if p.count >= max_n or (p.count and p.nbytes >= max_b):
                        self._requests.put(p)
                        p = self._pending = _Batch()
                    hi = min(end, lo + max_n - p.count)
                    size = part.size(lo, hi)
                    if p.nbytes + size > max_b:
                        hi = part.cut(lo, max_b - p.nbytes)
                        if hi == lo:
                            if p.count:  # not one more record fits: this batch leaves
                                self._requests.put(p)
                                p = self._pending = _Batch()
                                continue
                            hi = lo + 1  # a record larger than max_bytes goes alone
                        size = part.size(lo, hi)
                    if not p.count:
                        p.opened = time.monotonic()
                    p.parts.append(part.part(lo, hi))
                    p.count += hi - lo
                    p.nbytes += size
                    lo = hi
            if p.count >= max_n or p.nbytes >= max_b:
                self._requests.put(p)
                self._pending = _Batch()

    def _cut_lingering(self, now: float) -> None:
        with self._lock:
            p = self._pending
            if p.count and (self._cut_now or now - p.opened >= self.config.batch.timeout):
                self._requests.put(p)
                self._pending = _Batch()
            self._cut_now = False

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        part = Part("attempt", attempt, attempt.delivery.started, record=attempt.record)
        if alone:
            with self._lock:
                self._held += 1
            self._requests.put(_Batch([part], 1, part.size(0, 1), time.monotonic()))
        else:
            self._add([part])
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
        self._add(
            [
                Part("replay", waiter, now, record=Record(r.topic, r.value, r.key), entry_id=r.entry_id)
                for r in records
            ]
        )
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
                    self._report(batch.parts, Failure.RETRY, "internal_error", self.thread_error)
        finally:
            client.close()

    def _post(self, client: Client, batch: _Batch) -> None:
        parts = batch.parts
        op_type, pipeline, doc_type = self.op_type, self.pipeline, self.doc_type
        if len(parts) == 1:
            data = parts[0].body(op_type, pipeline, doc_type)
        else:
            data = b"".join([part.body(op_type, pipeline, doc_type) for part in parts])
        raw_len = len(data)
        if self.config.compression == "gzip":
            data = gzip_body(data, self.config.compression_level)
        m = self.metrics
        started = time.monotonic()
        try:
            self.detect(client)
            status, raw = client.request("POST", f"/_bulk?filter_path={FILTER_PATH}", data, self.headers)
        except RequestError as exc:
            if exc.unreachable:
                self.failing = exc.text
            m.sink_requests.labels("elasticsearch", "error").inc()
            self._report(parts, exc.failure, exc.etype, exc.text)
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
            if failure is Failure.RETRY_ALONE and batch.count == 1:
                failure = Failure.REJECT
            self._report(parts, failure, f"http_{status}", text)
            return
        if bulk.all_delivered(raw):
            self._report(parts, None)
            return
        try:
            answer = bulk.parse_response(raw)
        except (orjson.JSONDecodeError, ValueError) as exc:
            self._report(parts, Failure.RETRY, "bad_response", f"the _bulk answer is not JSON: {exc}")
            return
        if not answer.get("errors"):
            self._report(parts, None)
            return
        answers = answer.get("items")
        if not isinstance(answers, list) or len(answers) != batch.count:
            self._report(parts, Failure.RETRY, "bad_response", "the _bulk answer does not list every item")
            return
        self._items(parts, answers)

    def _items(self, parts: list[Part], answers: list[Any]) -> None:
        """An answer with errors: each record's outcome from its item (``answers``, in order)."""
        m = self.metrics
        outcomes: list[PartOutcome] = []
        at = 0
        for part in parts:
            failed = False
            delivered: list[int] = []
            for i in range(part.lo, part.hi):
                entry = answers[at]
                at += 1
                result: dict[str, Any] = (
                    next(iter(entry.values()), {}) if isinstance(entry, dict) and entry else {}
                )
                outcome, etype, text = bulk.outcome_of_item(result, self.op_type)
                if outcome is None:
                    if etype == "exists":
                        self.items_existing += 1
                    delivered.append(i)
                    continue
                failed = True
                failure = outcome
                if failure is Failure.RETRY_ALONE and part.kind != "new":
                    failure = (
                        Failure.RETRY
                    )  # refused again when sent alone: back-off, for as long as it takes
                if failure is Failure.REJECT:
                    self.items_rejected += 1
                else:
                    self.items_retried += 1
                m.es_item_errors.labels(self.name, etype).inc()
                self.last_error = text
                outcomes.append((part, i, self._timed_out(part, failure), etype, text))
            if not failed:
                outcomes.append((part, -1, None, "", ""))
            else:
                outcomes.extend((part, i, None, "", "") for i in delivered)
        self._outcomes.extend(outcomes)
        self._wake.set()

    def _timed_out(self, part: Part, failure: Failure | None) -> Failure | None:
        """A retriable failure of records handed over ``park_after`` ago or more is a timeout."""
        if failure is Failure.RETRY and self.park_after and time.monotonic() - part.since >= self.park_after:
            return Failure.TIMEOUT
        return failure

    def _report(self, parts: list[Part], failure: Failure | None, etype: str = "", text: str = "") -> None:
        """Every record of ``parts`` has this outcome."""
        if failure is not None:
            self.last_error = text
        self._outcomes.extend([(part, -1, self._timed_out(part, failure), etype, text) for part in parts])
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
        """Hand the senders' outcomes to the runner: a delivered part in one call, a failed record
        by itself (its :class:`Record` made now, from the documents)."""
        runner = self.runner
        outcomes = self._outcomes
        n = 0
        while outcomes:
            part, i, failure, etype, text = outcomes.popleft()
            k = len(part) if i < 0 else 1
            n += k
            if part.kind == "new":
                if failure is None:
                    part.owner.delivered(k)
                else:
                    for j in range(part.lo, part.hi) if i < 0 else (i,):
                        runner.failed(part.owner, part.record_at(j), failure, etype, text)
            elif part.kind == "attempt":
                runner.attempt_done(part.owner, failure, etype, text)
            else:
                waiter: ReplayWaiter = part.owner
                waiter.settle(runner, part.entry_id, part.record_at(part.lo).topic, failure, etype, text)
        if n:
            with self._lock:
                self._held -= n


#: The highest gzip level ISA-L has; above it zlib compresses.
ISAL_MAX_LEVEL = 3


def gzip_body(data: bytes, level: int) -> bytes:
    """``data`` in the gzip format: levels 1-3 by ISA-L (several times zlib's speed, about its
    ratio), 4-9 by zlib. Both let go of the GIL while they compress, so a sender thread compresses
    while the dispatcher thread encodes."""
    if level <= ISAL_MAX_LEVEL:
        return isal_zlib.compress(data, level, 31)
    co = zlib.compressobj(level, zlib.DEFLATED, 31)
    return co.compress(data) + co.flush()


def tls_context(config: ElasticsearchSinkConfig) -> ssl.SSLContext:
    """The TLS context of https:// endpoints (``tls``: CA, verification, client certificate)."""
    return client_context("sinks.elasticsearch.tls", config.tls)
