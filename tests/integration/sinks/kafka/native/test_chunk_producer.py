"""The chunk producer (``native/_rdk.c``, loaded by ``native/__init__.py``) against a real broker:
every record of a chunk is reported, failures come back with their record, and close() leaves no
librdkafka thread."""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError

from log_capturer.devtools.topics import TopicSpec, create_topics
from log_capturer.sinks.kafka.native import ChunkProducer, Settled, librdkafka_path, load
from tests.integration.sinks.kafka.test_rejections import limit_topic
from tests.support import consume_all

pytestmark = pytest.mark.integration


def _rdk_threads() -> collections.Counter[str]:
    names: collections.Counter[str] = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue
        if name.startswith("rdk:"):
            names[name] += 1
    return names


def _producer(bootstrap: str, errors: list[KafkaError] | None = None, **extra: Any) -> ChunkProducer:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "zstd",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    conf.update(extra)
    return ChunkProducer(conf, error_cb=errors.append if errors is not None else None)


def _drain(p: ChunkProducer, want: int, timeout: float = 60.0) -> list[Settled]:
    out: list[Settled] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        _, settled = p.poll(0.05)
        out.extend(settled)
    return out


def test_it_loads_the_librdkafka_confluent_kafka_uses() -> None:
    import confluent_kafka

    version = load()
    assert version == confluent_kafka.libversion()[0], (version, librdkafka_path())


def test_every_chunk_is_settled_once_with_all_its_records_delivered(
    bootstrap: str, topic_prefix: str
) -> None:
    topics = [f"{topic_prefix}-a", f"{topic_prefix}-b"]
    create_topics(bootstrap, topics=tuple(TopicSpec(t, 3, 1, "test") for t in topics))
    p = _producer(bootstrap)
    try:
        sent: list[bytes] = []
        for c in range(20):
            values = [f"chunk {c} record {i}".encode() for i in range(500)]
            sent.extend(values)
            # Every other chunk gives its values as ASCII str (codec raw's lines): the same bytes.
            given: list[bytes] | list[str] = values if c % 2 else [v.decode() for v in values]
            n = p.produce_chunk(
                ("token", c), [topics[i % 2] for i in range(500)], given, [f"k{i % 7}" for i in range(500)]
            )
            assert n == 500
        settled = _drain(p, 20)
        assert sorted(tok for tok, _, _ in settled) == [("token", c) for c in range(20)]
        assert all(produced == 500 and failures == [] for _, produced, failures in settled), settled[:2]
        assert p.live_chunks == 0
        assert len(p) == 0 and p.records == 0
    finally:
        p.close()
    got = consume_all(bootstrap, topics, expected=len(sent))
    assert sorted(r.value for r in got) == sorted(sent)
    # Keys decide the partition as with confluent-kafka's default partitioner: one key, one partition.
    by_key: dict[tuple[str, bytes | None], set[int]] = collections.defaultdict(set)
    for r in got:
        by_key[(r.topic, r.key)].add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values()), by_key


