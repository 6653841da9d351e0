"""The forward source on a real agent process, read back from the session's real Kafka broker.

The client is fluent-logger (the Fluentd project's Python client), which sends Message mode
without acknowledgements or authentication. The other modes (Forward, PackedForward,
CompressedPackedForward), the ``chunk`` option and the shared-key handshake are written by
:class:`ForwardClient` below, byte for byte as Fluent Bit's and Fluentd's forward outputs send
them (msgpack arrays, an EventTime extension, gzip members), since no Python client speaks them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import socket
import ssl
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from fluent import sender as fluent_sender

from log_capturer.devtools.certs import generate as generate_certs
from log_capturer.devtools.kafka_local import LocalKafka, free_port
from log_capturer.processing.timestamps import NS, parse_rfc3339
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

T0 = 1_764_000_000


def event_time(ns: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", ns // NS, ns % NS))


def entries(prefix: str, n: int, t0: int = T0 * NS) -> bytes:
    """A PackedForward body: ``n`` [EventTime, {"log": ...}] entries, one msgpack stream."""
    return b"".join(msgpack.packb([event_time(t0 + i), {"log": f"{prefix} {i}\n"}]) for i in range(n))


class ForwardClient:
    """A forward protocol client over one TCP (or TLS) connection, as Fluent Bit's does it."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = tls.wrap_socket(raw, server_hostname="localhost") if tls is not None else raw
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, *message: Any) -> None:
        self.sock.sendall(msgpack.packb(list(message)))

    def read(self, timeout: float) -> Any:
        """The next value the server sends; TimeoutError when none comes within ``timeout``;
        ConnectionError when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            for value in self.unpacker:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError from None
            if not data:
                raise ConnectionError("closed by the server")
            self.unpacker.feed(data)

    def handshake(self, key: str, hostname: str = "client-1") -> Any:
        helo = self.read(10)
        assert helo[0] == "HELO", helo
        nonce = helo[1]["nonce"]
        salt = os.urandom(16)
        proof = hashlib.sha512(salt + hostname.encode() + nonce + key.encode()).hexdigest()
        self.send("PING", hostname, salt, proof, "", "")
        pong = self.read(10)
        if pong[1]:
            want = hashlib.sha512(salt + pong[3].encode() + nonce + key.encode()).hexdigest()
            assert pong[4] == want, "the server's proof of the shared key"
        return pong

    def close(self) -> None:
        self.sock.close()


def dlq_entries(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for seg in sorted((tmp_path / "dlq").glob("dlq_entry_*.json"))
        for line in seg.read_bytes().splitlines()
    ]


def broker_pid(kafka: LocalKafka) -> int:
    state = kafka.load_state()
    assert state is not None and state.nodes[0].pid is not None
    return state.nodes[0].pid


def leaders_known(bootstrap: str, topics: Iterable[str]) -> bool:
    """Whether every partition of ``topics`` has a leader (after SIGCONT the broker may need a
    moment to be registered again)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    except KafkaException:
        return False
    parts = [p for t in topics if t in md.topics for p in md.topics[t].partitions.values()]
    return bool(parts) and all(p.leader >= 0 and p.error is None for p in parts)


@pytest.fixture
def paused_broker(kafka: LocalKafka) -> Iterator[list[bool]]:
    """SIGSTOPs the session's broker when the test sets ``[True]``; always SIGCONTs it after."""
    state = [False]
    try:
        yield state
    finally:
        os.kill(broker_pid(kafka), signal.SIGCONT)


