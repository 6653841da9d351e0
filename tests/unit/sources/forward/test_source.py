"""The forward source on a real listener: acks after the sinks, crashes, DLQ, limits, a stop.

Real TCP connections on 127.0.0.1 to the real listener, the real dispatcher, an in-memory sink
that acknowledges what it gets, or holds it (as a sink waiting for Kafka does).
"""

from __future__ import annotations

import gzip
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from log_capturer.config.schema import DispatcherDLQConfig
from log_capturer.devtools.kafka_local import free_port
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq.store import DeadLetterStore
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward import source as forward_source
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.forward.source import ForwardSource
from log_capturer.sources.http.source import Records
from tests.support import wait_until
from tests.unit.sources.harness import MemorySink, make_dispatcher

T = 1_764_000_000


def et(i: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", T, i))


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, *message: Any) -> None:
        self.sock.sendall(msgpack.packb(list(message)))

    def read(self, timeout: float) -> Any:
        """The next value; TimeoutError if none within ``timeout``; ConnectionError at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            for value in self.unpacker:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.unpacker.feed(data)


class Env:
    def __init__(self, tmp: Path) -> None:
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher = make_dispatcher(self.sink, self.metrics)
        self.port = free_port()
        self.tmp = tmp
        self.source: ForwardSource | None = None
        self.clients: list[Client] = []

    def start(self, dlq: bool = True, **cfg: Any) -> ForwardSource:
        config = ForwardConfig(enabled=True, host="127.0.0.1", port=self.port, **cfg)
        store = (
            DeadLetterStore(DispatcherDLQConfig(directory=str(self.tmp / "dlq")), self.metrics)
            if dlq
            else None
        )
        self.source = ForwardSource(config, self.dispatcher, self.metrics, store)
        self.source.start()
        return self.source

    def client(self) -> Client:
        c = Client(self.port)
        self.clients.append(c)
        return c

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def close(self) -> None:
        for c in self.clients:
            c.sock.close()
        if self.source is not None:
            self.source.stop(5)
        self.sink.release()
        self.dispatcher.close(5)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def test_the_ack_waits_for_the_sink(env: Env) -> None:
    env.start()
    env.sink.hold = True
    c = env.client()
    c.send("app", [[et(i), {"log": f"line {i}"}] for i in range(10)], {"chunk": "c1"})
    wait_until(lambda: len(env.sink.lines()) == 10, 10, "the lines to reach the sink")
    with pytest.raises(TimeoutError):
        c.read(0.5)  # held by the sink: no ack
    env.sink.release()
    assert c.read(5) == {"ack": "c1"}
    assert env.sample("forward_acks_total") == 1.0
    assert env.sink.lines() == [f"line {i}" for i in range(10)]


def test_rejected_records_are_counted_dropped_without_a_dlq_and_the_rest_acked(env: Env) -> None:
    src = env.start(dlq=False)
    c = env.client()
    c.send("app", [[et(0), {"log": "good"}], [et(1), {"nothing": "here"}]], {"chunk": "c2"})
    assert c.read(5) == {"ack": "c2"}
    assert env.sink.lines() == ["good"]
    reason = {"reason": "missing_message", "outcome": "dropped"}
    assert env.sample("forward_records_rejected_total", **reason) == 1.0
    assert src.stats()["rejected"] == 1


def test_rejected_records_are_parked_in_the_dlq(env: Env) -> None:
    env.start()
    c = env.client()
    c.send("app", [[et(0), {"log": "   "}], [et(1), {"log": "good"}]], {"chunk": "c3"})
    assert c.read(5) == {"ack": "c3"}
    parked = (env.tmp / "dlq").glob("dlq_entry_*.json")
    text = "".join(p.read_text() for p in parked)
    assert "record 1: 'log' is empty" in text and '"failed_sink":"forward"' in text.replace(" ", "")
    reason = {"reason": "empty_message", "outcome": "parked"}
    assert env.sample("forward_records_rejected_total", **reason) == 1.0


def test_records_of_an_empty_tag_are_shipped_without_a_tag_label(env: Env) -> None:
    """An empty tag is a tag: its records are shipped (no ``tag`` label) and acknowledged, not
    dropped beside the records of the messages that are not forward messages."""
    env.start()
    env.sink.hold = True  # the chunks stay in reach
    c = env.client()
    c.sock.sendall(
        msgpack.packb(["", [[et(0), {"log": "untagged"}]], {"chunk": "e1"}])
        + msgpack.packb("not a message")
        + msgpack.packb(["app", [[et(1), {"log": "tagged"}]]])
    )
    wait_until(lambda: len(env.sink.lines()) == 2, 5, "both lines to reach the sink")
    assert env.sink.lines() == ["untagged", "tagged"]
    assert [chunk.origin.labels.get("tag") for chunk in env.sink.held] == [None, "app"]
    env.sink.release()
    assert c.read(5) == {"ack": "e1"}
    assert env.sample("forward_records_rejected_total", reason="invalid_message", outcome="parked") == 1.0


def test_a_crash_closes_that_connection_only_and_degrades_until_a_batch_is_handed_over(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Records.chunks

    def chunks(self: Records, items: Any, base: Any = None) -> Any:
        if base is not None and base.labels.get("tag") == "poison":
            raise ValueError("cannot shape")
        return real(self, items, base)

    monkeypatch.setattr(Records, "chunks", chunks)
    src = env.start()
    bad = env.client()
    bad.send("poison", T, {"log": "x"}, {"chunk": "p"})
    with pytest.raises(ConnectionError):
        bad.read(5)
    health = src.health()
    assert health["status"] == "degraded" and "ValueError: cannot shape" in health["message"]
    assert env.sample("errors_total", component="forward_source", error_type="crash") == 1.0
    good = env.client()
    good.send("fine", T, {"log": "after the crash"}, {"chunk": "g"})
    assert good.read(5) == {"ack": "g"}
    assert src.health()["status"] == "healthy"


def test_connections_over_the_limit_are_closed(env: Env) -> None:
    src = env.start(max_connections=1)
    first = env.client()
    first.send("a", T, {"log": "one"}, {"chunk": "1"})
    assert first.read(5) == {"ack": "1"}
    second = env.client()
    with pytest.raises((ConnectionError, OSError)):
        second.read(5)
    assert env.sample("errors_total", component="forward_source", error_type="too_many_connections") == 1.0
    assert src.stats()["connections"] == 1


def test_a_stop_waits_a_little_for_acks_then_closes_without_them(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forward_source, "STOP_ACK_WAIT", 0.5)
    src = env.start()
    env.sink.hold = True
    c = env.client()
    c.send("app", T, {"log": "held at the stop"}, {"chunk": "s"})
    wait_until(lambda: env.sink.lines() == ["held at the stop"], 10, "the line to reach the sink")
    started = time.monotonic()
    src.stop(5)
    assert time.monotonic() - started < 4
    with pytest.raises(ConnectionError):
        c.read(5)  # closed, never acknowledged: the client sends it again
    assert src.stats()["acks"] == 0


def test_a_taken_port_is_a_start_error_naming_the_key(env: Env) -> None:
    from log_capturer.sources.base import SourceStartError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", env.port))
        taken.listen()
        with pytest.raises(SourceStartError, match=r"change forward\.port"):
            env.start()
    env.source = None


# -- chunks made straight from a message's bytes (``ForwardSource.columns``) -------------------


def _str8(text: str) -> bytes:
    """Text as msgpack str 8 (the same text as fixstr, written another way)."""
    data = text.encode()
    return b"\xd9" + bytes([len(data)]) + data


def _random_entry(rng: random.Random, i: int, shape: dict[str, Any], odd: bool) -> bytes:
    """One [time, record] entry as a client writes it: the batch's shape, unless ``odd``."""
    rec: dict[str, Any] = {shape["message"]: rng.choice(shape["lines"])}
    for m in shape["members"]:
        rec[m] = {"tenant_id": f"t{i % 3}"} if m == "labels" else rng.choice([i, [1, {"a": None}], "x", 1.5])
    if shape["level"] is not None and rng.random() < 0.8:
        rec[shape["level"]] = rng.choice(["info", "WARN", 30, "error"])
    if odd and rng.random() < 0.5:  # a record that breaks the shape, or is not shippable, or not plain
        rec = rng.choice(
            [
                {**rec, "other": 1},
                {k: v for k, v in rec.items() if k != shape["message"]} or {"x": 1},
                {**rec, shape["message"]: rng.choice(["", "  ", "\u00a0\u2003", "line\n", 5, None, b"bin"])},
                {**rec, "level": "info", "severity": "warn"},
                {**rec, "level": ["unhashable"]},
                {**rec, "fields": {"a": 1}},
                {**rec, "labels": rng.choice([{"tenant_id": 5}, "text", {"bad name": "x"}, {}])},
                {**rec, "extra": b"\x00binary"},
                {**rec, 7: "an integer key"},
            ]
        )
    when: Any = et(i % 1000)
    if odd and rng.random() < 0.3:
        when = rng.choice([T + i, float(T) + 0.5, [et(i), {"meta": 1}], "text"])
    entry = msgpack.packb([when, rec])
    if odd:  # the same text written another way, or a line that is not UTF-8
        entry = rng.choice(
            [
                entry.replace(msgpack.packb("tenant_id"), _str8("tenant_id")),
                entry.replace(msgpack.packb("t1"), _str8("t1")),
                entry.replace(b"line", b"l\xffne"),
            ]
        )
    return entry


