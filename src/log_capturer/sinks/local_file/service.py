"""The local file sink's service: records to files, each record's outcome to the engine.

Roles: :meth:`LocalFileService.prepare` (a dispatcher thread) turns a chunk into its records
(``encoding``: by default the JSON envelope, the very bytes sent to Kafka; kept for the DLQ) and the
bytes written (the record, or its text line); :meth:`~LocalFileService.send` hands them to the
writer thread that owns their file (``worker_count`` writers, :mod:`.writer`; a file always has the
same one, so its records keep their order). A writer appends a batch in one ``write``, syncs as
``auto_sync`` / ``sync_interval`` say, and only then reports the records delivered; rotates files by
size and by the pattern's time; hands closed files to the housekeeper (gzip, retention). The
service's own thread reports outcomes to the runner and runs its round (``runner.tick``).

What an error means: an ``OSError`` writing, syncing or opening a file (a full disk, an unwritable
directory, an I/O error) is retriable (:attr:`Failure.RETRY`): what was appended of that batch is
cut off again (``ftruncate``), the file is reopened at the next attempt, and the engine retries
with back-off; still failing after ``timeout`` it is reported timed out (:attr:`Failure.TIMEOUT`)
and the engine parks it (``dlq_config.send_on_timeout``). A record
that cannot be written for its own sake (its text cannot be encoded, its file name is too long) is
rejected (:attr:`Failure.REJECT`) and parked with the reason. A failed ``fsync`` of an interval's
batches retries them all: the data may be on disk already, so those lines may appear twice.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from log_capturer.engine.contract import Failure, Headers, Record, Refused, ServiceState
from log_capturer.engine.outcomes import Outcome, ReplayWaiter, report_outcomes
from log_capturer.record import Chunk
from log_capturer.sinks.base import SinkStartError
from log_capturer.sinks.encoding import ChunkEncoder
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.local_file.config import LocalFileSinkConfig
from log_capturer.sinks.local_file.files import Namer, TextFormatter, describe_sync
from log_capturer.sinks.local_file.writer import Housekeeper, Item, Writer, make_dirs

if TYPE_CHECKING:
    from log_capturer.engine.contract import Prepared
    from log_capturer.engine.runner import Attempt, Delivery, SinkRunner
    from log_capturer.reliability.dlq.replay import ReplayRecord

log = logging.getLogger(__name__)


class LocalFilePrepared:
    """A chunk's records and the bytes written for each (``None``: refused)."""

    __slots__ = ("chunk", "counts", "items", "nbytes", "refused")

    def __init__(self, chunk: Chunk, items: list[Item], refused: list[Refused]) -> None:
        self.chunk = chunk
        self.items = items
        self.refused = refused
        self.nbytes = sum(len(i.data) for i in items) + sum(len(r.record.value) for r in refused)
        self.counts = {items[0].record.topic if items else refused[0].record.topic: len(chunk.lines)}


