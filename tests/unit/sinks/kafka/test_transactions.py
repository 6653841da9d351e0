"""Exactly-once delivery's parts that need no broker (log_capturer.sinks.kafka.transactions), and
the configuration it accepts: every refusal names the key and the fix."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaError

from log_capturer.config import ConfigError, load_config_text
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.transactions import (
    AbortLog,
    DeadLetterParts,
    Gate,
    Reroute,
    TransactionalReports,
    consumer_config,
    dead_letter_parts,
    merge_positions,
    positions_document,
    refused_line,
    transactional_base,
    transactional_config,
    transactional_id,
)

EOS = """
http_ingest: {enabled: false}
files_config: {watch_directories: [/var/log/app]}
sinks:
  kafka:
    enabled: true
    required_acks: -1
    delivery: exactly_once
"""


def test_a_config_for_exactly_once_loads() -> None:
    cfg = load_config_text(EOS)
    assert cfg.sinks.kafka.delivery == "exactly_once"
    assert cfg.sinks.kafka.exactly_once.transaction_interval == pytest.approx(0.1)
    assert cfg.sinks.kafka.exactly_once.transaction_max_records == 50000
    assert load_config_text("").sinks.kafka.delivery == "at_least_once"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("    required_acks: 1\n", "set required_acks: -1"),
        ("syslog: {enabled: true}\n", "set syslog.enabled: false"),
        ("kubernetes: {enabled: true}\n", "set kubernetes.enabled: false"),
        ("http_ingest: {enabled: true}\n", "set http_ingest.enabled: false"),
        ("files_config: {enabled: false}\n", "set files_config.enabled: true"),
        (
            "sinks:\n  kafka: {enabled: true, required_acks: -1, delivery: exactly_once}\n"
            "  local_file: {enabled: true, directory: /tmp/x}\n",
            "set sinks.local_file.enabled: false",
        ),
    ],
)
def test_what_exactly_once_does_not_cover_is_refused_naming_the_key(change: str, says: str) -> None:
    text = EOS.replace("    required_acks: -1\n", change) if change.startswith("    ") else EOS + change
    with pytest.raises(ConfigError) as exc:
        load_config_text(text)
    assert says in str(exc.value)
    assert "exactly_once" in str(exc.value)


def test_several_workers_are_accepted() -> None:
    assert load_config_text(EOS + "app: {workers: 3}\n").app.workers == 3


def test_docker_container_logs_are_accepted_with_or_without_files() -> None:
    cfg = load_config_text(EOS + "container_monitor: {enabled: true}\n")
    assert cfg.container_monitor.enabled
    alone = EOS.replace("files_config: {watch_directories: [/var/log/app]}", "files_config: {enabled: false}")
    assert load_config_text(alone + "container_monitor: {enabled: true}\n").container_monitor.enabled


def test_the_transactional_properties_cannot_be_set_as_librdkafka_options() -> None:
    with pytest.raises(ValueError, match=r"transactional\.id"):
        KafkaSinkConfig(librdkafka_options={"transactional.id": "x"})


def test_the_transactional_id_is_configured_or_the_host_and_the_worker() -> None:
    assert transactional_id(KafkaSinkConfig()) == f"log-capturer-{socket.gethostname()}-0"
    assert transactional_id(KafkaSinkConfig(), (3, 4)) == f"log-capturer-{socket.gethostname()}-3"
    assert transactional_base(KafkaSinkConfig()) == f"log-capturer-{socket.gethostname()}"
    cfg = KafkaSinkConfig(exactly_once={"transactional_id": "node-7"})
    assert transactional_id(cfg) == "node-7"
    # One worker of several: its own id, the same at every restart of that worker.
    assert transactional_id(cfg, (0, 2)) == "node-7-0"
    assert transactional_id(cfg, (1, 2)) == "node-7-1"


def test_the_abort_log_keeps_the_count_across_runs(tmp_path: Path) -> None:
    log = AbortLog(str(tmp_path / "positions"), "node/7")
    assert log.load() == (0, "")
    log.save(2, "commit: timed out")
    assert log.path is not None and log.path.name == "transactions-node_7.json"
    assert AbortLog(str(tmp_path / "positions"), "node/7").load() == (2, "commit: timed out")
    assert AbortLog(str(tmp_path / "positions"), "other").load() == (0, "")
    log.path.write_text("{not json")
    assert log.load() == (0, "")
    assert AbortLog(None, "node-7").load() == (0, "")
    AbortLog(None, "node-7").save(1, "x")  # no directory: nothing written, nothing raised


def test_transactional_properties_bound_the_message_timeout_by_the_transaction() -> None:
    cfg = KafkaSinkConfig(required_acks=-1, timeout=90, exactly_once={"transaction_timeout": "60s"})
    conf = transactional_config(cfg, {"bootstrap.servers": "b:1", "acks": "all"}, "tid")
    assert conf["transactional.id"] == "tid"
    assert conf["transaction.timeout.ms"] == 60000
    assert conf["message.timeout.ms"] == 60000
    assert conf["enable.idempotence"] is True


def test_the_positions_reader_is_read_committed_with_the_producers_connection() -> None:
    conf = consumer_config(
        {
            "bootstrap.servers": "b:1",
            "security.protocol": "SASL_SSL",
            "sasl.username": "u",
            "ssl.ca.location": "/ca",
            "linger.ms": 5,
            "transactional.id": "x",
        }
    )
    assert conf["isolation.level"] == "read_committed"
    assert conf["sasl.username"] == "u" and conf["ssl.ca.location"] == "/ca"
    assert "linger.ms" not in conf and "transactional.id" not in conf


def test_the_positions_document_has_the_positions_file_format() -> None:
    before = time.time()
    doc = orjson.loads(positions_document("tid-1", {"files": {"/a.log": {"offset": 10, "inode": 2}}}, "tid"))
    assert before <= doc.pop("committed_at") <= time.time()
    assert doc == {
        "version": 2,
        "transactional_id": "tid-1",
        "base": "tid",
        "positions": {"/a.log": {"offset": 10, "inode": 2}},
    }


def test_the_gate_holds_senders_during_a_commit_and_counts_their_lines() -> None:
    gate = Gate()
    gate.enter(5)
    gate.close()
    assert gate.inside == 1
    passed = threading.Event()

    def sender() -> None:
        gate.enter(7)
        passed.set()
        gate.leave()

    t = threading.Thread(target=sender)
    t.start()
    deadline = time.monotonic() + 5
    while gate.waiting != 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.waiting == 7 and not passed.is_set()
    gate.leave()
    assert gate.inside == 0
    gate.open()
    assert passed.wait(5)
    t.join(5)
    assert gate.waiting == 0 and gate.inside == 0


def doc(tid: str, base: str, at: float, **files: tuple[int, int]) -> bytes:
    """A positions document: path -> (inode, offset)."""
    entries = {
        p: {"device": 1, "inode": ino, "offset": off, "source_id": p} for p, (ino, off) in files.items()
    }
    return orjson.dumps(
        {"version": 2, "transactional_id": tid, "base": base, "committed_at": at, "positions": entries}
    )


def test_merge_positions_takes_the_newest_commit_of_each_file_among_the_agents_workers() -> None:
    docs = {
        b"node-0": doc("node-0", "node", 10.0, a=(1, 100), b=(2, 50)),
        # worker 1 of an earlier run with more workers followed b later: its entry is newer.
        b"node-1": doc("node-1", "node", 20.0, b=(2, 80)),
        # Another agent (another base) is never read, newer or not.
        b"nodex-0": doc("nodex-0", "nodex", 30.0, a=(1, 999), c=(3, 1)),
        b"other": b"not json",
    }
    got = merge_positions(docs, "node-0", "node")
    assert {p: e["offset"] for p, e in got.items()} == {"a": 100, "b": 80}
    # Without a base (one process configured so) only its own document counts.
    assert {p: e["offset"] for p, e in merge_positions(docs, "node-0", "").items()} == {"a": 100, "b": 50}
    # A tie goes to this worker's own document.
    tie = {b"node-0": doc("node-0", "node", 5.0, a=(1, 1)), b"node-1": doc("node-1", "node", 5.0, a=(1, 2))}
    assert merge_positions(tie, "node-0", "node")["a"]["offset"] == 1
    assert merge_positions(tie, "node-1", "node")["a"]["offset"] == 2
    assert merge_positions({}, "node-0", "node") == {}


def test_merge_positions_refuses_its_own_unreadable_document() -> None:
    from log_capturer.sinks.kafka.transactions import PositionsUnreadable

    with pytest.raises(PositionsUnreadable, match="not in format 2"):
        merge_positions({b"node-0": b'{"version": 1}'}, "node-0", "node", "positions")


def test_merge_positions_of_containers_takes_each_containers_newest_entry() -> None:
    def cdoc(tid: str, at: float, **offsets: int) -> bytes:
        containers = {
            cid: {"status": "running", "files": {f"/c/{cid}.log": {"offset": off, "inode": 7}}}
            for cid, off in offsets.items()
        }
        return orjson.dumps(
            {
                "version": 2,
                "transactional_id": tid,
                "base": "node",
                "committed_at": at,
                "positions": {},
                "containers": containers,
            }
        )

    docs = {b"node-0": cdoc("node-0", 1.0, abc=10, def_=5), b"node-1": cdoc("node-1", 2.0, abc=30)}
    got = merge_positions(docs, "node-0", "node", kind="containers")
    assert {cid: e["files"][f"/c/{cid}.log"]["offset"] for cid, e in got.items()} == {"abc": 30, "def_": 5}
    assert merge_positions(docs, "node-0", "node") == {}  # no files


def test_dead_letter_parts_put_together_give_the_value_back() -> None:
    headers: list[tuple[str, str | bytes | None]] = [("dlq_error_type", b"message_too_large")]
    assert dead_letter_parts(b"abc", headers, "k", 1024) == [(b"abc", headers)]
    value = bytes(random.Random(1).randbytes(10_000))
    parts = dead_letter_parts(value, headers, "key", 1024)
    assert b"".join(v for v, _ in parts) == value
    n = len(parts)
    assert n == 11
    for i, (v, h) in enumerate(parts, 1):
        assert h == [*headers, ("dlq_part", f"{i}/{n}".encode())]
        assert len(v) + 3 + sum(len(k) + len(x or b"") + 16 for k, x in h) <= 1024


def test_dead_letter_parts_report_once_every_part_is_in_with_the_first_failure() -> None:
    reports: list[tuple[object, KafkaError | None]] = []
    token = DeadLetterParts("a", 3, lambda a, err, _m: reports.append((a, err)))
    token.done(None)
    token.done(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert reports == []
    token.done(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert len(reports) == 1 and reports[0][0] == "a"
    err = reports[0][1]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    whole = DeadLetterParts("b", 2, lambda a, err, _m: reports.append((a, err)))
    whole.settled(2, [])
    assert reports[-1] == ("b", None)
    failed = DeadLetterParts("c", 2, lambda a, err, _m: reports.append((a, err)))
    failed.settled(2, [(KafkaError.INVALID_RECORD, "t", b"v", None, -1, None)])
    err = reports[-1][1]
    assert reports[-1][0] == "c" and err is not None and err.code() == KafkaError.INVALID_RECORD


def test_a_refused_line_is_found_again_in_an_overlapping_chunk_of_its_stream(tmp_path: Path) -> None:
    chunk = Chunk(Origin("file", "/var/log/a.log"), ["a", "big", "c"], start=100, end=200)
    chunk.stream = "1:2"
    entry = refused_line(chunk, 1, "msg_size_too_large", "msg_size_too_large: Broker: Message size too large")
    log = AbortLog(str(tmp_path), "agent")
    log.save(1, "a record failed", [entry])
    assert log.load() == (1, "a record failed")
    reroute = Reroute(log.refused())
    assert reroute.entries == [entry]
    # Another stream, another file, a range that does not overlap: not that line.
    other = Chunk(Origin("file", "/var/log/a.log"), ["big"], start=150, end=160)
    other.stream = "1:3"
    assert reroute.match(other) == {}
    assert reroute.match(Chunk(Origin("file", "/var/log/b.log"), ["big"], start=150, end=160)) == {}
    later = Chunk(Origin("file", "/var/log/a.log"), ["big"], start=200, end=204)
    later.stream = "1:2"
    assert reroute.match(later) == {}
    # Read again in other chunks: the one holding it, at its index.
    again = Chunk(Origin("file", "/var/log/a.log"), ["c0", "a", "big", "c"], start=90, end=205)
    again.stream = "1:2"
    assert reroute.match(again) == {2: ("msg_size_too_large", entry["error"])}
    assert reroute.match(again) == {}  # once per transaction
    assert reroute.committed() is True and not reroute and reroute.committed() is False
    # Saving without the list keeps the file's; an empty list forgets them.
    log.save(2, "again")
    assert log.refused() == [entry]
    log.save(2, "again", [])
    assert log.refused() == []


def test_a_match_not_committed_is_looked_for_again() -> None:
    chunk = Chunk(Origin("file", "/a"), ["big"], start=0, end=4)
    reroute = Reroute([refused_line(chunk, 0, "r", "e")])
    assert reroute.match(chunk) == {0: ("r", "e")}
    assert reroute  # still there until committed: an abort keeps it


def test_the_reports_keep_the_largest_record_of_a_batch_refused_for_its_size() -> None:
    reports = TransactionalReports("dlq")
    size = KafkaError.MSG_SIZE_TOO_LARGE

    class Runner:
        def failed(self, *args: object) -> None:
            pass

    reports.bind(Runner())  # type: ignore[arg-type]
    reports.settled([("d1", 2, [(size, "t", b"ab", None, 0, None), (size, "t", b"abcd", None, 0, None)])])
    reports.settled([("d2", 1, [(KafkaError.INVALID_RECORD, "t", b"abcdefgh", None, 0, None)])])
    assert reports.refused is not None and reports.refused[:3] == ("d1", b"abcd", "msg_size_too_large")
    assert reports.failure