def test_a_refused_record_comes_back_with_its_error_and_its_batch_mates_are_delivered(
    bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-small"
    create_topics(bootstrap, topics=(TopicSpec(topic, 1, 1, "test"),))
    limit_topic(bootstrap, topic, 2000)
    big = os.urandom(6000)  # random: stays larger than the limit after compression
    # A batch holding the big record is refused whole: one record per batch, so only it fails.
    p = _producer(bootstrap, **{"batch.num.messages": 1, "linger.ms": 0})
    try:
        values = [b"small 1", big, b"small 2"]
        assert p.produce_chunk("t", [topic] * 3, values, [None, b"the-key", "k"]) == 3
        settled = _drain(p, 1)
    finally:
        p.close()
    assert len(settled) == 1, settled
    token, produced, failures = settled[0]
    assert (token, produced) == ("t", 3)
    assert len(failures) == 1, failures
    code, ftopic, value, key, partition, headers = failures[0]
    assert code == KafkaError.MSG_SIZE_TOO_LARGE, KafkaError(code).str()
    assert (ftopic, value, key, partition, headers) == (topic, big, b"the-key", 0, None)
    assert sorted(r.value for r in consume_all(bootstrap, [topic], expected=2)) == [b"small 1", b"small 2"]


def test_an_unknown_partition_fails_at_once_and_is_reported_with_the_chunk(
    bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-parts"
    create_topics(bootstrap, topics=(TopicSpec(topic, 2, 1, "test"),))
    p = _producer(bootstrap)
    try:
        # Metadata first, so librdkafka knows the topic has 2 partitions.
        assert p.produce_chunk("warm", [topic], [b"warm"], None, [0]) == 1
        assert _drain(p, 1)[0][2] == []
        assert p.produce_chunk("t", [topic] * 2, [b"ok", b"bad"], None, [1, 7]) == 2
        settled = _drain(p, 1)
        # Values given as ASCII str: a failed one comes back as its bytes, as any other.
        assert p.produce_chunk("s", [topic] * 2, ["ok", "bad"], None, [1, 7]) == 2
        settled += _drain(p, 1)
        # Only ASCII text is its own UTF-8: anything else is refused before any record is handed over.
        with pytest.raises(TypeError, match="bytes or ASCII str"):
            p.produce_chunk("u", [topic] * 2, ["ok", "caf\u00e9"], None, [1, 1])
        assert p.live_chunks == 0
    finally:
        p.close()
    assert [(token, produced) for token, produced, _ in settled] == [("t", 2), ("s", 2)]
    for _, _, failures in settled:
        assert [(f[0], f[2], f[4]) for f in failures] == [(KafkaError._UNKNOWN_PARTITION, b"bad", 7)]
        assert type(failures[0][2]) is bytes


def test_a_failed_record_whose_result_finds_no_memory_is_given_back_later_never_lost(
    bootstrap: str, topic_prefix: str
) -> None:
    """Recording a failure allocates nothing (a slot per record); building the Python result
    can run out of memory (forced here by the module's test switch): the settled chunk then stays
    queued for the next poll, with its failure, instead of being dropped or counted delivered."""
    from log_capturer.sinks.kafka.native import _rdk

    topic = f"{topic_prefix}-nomem"
    create_topics(bootstrap, topics=(TopicSpec(topic, 2, 1, "test"),))
    p = _producer(bootstrap)
    try:
        assert p.produce_chunk("warm", [topic], [b"warm"], None, [0]) == 1
        assert _drain(p, 1)[0][2] == []
        _rdk._fail_next_results(1)
        assert p.produce_chunk("t", [topic] * 3, [b"ok", b"bad", b"ok 2"], ["k1", "k2", None], [1, 7, 0]) == 3
        early: list[Settled] = []
        deadline = time.monotonic() + 30
        while p.deferred == 0 and time.monotonic() < deadline:
            early += p.poll(0.05)[1]
        assert p.deferred == 1 and early == [], early
        assert p.live_chunks == 1, "the chunk is still held, not dropped"
        settled = _drain(p, 1)
    finally:
        _rdk._fail_next_results(0)
        p.close()
    [(token, produced, failures)] = settled
    assert (token, produced) == ("t", 3)
    # The failed record comes back as the very objects it was produced from.
    assert failures == [(KafkaError._UNKNOWN_PARTITION, topic, b"bad", "k2", 7, None)]


def test_a_sender_blocked_on_a_full_queue_returns_when_the_producer_closes(bootstrap: str) -> None:
    before = _rdk_threads()
    # Nothing listens on port 1: records stay queued; the queue holds 100 of them.
    p = _producer("127.0.0.1:1", **{"queue.buffering.max.messages": 100, "message.timeout.ms": 0})
    result: list[int] = []
    sender = threading.Thread(
        target=lambda: result.append(p.produce_chunk("t", ["x"] * 300, [b"v"] * 300)), daemon=True
    )
    sender.start()
    deadline = time.monotonic() + 10
    while len(p) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(p) >= 100  # the records, and error events waiting for poll()
    assert p.records == 100  # the records alone
    assert sender.is_alive(), "the sender should wait for room"
    p.close()
    sender.join(10)
    assert not sender.is_alive()
    assert result == [100], "it handed over what fitted, then gave up"
    with pytest.raises(RuntimeError, match="closed"):
        p.produce_chunk("t2", ["x"], [b"v"])
    deadline = time.monotonic() + 10
    while _rdk_threads() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rdk_threads() == before, "close() must end librdkafka's threads"


def test_errors_and_statistics_reach_their_callbacks_on_the_polling_thread() -> None:
    errors: list[KafkaError] = []
    stats: list[str] = []
    threads: set[str] = set()

    def on_error(err: KafkaError) -> None:
        threads.add(threading.current_thread().name)
        errors.append(err)

    p = ChunkProducer(
        {"bootstrap.servers": "127.0.0.1:1", "statistics.interval.ms": 100, "reconnect.backoff.ms": 50},
        error_cb=on_error,
        stats_cb=stats.append,
    )
    try:
        deadline = time.monotonic() + 15
        while (not errors or not stats) and time.monotonic() < deadline:
            p.poll(0.05)
    finally:
        p.close()
    assert stats and stats[0].startswith("{"), stats[:1]
    assert any(e.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) for e in errors), errors
    assert threads == {threading.current_thread().name}


def test_keyed_records_partitioned_in_c_land_where_librdkafkas_partitioner_puts_them(
    bootstrap: str, topic_prefix: str
) -> None:
    """With ``partition_counts`` the chunk producer hashes the keys itself (murmur2, as the
    ``murmur2_random`` partitioner) and enqueues each partition's records at once: the same
    partitions, in the same order, as librdkafka's own partitioner; records without a key and
    topics without a count are still left to librdkafka."""
    lib, here, uncounted = (f"{topic_prefix}-{n}" for n in ("lib", "here", "uncounted"))
    create_topics(bootstrap, topics=tuple(TopicSpec(t, 7, 1, "test") for t in (lib, here, uncounted)))
    keys: list[str | bytes | None] = [
        None if i % 11 == 0 else f"tenant-{i % 37}" if i % 5 else f"ключ-{i % 3}".encode()
        for i in range(3000)
    ]
    keys[1] = ""
    values = [f"record {i}".encode() for i in range(3000)]
    p = _producer(bootstrap, partitioner="murmur2_random")
    try:
        with pytest.raises(TypeError, match="partition_counts"):
            p.produce_chunk("bad", [here], [b"x"], ["k"], None, None, [7])  # type: ignore[arg-type]
        assert p.produce_chunk("lib", [lib] * 3000, values, keys) == 3000
        topics = [here if i % 3 else uncounted for i in range(3000)]
        assert p.produce_chunk("here", topics, values, keys, None, None, {here: 7}) == 3000
        settled = _drain(p, 2)
        assert sorted(settled) == [("here", 3000, []), ("lib", 3000, [])]
    finally:
        p.close()
    got = consume_all(bootstrap, [lib, here, uncounted], expected=6000)
    where = {(r.topic, r.value): r.partition for r in got}
    for i, v in enumerate(values):
        if keys[i] is not None:
            assert where[(topics[i], v)] == where[(lib, v)], (i, keys[i])
    runs: dict[tuple[str, int], list[bytes]] = collections.defaultdict(list)
    for r in sorted(got, key=lambda r: (r.topic, r.partition, r.offset)):
        runs[(r.topic, r.partition)].append(r.value)
    topic_of = {v: topics[i] for i, v in enumerate(values) if keys[i] is not None}
    for (t, part), vals in runs.items():
        if t != lib:
            # Each partition's keyed records in the order librdkafka's partitioner gave them.
            theirs = [v for v in runs[(lib, part)] if topic_of.get(v) == t]
            assert [v for v in vals if v in topic_of] == theirs, (t, part)


def test_a_bad_property_names_itself() -> None:
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException, match=r"no\.such\.property"):
        ChunkProducer({"bootstrap.servers": "127.0.0.1:1", "no.such.property": "1"})


