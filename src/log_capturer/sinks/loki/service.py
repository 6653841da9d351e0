"""The Loki sink's service: records to pushes, each record's outcome to the engine.

Roles: :meth:`LokiService.prepare` (a dispatcher thread) turns a chunk into its JSON records (the
very bytes sent to Kafka, kept for the DLQ and replays) and their entries (:mod:`.push`: stream
labels, timestamp, line, tenant); :meth:`~LokiService.send` hands the entries to the service's
thread, which runs an asyncio loop with one aiohttp session: it gathers entries into pushes
(``batch_size``, ``max_request_size``, ``batch_timeout``, ``adaptive_batching``; one tenant per
push; a stream's entries in timestamp order), posts up to ``max_in_flight`` at once, reports each
entry's outcome to the runner, and runs the engine's round (``runner.tick``).

What an answer means:

- 2xx: every entry of the push is delivered.
- 429, 5xx, no answer (refused connection, ``request_timeout``): retriable
  (:attr:`Failure.RETRY`); the engine retries with back-off, and no push leaves before a
  ``Retry-After`` (429/503) has passed. A record still failing ``timeout`` after it was handed over
  is reported timed out (:attr:`Failure.TIMEOUT`), and the engine parks it
  (``dlq_config.send_on_timeout``).
- 401, 403: the credentials are refused; the circuit breaker opens at once and the entries are
  retried (nothing is lost): they leave once the credentials work again.
- 404, 405: the push endpoint is wrong: retried like a server away, shown in /health.
- 400, 413, 422 (and other 4xx): Loki refused the push. A push of several entries is split in two
  and each half sent again, down to single entries, so the good entries are delivered and only
  the refused ones are rejected (:attr:`Failure.REJECT`: parked with Loki's message). An entry
  refused for its timestamp (too old, out of order) is sent again stamped now with
  ``out_of_order_action: rewrite_timestamp``, and teaches the sink Loki's age limit
  (``timestamp_learning.learn_from_errors``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import email.utils
import itertools
import logging
import operator
import re
import ssl
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import aiohttp

from log_capturer.engine.contract import Failure, Record, Refused, ServiceState
from log_capturer.engine.outcomes import ReplayWaiter
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.sinks.base import SinkStartError
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.kafka.quiet import Repeats
from log_capturer.sinks.loki.config import LokiSinkConfig
from log_capturer.sinks.loki.push import Entry, LazyValues, Shaper, encode
from log_capturer.sinks.tls import client_context

if TYPE_CHECKING:
    from log_capturer.engine.contract import Prepared
    from log_capturer.engine.runner import Attempt, Delivery, SinkRunner
    from log_capturer.reliability.dlq.replay import ReplayRecord

log = logging.getLogger(__name__)
_SIZE = operator.attrgetter("size")
_TENANT = operator.attrgetter("tenant")

#: The longest ``Retry-After`` honoured (a longer one is cut to this; the engine's back-off is the same).
MAX_RETRY_AFTER = 30.0
#: Loki's words for an entry refused for its timestamp.
TIMESTAMP_ERROR = re.compile(
    r"too old|out of order|too far behind|too far in the future|greater than.*max.*age|"
    r"timestamp.*(reject|outside)",
    re.IGNORECASE,
)
#: Loki's "oldest acceptable timestamp is: 2024-05-01T10:00:00Z".
OLDEST_ACCEPTABLE = re.compile(r"oldest acceptable timestamp is:?\s*([0-9T:.+\-Z]+)", re.IGNORECASE)
#: Statuses that refuse a push for what it carries (split, then reject entry by entry).
REFUSING = frozenset({400, 413, 422})


class LokiPrepared:
    """A chunk's records as entries, and those refused before sending."""

    __slots__ = ("chunk", "counts", "entries", "nbytes", "refused")

    def __init__(self, chunk: Chunk, entries: list[Entry], refused: list[Refused], destination: str) -> None:
        self.chunk = chunk
        self.entries = entries
        self.refused = refused
        # Lazy entries hold their lines (the records are made if one is parked or sent again).
        lazy = bool(entries) and entries[0].lazy
        held = sum(map(_SIZE, entries)) if lazy else sum(len(e.value) for e in entries)
        self.nbytes = held + sum(len(r.record.value) for r in refused)
        self.counts = {destination: len(chunk.lines)}


