"""The tailer's read loop under supervision: crashes, restarts, and positions across them.

The engine runs in its own thread here (``start``), against the real dispatcher; the crash is
made to happen in the real objects (a failing hand-over, a failing read, a failing discovery).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.config.schema import DispatcherConfig, FilesConfig, PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk
from log_capturer.sources.file import tail
from log_capturer.sources.file.checkpointer import Checkpointer
from log_capturer.sources.file.paths import GlobPaths
from log_capturer.sources.file.source import FileSource
from log_capturer.sources.file.tailer import Tailer, TailSettings
from log_capturer.sources.positions import PositionStore
from log_capturer.sources.supervise import Backoff
from tests.support import wait_until
from tests.unit.sources.file.parts import ListedPaths
from tests.unit.sources.file.test_source import assert_exactly, write
from tests.unit.sources.harness import MemorySink, make_dispatcher, settle


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher = make_dispatcher(self.sink, self.metrics)
        self.source: FileSource | None = None

    def start(self, **files: Any) -> FileSource:
        cfg = FilesConfig(
            watch_directories=[str(self.logs)], poll_interval=0.01, read_buffer_bytes=4096, **files
        )
        src = FileSource(cfg, PositionsConfig(directory=str(self.tmp / "pos")), self.dispatcher, self.metrics)
        src.tailer.supervisor.backoff = Backoff(0.01, 0.01)
        self.source = src
        src.start()
        return src

    def crashes(self) -> float | None:
        return self.metrics.registry.get_sample_value(
            "errors_total", {"component": "file_source", "error_type": "crash"}
        )

    def saved_offset(self, path: Path) -> int:
        assert self.source is not None
        self.source.tailer.save_positions()
        entry = orjson.loads((self.tmp / "pos" / "files.json").read_bytes())["positions"][str(path)]
        return int(entry["offset"])

    def close(self) -> None:
        if self.source is not None:
            self.source.stop()
            self.source.tailer.close()
        self.dispatcher.close(5)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def test_a_crash_while_handing_over_a_chunk_neither_loses_nor_repeats_a_line(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = env.logs / "app.log"
    expected = write(path, "a", 0, 2000)
    real = env.dispatcher.submit_many
    calls = [0]

    def submit_many(
        chunks: Sequence[Chunk],
        timeout: float | None = None,
        checkpoints: Sequence[Checkpoint | None] | None = None,
    ) -> int:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("injected crash")
        return real(chunks, timeout, checkpoints)

    monkeypatch.setattr(env.dispatcher, "submit_many", submit_many)
    src = env.start()
    wait_until(lambda: src.tailer.supervisor.restarts == 1, 10, "the read loop to be restarted")
    expected += write(path, "b", 0, 500)  # written after the crash
    wait_until(lambda: len(env.sink.lines()) >= len(expected), 20, "every line")
    wait_until(lambda: src.health()["status"] == "healthy", 10, "healthy again")
    assert_exactly(env.sink, expected)
    h = src.health()
    assert h["restarts"] == 1 and h["crashes"] == 1 and h["last_error"] == "RuntimeError: injected crash"
    assert env.crashes() == 1
    wait_until(lambda: src.tailer.in_flight() == 0, 10, "every line acknowledged")
    assert env.saved_offset(path) == path.stat().st_size


def test_a_turns_chunks_are_handed_over_together_and_a_crash_or_a_full_queue_loses_none(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A queue of 64 lines: most hand-overs queue the first chunks only and wait for the rest.
    env.dispatcher = Dispatcher(
        DispatcherConfig(worker_count=1, queue_size=64), [env.sink], Analyzer(None), env.metrics
    )
    env.dispatcher.start()
    paths = [env.logs / f"app{i}.log" for i in range(12)]
    # Small files: several fit in one hand-over (at most read_buffer_bytes of text, 4 KiB here).
    expected = {str(p): write(p, p.stem, 0, 30) for p in paths}
    real = env.dispatcher.submit_many
    sizes: list[int] = []
    crashed: list[int] = []

    def submit_many(
        chunks: Sequence[Chunk],
        timeout: float | None = None,
        checkpoints: Sequence[Checkpoint | None] | None = None,
    ) -> int:
        assert checkpoints is not None and len(checkpoints) == len(chunks)
        sizes.append(len(chunks))
        if len(chunks) >= 3 and not crashed:
            crashed.append(len(chunks))
            raise RuntimeError("injected crash")  # several files' chunks made, none handed over
        return real(chunks, timeout, checkpoints)

    monkeypatch.setattr(env.dispatcher, "submit_many", submit_many)
    src = env.start()
    wait_until(lambda: src.tailer.supervisor.restarts == 1, 10, "the read loop to be restarted")
    for p in paths:
        expected[str(p)] += write(p, p.stem, 30, 30)
    total = sum(len(v) for v in expected.values())
    wait_until(lambda: len(env.sink.lines()) >= total, 20, "every line")
    assert crashed and src.tailer.supervisor.restarts == 1
    assert max(sizes) >= 3  # files read in one turn went over in one call
    assert_exactly(env.sink, [line for lines in expected.values() for line in lines])
    for source_id, lines in expected.items():  # each file's lines in read order
        assert [line for sid, line, _ in env.sink.records if sid == source_id] == lines
    wait_until(lambda: src.tailer.in_flight() == 0, 10, "every line acknowledged")
    for p in paths:
        assert env.saved_offset(p) == p.stat().st_size


def test_a_crash_after_a_read_with_multiline_lines_held_repeats_and_loses_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = env.logs / "app.log"
    records = []
    with path.open("w") as f:
        for i in range(600):
            rest = [f"  detail {i}.{j}" for j in range(i % 4)]
            f.write("\n".join([f"rec {i} " + "x" * (i % 50), *rest]) + "\n")
            records.append("\n".join([f"rec {i} " + "x" * (i % 50), *rest]))
    real = tail.TailedFile.read_chunk
    reads = [0]

    def read_chunk(
        self: tail.TailedFile, bufsize: int, max_line: int, now: float
    ) -> tuple[Chunk | None, bool]:
        out = real(self, bufsize, max_line, now)
        reads[0] += 1
        if reads[0] == 4:  # read, assembled, the last record held: then the crash
            assert self.assembler is not None and self.assembler.held
            raise RuntimeError("injected crash after a read")
        return out

    monkeypatch.setattr(tail.TailedFile, "read_chunk", read_chunk)
    src = env.start(multiline={"start_pattern": "^rec ", "timeout": "50ms"})
    wait_until(lambda: len(env.sink.lines()) >= len(records), 20, "every record")
    assert_exactly(env.sink, records)
    assert src.tailer.supervisor.restarts == 1
    wait_until(lambda: src.tailer.in_flight() == 0, 10, "every record acknowledged")
    assert env.saved_offset(path) == path.stat().st_size


def test_a_discovery_that_fails_at_start_is_retried_by_the_read_loop(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = env.logs / "app.log"
    expected = write(path, "a", 0, 100)
    real = GlobPaths.discover
    calls = [0]

    def discover(self: GlobPaths) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise PermissionError("injected: cannot list")
        return real(self)

    monkeypatch.setattr(GlobPaths, "discover", discover)
    src = env.start()
    wait_until(lambda: len(env.sink.lines()) >= len(expected), 20, "every line")
    assert_exactly(env.sink, expected)
    wait_until(lambda: src.health()["status"] == "healthy", 10, "healthy")
    assert src.health()["last_error"] == "PermissionError: injected: cannot list"
    assert env.crashes() == 1


def test_a_tailer_follows_whatever_its_paths_provider_names(tmp_path: Path) -> None:
    """The tailer knows no source: a provider naming two files, a checkpointer over a store."""
    logs = tmp_path / "logs"
    logs.mkdir()
    old, later = logs / "old.log", logs / "later.log"
    write(old, "before", 0, 10)
    sink = MemorySink()
    metrics = Metrics()
    dispatcher = make_dispatcher(sink, metrics)
    store = PositionStore(tmp_path / "pos", "files", 2)
    paths = ListedPaths(old, later, from_end=True)
    tailer = Tailer(
        "file_source", TailSettings(), paths, Checkpointer({}, store, metrics, 1.0), dispatcher, metrics
    )
    try:
        tailer.rescan()  # the first scan: existing content is skipped (read_from_end)
        expected = write(old, "after", 0, 20)
        expected += write(later, "new", 0, 10)  # a file found after the first scan: from its start
        tailer.rescan()
        settle(tailer, dispatcher)
        assert_exactly(sink, expected)
        tailer.save_positions()
        saved = orjson.loads(store.path.read_bytes())["positions"]
        assert saved[str(old)]["offset"] == old.stat().st_size
        assert saved[str(later)]["offset"] == later.stat().st_size
        assert tailer.open_files == 2 and tailer.in_flight() == 0
        paths.paths.discard(str(later))  # no longer named, still on disk: a rotated file
        tailer.rescan()
        assert [tf.path for tf in tailer.files(live=False)] == [str(later)]
    finally:
        tailer.close()
        dispatcher.close(5)


# -- positions written promptly, coalesced ---------------------------------------------------------


def offset_on_disk(env: Env, path: Path) -> int | None:
    """The offset the positions file holds now for ``path`` (None: no file or no entry yet)."""
    try:
        saved = orjson.loads((env.tmp / "pos" / "files.json").read_bytes())["positions"]
    except FileNotFoundError:
        return None
    entry = saved.get(str(path))
    return None if entry is None else int(entry["offset"])


def test_acknowledged_positions_are_written_within_write_delay_not_flush_interval(env: Env) -> None:
    path = env.logs / "app.log"
    expected = write(path, "a", 0, 1000)
    env.sink.hold = True  # delivered, not acknowledged yet
    src = env.start()  # the default positions settings: write_delay 300 ms, flush_interval 10 s
    assert src.tailer.checkpointer.write_delay == 0.3 and src.tailer.checkpointer.flush_interval == 10
    wait_until(lambda: len(env.sink.lines()) == len(expected), 10, "every line delivered")
    time.sleep(0.5)
    assert offset_on_disk(env, path) in (None, 0)  # nothing acknowledged: nothing written
    released = time.monotonic()
    env.sink.release()
    wait_until(lambda: offset_on_disk(env, path) == path.stat().st_size, 5, "the position written", 0.01)
    # Within write_delay plus a loop turn (poll_interval 10 ms here) and the write: far below 10 s.
    assert time.monotonic() - released < 1.0


def test_a_steady_stream_of_acknowledgements_is_written_at_most_once_per_write_delay(env: Env) -> None:
    path = env.logs / "app.log"
    write(path, "a", 0, 1)
    src = env.start()
    writer = src.tailer.checkpointer.writer
    assert writer is not None
    wait_until(lambda: offset_on_disk(env, path) == path.stat().st_size, 5, "the first line's position")
    before = writer.writes
    offsets = set()
    started = time.monotonic()
    n = 1
    while time.monotonic() - started < 1.5:  # a line every 10 ms, each acknowledged at once
        write(path, "a", n, 1)
        n += 1
        time.sleep(0.01)
        offsets.add(offset_on_disk(env, path))
    elapsed = time.monotonic() - started
    wait_until(lambda: offset_on_disk(env, path) == path.stat().st_size, 5, "the last position")
    writes = writer.writes - before
    # Some 150 acknowledgements: at most one write per 300 ms (+1 for the last, after the stream),
    # and more than one while it flowed (positions followed it, not only at its end).
    assert writes <= elapsed / 0.3 + 2, writes
    assert len(offsets - {None}) >= 3, sorted(o for o in offsets if o is not None)


def test_a_discovery_of_many_new_files_logs_a_few_and_a_count(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from log_capturer.sources.file import tailer

    monkeypatch.setattr(tailer, "NEW_FILE_LOGS", 3)
    for i in range(5):
        (env.logs / f"f{i}.log").write_text("x\n")
    caplog.set_level(logging.DEBUG, logger=tailer.__name__)
    env.start(read_from="beginning")
    following = [r for r in caplog.records if r.getMessage() == "following file"]
    assert [r.levelno for r in following] == [logging.INFO] * 3 + [logging.DEBUG] * 2
    counts = [r for r in caplog.records if r.getMessage() == "following files"]
    assert len(counts) == 1 and counts[0].levelno == logging.INFO
    assert (counts[0].files, counts[0].logged_each, counts[0].followed) == (5, 3, 5)  # type: ignore[attr-defined]
    caplog.clear()
    (env.logs / "late.log").write_text("y\n")  # a later discovery: one file, logged as before
    wait_until(
        lambda: any(r.getMessage() == "following file" for r in caplog.records), 5, "late.log followed", 0.02
    )
    assert not any(r.getMessage() == "following files" for r in caplog.records)


class HoldOne(MemorySink):
    """Acknowledges every chunk at once but those of ``held_source`` (until :meth:`release`)."""

    def __init__(self) -> None:
        super().__init__()
        self.held_source = ""

    def send(self, chunks: list[Chunk]) -> None:
        held = [c for c in chunks if c.origin.source_id == self.held_source]
        with self._lock:
            self.held.extend(held)
        super().send([c for c in chunks if c.origin.source_id != self.held_source])
        with self._lock:
            for c in held:
                self.records.extend((c.origin.source_id, line, None) for line in c.lines)


def test_with_many_idle_files_a_write_takes_anew_only_the_entries_that_can_have_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path)
    env.sink = sink = HoldOne()
    env.dispatcher.close(5)
    env.dispatcher = make_dispatcher(sink, env.metrics)
    try:
        idle = [env.logs / f"idle-{i:03d}.log" for i in range(150)]
        for p in idle:
            write(p, "i", 0, 1)
        steady, late = env.logs / "steady.log", env.logs / "late.log"
        write(steady, "s", 0, 1)
        write(late, "l", 0, 1)
        src = env.start()
        writer = src.tailer.checkpointer.writer
        assert writer is not None
        every = [*idle, steady, late]
        wait_until(
            lambda: all(offset_on_disk(env, p) == p.stat().st_size for p in every),
            10,
            "every file's position",
        )
        taken = [0]
        entry = tail.TailedFile.position_entry

        def counted(self: tail.TailedFile) -> dict[str, object]:
            taken[0] += 1
            return entry(self)

        monkeypatch.setattr(tail.TailedFile, "position_entry", counted)
        sink.held_source = str(late)
        write(late, "l", 1, 1)  # read, and in flight while the writes below take the entries
        wait_until(lambda: len(sink.held) == 1, 5, "the late line held")
        before = writer.writes
        n = 1
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # acknowledged at once: a write every write_delay
            write(steady, "s", n, 1)
            n += 1
            time.sleep(0.01)
        wait_until(
            lambda: offset_on_disk(env, steady) == steady.stat().st_size, 5, "the steady file's position"
        )
        writes = writer.writes - before
        assert writes >= 2, writes
        # 152 files: a write taking every entry would take 152; these took those of the files read
        # since the last write or in flight at it (steady.log, late.log). One write may take every
        # entry: the flush_interval's (10 s after the start, which a slow host reaches by now).
        assert taken[0] <= 4 * writes + 4 + len(every), (taken[0], writes)
        assert offset_on_disk(env, late) < late.stat().st_size  # its last line is not acknowledged
        sink.held_source = ""
        sink.release()  # acknowledged now, and late.log is not read again: still written in time
        wait_until(lambda: offset_on_disk(env, late) == late.stat().st_size, 2, "the late file's position")
        saved = orjson.loads((env.tmp / "pos" / "files.json").read_bytes())["positions"]
        assert {p: e["offset"] for p, e in saved.items()} == {
            p: e["offset"] for p, e in src.tailer.positions().items()
        }
    finally:
        env.close()


def test_a_write_while_a_files_chunk_waits_to_be_handed_over_takes_its_entry_again_later(
    tmp_path: Path,
) -> None:
    """A positions write can come in the middle of a read-loop turn, after a file was read and
    before its chunk is handed over (nothing of it in flight yet): that file's entry is taken
    again by the next write, once the chunk is acknowledged, although the file is not read again."""
    logs = tmp_path / "logs"
    logs.mkdir()
    a, b = logs / "a.log", logs / "b.log"
    write(a, "a", 0, 3)
    write(b, "b", 0, 3)
    sink = MemorySink()
    metrics = Metrics()
    dispatcher = make_dispatcher(sink, metrics)
    store = PositionStore(tmp_path / "pos", "files", 2)
    checkpointer = Checkpointer({}, store, metrics, 60.0)
    tailer = Tailer("file_source", TailSettings(), ListedPaths(a, b), checkpointer, dispatcher, metrics)
    try:
        tailer.rescan()
        settle(tailer, dispatcher)
        now = time.monotonic()
        tailer.write_positions(now)  # every entry (the first write)
        by_path = {tf.path: tf for tf in tailer.followed.tracked.values()}
        write(b, "b", 3, 1)
        tailer._pump(by_path[str(b)], now)
        tailer._flush()
        settle(tailer, dispatcher)  # b's line acknowledged: a position moved
        write(a, "a", 3, 1)
        tailer._pump(by_path[str(a)], now)  # read, its chunk waiting for the turn's end
        tailer.write_positions(now + 1)  # only the files that can have changed
        tailer._flush()
        settle(tailer, dispatcher)  # a's line acknowledged now
        tailer.write_positions(now + 2)
        entries = tailer._last_entries
        assert entries is not None
        assert entries[str(a)]["offset"] == a.stat().st_size
        assert entries[str(b)]["offset"] == b.stat().st_size
    finally:
        tailer.close()
        dispatcher.close(5)


def test_every_entry_is_taken_again_each_flush_interval_while_acknowledgements_keep_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes asked for by acknowledgements take only the entries that can have changed; one
    flush_interval after every entry was last taken, a write takes them all again, however many
    writes came in between."""
    logs = tmp_path / "logs"
    logs.mkdir()
    busy = logs / "busy.log"
    idle = [logs / f"idle-{i}.log" for i in range(5)]
    for p in (busy, *idle):
        write(p, p.stem, 0, 1)
    sink = MemorySink()
    metrics = Metrics()
    dispatcher = make_dispatcher(sink, metrics)
    store = PositionStore(tmp_path / "pos", "files", 2)
    checkpointer = Checkpointer({}, store, metrics, 60.0)
    paths = ListedPaths(busy, *idle)
    tailer = Tailer("file_source", TailSettings(), paths, checkpointer, dispatcher, metrics)
    taken = [0]
    entry = tail.TailedFile.position_entry

    def counted(self: tail.TailedFile) -> dict[str, object]:
        taken[0] += 1
        return entry(self)

    try:
        tailer.rescan()
        settle(tailer, dispatcher)
        now = time.monotonic()
        tailer.write_positions(now)
        tf = next(tf for tf in tailer.followed.tracked.values() if tf.path == str(busy))
        monkeypatch.setattr(tail.TailedFile, "position_entry", counted)
        per_write = []
        for t, n in ((20, 1), (40, 2), (59, 3), (61, 4)):
            write(busy, "busy", n, 1)
            tailer._pump(tf, now)
            tailer._flush()
            settle(tailer, dispatcher)
            taken[0] = 0
            tailer.write_positions(now + t)
            per_write.append(taken[0])
        assert per_write[:3] == [1, 1, 1]  # the busy file's entry only
        assert per_write[3] == 6  # 61 s after every entry was taken: all of them
    finally:
        tailer.close()
        dispatcher.close(5)
