from __future__ import annotations

import asyncio
import logging
import random
import struct
from typing import Any

import msgpack
import pytest

from log_capturer.config.schema import HttpIngestConfig
from log_capturer.processing.timestamps import NS, parse_rfc3339
from log_capturer.record import Chunk
from log_capturer.sources.http import source as http
from log_capturer.sources.http.source import (
    EMPTY_MESSAGE,
    INVALID_FIELD,
    INVALID_JSON,
    INVALID_MSGPACK,
    MISSING_MESSAGE,
    NOT_AN_OBJECT,
    IngestError,
    Item,
    Records,
    Rejected,
    level_of,
    parse_body,
    time_ns,
)


def event_time(seconds: int, nanos: int) -> msgpack.ExtType:
    """Fluent's EventTime, as Fluent Bit packs it (msgpack extension 0, fixext 8)."""
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def records(body: bytes, content_type: str = "") -> list[Any]:
    """The body's items: records as dicts, rejected ones as (number, reason)."""
    return [(r.number, r.reason) if isinstance(r, Rejected) else r[0] for r in parse_body(body, content_type)]


def unreadable(body: bytes, content_type: str = "") -> str:
    with pytest.raises(IngestError) as exc:
        parse_body(body, content_type)
    assert exc.value.status == 400
    assert "JSON (an object or an array of objects), NDJSON" in exc.value.reason
    assert "msgpack" in exc.value.reason
    return exc.value.reason


def shipped(recs: list[dict[str, Any]], **cfg: Any) -> tuple[list[Chunk], list[Rejected]]:
    return Records(HttpIngestConfig(**cfg)).chunks([(r, None) for r in recs])


def test_json_forms() -> None:
    assert records(b'{"message": "a"}') == [{"message": "a"}]
    assert records(b'{\n  "message": "pretty"\n}\n') == [{"message": "pretty"}]
    assert records(b'[{"message": "a"}, {"message": "b"}]') == [{"message": "a"}, {"message": "b"}]
    assert records(b'{"message": "a"}\n\n{"message": "b"}\r\n') == [{"message": "a"}, {"message": "b"}]
    assert records(b"[]") == []


def test_msgpack_forms_fluent_bit_events_and_plain_maps() -> None:
    v2 = msgpack.packb([[event_time(1_700_000_000, 123_456_789), {}], {"log": "new format"}])
    v1 = msgpack.packb([event_time(1_700_000_001, 5), {"log": "old format"}])
    seconds = msgpack.packb([1_700_000_002, {"log": "integer time"}])
    fraction = msgpack.packb([1_700_000_003.5, {"log": "float time"}])
    plain = msgpack.packb({"message": "a map"})
    several = msgpack.packb([{"message": "x"}, {"message": "y"}])
    items = parse_body(v2 + v1 + seconds + fraction + plain + several, "application/msgpack")
    assert items == [
        ({"log": "new format"}, 1_700_000_000_123_456_789),
        ({"log": "old format"}, 1_700_000_001_000_000_005),
        ({"log": "integer time"}, 1_700_000_002 * NS),
        ({"log": "float time"}, 1_700_000_003_500_000_000),
        ({"message": "a map"}, None),
        ({"message": "x"}, None),
        ({"message": "y"}, None),
    ]
    # Without a Content-Type (or another one), a body that starts like a msgpack map is msgpack.
    assert records(plain) == [{"message": "a map"}]
    assert records(plain, "application/octet-stream") == [{"message": "a map"}]


def test_msgpack_values_become_json() -> None:
    body = msgpack.packb(
        {
            "message": b"bin \xff",
            1: "int key",
            "nested": {"t": msgpack.Timestamp(1, 5), "e": msgpack.ExtType(7, b"\x01"), "l": [b"x"]},
        },
        use_bin_type=True,
    )
    invalid_str = b"\x81\xa7message\xab" + b"bad utf-8 \xff"  # a msgpack str that is not UTF-8
    first, second = records(body + invalid_str, "application/msgpack")
    assert first == {
        "message": "bin \\xff",
        "1": "int key",
        "nested": {"t": 1_000_000_005, "e": {"ext_type": 7, "data_base64": "AQ=="}, "l": ["x"]},
    }
    assert second == {"message": "bad utf-8 \\xff"}