def test_every_mode_reaches_kafka_and_acks_wait_for_kafka(
    tmp_path: Path, bootstrap: str, topic_prefix: str, kafka: LocalKafka, paused_broker: list[bool]
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    port = free_port()
    cfg = agent_config(
        tmp_path, bootstrap, topics, forward={"enabled": True, "host": "127.0.0.1", "port": port}
    )
    # A short delivery timeout would park what the paused broker holds; keep the defaults.
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        assert agent.get("/health")["status"] in ("healthy", "degraded")
        # fluent-logger: Message mode, EventTime (nanosecond_precision), no ack.
        fl = fluent_sender.FluentSender("app", host="127.0.0.1", port=port, nanosecond_precision=True)
        for i in range(300):
            level = "error" if i % 100 == 0 else "info"
            assert fl.emit("web", {"message": f"fluent-logger {i}", "level": level, "user": i}), fl.last_error
        assert fl.emit_with_time("web", T0, {"message": "with integer time"})
        fl.close()

        client = ForwardClient(port)
        # Forward mode with an ack, then PackedForward and CompressedPackedForward (two gzip
        # members, as Fluent Bit appends them), each with its chunk id.
        forward = [[event_time(T0 * NS + i), {"log": f"forward {i}", "stream": "stdout"}] for i in range(100)]
        client.send("k8s.forward", forward, {"chunk": "Zm9yd2FyZA==", "size": 100})
        assert client.read(30) == {"ack": "Zm9yd2FyZA=="}
        client.send("k8s.packed", entries("packed", 1000), {"chunk": "cGFja2Vk", "size": 1000})
        assert client.read(30) == {"ack": "cGFja2Vk"}
        body = entries("gzip", 1000)
        gz = gzip.compress(body[: len(body) // 2]) + gzip.compress(body[len(body) // 2 :])
        client.send("k8s.gzip", gz, {"chunk": "Z3ppcA==", "size": 1000, "compressed": "gzip"})
        assert client.read(30) == {"ack": "Z3ppcA=="}

        # Bad records among good ones: the good ones shipped, the bad parked, the message acked.
        mixed = [
            [event_time(T0 * NS), {"log": "good one"}],
            [event_time(T0 * NS), {"no_message": "here"}],
            [event_time(T0 * NS), {"log": "   "}],
            "not an event",
            [event_time(T0 * NS), {"log": "good two"}],
        ]
        client.send("bad.mix", mixed, {"chunk": "bWl4"})
        assert client.read(30) == {"ack": "bWl4"}
        client.send(42, T0, {"log": "a numeric tag"}, {"chunk": "bnVt"})  # a whole bad message
        assert client.read(30) == {"ack": "bnVt"}

        records = consume_all(bootstrap, topics.values(), expected=300 + 1 + 100 + 2000 + 2, timeout=90)
        docs = {r.json()["message"]: (r.topic, r.json()) for r in records}
        assert len(records) == len(docs) == 2403, agent.log()
        assert {f"fluent-logger {i}" for i in range(300)} <= docs.keys()
        assert {f"packed {i}" for i in range(1000)} | {f"gzip {i}" for i in range(1000)} <= docs.keys()
        topic, doc = docs["fluent-logger 100"]
        assert topic == topics["logs-high-priority"] and doc["level"] == "error"
        assert doc["labels"] == {"tag": "app.web"} and doc["fields"] == {"user": 100}
        assert (doc["source_type"], doc["source_id"]) == ("forward", "forward://127.0.0.1")
        assert abs(parse_rfc3339(doc["timestamp"]) - time.time_ns()) < 120 * NS
        assert parse_rfc3339(docs["with integer time"][1]["timestamp"]) == T0 * NS
        _, doc = docs["forward 7"]
        assert doc["labels"] == {"tag": "k8s.forward"} and doc["fields"] == {"stream": "stdout"}
        assert parse_rfc3339(doc["timestamp"]) == T0 * NS + 7
        _, doc = docs["gzip 999"]  # the trailing newline of Fluent Bit's `log` is removed
        assert doc["labels"] == {"tag": "k8s.gzip"} and parse_rfc3339(doc["timestamp"]) == T0 * NS + 999
        assert {"good one", "good two"} <= docs.keys()
        assert not [r for r in records if r.topic == topics["logs-dlq"]]

        parked = dlq_entries(tmp_path)
        assert {(e["failed_sink"], e["error_type"]) for e in parked} == {("forward", "invalid_record")}
        reasons = sorted(e["error_message"] for e in parked)
        assert reasons == [
            "message 1, entry 4: not an event ([time, record]), but a string",
            "message 1: the tag must be text, not a number",
            "record 2: no message: none of log, message, msg is there (forward.message_key)",
            "record 3: 'log' is empty",
        ], reasons
        metrics = agent.metrics()
        for reason in ("invalid_event", "invalid_message", "missing_message", "empty_message"):
            assert f'forward_records_rejected_total{{outcome="parked",reason="{reason}"}} 1.0' in metrics

        # The ack waits for Kafka: with the broker stopped (SIGSTOP) none comes; once it runs
        # again, the ack arrives and the records are in Kafka.
        paused_broker[0] = True
        os.kill(broker_pid(kafka), signal.SIGSTOP)
        client.send("paused", entries("while paused", 50), {"chunk": "cGF1c2Vk"})
        with pytest.raises(TimeoutError):
            client.read(5)
        os.kill(broker_pid(kafka), signal.SIGCONT)
        assert client.read(60) == {"ack": "cGF1c2Vk"}
        wait_until(
            lambda: leaders_known(bootstrap, topics.values()), 60, "the broker to answer after SIGCONT"
        )
        records = consume_all(bootstrap, topics.values(), expected=2453, timeout=60)
        assert {f"while paused {i}" for i in range(50)} <= {r.json()["message"] for r in records}

        # Bytes that are not msgpack close that connection only; the next one is served.
        client.sock.sendall(b"\xc1 this is not msgpack")
        with pytest.raises(ConnectionError):
            client.read(10)
        client.close()
        again = ForwardClient(port)
        again.send("after", entries("after", 3), {"chunk": "YWZ0ZXI="})
        assert again.read(30) == {"ack": "YWZ0ZXI="}
        again.close()

        stats = agent.get("/stats")["forward"]
        assert (stats["rejected"], stats["acks"]) == (4, 7), stats
        assert 'errors_total{component="forward_source",error_type="invalid_stream"} 1.0' in agent.metrics()
        assert "Traceback" not in agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_shared_key_over_tls(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    certs = generate_certs(tmp_path / "certs")
    port = free_port()
    forward = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "shared_key": "s3cret-key",
        "self_hostname": "agent-1",
        "tls": {"enabled": True, "cert_file": str(certs.server_cert), "key_file": str(certs.server_key)},
    }
    cfg = agent_config(tmp_path, bootstrap, topics, forward=forward)
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    tls = ssl.create_default_context(cafile=str(certs.ca_file))
    try:
        good = ForwardClient(port, tls)
        assert good.handshake("s3cret-key")[:4] == ["PONG", True, "", "agent-1"]
        good.send("secure", entries("secure", 20), {"chunk": "c2VjdXJl"})
        assert good.read(30) == {"ack": "c2VjdXJl"}
        good.close()

        bad = ForwardClient(port, tls)
        pong = bad.handshake("wrong-key")
        assert pong[:3] == ["PONG", False, "shared_key mismatch"]
        with pytest.raises(ConnectionError):
            bad.read(10)
        bad.close()
        # Without the handshake: data first is refused too.
        rude = ForwardClient(port, tls)
        assert rude.read(10)[0] == "HELO"
        rude.send("secure", T0, {"log": "no handshake"}, {"chunk": "cnVkZQ=="})
        assert rude.read(10)[:2] == ["PONG", False]
        rude.close()
        # Plain TCP to the TLS listener: refused by the TLS handshake, counted.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(msgpack.packb(["plain", T0, {"log": "plain"}]))
            s.settimeout(10)
            assert s.recv(100) == b""

        records = consume_all(bootstrap, topics.values(), expected=20, timeout=60)
        assert sorted(r.json()["message"] for r in records) == sorted(f"secure {i}" for i in range(20))
        tls_failed = 'errors_total{component="forward_source",error_type="tls_handshake"} 1.0'
        metrics = wait_until(lambda: m if tls_failed in (m := agent.metrics()) else None, 20, tls_failed)
        assert 'errors_total{component="forward_source",error_type="auth_failed"} 2.0' in metrics
        assert "s3cret-key" not in agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_a_held_dispatcher_stops_the_reading_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    """A stalled sink (its broker address answers nothing) holds a tiny dispatcher queue: the
    source stops reading, so the client's sends block on TCP flow control, and no ack comes."""
    topics = {
        t: t for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs-dlq")
    }
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    cfg = agent_config(
        tmp_path,
        dead,
        topics,
        dispatcher={"queue_size": 10, "worker_count": 1, "drain_timeout": "2s"},
        sinks={"kafka": {"queue_size": 1}},
        forward={"enabled": True, "host": "127.0.0.1", "port": port},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        client = ForwardClient(port)
        client.sock.settimeout(3)
        message = msgpack.packb(["held", entries("held", 1000), {"chunk": "aGVsZA=="}])
        sent = 0
        with pytest.raises(TimeoutError):
            for _ in range(2000):  # bounded: ~340 MB; the kernel's buffers hold a few MB
                client.sock.sendall(message)
                sent += 1
        assert sent < 200, f"the agent kept reading: {sent} messages of 1,000 records were taken"
        # On a busy machine the source may still be taking what the kernel had buffered: wait
        # (bounded) until its count holds still, then it must stay still.
        counts = [agent.get("/stats")["forward"]["received"]]

        def settled() -> bool:
            counts.append(agent.get("/stats")["forward"]["received"])
            return counts[-1] == counts[-2]

        wait_until(settled, 30, "the held source to stop taking records", interval=1.0)
        before = agent.get("/stats")["forward"]
        assert before["received"] <= (sent + 1) * 1000 and before["acks"] == 0, before
        with pytest.raises(TimeoutError):
            client.read(2)  # no ack: nothing was delivered
        after = agent.get("/stats")["forward"]
        assert after["received"] == before["received"], "the source went on reading while held"
        assert after["connections"] == 1 and after["acks"] == 0
        client.close()
        agent.stop(signal.SIGTERM)
        assert "Traceback" not in agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