class LocalFileService:
    """See the module's docstring."""

    #: A chunk's records are made whole in ``prepare``, and what is written, retried or parked
    #: comes from them: the chunk's lines may be dropped once it was handed over.
    releases_text = True

    def __init__(
        self, config: LocalFileSinkConfig, key_field: str | None, name: str, worker: int = 0
    ) -> None:
        self.config = config
        self.key_field = key_field
        self.name = name
        self.directory = Path(config.directory)
        self.namer = Namer(config.filename_pattern, str(worker))
        self.text = TextFormatter(config.text_format) if config.output_format == "text" else None
        #: ``encoding``: the json envelope (the default) or another record (see ``records_of``).
        self.encoder = ChunkEncoder(config.encoding, key_field, encode_chunk)
        self.envelope = config.encoding.envelope
        #: What the DLQ entries and the per-destination metrics call this sink's destination.
        self.default_destination = config.filename_pattern
        self._used = tuple(
            i
            for i, p in enumerate(("source_type", "source_id", "level"))
            if f"{{{p}}}" in config.filename_pattern
        )
        self._runner: SinkRunner | None = None
        self._writers: list[Writer] = []
        self._housekeeper: Housekeeper | None = None
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held_lock = threading.Lock()
        self._held = 0
        #: Names of the files being written (retention never deletes them), under ``open_lock``.
        self.open_lock = threading.Lock()
        self.open_names: set[str] = set()
        #: The last retriable write error ('' once a write succeeds): the directory is unusable.
        self.failing = ""
        self.last_error = ""
        self.thread_error = ""
        self.stopped = False
        #: Records still failing this long after they were handed over are reported timed out,
        #: so the engine parks them (0: never; the sink sets it when it has a local DLQ).
        self.park_after = 0.0
        #: The wall clock file names and rotation follow (UTC).
        self.clock: Callable[[], float] = time.time
        self.written = 0
        self.bytes_written = 0
        self.syncs = 0
        self.rotations = 0
        self.compressed = 0
        self.deleted = 0

    @property
    def runner(self) -> SinkRunner:
        assert self._runner is not None, "not started"
        return self._runner

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, runner: SinkRunner) -> None:
        try:
            make_dirs(self.directory, self.config.dir_permissions)
        except OSError as exc:
            raise SinkStartError(
                f"sinks.local_file.directory: cannot create {self.directory}: {exc.strerror}; "
                "set it to a directory the agent may write"
            ) from None
        self._runner = runner
        if self.config.rotation.enabled:
            self._housekeeper = Housekeeper(self)
            self._housekeeper.start()
        self._writers = [Writer(self, i) for i in range(self.config.worker_count)]
        for w in self._writers:
            w.start()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped = True
        for w in self._writers:
            w.inbox.put(None)
        for w in self._writers:
            w.join(10.0)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._housekeeper is not None:
            self._housekeeper.stop()

    # -- the engine's calls --------------------------------------------------------------------
    def prepare(self, chunk: Chunk) -> LocalFilePrepared:
        records = self.records_of(chunk)
        if self.text is None:  # the record as it is: its key from the chunk, nothing parsed
            o = chunk.origin
            items = [
                Item(rec, rec.value + b"\n", (o.source_type, o.source_id, level), "new", None)
                for rec, level in zip(records, chunk.levels, strict=True)
            ]
            return LocalFilePrepared(chunk, items, [])
        items = []
        refused: list[Refused] = []
        for rec in records:
            try:
                items.append(self.item_of(rec, "new", None))
            except (ValueError, UnicodeError, orjson.JSONDecodeError) as exc:
                refused.append(Refused(rec, "marshal_error", f"cannot be written as text: {exc}"))
        return LocalFilePrepared(chunk, items, refused)

    def records_of(self, chunk: Chunk) -> list[Record]:
        """The chunk's records. The json envelope names its file's placeholders itself; another
        record (raw, logfmt, a selection) carries them in its headers (``source_type``,
        ``source_id``, ``level``), which the DLQ keeps: a parked record is written again to the
        file it would have gone to, with the very bytes it would have had."""
        dest = self.default_destination
        if self.envelope:
            return [Record(dest, value, None) for value in encode_chunk(chunk, self.key_field)]
        o = chunk.origin
        headers: dict[str, Headers] = {
            level: [("source_type", o.source_type), ("source_id", o.source_id), ("level", level)]
            for level in set(chunk.levels)
        }
        return [
            Record(dest, value, None, -1, headers[level])
            for value, level in zip(self.encoder.encode(chunk), chunk.levels, strict=True)
        ]

    def item_of(self, record: Record, kind: str, owner: Any, entry_id: str = "") -> Item:
        """The bytes written for ``record`` (its record, or its text line) and its file's key."""
        if record.headers is not None:  # a record other than the envelope: written as it is
            names = {
                n: v.decode("utf-8", "replace") if isinstance(v, bytes) else v or ""
                for n, v in record.headers
            }
            key = (names.get("source_type", ""), names.get("source_id", ""), names.get("level", ""))
            return Item(record, record.value + b"\n", key, kind, owner, entry_id)
        doc = orjson.loads(record.value)
        key = (str(doc.get("source_type", "")), str(doc.get("source_id", "")), str(doc.get("level", "")))
        if self.text is None:
            data = record.value + b"\n"
        else:
            labels = doc.get("labels")
            line = self.text.line(
                str(doc.get("timestamp", "")),
                key[2],
                key[0],
                key[1],
                labels if isinstance(labels, dict) else {},
                str(doc.get("message", "")),
            )
            data = line.encode("utf-8") + b"\n"
        return Item(record, data, key, kind, owner, entry_id)

    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        assert isinstance(prepared, LocalFilePrepared)
        for item in prepared.items:
            item.owner = delivery
        self._hand(prepared.items)
        return prepared.refused

    def _hand(self, items: list[Item]) -> None:
        """Give each record to the writer of its file (by the placeholders the pattern uses)."""
        if not items:
            return
        with self._held_lock:
            self._held += len(items)
        writers = self._writers
        if len(writers) == 1:
            writers[0].inbox.put(items)
            return
        shares: dict[int, list[Item]] = {}
        for item in items:
            idx = hash(tuple(item.key[i] for i in self._used)) % len(writers)
            shares.setdefault(idx, []).append(item)
        for idx, share in shares.items():
            writers[idx].inbox.put(share)

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        try:
            item = self.item_of(attempt.record, "attempt", attempt)
        except (ValueError, UnicodeError) as exc:
            self.runner.attempt_done(attempt, Failure.REJECT, "marshal_error", f"cannot be written: {exc}")
            return True
        self._hand([item])
        return True

    def dead_letter(self, attempt: Attempt) -> bool | None:
        return None  # no dead-letter output of its own: the engine parks in the local store

    def idle(self) -> None:
        pass  # nothing lingers: a batch is written as soon as a writer takes it

    def flush_soon(self) -> None:
        for w in self._writers:
            w.sync_now.set()

    def queued(self) -> int:
        return self._held

    def state(self) -> ServiceState:
        dead = self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()
        dead = dead or any(not w.is_alive() for w in self._writers if not self._stop.is_set())
        return ServiceState(
            unreachable=bool(self.failing),
            unreachable_as=f"cannot write to {self.directory}",
            thread_error=self.thread_error,
            thread_dead=dead,
            last_error=self.failing or self.last_error,
            details={"directory": str(self.directory), "sync": describe_sync(self.config)},
        )

    def probe(self) -> str:
        """Create, sync and remove a small file in the directory."""
        path = self.directory / f".probe-{os.getpid()}-{threading.get_ident()}"
        try:
            make_dirs(self.directory, self.config.dir_permissions)  # deleted meanwhile: made again
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        self.failing = ""
        return ""

    def stats(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "records_written": self.written,
            "bytes_written": self.bytes_written,
            "syncs": self.syncs,
            "rotations": self.rotations,
            "files_compressed": self.compressed,
            "files_deleted": self.deleted,
            "open_files": len(self.open_names),
        }

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Write parked records again, to the file their record names now."""
        if self.stopped:
            return {r.entry_id: "the sink is stopped" for r in records}
        waiter = ReplayWaiter()
        items: list[Item] = []
        for r in records:
            try:
                record = Record(r.topic, r.value, r.key, -1, r.headers)
                items.append(self.item_of(record, "replay", waiter, r.entry_id))
            except (ValueError, UnicodeError) as exc:
                waiter.results[r.entry_id] = f"cannot be written: {exc}"
        waiter.expected = len(items)
        if not items:
            return waiter.results
        self._hand(items)
        waiter.done.wait(timeout)
        return {r.entry_id: waiter.results.get(r.entry_id, "not written within the timeout") for r in records}

    # -- outcomes (writers -> the service's thread) --------------------------------------------
    def report(self, items: list[Item], failure: Failure | None, etype: str = "", text: str = "") -> None:
        outcomes = self._outcomes
        for item in items:
            outcomes.append((item, failure, etype, text))
        self._wake.set()

    def _loop(self) -> None:
        runner = self.runner
        last_probe = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.01)
            self._wake.clear()
            try:
                self._report_outcomes()
                now = time.monotonic()
                runner.tick(now)
                if self.failing and now - last_probe >= 1.0:
                    # Nothing may be written to find out the directory recovered (all parked):
                    # a probe file says so, and clears ``failing`` (replay waits for that).
                    last_probe = now
                    self.probe()
                self.thread_error = ""
            except Exception as exc:  # a bug: counted and logged, the thread goes on
                self.thread_error = f"{type(exc).__name__}: {exc}"
                runner.unexpected("engine_round", exc)
                time.sleep(0.1)

    def _report_outcomes(self) -> None:
        n = report_outcomes(self.runner, self._outcomes)
        if n:
            with self._held_lock:
                self._held -= n