def test_the_undecodable_end_of_a_msgpack_body_is_one_rejected_record() -> None:
    good = msgpack.packb({"message": "a"}) + msgpack.packb({"message": "b"})
    items = parse_body(good + b"\xc1\x00\x01", "application/msgpack")
    assert [i[0] for i in items[:2]] == [{"message": "a"}, {"message": "b"}]
    [cut] = items[2:]
    assert isinstance(cut, Rejected) and cut.reason == INVALID_MSGPACK and cut.number == 3
    assert "the last 3 bytes of the msgpack body cannot be decoded" in cut.error
    assert cut.original == {"raw_base64": "wQAB"}
    truncated = parse_body(good + msgpack.packb({"message": "c" * 50})[:20], "application/msgpack")
    assert isinstance(truncated[2], Rejected) and "end in the middle of a value" in truncated[2].error
    not_records = records(msgpack.packb({"message": "a"}) + msgpack.packb(42), "application/msgpack")
    assert not_records == [{"message": "a"}, (2, NOT_AN_OBJECT)]


def test_one_bad_line_is_rejected_alone() -> None:
    body = b'{"message": "a"}\n{oops\n[1]\n\n"text"\n{"message": "b"}\n'
    want = [{"message": "a"}, (2, INVALID_JSON), (3, NOT_AN_OBJECT), (4, NOT_AN_OBJECT), {"message": "b"}]
    assert records(body) == want
    bad = parse_body(body)[1]
    assert isinstance(bad, Rejected)
    assert bad.error.startswith("record 2: not JSON (") and bad.original == {"raw": "{oops"}
    after_blank = parse_body(b'{"message": "a"}\n\n{oops')[1]
    assert isinstance(after_blank, Rejected) and after_blank.error.startswith("record 2 (line 3): not JSON")
    assert records(b'["a", {"message": "b"}]') == [(1, NOT_AN_OBJECT), {"message": "b"}]
    # Bytes that are not UTF-8 inside a JSON line: kept as \xNN, the record is not lost.
    assert records(b'{"message": "a"}\n{"message": "caf\xe9"}') == [{"message": "a"}, {"message": "caf\\xe9"}]


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b"", "", "empty body"),
        (b"  \n", "application/json", "empty body"),
        (b"not json", "", "record 1: not JSON"),
        (b"hello\nworld", "text/plain", "record 1: not JSON"),
        (b"[1, 2", "", "not a valid JSON array"),
        (b"\x00\x01", "application/msgpack", "msgpack cannot be decoded"),
        (b"\xc1", "application/msgpack", "msgpack cannot be decoded"),
        (b'{"message": "a"}', "application/msgpack", "msgpack cannot be decoded"),
    ],
)
def test_only_an_unreadable_body_is_refused(body: bytes, content_type: str, why: str) -> None:
    assert why in unreadable(body, content_type)


def test_declared_json_that_is_msgpack_gets_a_hint() -> None:
    why = unreadable(msgpack.packb({"log": "x"}), "application/json")
    assert "send Content-Type: application/msgpack" in why


@pytest.mark.parametrize(
    ("record", "reason", "text"),
    [
        ({"level": "info"}, MISSING_MESSAGE, "record 1: no message: none of message, log, msg is there"),
        ({"message": None}, MISSING_MESSAGE, "none of message, log, msg"),
        ({"message": ""}, EMPTY_MESSAGE, "record 1: 'message' is empty"),
        ({"log": " \t\n"}, EMPTY_MESSAGE, "record 1: 'log' is empty"),
        ({"message": 5}, INVALID_FIELD, "record 1: 'message' must be text, not a number"),
        ({"message": "a", "labels": ["x"]}, INVALID_FIELD, "'labels' must be an object, not an array"),
        ({"message": "a", "labels": {"n": 1}}, INVALID_FIELD, "label 'n' must be a string, not a number"),
        ({"message": "a", "source_id": 7}, INVALID_FIELD, "'source_id' must be a non-empty string"),
        ({"message": "a", "source_type": ""}, INVALID_FIELD, "'source_type' must be a non-empty string"),
        ({"message": "a", "fields": "x"}, INVALID_FIELD, "'fields' must be an object, not a string"),
    ],
)
def test_records_that_cannot_be_shipped_are_rejected_with_a_reason(
    record: dict[str, Any], reason: str, text: str
) -> None:
    chunks, [rejected] = shipped([record])
    assert chunks == []
    assert rejected.reason == reason and text in rejected.error, rejected.error
    assert rejected.original == record and rejected.number == 1