def _random_message(rng: random.Random) -> bytes:
    shape = {
        "message": rng.choice(["message", "log", "msg"]),
        "members": rng.choice([[], ["labels"], ["host"], ["labels", "host", "pid"], ["timestamp"]]),
        "level": rng.choice([None, "level", "severity"]),
        "lines": ["a line", "é€ text", "a line of more than twenty-four bytes, " * 3, "x" * 200],
    }
    n = rng.choice([1, 3, 50, 300])
    odd = rng.randrange(n) if rng.random() < 0.3 else -1  # the entry that is not like the others
    entries = [_random_entry(rng, i, shape, i == odd) for i in range(n)]
    tag = msgpack.packb(rng.choice(["app", "app.x", "é"] if rng.random() < 0.98 else ["", 5]))
    option: dict[str, Any] = rng.choice([{}, {"chunk": "c1"}, {"chunk": "c2", "size": len(entries)}])
    if rng.random() < 0.2:
        option["fluent_signal"] = 0 if rng.random() < 0.8 else 1
    packer = msgpack.Packer()
    if rng.random() < 0.5:  # Forward mode, the entries as they are (as Fluent Bit writes them)
        body = packer.pack_array_header(len(entries)) + b"".join(entries)
    elif rng.random() < 0.9:  # PackedForward
        body = packer.pack(b"".join(entries))
    else:  # CompressedPackedForward
        body = packer.pack(gzip.compress(b"".join(entries)))
        option["compressed"] = "gzip"
    parts = 3 if option else 2
    out = packer.pack_array_header(parts) + tag + body + (packer.pack(option) if option else b"")
    if rng.random() < 0.02:
        out = rng.choice([msgpack.packb(["app", et(1), {"log": "Message mode"}]), out + b"\x01"])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_chunks_made_from_the_bytes_as_from_the_decoded_message(seed: int, tmp_path: Path) -> None:
    """``columns`` (one C pass from a message's bytes to chunks) gives the tag, the ack id and
    the chunks (origins, lines, levels, fields, times) that decoding the message and making
    chunks of its records give, on messages of every shape; where it declines, that path is the
    one taken; a CompressedPackedForward message the same once inflated. Run twice (the first run
    fills the level cache the C code reads)."""
    rng = random.Random(seed)
    dispatcher = make_dispatcher(MemorySink(), Metrics())
    config = ForwardConfig(enabled=True, port=free_port(), labels={"env": "test"})
    source = ForwardSource(config, dispatcher, Metrics())

    def shape(chunks: list[Any]) -> list[Any]:
        return [(c.origin.encoded, c.lines, c.preset_levels, c.meta, c.timestamps) for c in chunks]

    def decoded(raw: bytes) -> tuple[str, Any, list[Any], list[Any]]:
        values, plain = protocol.values_of(raw)
        message = protocol.decode(values[0], 1, 1 << 20, plain)
        made, bad = source.records.chunks(message.items, source.base_origin("peer", message.tag))
        return message.tag, message.chunk, shape(made), bad

    took = inflated = 0
    for _ in range(60):
        raw = _random_message(rng)
        # CompressedPackedForward: read in one pass once inflated
        packed = protocol.inflated(protocol.values_of(raw)[0][0], 1 << 20)
        inflated += packed is not None
        first = source.columns("peer", packed or raw)  # before the decoded records fill the level cache
        tag, chunk_id, chunks, bad = decoded(raw)
        second = source.columns("peer", packed or raw)
        took += second is not None
        for fast in (first, second):
            if fast is not None:
                assert not bad
                assert chunks  # a message with records makes chunks
                assert (fast.tag, fast.chunk, shape(fast.chunks or [])) == (tag, chunk_id, chunks)
    assert took > 20
    assert inflated > 0


