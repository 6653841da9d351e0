"""The forward source on a real listener: acks after the sinks, crashes, DLQ, limits, a stop.

Real TCP connections on 127.0.0.1 to the real listener, the real dispatcher, an in-memory sink
that acknowledges what it gets, or holds it (as a sink waiting for Kafka does).
"""

from __future__ import annotations

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
