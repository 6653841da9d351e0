"""Sharding files between workers: who takes a file, and that a renamed file stays with its worker.

Two file sources (workers 0 and 1 of 2) follow one directory, each with its own
dispatcher and in-memory sink, as two worker processes would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from log_capturer.config.schema import FilesConfig, PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.sources.file import rotation
from log_capturer.sources.file.source import FileSource
from log_capturer.workers.positions import rebalance
from log_capturer.workers.shard import CLAIMS_DIR, Shard, shard_of
from tests.unit.sources.harness import MemorySink, make_dispatcher, settle


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "ROTATED_GRACE", 0.0)


def test_shard_of_is_stable_and_spreads_names_that_differ_in_one_character() -> None:
    assert shard_of("/var/log/app.log", 4) == shard_of("/var/log/app.log", 4)
    assert [shard_of(f"/tmp/wk1/logs/app-{i}.log", 2) for i in range(6)] == [1, 0, 0, 1, 0, 0]
    for count in (2, 3, 4, 8):
        used = {shard_of(f"/x/bench-{i}.log", count) for i in range(8 * count)}
        # crc32 would put all of these in worker 0 for 2 and 4 workers (it is linear).
        assert used == set(range(count)), (count, used)


class Worker:
    def __init__(self, tmp: Path, index: int, include: list[str]) -> None:
        self.tmp, self.index, self.include = tmp, index, include
        self.sink = MemorySink()
        self.dispatcher: Dispatcher = make_dispatcher(self.sink)
        self.source = self.new_source()

    def new_source(self) -> FileSource:
        src = FileSource(
            FilesConfig(watch_directories=[str(self.tmp / "logs")], include_patterns=self.include),
            PositionsConfig(directory=str(self.tmp / "pos")),
            self.dispatcher,
            Metrics(),
            Shard(self.index, 2, self.tmp / "pos", "files"),
        )
        src.tailer.rescan()
        return src

    def restart(self) -> None:
        self.source.tailer.save_positions()
        self.source.tailer.close()
        self.source = self.new_source()

    def settle(self) -> None:
        settle(self.source.tailer, self.dispatcher)

    def close(self) -> None:
        self.source.tailer.close()
        self.dispatcher.close(5)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    (tmp_path / "logs").mkdir()
    ws = [Worker(tmp_path, i, ["*.log"]) for i in range(2)]
    yield ws
    for w in ws:
        w.close()


def write(path: Path, tag: str, count: int) -> list[str]:
    lines = [f"{tag} {i:05d}" for i in range(count)]
    with path.open("a") as f:
        f.write("".join(x + "\n" for x in lines))
    return lines


def both(ws: list[Worker]) -> None:
    for _ in range(3):  # rescans publish claims the other worker reads at its next rescan
        for w in ws:
            w.source.tailer.rescan()
            w.settle()


def test_each_file_is_read_by_the_worker_of_its_path_only(tmp_path: Path, workers: list[Worker]) -> None:
    expected: dict[int, list[str]] = {0: [], 1: []}
    for i in range(12):
        path = tmp_path / "logs" / f"f{i}.log"
        expected[shard_of(str(path), 2)] += write(path, f"f{i}", 50)
    assert expected[0] and expected[1]
    both(workers)
    for w in workers:
        assert sorted(w.sink.lines()) == sorted(expected[w.index])
        assert not w.sink.duplicates()
        assert {tf.path for tf in w.source.files()} == {
            str(p) for p in (tmp_path / "logs").iterdir() if shard_of(str(p), 2) == w.index
        }
    for w in workers:
        w.source.tailer.save_positions()
        saved = orjson.loads((tmp_path / "pos" / f"files.worker-{w.index}.json").read_bytes())["positions"]
        assert all(shard_of(p, 2) == w.index for p in saved) and saved


def _name_in(tmp: Path, shard: int, stem: str) -> Path:
    for i in range(200):
        p = tmp / "logs" / f"{stem}-{i}.log"
        if shard_of(str(p), 2) == shard:
            return p
    raise AssertionError("no name found")


def test_a_file_renamed_to_a_name_of_the_other_worker_stays_with_its_worker(
    tmp_path: Path, workers: list[Worker]
) -> None:
    w0, w1 = workers
    app = _name_in(tmp_path, 0, "app")
    renamed = _name_in(tmp_path, 1, "app-20261202")  # dateext with a watched extension
    first = write(app, "old", 100)
    both(workers)
    assert sorted(w0.sink.lines()) == sorted(first) and w1.sink.lines() == []
    claims = orjson.loads((tmp_path / "pos" / CLAIMS_DIR / "claims-files-0.json").read_bytes())
    st = app.stat()
    assert [st.st_dev, st.st_ino] in claims["keys"]
    os.rename(app, renamed)
    late = write(renamed, "old-late", 10)  # the writer still appends to the renamed file
    fresh = write(app, "new", 20)
    both(workers)
    # Worker 1 sees a watched file of its share that worker 0 follows: it leaves it alone.
    assert w1.sink.lines() == []
    assert sorted(w0.sink.lines()) == sorted(first + late + fresh)
    assert not w0.sink.duplicates()
    # Both restart (claims forgotten, as the supervisor does): the saved positions keep it so.
    for w in workers:
        w.source.tailer.save_positions()
        w.source.tailer.close()
    rebalance(tmp_path / "pos", 2)
    (tmp_path / "pos" / CLAIMS_DIR / "claims-files-0.json").unlink()
    more = write(renamed, "old-later", 5)
    w1.source = w1.new_source()  # worker 1 first: worker 0 has not said what it follows yet
    w1.settle()
    w0.source = w0.new_source()
    both(workers)
    assert w1.sink.lines() == []
    assert sorted(w0.sink.lines()) == sorted(first + late + fresh + more)


def test_a_reused_inode_with_a_stale_entry_goes_to_the_worker_of_its_path(
    tmp_path: Path, workers: list[Worker]
) -> None:
    w0, w1 = workers
    other = _name_in(tmp_path, 1, "other")
    lines = write(other, "other", 7)
    st = other.stat()
    # Worker 0 saved a file (gone since) whose inode the new file reuses: same device and inode,
    # other first bytes. The new file is worker 1's by its path, and only worker 1 reads it.
    gone = str(_name_in(tmp_path, 0, "gone"))
    entry = {
        "offset": 3,
        "size": 3,
        "inode": st.st_ino,
        "device": st.st_dev,
        "fingerprint": "0" * 32,
        "fingerprint_bytes": 3,
        "source_id": gone,
        "state": "live",
    }
    pos = tmp_path / "pos"
    pos.mkdir(exist_ok=True)
    (pos / "files.worker-0.json").write_bytes(orjson.dumps({"version": 2, "positions": {gone: entry}}))
    for w in workers:
        w.source.tailer.close()
        w.source = w.new_source()
    both(workers)
    assert w0.sink.lines() == []
    assert sorted(w1.sink.lines()) == sorted(lines)