def test_labels_written_another_way_are_the_same_labels() -> None:
    """Labels are grouped by their text, not by how the client wrote it: the same tenant as
    fixstr and as str 8 is one chunk, as decoding gives it; text that is not UTF-8 is left to
    the decoder (it writes such bytes as \\xNN escapes)."""
    dispatcher = make_dispatcher(MemorySink(), Metrics())
    source = ForwardSource(ForwardConfig(enabled=True, port=free_port()), dispatcher, Metrics())
    packer = msgpack.Packer()
    entries = [packer.pack([et(i), {"log": f"line {i}", "labels": {"tenant_id": "t1"}}]) for i in range(4)]
    for text in ("t1", "tenant_id"):
        entries[2] = entries[2].replace(packer.pack(text), _str8(text))
    raw = packer.pack_array_header(2) + packer.pack("app") + packer.pack_array_header(4) + b"".join(entries)
    fast = source.columns("peer", raw)
    assert fast is not None and fast.chunks is not None
    assert [(c.origin.labels, c.lines) for c in fast.chunks] == [
        ({"tag": "app", "tenant_id": "t1"}, [f"line {i}" for i in range(4)])
    ]
    assert source.columns("peer", raw.replace(b"line 3", b"l\xffne")) is None


def test_chunks_made_from_the_bytes_keep_the_order_of_the_messages(env: Env) -> None:
    """A batch whose messages are partly made straight from their bytes and partly decoded (a
    Message mode record between Forward ones) reaches the sink in the order it was sent."""
    env.start()
    client = env.client()
    packer = msgpack.Packer()
    wire = b""
    for n in range(6):
        if n % 2:
            wire += packer.pack(["app", et(n), {"log": f"line {n}"}, {"chunk": f"c{n}"}])
        else:
            wire += packer.pack(["app", [[et(n), {"log": f"line {n}", "level": "info"}]], {"chunk": f"c{n}"}])
    client.sock.sendall(wire)
    acks = {client.read(5)["ack"] for _ in range(6)}
    assert acks == {f"c{n}" for n in range(6)}
    assert env.sink.lines() == [f"line {n}" for n in range(6)]