def retry_after(value: str | None) -> float:
    """Seconds of a ``Retry-After`` header (a number of seconds or an HTTP date); 0 when none."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def learned_max_age(text: str, now: float) -> float | None:
    """The age limit (seconds) Loki's 'oldest acceptable timestamp is: ...' states, if it does."""
    m = OLDEST_ACCEPTABLE.search(text)
    if not m:
        return None
    from datetime import datetime

    stamp = m.group(1).rstrip(".,")
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return now - when.timestamp()


class LokiService:
    """See the module's docstring."""

    def __init__(
        self,
        config: LokiSinkConfig,
        key_field: str | None,
        name: str,
        metrics: Metrics,
        sink_type: str,
    ) -> None:
        self.config = config
        self.key_field = key_field
        self.name = name
        self.metrics = metrics
        self.sink_type = sink_type
        self.shaper = Shaper(config)
        #: What the DLQ entries and the per-destination metrics call this sink's destination.
        self.default_destination = config.destination
        self.url = config.push_url
        self._runner: SinkRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, str] = {}
        #: Lists of entries handed over by the dispatcher threads (a chunk's at a time).
        self._incoming: collections.deque[list[Entry]] = collections.deque()
        self._pending: collections.deque[Entry] = collections.deque()
        self._pending_bytes = 0
        self._oldest = 0.0
        self._split: collections.deque[list[Entry]] = collections.deque()
        self._in_flight = 0
        self._hold_until = 0.0
        self._last_probe = 0.0
        self._woken = False
        self._flush_now = False
        self._idle = False
        self._answered = False
        self._stopping = False
        self._held_lock = threading.Lock()
        self._held = 0
        self._repeats = Repeats(window=300.0)
        self._streams_seen = 0
        self._overflow_logged = 0
        #: Records still failing this long after they were handed over are reported timed out,
        #: so the engine parks them (0: never; the sink sets it when it parks what times out).
        self.park_after = 0.0
        #: Why pushes fail for the server's sake ('' once one succeeds), and a credentials refusal.
        self.failing = ""
        self.auth_error = ""
        self.last_error = ""
        self.thread_error = ""
        self.stopped = False
        ab = config.adaptive_batching
        self.adaptive = ab.enabled
        self.batch_limit = (ab.max_batch_size or config.batch_size) if ab.enabled else config.batch_size
        self.first_limit = ab.initial_batch_size or self.batch_limit if ab.enabled else self.batch_limit
        self.delay = (ab.max_flush_delay or config.batch_timeout) if ab.enabled else config.batch_timeout
        self.min_batch = ab.min_batch_size
        self.min_delay = ab.min_flush_delay
        # Figures for /stats.
        self.requests = 0
        self.pushed = 0
        self.bytes_sent = 0
        self.splits = 0
        self.rejected = 0
        self.rewritten = 0
        self.throttled = 0

    @property
    def runner(self) -> SinkRunner:
        assert self._runner is not None, "not started"
        return self._runner

    # -- lifecycle -----------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("https://"):
            return False
        return client_context("sinks.loki.tls", self.config.tls)

    def _auth_headers(self) -> dict[str, str]:
        auth = self.config.auth
        headers = dict(self.config.headers)
        if auth.type == "basic":
            pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif auth.type == "bearer":
            headers["Authorization"] = f"Bearer {auth.token.get_secret_value()}"
        headers.setdefault("User-Agent", "log-capturer")
        return headers

    def start(self, runner: SinkRunner) -> None:
        self._runner = runner
        self._headers = self._auth_headers()
        ssl_ctx = self._ssl()
        self._thread = threading.Thread(
            target=self._run, args=(ssl_ctx,), name=f"{self.name}-loop", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise SinkStartError("sinks.loki: the sink's thread did not start")

    def _run(self, ssl_ctx: ssl.SSLContext | bool) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(ssl_ctx))
        finally:
            loop.close()

    async def _main(self, ssl_ctx: ssl.SSLContext | bool) -> None:
        self._wake = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=self.config.max_in_flight + 1, ssl=ssl_ctx)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            self._ready.set()
            while not (self._stopping and self._in_flight == 0):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.01)
                self._wake.clear()
                self._woken = False  # before the round drains what the wake was for
                try:
                    self._round(tasks)
                    self.thread_error = ""
                except Exception as exc:  # a bug: counted and logged, the thread goes on
                    self.thread_error = f"{type(exc).__name__}: {exc}"
                    self.runner.unexpected("engine_round", exc)
                    await asyncio.sleep(0.1)
            if tasks:
                await asyncio.wait(tasks, timeout=self.config.request_timeout + 1)

    def _wakeup(self) -> None:
        """Wake the loop from another thread (once until it ran: it drains whatever came since)."""
        if self._woken:
            return
        self._woken = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the sink stopped
                loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        self.stopped = True
        self._stopping = True
        self._wakeup()
        if self._thread is not None:
            self._thread.join(self.config.request_timeout + 5)
        if self._thread is None or not self._thread.is_alive():
            # What was never pushed stays unacknowledged (read again after a restart). The entries
            # go now: made in C, they are outside the cyclic collector, so entries left here
            # would keep their owners, and through them the sink, alive after a reload.
            self._incoming.clear()
            self._pending.clear()
            self._split.clear()

    # -- the engine's calls --------------------------------------------------------------------
    def records_of(self, chunk: Chunk) -> list[Record]:
        dest = self.default_destination
        return [Record(dest, value, None) for value in encode_chunk(chunk, self.key_field)]

    def prepare(self, chunk: Chunk) -> LokiPrepared:
        # The line is the message: the records are encoded only if one is parked or sent again.
        values = (
            LazyValues(chunk, self.key_field)
            if self.shaper.lazy_values
            else encode_chunk(chunk, self.key_field)
        )
        entries, refused = self.shaper.entries(chunk, values)
        return LokiPrepared(chunk, entries, refused, self.default_destination)

    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        assert isinstance(prepared, LokiPrepared)
        for e in prepared.entries:
            e.owner = delivery
        self._hand(prepared.entries)
        return prepared.refused

    def _hand(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self._held_lock:
            self._held += len(entries)
        self._incoming.append(entries)
        self._wakeup()

    def _entry_again(self, record: Record) -> Entry | str:
        """A record sent again as an entry, checked for age like a new one; or why it is refused."""
        entry = self.shaper.entry_of(record)
        cutoff, clamp = self.shaper.age_cutoff()
        if cutoff and entry.ts < cutoff:
            if not clamp:
                return self.shaper.too_old_text(entry.ts)
            entry.ts = time.time_ns()
            entry.rewritten = True
        return entry

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        try:
            entry = self._entry_again(attempt.record)
        except (ValueError, UnicodeError) as exc:
            self.runner.attempt_done(attempt, Failure.REJECT, "marshal_error", f"cannot be sent: {exc}")
            return True
        if isinstance(entry, str):
            self.runner.attempt_done(attempt, Failure.REJECT, "timestamp_too_old", entry)
            return True
        entry.kind, entry.owner = "attempt", attempt
        if alone:
            with self._held_lock:
                self._held += 1
            self._split.append([entry])
            self._wakeup()
        else:
            self._hand([entry])
        return True

    def dead_letter(self, attempt: Attempt) -> bool | None:
        return None  # Loki has no dead-letter output: the engine parks in the local store

    def idle(self) -> None:
        self._idle = True
        self._wakeup()

    def flush_soon(self) -> None:
        self._flush_now = True
        self._wakeup()

    def queued(self) -> int:
        return self._held

    def state(self) -> ServiceState:
        dead = self._thread is not None and not self._thread.is_alive() and not self._stopping
        if self.auth_error:
            unreachable_as = f"Loki refuses the sink's credentials ({self.auth_error})"
        else:
            unreachable_as = f"Loki at {self.default_destination} does not take pushes"
        return ServiceState(
            unreachable=bool(self.failing or self.auth_error),
            unreachable_as=unreachable_as,
            thread_error=self.thread_error,
            thread_dead=dead,
            last_error=self.auth_error or self.failing or self.last_error,
            details={
                "url": self.default_destination,
                "push_format": self.config.push_format,
                "line": self.config.line_encoding.codec,
                "streams": self.shaper.streams(),
                "in_flight": self._in_flight,
            },
        )

    def probe(self) -> str:
        """An empty push: Loki answers 204 when it is there and takes the credentials."""
        loop, session = self._loop, self._session
        if loop is None or session is None or self._stopping:
            return "the sink is stopping"
        fut = asyncio.run_coroutine_threadsafe(self._post_raw([], self.config.tenant_id), loop)
        try:
            status, text, _ = fut.result(self.config.request_timeout + 1)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            self.failing = self.auth_error = ""
            return ""
        return text

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.default_destination,
            "requests": self.requests,
            "entries_pushed": self.pushed,
            "bytes_sent": self.bytes_sent,
            "streams": self.shaper.streams(),
            "stream_overflow": self.shaper.overflowed,
            "splits": self.splits,
            "entries_rejected": self.rejected,
            "timestamps_rewritten": self.rewritten,
            "throttled": self.throttled,
            "max_age_seconds": round(self.shaper.max_age_ns / 1e9),
        }

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Push parked records again."""
        if self.stopped:
            return {r.entry_id: "the sink is stopped" for r in records}
        waiter = ReplayWaiter()
        entries: list[Entry] = []
        for r in records:
            try:
                entry = self._entry_again(Record(r.topic, r.value, r.key))
            except (ValueError, UnicodeError) as exc:
                waiter.results[r.entry_id] = f"cannot be sent: {exc}"
                continue
            if isinstance(entry, str):
                waiter.results[r.entry_id] = entry
                continue
            entry.kind, entry.owner, entry.entry_id = "replay", waiter, r.entry_id
            entries.append(entry)
        waiter.expected = len(waiter.results) + len(entries)
        if not entries:
            return waiter.results
        self._hand(entries)
        self.flush_soon()
        waiter.done.wait(timeout)
        return {r.entry_id: waiter.results.get(r.entry_id, "not pushed within the timeout") for r in records}

    # -- the loop's round ----------------------------------------------------------------------
    def _round(self, tasks: set[asyncio.Task[None]]) -> None:
        now = time.monotonic()
        incoming = self._incoming
        if incoming:
            if not self._pending:
                self._oldest = now
            pending = self._pending
            while incoming:
                entries = incoming.popleft()
                pending.extend(entries)
                self._pending_bytes += sum(map(_SIZE, entries))
        self.runner.tick(now)
        self._note_streams()
        if (
            (self.failing or self.auth_error)
            and not self._in_flight
            and not self._pending
            and not self._split
            and now - self._last_probe >= 1.0
        ):
            # Nothing is being pushed (all parked, or waiting for a back-off): an empty push
            # finds out when Loki takes pushes again (the DLQ's replay waits for that).
            self._last_probe = now
            self._in_flight += 1
            task = asyncio.ensure_future(self._probe_push())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if now < self._hold_until:
            return  # Retry-After
        while self._in_flight < self.config.max_in_flight:
            if self._split:
                batch = self._split.popleft()
            elif self._due(now):
                batch = self._take()
            else:
                break
            for tenant, entries in self._by_tenant(batch).items():
                self._in_flight += 1
                task = asyncio.ensure_future(self._post(entries, tenant))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if not self._pending and not self._split:
            self._flush_now = False

    def _due(self, now: float) -> bool:
        n = len(self._pending)
        if not n:
            return False
        limit = self.batch_limit if self._answered else self.first_limit
        if n >= limit or self._pending_bytes >= self.config.max_request_size or self._flush_now:
            return True
        age = now - self._oldest
        if age >= self.delay:
            return True
        if self.adaptive and self._idle and self._in_flight == 0:
            return (n >= self.min_batch and age >= self.min_delay) or age >= self.delay
        return False

    def _take(self) -> list[Entry]:
        limit = self.batch_limit if self._answered else self.first_limit
        max_bytes = self.config.max_request_size
        pending = self._pending
        batch = list(itertools.islice(pending, limit))
        size = sum(map(_SIZE, batch))
        if size > max_bytes:  # up to the byte limit (the first entry goes in any case)
            size = 0
            for i, e in enumerate(batch):
                if i and size + e.size > max_bytes:
                    del batch[i:]
                    break
                size += e.size
        if len(batch) == len(pending):
            pending.clear()
        else:
            popleft = pending.popleft
            for _ in itertools.repeat(None, len(batch)):
                popleft()
        self._pending_bytes -= size
        if pending:
            self._oldest = time.monotonic()
        else:
            self._idle = False
        return batch

    @staticmethod
    def _by_tenant(batch: list[Entry]) -> dict[str, list[Entry]]:
        tenants = set(map(_TENANT, batch))
        if len(tenants) == 1:
            return {tenants.pop(): batch}
        out: dict[str, list[Entry]] = {}
        for e in batch:
            out.setdefault(e.tenant, []).append(e)
        return out

    def _note_streams(self) -> None:
        streams = self.shaper.streams()
        if streams != self._streams_seen:
            self._streams_seen = streams
            self.metrics.loki_streams.labels(self.sink_type).set(streams)
        overflowed = self.shaper.overflowed
        if overflowed != self._overflow_logged:
            new = overflowed - self._overflow_logged
            self._overflow_logged = overflowed
            self.metrics.loki_stream_overflow.labels(self.sink_type).inc(new)
            text = (
                f"max_streams={self.config.max_streams} reached: entries with new label sets are sent "
                f'under stream_overflow="true" (their labels stay in their lines)'
            )
            if self._repeats.admit(text) is not None:
                log.warning("%s: %s (%d so far)", self.name, text, overflowed, extra={"sink": self.name})

    # -- pushes --------------------------------------------------------------------------------
    async def _post_raw(self, entries: list[Entry], tenant: str) -> tuple[int, str, str | None]:
        """Post one push: (status or 0 when no answer came, the answer's text or the error, Retry-After)."""
        session = self._session
        assert session is not None
        body, content, raw_size = encode(entries, self.config, self.shaper)
        headers = {**self._headers, **content}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        m = self.metrics
        started = time.monotonic()
        try:
            async with session.post(self.url, data=body, headers=headers) as resp:
                status = resp.status
                text = (await resp.text(errors="replace")).strip()
                after = resp.headers.get("Retry-After")
        except TimeoutError:
            status, text, after = (
                0,
                f"no answer within request_timeout={self.config.request_timeout:g}s",
                None,
            )
        except (aiohttp.ClientError, OSError) as exc:
            status, text, after = 0, f"cannot reach {self.default_destination}: {exc}", None
        m.sink_request_duration.labels(self.sink_type).observe(time.monotonic() - started)
        m.sink_requests.labels(self.sink_type, str(status) if status else "error").inc()
        m.sink_request_bytes.labels(self.sink_type, "wire").inc(len(body))
        m.sink_request_bytes.labels(self.sink_type, "raw").inc(raw_size)
        self.requests += 1
        self.bytes_sent += len(body)
        return status, text[:2000], after

    async def _probe_push(self) -> None:
        try:
            status, text, _ = await self._post_raw([], self.config.tenant_id)
        except Exception as exc:  # a bug: counted, logged
            self.runner.unexpected("probe_failed", exc)
            return
        finally:
            self._in_flight -= 1
        if 200 <= status < 300:
            self.failing = self.auth_error = ""
        else:
            self.last_error = f"HTTP {status}: {text}" if status else text

    async def _post(self, entries: list[Entry], tenant: str) -> None:
        try:
            status, text, after = await self._post_raw(entries, tenant)
        except Exception as exc:  # a bug (encoding): retried, counted, logged
            self.runner.unexpected("push_failed", exc)
            status, text, after = 0, f"{type(exc).__name__}: {exc}", None
        finally:
            self._in_flight -= 1
        try:
            self._outcome(entries, status, text, after)
        finally:
            if self._wake is not None:
                self._wake.set()

    def _outcome(self, entries: list[Entry], status: int, text: str, after: str | None) -> None:
        if 200 <= status < 300:
            self._answered = True
            self.failing = self.auth_error = ""
            self.pushed += len(entries)
            self._delivered(entries)
            return
        what = f"HTTP {status}: {text}" if status else text
        self.last_error = what
        if status in (401, 403):
            self.auth_error = what
            self.runner.breaker.trip(f"Loki refused the credentials: {what}")
            self._failed(entries, Failure.RETRY, f"http_{status}", what)
            return
        if status in REFUSING or (400 <= status < 500 and status not in (404, 405, 408, 429)):
            self._refused(entries, status, text)
            return
        if status in (429, 503):
            wait = retry_after(after)
            if status == 429:
                self.throttled += 1
            if wait:
                self._hold_until = max(self._hold_until, time.monotonic() + wait)
        if status != 429:
            self.failing = what
        self._failed(entries, Failure.RETRY, f"http_{status}" if status else "connection", what)

    def _refused(self, entries: list[Entry], status: int, text: str) -> None:
        """Loki refused the push for what it carries: split it, down to the refused entries."""
        if len(entries) > 1:
            self.splits += 1
            half = len(entries) // 2
            self._split.appendleft(entries[half:])
            self._split.appendleft(entries[:half])
            return
        entry = entries[0]
        what = f"Loki refused the entry (HTTP {status}): {text}"
        if TIMESTAMP_ERROR.search(text):
            self._learn(text)
            if self.config.out_of_order_action == "rewrite_timestamp" and not entry.rewritten:
                entry.ts = time.time_ns()
                entry.rewritten = True
                self.rewritten += 1
                self._split.appendleft([entry])
                return
            self.rejected += 1
            self._failed(entries, Failure.REJECT, "timestamp_rejected", what)
            return
        self.rejected += 1
        self._failed(entries, Failure.REJECT, f"http_{status}", what)

    def _learn(self, text: str) -> None:
        tl = self.config.timestamp_learning
        if not (tl.enabled and tl.learn_from_errors):
            return
        age = learned_max_age(text, time.time())
        if age is None:
            return
        age = max(age, tl.min_learning_window)
        ns = int(age * 1e9)
        if ns < self.shaper.max_age_ns or self.shaper.max_age_ns <= 0:
            log.info(
                "%s: learned from Loki that entries older than %.0fs are refused",
                self.name,
                age,
                extra={"sink": self.name},
            )
            self.shaper.max_age_ns = ns

    # -- outcomes ------------------------------------------------------------------------------
    def _settled(self, n: int) -> None:
        with self._held_lock:
            self._held -= n

    def _delivered(self, entries: Iterable[Entry]) -> None:
        runner = self.runner
        owner: Any = None
        k = n = 0
        for e in entries:
            n += 1
            if e.kind == "new":
                if e.owner is owner:
                    k += 1
                    continue
                if owner is not None:
                    owner.delivered(k)
                owner, k = e.owner, 1
            elif e.kind == "attempt":
                runner.attempt_done(e.owner, None)
            else:
                self._replayed(e, None, "", "")
        self._settled(n)
        if owner is not None:
            owner.delivered(k)

    def _failed(self, entries: list[Entry], failure: Failure, etype: str, text: str) -> None:
        runner = self.runner
        now = time.monotonic()
        park_after = self.park_after
        for e in entries:
            f = failure
            if e.kind == "replay":
                self._replayed(e, f, etype, text)
                continue
            started = e.owner.started if e.kind == "new" else e.owner.delivery.started
            if f is Failure.RETRY and park_after and now - started >= park_after:
                f = Failure.TIMEOUT
            if e.kind == "new":
                runner.failed(e.owner, e.record, f, etype, text)
            else:
                runner.attempt_done(e.owner, f, etype, text)
        self._settled(len(entries))

    def _replayed(self, e: Entry, failure: Failure | None, etype: str, text: str) -> None:
        waiter: ReplayWaiter = e.owner
        waiter.settle(self.runner, e.entry_id, e.dest, failure, etype, text)
