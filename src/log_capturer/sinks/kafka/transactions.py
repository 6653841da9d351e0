"""Exactly-once delivery (``sinks.kafka.delivery: exactly_once``): the lines and the read
positions of every file in one Kafka transaction.

How it holds (docs/exactly-once.md):

- one transactional producer (``transactional.id`` stable per agent); ``init_transactions`` at
  start fences an older process with the same id and aborts the transaction it left open;
- then the positions are read from the positions topic with ``read_committed``: the last record
  keyed by this agent's id is where every file resumes (the local positions file is not used);
- the dispatcher threads hand chunks over through a gate (:class:`Gate`); every
  ``transaction_interval`` or ``transaction_max_records`` the poll thread closes the gate, waits
  until every record handed over has its delivery report (so every chunk given to the sink is
  acknowledged and the files' positions cover exactly what the transaction holds), writes the
  positions document to the positions topic in the same transaction and commits it;
- a record refused before it is sent goes to the DLQ topic inside the open transaction
  (:func:`dead_letter_parts`, :class:`DeadLetterParts`); a line the broker refused for its size in
  an aborted transaction is kept in the :class:`AbortLog` and, read again after the restart, goes
  there too (:class:`Reroute`);
- a transaction that cannot be committed is aborted, and the agent ends at once (exit status
  :data:`EXIT_ABORTED`), as a kill -9 would: its supervisor starts it again, and it re-reads
  from the last committed positions. Nothing else is ever needed for the restart, because the
  mode is built to hold across kill -9 at any point.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from log_capturer.engine.contract import Headers
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.delivery import SIZE_ERRORS, Reports, error_type, explain

log = logging.getLogger(__name__)

#: Exit status after an aborted transaction (EX_TEMPFAIL: start again).
EXIT_ABORTED = 75
#: Exit status when another process took this agent's transactional.id (fenced).
EXIT_FENCED = 76
#: Format of the positions document (that of files.json).
POSITIONS_VERSION = 2

#: The chunk producer's token of the positions record (it is not a chunk of the engine).
POSITIONS_TOKEN = object()

Entries = dict[str, dict[str, Any]]
#: The kinds of positions a document holds, and their field: the file source's (files.json's
#: entries) and the container source's (containers.json's).
KINDS = {"files": "positions", "containers": "containers"}
PositionsOf = Callable[[], Entries]


def transactional_base(cfg: KafkaSinkConfig) -> str:
    """The agent's id: the configured one, else ``log-capturer-<host name>``. Its workers' ids,
    and the positions documents it reads at start, derive from it."""
    return cfg.exactly_once.transactional_id or f"log-capturer-{socket.gethostname()}"


def transactional_id(cfg: KafkaSinkConfig, worker: tuple[int, int] | None = None) -> str:
    """The configured id, else one derived from the host name; ``-<worker index>`` at the end when
    the agent is one worker of several (``app.workers``), so each has its own id, stable across
    restarts of that worker (the supervisor starts worker ``i`` again as worker ``i``): a worker
    started again fences its predecessor (a zombie) and aborts what it left open."""
    base = transactional_base(cfg)
    if worker is not None:
        return f"{base}-{worker[0]}"
    return base if cfg.exactly_once.transactional_id else f"{base}-0"


def transactional_config(cfg: KafkaSinkConfig, conf: dict[str, Any], tid: str) -> dict[str, Any]:
    """The producer's librdkafka properties for transactions (a copy of ``conf``)."""
    txn_ms = int(cfg.exactly_once.transaction_timeout * 1000)
    out = dict(conf)
    out.update(
        {
            "transactional.id": tid,
            "transaction.timeout.ms": txn_ms,
            "enable.idempotence": True,
            "acks": "all",
            # A record must be delivered within the transaction; librdkafka requires this bound.
            "message.timeout.ms": min(int(cfg.timeout * 1000), txn_ms),
        }
    )
    return out