def _through_a_full_queue(
    bootstrap: str, topics: list[str], hdrs: list[tuple[str, str | bytes | None]] | None
) -> tuple[list[bytes], list[Any]]:
    """5000 records, keys k0..k10, over ``topics`` in interleaved uneven runs (with ``hdrs`` on
    each, or none) handed over as one chunk to a producer whose queue holds 700: the chunk is
    settled once with all delivered, each record read back once, in order per topic and key.
    Returns the values sent and the records read back."""
    create_topics(bootstrap, topics=tuple(TopicSpec(t, 3, 1, "test") for t in topics))
    p = _producer(bootstrap, **{"queue.buffering.max.messages": 700})
    settled: list[Settled] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            settled.extend(p.poll(0.01)[1])

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    n = 5000
    chunk_topics = [topics[(i * 7) % len(topics)] for i in range(n)]
    keys = [f"k{i % 11}" for i in range(n)]
    values = [f"{chunk_topics[i]} {keys[i]} {i:05d}".encode() for i in range(n)]
    headers = None if hdrs is None else [hdrs] * n
    try:
        assert p.produce_chunk("t", chunk_topics, values, keys, None, headers) == n
        deadline = time.monotonic() + 60
        while not settled and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        poller.join(10)
        p.close()
    assert [(tok, produced, failures) for tok, produced, failures in settled] == [("t", n, [])]
    got = consume_all(bootstrap, topics, expected=n)
    assert sorted(r.value for r in got) == sorted(values), "each record once"
    by_key: dict[tuple[str, bytes | None], list[bytes]] = collections.defaultdict(list)
    for r in sorted(got, key=lambda r: (r.topic, r.partition, r.offset)):
        by_key[(r.topic, r.key)].append(r.value)
    assert len(by_key) == len(topics) * 11
    for (topic, key), vals in by_key.items():
        want = [v for i, v in enumerate(values) if chunk_topics[i] == topic and keys[i].encode() == key]
        assert vals == want, (topic, key)
    return values, got