def test_good_records_are_kept_around_the_bad_ones() -> None:
    chunks, rejected = shipped(
        [{"message": "one"}, {"log": ""}, {"message": "two"}, {"nothing": 1}, {"message": "three"}]
    )
    assert [c.lines for c in chunks] == [["one", "two", "three"]]
    assert [(r.number, r.reason) for r in rejected] == [(2, EMPTY_MESSAGE), (4, MISSING_MESSAGE)]


def test_records_become_one_chunk_per_origin_in_order() -> None:
    cfg = HttpIngestConfig(labels={"env": "prod", "team": "a"}, pipeline="")
    items = parse_body(
        b'{"message": "one", "labels": {"team": "b"}}\n'
        b'{"message": "two", "source_id": "svc-2", "level": "WARNING", "timestamp": "2026-11-25T08:00:00Z"}\n'
        b'{"message": "three", "labels": {"team": "b"}, "user": "ann", "fields": {"n": 1}}\n'
        b'{"message": "four", "source_id": "svc-2", "timestamp": 1795593600.5, "level": 50}\n'
    )
    chunks, rejected = Records(cfg).chunks(items)
    assert rejected == []
    assert [c.lines for c in chunks] == [["one", "three"], ["two", "four"]]
    first, second = chunks
    assert (first.origin.source_type, first.origin.source_id) == ("api", "http")
    assert first.origin.labels == {"env": "prod", "team": "b"}
    assert first.meta == [None, {"user": "ann", "n": 1}]
    assert first.preset_levels is None and first.timestamps is None
    assert second.origin.source_id == "svc-2"
    assert second.origin.labels == {"env": "prod", "team": "a"}
    assert second.preset_levels == ["warn", "error"]
    assert second.timestamps == [parse_rfc3339("2026-11-25T08:00:00Z"), 1_795_593_600_500_000_000]


def test_the_record_shapes_of_common_clients() -> None:
    chunks, rejected = shipped(
        [
            # Fluent Bit's http output, Format json: its `date` (epoch seconds) and `log`.
            {"date": 1_700_000_000.25, "log": "fluent bit line\n", "stream": "stdout"},
            # Vector's http sink: message, timestamp and the event's other fields.
            {
                "message": "vector line",
                "timestamp": "2026-11-25T08:00:00.5Z",
                "host": "h1",
                "source_type": "file",
            },
            # Logstash's http output.
            {"@timestamp": "2026-11-25T08:00:01Z", "@version": "1", "message": "logstash line"},
            # Docker's json-file line.
            {"log": "docker line\r\n", "stream": "stderr", "time": "2026-11-25T08:00:02.123456789Z"},
            # Pino: a numeric level and epoch milliseconds.
            {"level": 30, "time": 1_764_057_603_456, "pid": 7, "msg": "pino line"},
        ]
    )
    assert rejected == []
    by_line = {
        line: (c.origin.source_type, c.meta[i] if c.meta else None, c.timestamps[i] if c.timestamps else None)
        for c in chunks
        for i, line in enumerate(c.lines)
    }
    assert by_line == {
        "fluent bit line": ("api", {"stream": "stdout"}, 1_700_000_000_250_000_000),
        "vector line": ("file", {"host": "h1"}, parse_rfc3339("2026-11-25T08:00:00.5Z")),
        "logstash line": ("api", {"@version": "1"}, parse_rfc3339("2026-11-25T08:00:01Z")),
        "docker line": ("api", {"stream": "stderr"}, parse_rfc3339("2026-11-25T08:00:02.123456789Z")),
        "pino line": ("api", {"pid": 7}, 1_764_057_603_456_000_000),
    }
    pino = next(c for c in chunks if "pino line" in c.lines)
    assert pino.preset_levels is not None
    assert pino.preset_levels[pino.lines.index("pino line")] == "info"


