"""Load generator: reproducible log lines at a steady rate into a file, Kafka, HTTP or syslog.

Every line carries its sequence number (``seq``, from 0) and its emit time
(RFC 3339 UTC with microseconds, the moment its batch was handed to the
target), so a consumer can count lost and duplicated lines and measure
end-to-end latency. Everything else in a line (format, level, tenant, words)
depends only on the seed, the options and ``seq``: the same command writes the
same lines, apart from the times.

Line shapes (``--line-bytes`` pads the message to the requested length)::

    json    {"time":"2026-11-25T07:00:00.123456Z","level":"info","seq":42,"tenant_id":"tenant-03","msg":"..."}
    logfmt  time=2026-11-25T07:00:00.123456Z level=info seq=42 tenant_id=tenant-03 msg="..."
    plain   2026-11-25T07:00:00.123456Z INFO [tenant-03] seq=42 ...

``mixed`` is what a real host writes: 40 % plain text, 30 % logfmt, 30 % JSON, line lengths
spread evenly from 0.53x to 2x ``--line-bytes`` (80-300 bytes at the default 150), and one
line in a thousand an error followed by a Java stack trace (5-12 more lines: the exception,
``\tat ...`` frames, ``Caused by:``, ``\t... N more``; the ``java`` multiline preset joins them
to their line). Its plain and logfmt lines look like an application's::

    2026-11-25T07:00:00.123456Z WARN [worker-3] c.e.orders.OrderService - seq=42 tenant_id=tenant-03 ...
    ts=2026-11-25T07:00:00.123456Z level=info caller=orders/main.go:18 seq=42 tenant_id=tenant-03 msg="..."

A line of level ``none`` has no level (no ``level`` member, no level word).

Pacing works in ticks (10 ms at high rates): each tick writes, in one call,
every line that is due by then, so the rate stays exact at hundreds of
thousands of lines per second. ``rate=0`` writes as fast as the target takes.
"""

from __future__ import annotations

import http.client
import os
import queue
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

Format = Literal["json", "logfmt", "plain", "mixed"]
FORMATS: tuple[str, ...] = ("json", "logfmt", "plain", "mixed")
LEVELS: tuple[str, ...] = ("trace", "debug", "info", "warn", "error", "fatal", "critical", "none")
DEFAULT_LEVELS = "trace=2,debug=10,info=60,warn=15,error=10,fatal=1,critical=1,none=1"
TENANTS = 16
#: Bodies of the http target: NDJSON, or msgpack as Fluent Bit's http output sends it.
HTTP_FORMATS = ("ndjson", "msgpack", "otlp")
#: The generator's levels as OTLP severity numbers (critical has none: sent as severity_text).
OTLP_SEVERITY = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
#: Records of the forward target: ``fields`` ({log, level, labels}, as the http target's msgpack)
#: or ``log`` ({log} only: Fluent Bit tailing the generated file).
FORWARD_RECORDS = ("fields", "log")
POOL_SIZE = 4096
#: Shares of the ``mixed`` format (the issue's realistic host).
MIXED_SHARES = (("plain", 0.4), ("logfmt", 0.3), ("json", 0.3))
#: Lengths of ``mixed`` lines, as fractions of ``line_bytes`` (80-300 bytes at 150).
MIXED_SPREAD = (80 / 150, 300 / 150)
#: One ``mixed`` line in this many (of the pool's) is an error followed by a stack trace.
TRACE_EVERY = 1000
#: Time to write the due lines in one go; smaller = finer emit times, more calls.
TICK = 0.01
#: Most lines built and written in one call (also the batch size when rate=0).
MAX_BATCH = 20_000
#: ... and at most about this many bytes (long lines: a batch of 64 KiB lines stays small).
MAX_BATCH_BYTES = 16 << 20

# Words for message bodies. None is, or starts with, a level word the agent recognises
# (error, err, warn, info, inf, fine, crit, alert, panic, notice, ...), so a line's level is
# only the one the generator put there.
_WORD_TEXT = (
    "user session request handled cache lookup order payment shipment queue worker started "
    "completed latency bytes client upstream route gateway account checkout invoice token "
    "refresh stream partition offset commit batch flushed connection opened closed pool lease "
    "renewed schedule job tick metrics export snapshot index query rows scanned page served "
    "tenant region replica leader follower heartbeat status ok took ms id span"
)
_WORDS = tuple(_WORD_TEXT.split())

# RFC 5424 severities: fatal -> alert, none -> notice.
SYSLOG_SEVERITY = {
    "trace": 7,
    "debug": 7,
    "info": 6,
    "warn": 4,
    "error": 3,
    "fatal": 1,
    "critical": 2,
    "none": 5,
}


class GenerateError(RuntimeError):
    """The generator cannot go on (bad option, target refused the lines); the message says why."""