def test_records_for_several_topics_keep_their_order_per_key_through_a_full_queue(
    bootstrap: str, topic_prefix: str
) -> None:
    # Records are handed over grouped by topic, in batches; a queue of 700 fills in the middle of
    # a batch, and the rest of it is handed over again once delivery reports make room.
    _through_a_full_queue(bootstrap, [f"{topic_prefix}-x", f"{topic_prefix}-y", f"{topic_prefix}-z"], None)


def _headers_case(n: int) -> tuple[list[bytes], list[str | bytes | None], list[Any]]:
    """Values, keys (str, bytes, None) and headers (shared per-level lists, a list with str and
    None values, and records without headers) of ``n`` records."""
    from log_capturer.sinks.kafka.headers import headers_for

    names = ["level", "source_type", "source_id", "labels"]
    by_level = {
        lvl: headers_for(names, lvl, "file", "/var/log/app.log", {"team": "pay", "env": "prod"})
        for lvl in ("error", "info", "")
    }
    odd: list[tuple[str, str | bytes | None]] = [("level", "warn"), ("empty", None), ("bin", b"\x00\xff")]
    choices: list[Any] = [by_level["error"], by_level["info"], by_level[""], odd, None]
    values = [f"record {i:05d} {'x' * (i % 40)}".encode() for i in range(n)]
    keys: list[str | bytes | None] = [(f"k{i % 9}", f"b{i % 5}".encode(), None)[i % 3] for i in range(n)]
    return values, keys, [choices[(i * 7) % len(choices)] for i in range(n)]


def test_records_with_headers_read_back_as_confluent_kafka_sends_them(
    bootstrap: str, topic_prefix: str
) -> None:
    """A chunk with headers goes record by record through rd_kafka_produceva, its headers built in
    C: read back from the broker, its records are those confluent-kafka's producer (the Python
    path) sends: the same partitions, keys, values and headers, in the same order."""
    from confluent_kafka import Producer

    c_topics = [f"{topic_prefix}-c-a", f"{topic_prefix}-c-b"]
    py_topics = [f"{topic_prefix}-py-a", f"{topic_prefix}-py-b"]
    create_topics(bootstrap, topics=tuple(TopicSpec(t, 3, 1, "test") for t in c_topics + py_topics))
    n = 3000
    values, keys, headers = _headers_case(n)
    which = [(i // 3) % 2 for i in range(n)]
    conf = {"partitioner": "murmur2_random"}
    p = _producer(bootstrap, **conf)
    try:
        assert p.produce_chunk("h", [c_topics[w] for w in which], values, keys, None, headers) == n
        settled = _drain(p, 1)
        assert p.records == 0 and p.live_chunks == 0
    finally:
        p.close()
    assert settled == [("h", n, [])]
    py = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **conf})
    for i in range(n):
        py.produce(py_topics[which[i]], values[i], keys[i], headers=headers[i])
    assert py.flush(60) == 0

    def contents(topics: list[str]) -> list[dict[bytes, tuple[int, bytes | None, tuple[Any, ...]]]]:
        """Per topic: each value's (partition, key, headers); -1 for an unkeyed record's partition
        (random: murmur2_random)."""
        got = consume_all(bootstrap, topics, expected=n)
        return [
            {
                r.value: (r.partition if r.key is not None else -1, r.key, r.headers)
                for r in got
                if r.topic == t
            }
            for t in topics
        ]

    def orders(topics: list[str]) -> list[list[bytes]]:
        got = sorted(
            consume_all(bootstrap, topics, expected=n), key=lambda r: (r.topic, r.partition, r.offset)
        )
        byte_keys = sorted({k.encode() if isinstance(k, str) else k for k in keys if k is not None})
        return [[r.value for r in got if (r.topic, r.key) == (t, k)] for t in topics for k in byte_keys]

    mine, theirs = contents(c_topics), contents(py_topics)
    assert sum(map(len, mine)) == n
    assert mine == theirs
    assert orders(c_topics) == orders(py_topics), "in order per topic and key"
    # And as sent: the level's header lists, in order, None values as None.
    for i in (0, 1, 2, 3, 4):
        assert mine[which[i]][values[i]][2] == tuple(
            (k, v.encode() if isinstance(v, str) else v) for k, v in headers[i] or ()
        )