def test_a_msgpack_event_time_is_used_unless_the_record_has_one() -> None:
    items = parse_body(
        msgpack.packb([event_time(1_700_000_000, 7), {"log": "a"}])
        + msgpack.packb([event_time(1_700_000_000, 7), {"log": "b", "time": "2026-11-25T08:00:00Z"}]),
        "application/msgpack",
    )
    [chunk], _ = Records(HttpIngestConfig()).chunks(items)
    assert chunk.timestamps == [1_700_000_000_000_000_007, parse_rfc3339("2026-11-25T08:00:00Z")]


def test_values_that_are_not_a_time_or_a_level_stay_in_fields() -> None:
    [chunk], rejected = shipped(
        [
            {"message": "a", "level": "loud", "timestamp": "soon", "time": "12ms"},
            {"message": "b", "timestamp": True, "severity": "high", "level": "ERROR"},
        ]
    )
    assert rejected == []
    assert chunk.meta == [
        {"level": "loud", "timestamp": "soon", "time": "12ms"},
        {"timestamp": True, "severity": "high"},
    ]
    assert chunk.preset_levels == [None, "error"]
    assert chunk.timestamps is None


def test_configured_keys() -> None:
    [chunk], rejected = shipped(
        [
            {"text": "hello", "ts": "2026-11-25T08:00:00Z", "sev": 3, "message": "kept in fields"},
            {"log": "x"},
        ],
        message_key="text",
        timestamp_key=["ts"],
        level_key=["sev"],
    )
    assert chunk.lines == ["hello"]
    assert chunk.meta == [{"message": "kept in fields"}]
    assert chunk.preset_levels == ["error"]
    assert chunk.timestamps == [parse_rfc3339("2026-11-25T08:00:00Z")]
    assert [(r.reason, r.error) for r in rejected] == [
        (MISSING_MESSAGE, "record 2: no message: none of text is there (http_ingest.message_key)")
    ]


def test_keys_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="level_key: 'message' is already in message_key"):
        HttpIngestConfig(level_key=["message"])
    with pytest.raises(ValueError, match="message_key: 'labels' is already a record member of its own"):
        HttpIngestConfig(message_key=["labels"])


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        ("2026-11-25T08:00:00Z", parse_rfc3339("2026-11-25T08:00:00Z")),
        (1_700_000_000, 1_700_000_000 * NS),
        (1_700_000_000.5, 1_700_000_000_500_000_000),
        ("1700000000.5", 1_700_000_000_500_000_000),
        (1_700_000_000_123, 1_700_000_000_123_000_000),  # milliseconds
        (1_700_000_000_123_456, 1_700_000_000_123_456_000),  # microseconds
        (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),  # nanoseconds
        ("soon", None),
        ("2026-12-01T10:00:00.\u00b2Z", parse_rfc3339("2026-12-01T10:00:00.\u00b2Z")),  # "²": isdigit()
        (True, None),
        (None, None),
        ({"t": 1}, None),
    ],
)
def test_time_ns(value: Any, ns: int | None) -> None:
    assert time_ns(value) == ns


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T08:00:00Z",
        "2026-11-25T08:00:00.5Z",
        "2026-11-25T08:00:00.123456789Z",
        "1969-12-31T23:59:59.25Z",
        "2016-12-31T23:59:60Z",
        "2026-11-25T08:00:00+01:00",
        "2026-11-25 08:00:00.1z",
        "2026-11-25T08:00:00.Z",
        "2026-02-30T08:00:00Z",
        "2026-11-25T08:00:00.1234567890Z",
    ],
)
def test_the_fast_path_for_utc_times_agrees_with_rfc3339(text: str) -> None:
    assert time_ns(text) == parse_rfc3339(text)


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("WARNING", "warn"),
        ("Information", "info"),
        (0, "fatal"),
        (1, "fatal"),
        (2, "critical"),
        (3, "error"),
        (4, "warn"),
        (5, "info"),
        (6, "info"),
        (7, "debug"),
        ("3", "error"),
        (10, "trace"),
        (20, "debug"),
        (30, "info"),
        (35, "info"),
        (40, "warn"),
        (50, "error"),
        (60, "fatal"),
        (30.0, "info"),
        (8, ""),
        (-1, ""),
        (True, ""),
        ("loud", ""),
        (None, ""),
    ],
)
def test_numeric_and_named_levels(value: Any, level: str) -> None:
    assert level_of(value) == level