def parse_levels(text: str) -> tuple[tuple[str, float], ...]:
    """``"info=70,error=30"`` -> weights; every name must be one of :data:`LEVELS`."""
    out: list[tuple[str, float]] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip().lower()
        if name not in LEVELS:
            raise GenerateError(f"unknown level {name!r} in --levels; use {', '.join(LEVELS)}")
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise GenerateError(f"weight of {name!r} in --levels is not a number: {weight!r}") from None
        if w < 0:
            raise GenerateError(f"weight of {name!r} in --levels is negative")
        out.append((name, w))
    if not out or sum(w for _, w in out) <= 0:
        raise GenerateError("--levels needs at least one level with a positive weight, e.g. info=1")
    return tuple(out)


def rfc3339_us(ns: int) -> str:
    """Epoch nanoseconds -> ``2026-11-25T07:00:00.123456Z``."""
    sec, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{rem // 1000:06d}Z"


#: Finds a generated line's emit time and sequence number in any format, also inside a JSON
#: string (where the line's quotes appear as \"). The time always comes before ``seq``.
LINE_MARK = re.compile(rb'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z.*?seq\\?"?[=:](\d+)')


@dataclass(frozen=True)
class _Template:
    fmt: str
    level: str
    tenant: str
    pre: str  # before the emit time
    mid: str  # between the emit time and seq
    fields: str  # after seq: tenant and the start of the message
    words: str  # message words, cut to fit line_bytes
    end: str
    fixed: int  # length of pre + mid + fields + end
    size: int = 0  # the line's length (0: the factory's line_bytes)


@dataclass(frozen=True)
class Batch:
    """Lines ``first_seq ..`` with one emit time; ``levels[i]`` and ``tenants[i]`` belong to line i."""

    first_seq: int
    emit_ns: int
    lines: list[str]
    levels: list[str]
    tenants: list[str]


class LineFactory:
    """Builds the lines of a run; the content of line ``seq`` depends only on the options."""

    def __init__(
        self,
        fmt: str = "json",
        line_bytes: int = 150,
        levels: str | Sequence[tuple[str, float]] = DEFAULT_LEVELS,
        seed: int = 1,
        keys: int | None = None,
    ) -> None:
        """``keys``: the number of distinct ``tenant_id`` values (the bench's record key); None
        keeps the pool's (16). Line ``seq`` gets ``tenant-<n>`` with n spread over 0..keys-1."""
        if fmt not in FORMATS:
            raise GenerateError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
        if line_bytes < 1:
            raise GenerateError("--line-bytes must be positive")
        self.fmt = fmt
        self.line_bytes = line_bytes
        self.level_weights = parse_levels(levels) if isinstance(levels, str) else tuple(levels)
        self.seed = seed
        if keys is not None and not 1 <= keys <= 10_000_000:
            raise GenerateError("--keys must be between 1 and 10,000,000")
        self.keys = keys
        rng = random.Random(seed)
        names = [n for n, _ in self.level_weights]
        weights = [w for _, w in self.level_weights]
        if fmt == "mixed":
            self._pool = [
                self._mixed_template(rng, names, weights, i % TRACE_EVERY == TRACE_EVERY // 2)
                for i in range(POOL_SIZE)
            ]
        else:
            self._pool = [self._template(rng, fmt, rng.choices(names, weights)[0]) for _ in range(POOL_SIZE)]

    def _template(self, rng: random.Random, fmt: str, level: str) -> _Template:
        tenant = f"tenant-{rng.randrange(TENANTS):02d}"
        words = " ".join(rng.choice(_WORDS) for _ in range(self.line_bytes // 3 + 8))
        if fmt == "json":
            lvl = "" if level == "none" else f'"level":"{level}",'
            pre, mid, fields, end = '{"time":"', f'",{lvl}"seq":', f',"tenant_id":"{tenant}","msg":"', '"}'
        elif fmt == "logfmt":
            lvl = "" if level == "none" else f" level={level}"
            pre, mid, fields, end = "time=", f"{lvl} seq=", f' tenant_id={tenant} msg="', '"'
        else:
            lvl = "" if level == "none" else f" {level.upper()}"
            pre, mid, fields, end = "", f"{lvl} [{tenant}] seq=", " ", ""
        fixed = len(pre) + len(mid) + len(fields) + len(end)
        return _Template(fmt, level, tenant, pre, mid, fields, words, end, fixed)

    def _mixed_template(
        self, rng: random.Random, names: list[str], weights: list[float], trace: bool
    ) -> _Template:
        """A ``mixed`` line; with ``trace``, an error in plain text followed by a stack trace."""
        fmt = rng.choices([f for f, _ in MIXED_SHARES], [w for _, w in MIXED_SHARES])[0]
        level = rng.choices(names, weights)[0]
        lo, hi = MIXED_SPREAD
        size = rng.randint(max(1, round(self.line_bytes * lo)), max(1, round(self.line_bytes * hi)))
        if trace:
            fmt, level = "plain", "error"
        tenant = f"tenant-{rng.randrange(TENANTS):02d}"
        words = " ".join(rng.choice(_WORDS) for _ in range(size // 3 + 8))
        end = ""
        if fmt == "json":
            lvl = "" if level == "none" else f'"level":"{level}",'
            pre, mid, fields, end = '{"time":"', f'",{lvl}"seq":', f',"tenant_id":"{tenant}","msg":"', '"}'
        elif fmt == "logfmt":
            lvl = "" if level == "none" else f" level={level}"
            caller = f"{rng.choice(_WORDS)}/{rng.choice(_WORDS)}.go:{rng.randrange(20, 900)}"
            pre, mid = "ts=", f"{lvl} caller={caller} seq="
            fields = f' tenant_id={tenant} took_ms={rng.randrange(1, 2000)} msg="'
            end = '"'
        else:
            lvl = "" if level == "none" else f" {level.upper()}"
            logger = f"c.e.{rng.choice(_WORDS)}.{rng.choice(_WORDS).title()}Service"
            pre, mid = "", f"{lvl} [worker-{rng.randrange(16)}] {logger} - seq="
            fields = f" tenant_id={tenant} "
        fixed = len(pre) + len(mid) + len(fields) + len(end)
        if trace:  # after the line, not counted in its length
            end = _stack_trace(rng)
        return _Template(fmt, level, tenant, pre, mid, fields, words, end, fixed, size)

    def level_of(self, seq: int) -> str:
        return self._pool[seq % POOL_SIZE].level

    def tenant_of(self, seq: int) -> str:
        if self.keys is not None:
            return self._key_of(seq)
        return self._pool[seq % POOL_SIZE].tenant

    def _key_of(self, seq: int) -> str:
        # Consecutive lines get scattered keys, each key as often as the others (7919 is prime:
        # seq * 7919 runs through every residue unless keys is a multiple of it).
        return f"tenant-{seq * 7919 % self.keys if self.keys else 0:05d}"

    def format_of(self, seq: int) -> str:
        return self._pool[seq % POOL_SIZE].fmt

    def batch(self, first_seq: int, count: int, emit_ns: int) -> Batch:
        """Lines ``first_seq .. first_seq+count-1``, each exactly ``line_bytes`` long when the
        fields fit (otherwise as short as the fields allow)."""
        ts = rfc3339_us(emit_ns)
        size = self.line_bytes - len(ts)
        len_ts = len(ts)
        pool = self._pool
        lines: list[str] = []
        levels: list[str] = []
        tenants: list[str] = []
        add_line = lines.append
        add_level = levels.append
        add_tenant = tenants.append
        if self.keys is not None:
            return self._keyed_batch(first_seq, count, emit_ns, ts, size)
        for seq in range(first_seq, first_seq + count):
            t = pool[seq % POOL_SIZE]
            s = str(seq)
            room = (t.size - len_ts if t.size else size) - t.fixed - len(s)
            add_line(f"{t.pre}{ts}{t.mid}{s}{t.fields}{t.words[: max(room, 0)]}{t.end}")
            add_level(t.level)
            add_tenant(t.tenant)
        return Batch(first_seq, emit_ns, lines, levels, tenants)

    def _keyed_batch(self, first_seq: int, count: int, emit_ns: int, ts: str, size: int) -> Batch:
        """:meth:`batch` with ``keys`` tenants: the pool's tenant replaced by the line's own."""
        pool = self._pool
        lines: list[str] = []
        levels: list[str] = []
        tenants: list[str] = []
        for seq in range(first_seq, first_seq + count):
            t = pool[seq % POOL_SIZE]
            s = str(seq)
            tenant = self._key_of(seq)
            fields = t.fields.replace(t.tenant, tenant, 1)
            room = size - t.fixed - len(s) - (len(fields) - len(t.fields))
            lines.append(f"{t.pre}{ts}{t.mid}{s}{fields}{t.words[: max(room, 0)]}{t.end}")
            levels.append(t.level)
            tenants.append(tenant)
        return Batch(first_seq, emit_ns, lines, levels, tenants)


def _stack_trace(rng: random.Random) -> str:
    """A Java exception's trace, as the lines after its log line: ``\n``-separated, 5-12 lines."""
    pkg = f"com.example.{rng.choice(_WORDS)}"
    cls = f"{rng.choice(_WORDS).title()}Service"
    exc = rng.choice(
        ("java.lang.IllegalStateException", "java.io.UncheckedIOException", "java.lang.RuntimeException")
    )
    out = [f"{exc}: {' '.join(rng.choice(_WORDS) for _ in range(4))}"]
    out += [
        f"\tat {pkg}.{cls}.{rng.choice(_WORDS)}({cls}.java:{rng.randrange(20, 900)})"
        for _ in range(rng.randrange(3, 8))
    ]
    if rng.random() < 0.5:
        out.append(f"Caused by: java.net.SocketTimeoutException: {rng.choice(_WORDS)} timed out")
        out.append(f"\tat java.base/java.net.Socket.connect(Socket.java:{rng.randrange(500, 700)})")
    out.append(f"\t... {rng.randrange(5, 40)} more")
    return "\n" + "\n".join(out)


def _run_prepared(
    factory: LineFactory, target: Target, rate: float, count: int | None, progress: Progress | None
) -> Summary:
    """:func:`run` with ``prepare``: encode everything, then send it all."""
    if rate != 0 or count is None:
        raise GenerateError("--prepare needs --rate 0 and a --count")
    if not isinstance(target, PreparedTarget):
        raise GenerateError(f"--prepare works with the http and forward targets, not {target.name}")
    started_at = time.time()
    begun = time.monotonic()
    sent = 0
    try:
        n = max(1, min(MAX_BATCH, MAX_BATCH_BYTES // max(factory.line_bytes, 1)))
        while sent < count:
            sent += target.prepare(factory.batch(sent, min(n, count - sent), time.time_ns()))
        start = time.monotonic()
        target.send_prepared()
    finally:
        info = target.close()
    seconds = time.monotonic() - start
    if progress is not None:
        progress(sent, seconds)
    info = {**info, "prepared": True, "prepare_seconds": round(start - begun, 3)}
    return _summary(target.name, sent, seconds, rate, started_at, 0.0, factory, info)


def _summary(
    name: str,
    sent: int,
    seconds: float,
    rate: float,
    started_at: float,
    max_behind: float,
    factory: LineFactory,
    info: dict[str, Any],
) -> Summary:
    """What a run of :func:`generate` reports."""
    return Summary(
        target=name,
        lines=sent,
        seconds=round(seconds, 6),
        rate=round(sent / seconds, 1) if seconds > 0 else 0.0,
        requested_rate=rate,
        first_seq=0,
        last_seq=sent - 1,
        started_at=started_at,
        max_behind=max_behind,
        format=factory.fmt,
        line_bytes=factory.line_bytes,
        seed=factory.seed,
        target_info=info,
    )


# -- targets --------------------------------------------------------------------------------------


class Target(Protocol):
    """Where batches go. ``write`` returns only when the batch was accepted (or raises)."""

    name: str

    def write(self, batch: Batch) -> None: ...

    def close(self) -> dict[str, Any]:
        """Finish (flush, wait for acknowledgements); return target-specific counters."""
        ...


@runtime_checkable
class PreparedTarget(Target, Protocol):
    """A target that can encode batches ahead and send them later (``run(prepare=True)``)."""

    def prepare(self, batch: Batch) -> int:
        """Encode ``batch`` without sending it; returns its lines."""
        ...

    def send_prepared(self) -> None:
        """Send what was prepared (``close`` waits for the answers)."""
        ...


class FileTarget:
    """Appends lines to one file, or round-robin one batch per file to several."""

    name = "file"

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise GenerateError("the file target needs --output PATH")
        self.paths = list(paths)
        self._fds: list[int] = []
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._fds.append(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        self._next = 0
        self.bytes = 0

    def write(self, batch: Batch) -> None:
        data = ("\n".join(batch.lines) + "\n").encode()
        fd = self._fds[self._next]
        self._next = (self._next + 1) % len(self._fds)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self.bytes += len(data)

    def close(self) -> dict[str, Any]:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        return {"files": [str(p) for p in self.paths], "bytes": self.bytes}


class KafkaTarget:
    """Produces each line as one record to a topic (no key), with confluent-kafka."""

    name = "kafka"

    def __init__(
        self, bootstrap: str, topic: str, acks: int = -1, compression: str = "zstd", linger_ms: int = 5
    ) -> None:
        from confluent_kafka import Producer

        from log_capturer.sinks.kafka.quiet import quiet_logger

        self.topic = topic
        self.failed = 0
        self.delivered = 0
        self.first_error = ""
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": "log-capturer-generate",
                "acks": "all" if acks == -1 else str(acks),
                "enable.idempotence": acks == -1,
                "compression.type": compression,
                "linger.ms": linger_ms,
                "queue.buffering.max.messages": 500_000,
                # A refused connection, repeated at every reconnect, is logged once per 10 s.
                "logger": quiet_logger("librdkafka"),
            }
        )
        self._check_topic(bootstrap)

    def _check_topic(self, bootstrap: str) -> None:
        """Fail at once, not after librdkafka's message timeout, when the topic is missing.
        All topics are listed (not just this one), so the request cannot auto-create it."""
        from confluent_kafka import KafkaException

        try:
            md = self._producer.list_topics(timeout=15)
        except KafkaException as exc:
            raise GenerateError(f"cannot reach Kafka at {bootstrap}: {exc.args[0].str()}") from None
        if self.topic not in md.topics:
            raise GenerateError(
                f"topic {self.topic} does not exist at {bootstrap}; create it "
                "(`log-capturer kafka create-topics` makes the design document's five) "
                "or choose another with --topic"
            )

    def _report(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)

    def write(self, batch: Batch) -> None:
        produce = self._producer.produce
        topic = self.topic
        cb = self._report
        for line in batch.lines:
            while True:
                try:
                    produce(topic, line.encode(), on_delivery=cb)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        self._producer.poll(0)

    def close(self) -> dict[str, Any]:
        left = self._producer.flush(120)
        if left or self.failed:
            raise GenerateError(
                f"Kafka did not acknowledge {left + self.failed} lines to {self.topic}"
                + (f": {self.first_error}" if self.first_error else " within 120 s")
            )
        return {"topic": self.topic, "delivered": self.delivered}


class HttpTarget:
    """POSTs batches to the agent's ingest API: NDJSON (``{message, level, labels, timestamp}``), or
    msgpack as Fluent Bit's http output sends it (``[[EventTime, {}], {log, level, labels}]``
    events, ``Content-Type: application/msgpack``); or to its OTLP input (``otlp``: an
    ``ExportLogsServiceRequest`` in protobuf, as the OpenTelemetry exporters send it, one resource
    ``service.name: loggen``, each line a log record with its severity, time and a ``tenant_id``
    attribute).

    429 and 503 (queue full) and connection errors are retried with a doubling
    back-off (0.1 s up to 5 s) for at most ``retry_for`` seconds; any other
    status is an error.

    ``in_flight`` requests are outstanding at once, each on its own keep-alive connection (as the
    OpenTelemetry Collector's exporters do with ``sending_queue.num_consumers``, 10 by default);
    ``write`` returns once its bodies are queued for the senders (at most ``in_flight`` more wait),
    ``close`` once every request was answered. :meth:`prepare` encodes a batch without sending it,
    :meth:`send_prepared` then sends what was prepared: a run whose client costs almost no CPU.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        batch_lines: int = 1000,
        retry_for: float = 60.0,
        body_format: str = "ndjson",
        in_flight: int = 1,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise GenerateError(f"--url must be http://HOST:PORT/PATH, got {url!r}")
        if body_format not in HTTP_FORMATS:
            raise GenerateError(f"--http-format must be {' or '.join(HTTP_FORMATS)}, got {body_format!r}")
        self.body_format = body_format
        self.content_type = {
            "ndjson": "application/x-ndjson",
            "msgpack": "application/msgpack",
            "otlp": "application/x-protobuf",
        }[body_format]
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/api/v1/logs"
        self.batch_lines = max(1, batch_lines)
        self.retry_for = retry_for
        self.in_flight = max(1, in_flight)
        self.requests = 0
        self.retries = 0
        self._prepared: list[bytes] = []
        self._count_lock = threading.Lock()
        #: Bodies waiting for a sender (None: the sender stops), and the first sender's error.
        self._todo: queue.Queue[bytes | None] = queue.Queue(self.in_flight)
        self._error: GenerateError | None = None
        self._senders: list[threading.Thread] = []

    def _start_senders(self) -> None:
        if not self._senders:
            for i in range(self.in_flight):
                t = threading.Thread(target=self._sender, name=f"http-sender-{i}", daemon=True)
                t.start()
                self._senders.append(t)

    def _sender(self) -> None:
        conn: list[http.client.HTTPConnection | None] = [None]
        try:
            while (body := self._todo.get()) is not None:
                if self._error is None:
                    try:
                        self._post(body, conn)
                    except GenerateError as exc:
                        self._error = exc
        finally:
            if conn[0] is not None:
                conn[0].close()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, batch: Batch) -> None:
        self._start_senders()
        for body in self._bodies(batch):
            self._check()
            self._todo.put(body)
        self._check()

    def prepare(self, batch: Batch) -> int:
        """Encode ``batch`` now, send it with :meth:`send_prepared`; returns its lines."""
        self._prepared.extend(self._bodies(batch))
        return len(batch.lines)

    def send_prepared(self) -> None:
        """Send every prepared body, ``in_flight`` at a time (:meth:`close` waits for the last)."""
        self._start_senders()
        bodies, self._prepared = self._prepared, []
        for body in bodies:
            self._check()
            self._todo.put(body)

    def _bodies(self, batch: Batch) -> list[bytes]:
        if self.body_format == "msgpack":
            return self._msgpack_bodies(batch)
        if self.body_format == "otlp":
            return self._otlp_bodies(batch)
        ts = rfc3339_us(batch.emit_ns)
        docs = []
        for line, level, tenant in zip(batch.lines, batch.levels, batch.tenants, strict=True):
            doc: dict[str, Any] = {"message": line, "timestamp": ts, "labels": {"tenant_id": tenant}}
            if level != "none":
                doc["level"] = level
            docs.append(orjson.dumps(doc))
        return [
            b"\n".join(docs[i : i + self.batch_lines]) + b"\n" for i in range(0, len(docs), self.batch_lines)
        ]

    def _msgpack_bodies(self, batch: Batch) -> list[bytes]:
        import msgpack

        seconds, nanos = divmod(batch.emit_ns, 1_000_000_000)
        head = [msgpack.ExtType(0, struct.pack(">II", seconds, nanos)), {}]
        pack = msgpack.Packer().pack
        events = []
        for line, level, tenant in zip(batch.lines, batch.levels, batch.tenants, strict=True):
            rec: dict[str, Any] = {"log": line, "labels": {"tenant_id": tenant}}
            if level != "none":
                rec["level"] = level
            events.append(pack([head, rec]))
        return [b"".join(events[i : i + self.batch_lines]) for i in range(0, len(events), self.batch_lines)]

    def _otlp_bodies(self, batch: Batch) -> list[bytes]:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        bodies: list[bytes] = []
        for i in range(0, len(batch.lines), self.batch_lines):
            request = ExportLogsServiceRequest()
            resource_logs = request.resource_logs.add()
            resource_logs.resource.attributes.add(key="service.name").value.string_value = "loggen"
            records = resource_logs.scope_logs.add().log_records
            end = i + self.batch_lines
            for line, level, tenant in zip(
                batch.lines[i:end], batch.levels[i:end], batch.tenants[i:end], strict=True
            ):
                rec = records.add()
                rec.time_unix_nano = batch.emit_ns
                rec.body.string_value = line
                number = OTLP_SEVERITY.get(level)
                if number is not None:
                    rec.severity_number = number  # type: ignore[assignment]
                elif level != "none":
                    rec.severity_text = level
                rec.attributes.add(key="tenant_id").value.string_value = tenant
            bodies.append(request.SerializeToString())
        return bodies

    def _post(self, body: bytes, conn: list[http.client.HTTPConnection | None]) -> None:
        """POST ``body`` on the sender's keep-alive connection ``conn[0]`` (made again after an
        error), retrying 429, 503 and connection errors."""
        delay = 0.1
        deadline = time.monotonic() + self.retry_for
        while True:
            status, text = 0, ""
            try:
                c = conn[0]
                if c is None:
                    c = conn[0] = http.client.HTTPConnection(self.host, self.port, timeout=30)
                c.request("POST", self.path, body, {"Content-Type": self.content_type})
                resp = c.getresponse()
                status, text = resp.status, resp.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                text = str(exc)
                if conn[0] is not None:
                    conn[0].close()
                conn[0] = None
            with self._count_lock:
                self.requests += 1
            if 200 <= status < 300:
                return
            if status and status not in (429, 503):
                raise GenerateError(f"POST {self.url} answered {status}: {text[:500]}")
            if time.monotonic() + delay > deadline:
                raise GenerateError(
                    f"POST {self.url} still refused after {self.retry_for:.0f}s "
                    f"({status or 'connection error'}: {text[:200]})"
                )
            with self._count_lock:
                self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def close(self) -> dict[str, Any]:
        for _ in self._senders:
            self._todo.put(None)
        for t in self._senders:
            t.join()
        self._senders = []
        self._check()
        return {
            "url": self.url,
            "format": self.body_format,
            "requests": self.requests,
            "retries": self.retries,
            "in_flight": self.in_flight,
        }


class ForwardTarget:
    """Sends batches over the Fluent forward protocol as Fluent Bit's ``forward`` output does with
    ``Require_ack_response on``: Forward mode messages (``[tag, [[EventTime, record], ...],
    {"chunk": id, "size": n}]``), or with ``compress`` (``Compress gzip``) CompressedPackedForward
    ones (``[tag, bin: the gzipped entries, {"chunk": id, "size": n, "compressed": "gzip"}]``),
    of at most ``batch_lines`` records ``{log, level, labels}``, each acknowledged by the agent
    (``{"ack": id}``) once its records are in the sinks. Up to ``window`` messages wait for
    their acks at once (Fluent Bit flushes several chunks at once, each waiting for its ack);
    an ack not received within ``ack_timeout`` is an error (a client would resend).
    :meth:`prepare` encodes a batch's messages without sending them, :meth:`send_prepared`
    then sends what was prepared: a run whose client costs almost no CPU.
    """

    name = "forward"

    def __init__(
        self,
        host: str,
        port: int,
        batch_lines: int = 1000,
        tag: str = "loggen",
        compress: bool = False,
        window: int = 4,
        ack_timeout: float = 60.0,
        record: str = "fields",
    ) -> None:
        import msgpack

        if record not in FORWARD_RECORDS:
            raise GenerateError(f"--forward-record must be {' or '.join(FORWARD_RECORDS)}, got {record!r}")
        self.record = record

        self.addr = (host, port)
        self.batch_lines = max(1, batch_lines)
        self.tag = tag
        self.compress = compress
        self.window = max(1, window)
        self.ack_timeout = ack_timeout
        self.messages = 0
        self.acked = 0
        self._unacked: list[str] = []
        self._prepared: list[tuple[str, bytes]] = []
        self._unpacker = msgpack.Unpacker(raw=False)
        try:
            self._sock = socket.create_connection(self.addr, timeout=ack_timeout)
        except OSError as exc:
            raise GenerateError(f"cannot connect to the forward listener {host}:{port}: {exc}") from None

    def write(self, batch: Batch) -> None:
        for chunk, message in self._messages(batch):
            self._send(chunk, message)

    def prepare(self, batch: Batch) -> int:
        """Encode ``batch``'s messages now, send them with :meth:`send_prepared`; returns its lines."""
        self._prepared.extend(self._messages(batch))
        return len(batch.lines)

    def send_prepared(self) -> None:
        """Send every prepared message, ``window`` unacknowledged at most (:meth:`close` waits
        for the last acks)."""
        messages, self._prepared = self._prepared, []
        for chunk, message in messages:
            self._send(chunk, message)

    def _send(self, chunk: str, message: bytes) -> None:
        while len(self._unacked) >= self.window:
            self._read_ack()
        self._sock.sendall(message)
        self._unacked.append(chunk)

    def _messages(self, batch: Batch) -> list[tuple[str, bytes]]:
        """The batch's messages of at most ``batch_lines`` records, each with its chunk id."""
        import gzip

        import msgpack

        seconds, nanos = divmod(batch.emit_ns, 1_000_000_000)
        time_ext = msgpack.ExtType(0, struct.pack(">II", seconds, nanos))
        pack = msgpack.Packer().pack
        entries = []
        if self.record == "log":  # Fluent Bit tailing the file: the line is the record's `log`
            entries = [pack([time_ext, {"log": line}]) for line in batch.lines]
        else:
            for line, level, tenant in zip(batch.lines, batch.levels, batch.tenants, strict=True):
                rec: dict[str, Any] = {"log": line, "labels": {"tenant_id": tenant}}
                if level != "none":
                    rec["level"] = level
                entries.append(pack([time_ext, rec]))
        packer = msgpack.Packer()
        out: list[tuple[str, bytes]] = []
        for i in range(0, len(entries), self.batch_lines):
            part = entries[i : i + self.batch_lines]
            chunk = f"{os.getpid():x}-{self.messages:x}"
            option: dict[str, Any] = {"chunk": chunk, "size": len(part)}
            if self.compress:
                option["compressed"] = "gzip"
                message = pack([self.tag, gzip.compress(b"".join(part), 1), option])
            else:  # the array's header, then the entries as they are (as Fluent Bit writes them)
                head = packer.pack_array_header(3) + pack(self.tag) + packer.pack_array_header(len(part))
                message = head + b"".join(part) + pack(option)
            out.append((chunk, message))
            self.messages += 1
        return out

    def _read_ack(self) -> None:
        deadline = time.monotonic() + self.ack_timeout
        while True:
            for answer in self._unpacker:
                chunk = answer.get("ack") if isinstance(answer, dict) else None
                if chunk not in self._unacked:
                    raise GenerateError(f"the forward listener answered {answer!r}, not an awaited ack")
                self._unacked.remove(chunk)
                self.acked += 1
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise GenerateError(f"no ack within {self.ack_timeout:g}s from {self.addr[0]}:{self.addr[1]}")
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise GenerateError("the forward listener closed the connection before acknowledging")
            self._unpacker.feed(data)

    def close(self) -> dict[str, Any]:
        try:
            while self._unacked:
                self._read_ack()
        finally:
            self._sock.close()
        return {
            "address": f"{self.addr[0]}:{self.addr[1]}",
            "messages": self.messages,
            "acked": self.acked,
            "compressed": self.compress,
            "record": self.record,
            "in_flight": self.window,
        }


class SyslogTarget:
    """RFC 5424 messages over UDP (one per datagram) or TCP (octet-counting or LF framing).

    Facility user (1); severity from the line's level (``SYSLOG_SEVERITY``).
    The message part is the generated line.
    """

    name = "syslog"

    def __init__(
        self,
        host: str,
        port: int,
        protocol: Literal["udp", "tcp"] = "udp",
        framing: Literal["octet", "lf"] = "octet",
        app_name: str = "loggen",
    ) -> None:
        self.addr = (host, port)
        self.protocol = protocol
        self.framing = framing
        self.hostname = socket.gethostname().split(".")[0] or "-"
        self.app = app_name
        self.procid = str(os.getpid())
        self.messages = 0
        try:
            if protocol == "udp":
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._sock.connect(self.addr)
            else:
                self._sock = socket.create_connection(self.addr, timeout=30)
        except OSError as exc:
            raise GenerateError(f"cannot reach syslog {protocol}://{host}:{port}: {exc}") from exc

    def _messages(self, batch: Batch) -> list[bytes]:
        ts = rfc3339_us(batch.emit_ns)
        head = f" {ts} {self.hostname} {self.app} {self.procid} - - "
        return [
            f"<{8 + SYSLOG_SEVERITY[level]}>1{head}{line}".encode()
            for line, level in zip(batch.lines, batch.levels, strict=True)
        ]

    def write(self, batch: Batch) -> None:
        msgs = self._messages(batch)
        try:
            if self.protocol == "udp":
                for m in msgs:
                    self._sock.send(m)
            elif self.framing == "octet":
                self._sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in msgs))
            else:
                self._sock.sendall(b"\n".join(msgs) + b"\n")
        except OSError as exc:
            raise GenerateError(f"syslog {self.protocol}://{self.addr[0]}:{self.addr[1]}: {exc}") from exc
        self.messages += len(msgs)

    def close(self) -> dict[str, Any]:
        self._sock.close()
        return {"messages": self.messages, "protocol": self.protocol, "framing": self.framing}


# -- pacing ---------------------------------------------------------------------------------------


@dataclass
class Summary:
    target: str
    lines: int
    seconds: float
    rate: float  # lines per second achieved
    requested_rate: float
    first_seq: int
    last_seq: int
    started_at: float  # epoch seconds
    max_behind: float  # seconds the generator was ever behind its schedule
    format: str
    line_bytes: int
    seed: int
    target_info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[int, float], None]


def run(
    factory: LineFactory,
    target: Target,
    rate: float,
    duration: float | None = None,
    count: int | None = None,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
    prepare: bool = False,
) -> Summary:
    """Write lines to ``target`` at ``rate`` lines/s (0 = as fast as possible).

    Stops after ``duration`` seconds or ``count`` lines, whichever comes first
    (with a rate and a duration, exactly ``rate * duration`` lines), or when
    ``stop()`` turns true. ``progress(lines, elapsed)`` is called about ten
    times a second.

    With ``prepare`` (``rate`` 0 and a ``count``; the http and forward targets), every
    request or message is encoded before the clock starts, then sent as fast as the target
    takes: the time and CPU measured are the sending's only, as for a client written in C.
    The lines' emit times are then those of the encoding.
    """
    if rate < 0:
        raise GenerateError("--rate cannot be negative")
    if duration is None and count is None:
        raise GenerateError("give a --duration or a --count")
    if prepare:
        return _run_prepared(factory, target, rate, count, progress)
    total = count
    if rate > 0 and duration is not None:
        planned = round(rate * duration)
        total = planned if total is None else min(total, planned)
    # Write at most once per tick, every line due by then; at low rates wake for each line.
    tick = TICK
    started_at = time.time()
    start = time.monotonic()
    sent = 0
    max_behind = 0.0
    last_progress = 0.0
    try:
        while True:
            now = time.monotonic()
            elapsed = now - start
            if total is not None and sent >= total:
                break
            if total is None and duration is not None and elapsed >= duration:
                break
            if stop is not None and stop():
                break
            if rate > 0:
                n = min(int(rate * elapsed) + 1 - sent, MAX_BATCH)
                if n <= 0:
                    time.sleep(sent / rate - elapsed)
                    continue
                max_behind = max(max_behind, elapsed - sent / rate)
            else:
                n = max(1, min(MAX_BATCH, MAX_BATCH_BYTES // max(factory.line_bytes, 1)))
            if total is not None:
                n = min(n, total - sent)
            target.write(factory.batch(sent, n, time.time_ns()))
            sent += n
            if progress is not None and now - last_progress >= 0.1:
                last_progress = now
                progress(sent, elapsed)
            if rate > 0:
                wake = max(sent / rate, now - start + tick) - (time.monotonic() - start)
                if wake > 0:
                    time.sleep(wake)
    finally:
        info = target.close()
    seconds = time.monotonic() - start
    if progress is not None:
        progress(sent, seconds)
    return _summary(target.name, sent, seconds, rate, started_at, round(max_behind, 6), factory, info)