def test_a_failed_record_with_headers_comes_back_with_its_header_list(
    bootstrap: str, topic_prefix: str
) -> None:
    """What is retried or parked in the DLQ is the record as it was sent: its headers too (the
    very list it was produced with)."""
    topic = f"{topic_prefix}-hfail"
    create_topics(bootstrap, topics=(TopicSpec(topic, 2, 1, "test"),))
    hdrs: list[tuple[str, str | bytes | None]] = [("level", b"error"), ("source_id", b"/x.log")]
    p = _producer(bootstrap)
    try:
        assert p.produce_chunk("warm", [topic], [b"warm"], None, [0]) == 1
        assert _drain(p, 1)[0][2] == []
        assert (
            p.produce_chunk(
                "t", [topic] * 3, [b"ok", b"bad", b"ok 2"], ["k1", "k2", None], [1, 7, 0], [hdrs, hdrs, None]
            )
            == 3
        )
        settled = _drain(p, 1)
    finally:
        p.close()
    [(token, produced, failures)] = settled
    assert (token, produced) == ("t", 3)
    assert failures == [(KafkaError._UNKNOWN_PARTITION, topic, b"bad", "k2", 7, hdrs)]
    assert failures[0][5] is hdrs
    got = consume_all(bootstrap, [topic], expected=3)
    assert sorted((r.value, r.headers) for r in got) == [
        (b"ok", (("level", b"error"), ("source_id", b"/x.log"))),
        (b"ok 2", ()),
        (b"warm", ()),
    ]


def test_records_with_headers_keep_their_order_per_key_through_a_full_queue(
    bootstrap: str, topic_prefix: str
) -> None:
    """With headers the records go one by one: a full queue (700) makes the sender wait for room
    and hand the same record over again, none lost, none twice, in order per key."""
    _, got = _through_a_full_queue(
        bootstrap, [f"{topic_prefix}-hx", f"{topic_prefix}-hy"], [("level", b"info")]
    )
    assert all(r.headers == (("level", b"info"),) for r in got)


def test_bad_headers_are_refused_before_any_record_is_handed_over(bootstrap: str) -> None:
    p = _producer(bootstrap)
    try:
        for bad, match in (
            ([[("level", 3)]], "value must be bytes, str or None"),
            ([[("level",)]], r"\(str, bytes \| str \| None\) pair"),
            ([{"level": b"x"}], "lists of \\(name, value\\) pairs"),
            ([None, None], "one length"),
        ):
            with pytest.raises((TypeError, ValueError), match=match):
                p.produce_chunk("t", ["x"], [b"v"], None, None, bad)
        assert p.live_chunks == 0 and p.records == 0
    finally:
        p.close()


def test_wake_ends_the_polling_threads_wait_at_once_and_close_still_ends_every_thread() -> None:
    before = _rdk_threads()
    p = ChunkProducer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})
    try:
        p.poll(0)  # (anything waiting already)
        waker = threading.Timer(0.2, p.wake)
        waker.start()
        started = time.monotonic()
        p.poll(5.0)
        woken_after = time.monotonic() - started
        waker.join()
        assert woken_after < 2.0, woken_after  # not the 5 s timeout
        p.wake()  # with no poll waiting: the next one returns at once
        started = time.monotonic()
        p.poll(5.0)
        assert time.monotonic() - started < 2.0
    finally:
        p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.wake()
    deadline = time.monotonic() + 10
    while _rdk_threads() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rdk_threads() == before, "close() must end librdkafka's threads (and drop the main queue)"