def test_origins_are_reused_across_requests() -> None:
    records_ = Records(HttpIngestConfig(pipeline="p"))
    a = records_.chunks([({"message": "x"}, None)])[0][0].origin
    b = records_.chunks([({"message": "y"}, None)])[0][0].origin
    assert a is b and a.pipeline == "p"


def test_rejections_are_logged_at_most_once_per_interval_with_an_example(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(http, "REJECT_LOG_INTERVAL", 0.2)
    rejections = http._RejectionLog()

    def batch(n: int, reason: str, outcome: str) -> list[tuple[Rejected, str]]:
        return [(Rejected(i, reason, f"record {i}: {reason} here", {}), outcome) for i in range(1, n + 1)]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        rejections.add(loop, batch(2, EMPTY_MESSAGE, "parked"), "")
        rejections.add(loop, batch(3, MISSING_MESSAGE, "parked"), "")
        rejections.add(loop, batch(1, INVALID_JSON, "dropped"), "the DLQ is full")
        await asyncio.sleep(0.6)  # the summing-up line is due 0.2 s after the first one

    with caplog.at_level(logging.WARNING, logger="log_capturer.sources.http.source"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "HTTP ingest rejected 2 records (2 empty_message parked), the others of their requests were "
        "shipped; e.g. record 1: empty_message here",
        "HTTP ingest rejected 4 records (3 missing_message parked, 1 invalid_json dropped), the others of "
        "their requests were shipped; e.g. record 1: missing_message here; the DLQ could not take them: "
        "the DLQ is full",
    ]


def _chunk_view(chunks: list[Chunk]) -> list[Any]:
    return [
        (
            c.origin.source_type,
            c.origin.source_id,
            c.origin.labels,
            c.lines,
            c.meta,
            c.preset_levels,
            c.timestamps,
        )
        for c in chunks
    ]


@pytest.mark.parametrize(
    "recs",
    [
        # uniform: decided once per batch
        [
            {"log": f"line {i}\n", "level": lvl, "stream": "stdout"}
            for i, lvl in enumerate(["info", 30, "3", "WARNING"])
        ],
        [{"message": f"m {i}", "labels": {"tenant_id": f"t{i % 2}"}, "level": "error"} for i in range(5)],
        [{"msg": "only a message"}, {"msg": "again\r\n"}],
        [
            {"log": "with", "level": "warn", "n": 1},
            {"log": "without", "n": 2},
            {"log": "x", "n": 3, "level": 50},
        ],
        [{"log": "none has a level", "n": 1}, {"log": "b", "n": 2}],
        [{"log": "a", "level": None}, {"log": "b", "level": "info"}],
        [{"log": "a", "level": "info", "severity": 3}, {"log": "b", "severity": 3}],
        [{"log": "a", "level": {"x": 1}}, {"log": "b"}],
        # record by record (a level that is none, an empty message, a time member, mixed shapes)
        [{"log": "a", "level": "loud"}, {"log": "b", "level": "loud"}],
        [{"log": "a"}, {"log": " "}],
        [{"log": "a", "time": "2026-11-25T08:00:00Z"}, {"log": "b", "time": "later"}],
        [{"log": "a"}, {"message": "b", "level": "info"}],
        [{"log": "a", "labels": {"n": 1}}, {"log": "b", "labels": {"n": 1}}],
    ],
)
def test_uniform_batches_give_what_record_by_record_gives(
    recs: list[dict[str, Any]], monkeypatch: Any
) -> None:
    items: list[Any] = [(r, 1_764_000_000 * NS + i if i % 2 else None) for i, r in enumerate(recs)]
    cfg = HttpIngestConfig(labels={"env": "test"})
    monkeypatch.setattr(http.time, "time_ns", lambda: 5)  # the read time of both
    fast_chunks, fast_rejected = Records(cfg).chunks(items)
    monkeypatch.setattr(Records, "_uniform", lambda *_: None)
    slow_chunks, slow_rejected = Records(cfg).chunks(items)
    assert _chunk_view(fast_chunks) == _chunk_view(slow_chunks)
    assert [(r.number, r.reason) for r in fast_rejected] == [(r.number, r.reason) for r in slow_rejected]


def test_uniform_batch_takes_the_batch_rule() -> None:
    recs = [{"log": f"line {i}", "level": "info"} for i in range(3)]
    records_ = Records(HttpIngestConfig())
    assert records_._uniform([(r, None) for r in recs], None) is not None
    assert records_._uniform([(r, None) for r in [*recs, {"log": "x"}]], None) is not None  # no level
    assert records_._uniform([(r, None) for r in [*recs, {"log": "x", "other": 1}]], None) is None


def _random_batch(rnd: random.Random) -> list[Any]:
    shape = rnd.choice(["log", "labels", "mixed", "many-tenants", "extra"])
    n = rnd.randrange(1, 40)
    recs: list[dict[str, Any]] = []
    for i in range(n):
        rec: dict[str, Any] = {"log": rnd.choice(["line", "caf\xe9\n", "x\r\n", "y" * 1000])}
        if rnd.random() < 0.01:
            rec["log"] = rnd.choice([" ", "", "\t\n"])
        if shape in ("labels", "mixed"):
            rec["labels"] = rnd.choice(
                [{"tenant_id": "a"}, {"tenant_id": "b", "app": "x"}, {"app": "x", "tenant_id": "b"}]
            )
        if shape == "many-tenants":
            rec["labels"] = {"tenant_id": f"t{rnd.randrange(400)}"}
        if shape == "mixed" and rnd.random() < 0.1:
            rec["labels"] = rnd.choice([None, "text", {"n": 1}, {"l": [1]}])
        if rnd.random() < 0.6:
            rec["level"] = rnd.choice(["info", "ERROR", 30, 3] if rnd.random() < 0.98 else ["loud", None])
        if shape == "extra":
            rec["stream"] = "stdout"
            if rnd.random() < 0.05:
                rec["other"] = {"nested": [1, {"a": None}]}
        if shape == "mixed" and rnd.random() < 0.05:
            del rec["log"]
            rec["message"] = f"m {i}"
        recs.append(rec)
    return [(r, rnd.choice([None, 1_764_000_000 * NS + i, 2**62])) for i, r in enumerate(recs)]


def test_uniform_batches_give_what_record_by_record_gives_on_random_batches(monkeypatch: Any) -> None:
    """The batch-wise shortcut (``_uniform``) against the record-by-record path, on random
    forward-like batches: labels in any order, invalid labels, hundreds of tenants, levels of
    every kind, newline endings, empty messages, extra members, times or none."""
    rnd = random.Random(24)
    cfg = HttpIngestConfig(labels={"env": "test"})
    monkeypatch.setattr(http.time, "time_ns", lambda: 5)
    fast_taken = 0
    for _ in range(400):
        items = _random_batch(rnd)
        fast = Records(cfg)
        fast_taken += fast._uniform(items, None) is not None
        fast_chunks, fast_rejected = fast.chunks(items)
        with monkeypatch.context() as m:
            m.setattr(Records, "_uniform", lambda *_: None)
            slow_chunks, slow_rejected = Records(cfg).chunks(items)
        assert _chunk_view(fast_chunks) == _chunk_view(slow_chunks)
        assert [(r.number, r.reason, r.error) for r in fast_rejected] == [
            (r.number, r.reason, r.error) for r in slow_rejected
        ]
    assert fast_taken > 60


def _msgpack_bodies() -> list[bytes]:
    pk = msgpack.packb
    t = msgpack.ExtType(0, struct.pack(">II", 1_764_000_000, 5))
    recs = [
        {"log": "a", "level": "info", "labels": {"tenant_id": "t1"}},
        {"log": "caf\xe9 \U0001f600", "nested": {"k": [1, {"x": None}], "f": 1.5, "big": 2**64 - 1}},
        {"message": "x" * 100_000},
        {"log": b"binary \xff"},
        {"log": "int key", 7: "v"},
        {"log": "ext", "e": msgpack.ExtType(9, b"z")},
        {"level": "error"},
    ]
    fluent_bit = b"".join(pk([[t, {}], r]) for r in recs)
    return [
        fluent_bit,
        b"".join(pk(r) for r in recs),
        pk(recs[:3]),
        b"".join(pk([t, r]) for r in recs[:2]) + pk(42) + pk("text"),
        fluent_bit + fluent_bit[:7],  # ends in the middle of a value
        pk({"log": "x"}).replace(b"\xa1x", b"\xa4ab\xff\xfe"),  # text that is not UTF-8
        pk({"log": "x"}) + b"\xc1",
        b"\x01\x02\x03",
        pk([[msgpack.ExtType(0, b"123456789"), {}], {"log": "ext 0 of 9 bytes"}]),
    ]


@pytest.mark.parametrize("body", _msgpack_bodies(), ids=lambda b: f"{len(b)}-bytes")
def test_msgpack_bodies_decode_as_msgpack_alone_decodes_them(body: bytes, monkeypatch: Any) -> None:
    """The C decoder (``_speedups.msgpack_values``) against msgpack alone (the code before)."""

    def parse() -> Any:
        try:
            return http.parse_body(body, "application/msgpack")
        except IngestError as exc:
            return (exc.status, exc.reason)

    new = parse()
    with monkeypatch.context() as m:
        m.setattr(http, "_speedups", None)
        old = parse()
    assert new == old
    assert repr(new) == repr(old)  # the same types (EventTime, int, bytes made text...)


def _label_sets(rng: random.Random) -> list[Any]:
    tenants = [f"tenant-{i:02d}" for i in range(20)]
    return [
        {"tenant_id": rng.choice(tenants)},
        {"tenant_id": rng.choice(tenants), "env": "prod"},
        {"env": "prod", "tenant_id": "tenant-01"},  # the same members in another order
        {},
        {"tenant_id": "é€"},
        {"tenant_id": "tenant-01", "n": 3},  # not text: invalid
        {"tenant_id": ["a"]},  # cannot be a key
        "not an object",
    ]


@pytest.mark.parametrize("seed", range(6))
def test_records_grouped_by_labels_in_c_as_in_python(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_speedups.label_groups`` groups a batch's records by labels as the Python code does:
    the same chunks (origins, lines, order) and the same rejections, whatever the labels."""
    rng = random.Random(seed)
    for _ in range(60):
        n = rng.choice([1, 5, 40, 600])
        if rng.random() < 0.5:
            sets = [{"tenant_id": f"t{i % rng.choice([1, 3, 300])}"} for i in range(n)]
        else:
            choices = _label_sets(rng)[: rng.choice([2, 5, 8])]
            sets = [rng.choice(choices) for _ in range(n)]
        items: list[Item] = [
            ({"message": f"line {i}", "labels": labels}, None) for i, labels in enumerate(sets)
        ]
        got_c = Records(HttpIngestConfig()).chunks(items)
        with monkeypatch.context() as m:
            m.setattr(http, "_speedups", None)
            got_py = Records(HttpIngestConfig()).chunks(items)

        def shape(chunks: list[Chunk]) -> list[Any]:
            return [(c.origin.source_id, c.origin.labels, c.origin.encoded, c.lines) for c in chunks]

        assert shape(got_c[0]) == shape(got_py[0])
        assert got_c[1] == got_py[1]


def test_label_groups_declines_what_python_decides() -> None:
    assert http._speedups is not None
    groups = http._speedups.label_groups
    recs = [{"labels": {"a": "1"}}, {"labels": {"a": "2"}}, {"labels": {"a": "1"}}]
    assert groups(recs, 256) == [(0, [0, 2]), (1, [1])]
    assert groups([(r, i) for i, r in enumerate(recs)], 256) == [(0, [0, 2]), (1, [1])]  # items
    assert groups(recs, 1) is None  # more sets than allowed
    assert groups([{"labels": {"a": 1}}], 256) is None
    assert groups([{"labels": ["a"]}], 256) is None
    assert groups([{"message": "no labels"}], 256) is None
    assert groups([({"labels": {"a": "1"}},)], 256) is None  # not a (record, time) item
    with pytest.raises(ValueError, match="max_distinct"):
        groups(recs, 0)


def _random_items(rng: random.Random) -> list[Item]:
    """A batch as a client sends one: mostly one shape, sometimes a record that breaks it."""
    message_key = rng.choice(["message", "log", "msg"])
    members = rng.choice([[], ["labels"], ["host"], ["labels", "host", "pid"], ["timestamp"]])
    level_key = rng.choice([None, "level", "severity"])
    lines = ["a line", "é€ text", '{"level":"warn","tenant_id":"t"}', "x" * 200]
    items: list[Item] = []
    for i in range(rng.choice([1, 3, 50, 400])):
        rec: dict[str, Any] = {message_key: rng.choice(lines)}
        for m in members:
            rec[m] = (
                {"tenant_id": f"t{i % 3}"}
                if m == "labels"
                else "2026-11-25T07:00:00Z"
                if m == "timestamp"
                else i
            )
        if level_key is not None and rng.random() < 0.8:
            rec[level_key] = rng.choice(["info", "WARN", 30, "error"])
        if rng.random() < 0.02:  # a record that breaks the batch's shape or is not shippable
            rec = rng.choice(
                [
                    {**rec, "other": 1},
                    {k: v for k, v in rec.items() if k != message_key} or {"x": 1},
                    {**rec, message_key: rng.choice(["", "  ", "line\n", 5, None])},
                    {**rec, "level": "info", "severity": "warn"},
                    {**rec, "level": ["unhashable"]},
                    {**rec, "fields": {"a": 1}},
                ]
            )
        stamp = rng.choice([None, 1_764_000_000 * NS + i, http.EventTime(1_764_000_000 * NS + i)])
        items.append((rec, stamp))
    return items


@pytest.mark.parametrize("seed", range(8))
def test_uniform_batches_read_in_c_as_in_python(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_speedups.uniform_columns`` gives the chunks (origins, lines, levels, fields, times)
    and rejections the Python code gives, on batches of every shape; run twice (the first run
    fills the level cache the C code reads)."""
    rng = random.Random(seed)

    def shape(got: tuple[list[Chunk], list[Rejected]]) -> Any:
        # A record without a time gets the time of reading: the same "now" for the comparison.
        def times(c: Chunk) -> list[Any] | None:
            return (
                None
                if c.timestamps is None
                else [t if t < 1_790_000_000 * NS else "now" for t in c.timestamps]
            )

        return [(c.origin.encoded, c.lines, c.preset_levels, c.meta, times(c)) for c in got[0]], got[1]

    took_c = 0
    for _ in range(80):
        items = _random_items(rng)
        cfg = HttpIngestConfig()
        records_c = Records(cfg)
        first = records_c.chunks(items)
        second = records_c.chunks(items)
        assert http._speedups is not None
        took_c += (
            http._speedups.uniform_columns(
                items,
                records_c._message_keys,
                records_c._level_keys,
                records_c._slow_keys,
                records_c._level_cache,
            )
            is not None
        )
        with monkeypatch.context() as m:
            m.setattr(http, "_speedups", None)
            expected = Records(cfg).chunks(items)
        assert shape(first) == shape(expected) == shape(second)
    assert took_c > 20