def consumer_config(conf: dict[str, Any]) -> dict[str, Any]:
    """A read_committed consumer of the positions topic, with the producer's connection settings."""
    keep = ("bootstrap.servers", "security.protocol", "socket.keepalive.enable")
    out = {k: v for k, v in conf.items() if k in keep or k.startswith(("sasl.", "ssl.", "enable.ssl"))}
    out.update(
        {
            "group.id": "log-capturer-positions-reader",  # never committed: offsets are assigned
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    return out


class PositionsUnreadable(RuntimeError):
    """The positions topic could not be read to its end (the agent must not guess)."""


def read_positions(
    conf: dict[str, Any], topic: str, key: str, timeout: float, base: str = ""
) -> dict[str, Entries]:
    """The positions to resume from, as path -> entry ({} when there are none): those of the
    last committed document keyed ``key`` in ``topic`` (read_committed) and, with ``base``, those
    of the documents of the same agent's other workers (or of this agent run with another number
    of workers), the newest commit winning for each file (:func:`merge_positions`). The file
    source keeps the entries of its own files (its shard) and avoids the others. Raises
    :class:`PositionsUnreadable`. Per kind: ``files`` (path -> entry) and ``containers``
    (container id -> entry)."""
    docs = read_positions_documents(conf, topic, timeout)
    return {kind: merge_positions(docs, key, base, topic, kind) for kind in KINDS}


def read_positions_documents(conf: dict[str, Any], topic: str, timeout: float) -> dict[bytes, bytes]:
    """The last committed record of every key of ``topic`` (read_committed), read to its end."""
    consumer = Consumer(consumer_config(conf))
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            why = t.error.str() if t is not None and t.error is not None else "no such topic"
            raise PositionsUnreadable(
                f"sinks.kafka.exactly_once.positions_topic: cannot read {topic!r} ({why}); create it "
                "(cleanup.policy=compact), e.g. with python -m log_capturer.devtools.topics"
            )
        parts = [TopicPartition(topic, p, 0) for p in sorted(t.partitions)]
        pending = {p.partition for p in parts}
        ends: dict[int, int] = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(p, timeout=timeout, cached=False)
            ends[p.partition] = high
            if high <= low:
                pending.discard(p.partition)
            else:
                p.offset = low
        if not pending:
            return {}
        consumer.assign([p for p in parts if p.partition in pending])
        found: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise PositionsUnreadable(
                    f"sinks.kafka.exactly_once.positions_topic: {topic!r} not read to its end within "
                    f"{timeout:g}s (a transaction of another agent still open?)"
                )
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise PositionsUnreadable(f"reading {topic!r}: {explain(err)}")
            k, v = msg.key(), msg.value()
            if k is not None and v is not None:
                found[k] = v
            off = msg.offset()
            if off is not None and off + 1 >= ends.get(msg.partition() or 0, 0):
                pending.discard(msg.partition() or 0)
        return found
    except KafkaException as exc:
        raise PositionsUnreadable(f"reading {topic!r}: {explain(exc.args[0])}") from exc
    finally:
        consumer.close()


def merge_positions(
    docs: dict[bytes, bytes], key: str, base: str, topic: str = "", kind: str = "files"
) -> Entries:
    """The entries of document ``key``, and with ``base`` of every document whose ``base`` is the
    same (this agent's workers, whatever their number was): for each file identity (device and
    inode) the entry of the newest commit (``committed_at``; this worker's own on a tie). Another
    agent's documents (another base) are never read. Raises :class:`PositionsUnreadable` when
    this worker's own document is not in format 2 (another agent's odd record is skipped).
    ``kind`` containers: the entries of the container sources, by container id (a container's
    entry, with its files, from the newest commit)."""
    field = KINDS[kind]
    chosen: dict[tuple[Any, ...], tuple[float, bool, str, dict[str, Any]]] = {}
    for k, raw in docs.items():
        own = k == key.encode()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or doc.get("version") != POSITIONS_VERSION:
            if own:
                raise PositionsUnreadable(f"the positions in {topic!r} under {key!r} are not in format 2")
            continue
        if not own and (not base or doc.get("base") != base):
            continue
        positions = doc.get(field, {})
        if not isinstance(positions, dict):
            if own:
                raise PositionsUnreadable(f"the positions in {topic!r} under {key!r} are not in format 2")
            continue
        at = doc.get("committed_at")
        when = float(at) if isinstance(at, int | float) else 0.0
        for path, entry in positions.items():
            if not isinstance(path, str) or not isinstance(entry, dict):
                continue
            dev, ino = entry.get("device"), entry.get("inode")
            ident: tuple[Any, ...] = (
                ("file", dev, ino)
                if kind == "files" and isinstance(dev, int) and isinstance(ino, int)
                else ("path", path)
            )
            rank = (when, own)
            old = chosen.get(ident)
            if old is None or rank > (old[0], old[1]):
                chosen[ident] = (when, own, path, entry)
    return {path: entry for _, _, path, entry in chosen.values()}


def positions_document(tid: str, entries: dict[str, Entries], base: str = "") -> bytes:
    """The positions record committed with each transaction: ``entries`` per kind (files under
    ``positions``, containers under ``containers``); ``base`` names the agent (its workers share
    it), ``committed_at`` orders the documents of several workers."""
    doc: dict[str, Any] = {
        "version": POSITIONS_VERSION,
        "transactional_id": tid,
        "base": base,
        "committed_at": time.time(),
        "positions": entries.get("files", {}),
    }
    if "containers" in entries:
        doc["containers"] = entries["containers"]
    return orjson.dumps(doc)


class Gate:
    """Hand-overs and commits exclude each other: while a commit is under way, senders wait;
    :meth:`close` waits for the senders inside to leave. ``waiting`` counts the records (lines)
    of the senders held at the gate (they are counted by the engine already)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False
        self.waiting = 0

    def enter(self, lines: int) -> None:
        with self._cond:
            if self._closed:
                self.waiting += lines
                while self._closed:
                    self._cond.wait()
                self.waiting -= lines
            self._inside += 1

    def leave(self) -> None:
        with self._cond:
            self._inside -= 1
            if self._inside == 0:
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True

    @property
    def inside(self) -> int:
        with self._cond:
            return self._inside

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


class TransactionalReports(Reports):
    """Delivery reports that also remember the first failure of the open transaction: a record
    that failed in a transaction makes it abortable (librdkafka), so it is never committed.
    ``refused``: the largest record of a batch the broker refused for its size (the service
    keeps it only if it alone exceeds the topic's ``max.message.bytes``), as (its delivery, its
    value, reason, error text)."""

    failure = ""
    refused: tuple[Any, bytes, str, str] | None = None

    def delivery(self, delivery: Any, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if not self.failure:
                self.failure = explain(err)
            self._note_refused(delivery, msg.value() or b"", err)
        super().delivery(delivery, err, msg)

    def _note_refused(self, delivery: Any, value: bytes, err: KafkaError) -> None:
        if err.code() not in SIZE_ERRORS:
            return
        old = self.refused
        if old is None or len(value) > len(old[1]):
            self.refused = (delivery, value, error_type(err), f"{error_type(err)}: {err.str()}")

    def attempt(self, attempt: Any, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and not self.failure:
            self.failure = explain(err)
        super().attempt(attempt, err, _msg)

    def settled(self, settled: list[Any]) -> None:
        for delivery, _, failures in settled:
            if failures and not self.failure:
                self.failure = explain(KafkaError(failures[0][0]))
            for failure in failures:
                self._note_refused(delivery, failure[2], KafkaError(failure[0]))
        super().settled(settled)

    def dead_letter(self, attempt: Any, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and not self.failure:
            self.failure = explain(err)
        super().dead_letter(attempt, err, _msg)


#: Room kept for a DLQ part's own header (``dlq_part``) and librdkafka's per-header framing.
HEADER_FRAMING = 16


def dead_letter_parts(
    value: bytes, headers: Headers, key: str | bytes | None, limit: int
) -> list[tuple[bytes, Headers]]:
    """A record refused before sending, as the DLQ topic's records: the value whole when it fits
    in ``limit`` (``max_message_bytes``) with its key and headers, else cut in parts that do, each
    with the headers and ``dlq_part`` ``<i>/<n>`` (1-based): concatenated in order they give the
    value back, so nothing of the line is lost even when it is larger than any record may be."""
    used = len(key.encode() if isinstance(key, str) else key) if key else 0
    for name, v in headers:
        used += len(name) + (len(v) if v is not None else 0) + HEADER_FRAMING
    if len(value) + used <= limit:
        return [(value, headers)]
    room = max(limit - used - len("dlq_part") - 2 * len(str(len(value))) - 1 - HEADER_FRAMING, 256)
    n = -(-len(value) // room)
    return [
        (value[i * room : (i + 1) * room], [*headers, ("dlq_part", f"{i + 1}/{n}".encode())])
        for i in range(n)
    ]


class DeadLetterParts:
    """The DLQ records of one refused record, produced in the open transaction: the engine hears
    of it (``reports.dead_letter``: counted, the record settled) once every part has its delivery
    report, with the first failure if any (which also fails, so aborts, the transaction)."""

    __slots__ = ("attempt", "error", "remaining", "report")

    def __init__(
        self, attempt: Any, parts: int, report: Callable[[Any, KafkaError | None, Any], None]
    ) -> None:
        self.attempt = attempt
        self.remaining = parts
        self.error: KafkaError | None = None
        self.report = report

    def done(self, err: KafkaError | None, _msg: Any = None) -> None:
        """One part's delivery report (confluent-kafka's producer; the poll thread)."""
        if err is not None and self.error is None:
            self.error = err
        self.remaining -= 1
        if self.remaining == 0:
            self.report(self.attempt, self.error, None)

    def settled(self, produced: int, failures: list[Any]) -> None:
        """Every part's report at once (the chunk producer)."""
        if failures and self.error is None:
            self.error = KafkaError(failures[0][0])
        self.remaining = 0
        self.report(self.attempt, self.error, None)


class AbortLog:
    """Aborted transactions across runs: an abort ends the agent (exit status 75) before its
    ``kafka_transactions_total{outcome="aborted"}`` can be scraped, so the count and the last
    reason are kept in ``positions.directory`` (``transactions-<transactional id>.json``) and the
    next run starts its counter there. Without a directory (``positions.enabled: false``) the
    count is this process's only. A file that cannot be read or written only loses the count."""

    def __init__(self, directory: str | None, tid: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tid)
        self.path = Path(directory) / f"transactions-{safe}.json" if directory else None

    def load(self) -> tuple[int, str]:
        if self.path is None:
            return 0, ""
        try:
            doc = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return 0, ""
        if not isinstance(doc, dict):
            return 0, ""
        n, reason = doc.get("aborted"), doc.get("last_abort")
        return (n if isinstance(n, int) and n > 0 else 0), (reason if isinstance(reason, str) else "")

    def refused(self) -> list[dict[str, Any]]:
        """The lines the broker refused in aborted transactions, not yet sent to the DLQ topic
        (:func:`refused_line`)."""
        if self.path is None:
            return []
        try:
            doc = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return []
        rows = doc.get("refused") if isinstance(doc, dict) else None
        keys = ("source_id", "stream", "start", "end", "sha256", "reason", "error")
        if not isinstance(rows, list):
            return []
        return [r for r in rows if isinstance(r, dict) and all(k in r for k in keys)]

    def save(self, aborted: int, reason: str, refused: list[dict[str, Any]] | None = None) -> None:
        """Write the count and the last reason; ``refused`` replaces the refused lines (None
        keeps those in the file)."""
        if self.path is None:
            return
        if refused is None:
            refused = self.refused()
        tmp = self.path.with_suffix(".tmp")
        doc = {"aborted": aborted, "last_abort": reason, "at": time.time(), "refused": refused}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(orjson.dumps(doc))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("exactly-once: the aborted transactions' count not saved in %s: %s", self.path, exc)


def line_digest(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8", "surrogatepass")).hexdigest()


def refused_line(chunk: Any, index: int, reason: str, error: str) -> dict[str, Any]:
    """A line the broker refused, as kept across the restart: its source and stream, the byte
    range of the chunk it was read in, and a digest of its text; read again from the committed
    positions, the line with that digest in a chunk of that stream overlapping the range is the
    one (:class:`Reroute`)."""
    return {
        "source_id": chunk.origin.source_id,
        "stream": chunk.stream,
        "start": chunk.start,
        "end": chunk.end,
        "sha256": line_digest(chunk.lines[index]),
        "reason": reason,
        "error": error,
    }


class Reroute:
    """The lines the broker refused in an aborted transaction (kept in the :class:`AbortLog`), to
    send to the DLQ topic when they are read again. An entry is dropped once the transaction that
    carries its line is committed (:meth:`committed`). Dispatcher threads ask :meth:`match`; the
    poll thread calls :meth:`committed`."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._lock = threading.Lock()
        self.entries = entries
        #: The entries matched in the open transaction.
        self._matched: list[dict[str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, chunk: Any) -> dict[int, tuple[str, str]]:
        """The indexes of ``chunk``'s lines to send to the DLQ topic, with reason and error."""
        out: dict[int, tuple[str, str]] = {}
        with self._lock:
            for e in self.entries:
                if (
                    e in self._matched
                    or e["source_id"] != chunk.origin.source_id
                    or e["stream"] != chunk.stream
                    or not (chunk.start < e["end"] and e["start"] < chunk.end)
                ):
                    continue
                for i, line in enumerate(chunk.lines):
                    if i not in out and line_digest(line) == e["sha256"]:
                        out[i] = (str(e["reason"]), str(e["error"]))
                        self._matched.append(e)
                        break
        return out

    def committed(self) -> bool:
        """The open transaction was committed: its matched entries are done. True if any were."""
        with self._lock:
            if not self._matched:
                return False
            self.entries = [e for e in self.entries if e not in self._matched]
            self._matched = []
            return True


def end_process(status: int, reason: str) -> None:
    """End the agent now, as a kill -9 would (the mode holds across that): the supervisor starts
    it again and it resumes from the committed positions."""
    log.critical(
        "exactly-once: %s; the agent ends (exit status %d) and resumes from the committed "
        "positions when started again",
        reason,
        status,
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # ending anyway
            handler.flush()
    sys.stderr.flush()
    os._exit(status)
