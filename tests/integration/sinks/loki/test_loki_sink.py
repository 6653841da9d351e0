"""The Loki sink against a real VictoriaLogs (its Loki push API), read back with LogsQL: labels,
tenants, encodings, the stream limit, credentials refused, old timestamps, a server away for 30 s.

Each test starts its own VictoriaLogs (the flags it needs: basic auth, retention) in its temp
directory; the sink is built from its section through the registry, behind the real dispatcher
(the conformance suite's ``Rig``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.victorialogs_local import LOKI_PUSH_PATH, LocalVictoriaLogs, VictoriaLogsError
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin
from tests.conformance.harness import DeadLetter
from tests.conformance.test_sink_conformance import Rig, wait_committed
from tests.support import _merge, started, wait_until

pytestmark = pytest.mark.integration


class Section:
    """What ``Rig`` needs of a harness: the ``sinks.loki`` section for this test."""

    section = "loki"

    def __init__(self, server: LocalVictoriaLogs, **extra: Any) -> None:
        self.server = server
        self.extra = extra

    def config(self, delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "enabled": True,
            "url": self.server.url,
            "push_endpoint": LOKI_PUSH_PATH,
            "batch_timeout": "20ms",
        }
        _merge(section, dict(self.extra))
        _merge(section, dict(delivery or {}))
        return section

    def dead_letters(self) -> list[DeadLetter]:
        return []


def start_server(
    tmp: Path, *args: str, auth: tuple[str, str] | None = None, port: int | None = None
) -> LocalVictoriaLogs:
    server = LocalVictoriaLogs(tmp / "victorialogs", port=port or free_port(), extra_args=args, auth=auth)
    started(server, "VictoriaLogs", VictoriaLogsError, timeout=60)
    return server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalVictoriaLogs]:
    s = start_server(tmp_path)
    yield s
    s.down()


def chunk(origin: Origin, lines: list[str], start: int = 0, stamps: list[int] | None = None) -> Chunk:
    c = Chunk(origin, lines, start=start, end=start + len(lines))
    c.timestamps = stamps
    return c


def submit(rig: Rig, chunks: list[Chunk], cp: Checkpoint) -> None:
    for c in chunks:
        assert rig.dispatcher.submit(c, cp, timeout=60)
    rig.submitted(chunks)


def test_labels_line_and_metadata_with_protobuf(server: LocalVictoriaLogs, tmp_path: Path) -> None:
    sec = Section(
        server,
        default_labels={"job": "t1"},
        label_fields={"level": "level", "service": "fields.service"},
        source_labels=True,
        structured_metadata=["source_id"],
    )
    cp = Checkpoint()
    o = Origin("file", "/var/log/app.log", {"app.name": "web"})
    lines = ["INFO one", "INFO two", "ERROR three"]
    c = chunk(o, lines)
    c.meta = [{"service": "billing"}, {"service": "billing"}, None]  # fields, as a pipeline sets them
    with Rig(sec, tmp_path, dispatcher={"batch_timeout": "10ms"}) as rig:  # type: ignore[arg-type]
        submit(rig, [c], cp)
        wait_committed({cp: 3}, 30, "the lines delivered")
        rig.assert_acknowledged_once()
    rows = server.query('{job="t1"} | sort by (_time)')
    assert len(rows) == 3
    streams = Counter(r["_stream"] for r in rows)
    # Stream labels: static, the source's (name made valid), the level, a field of the line.
    assert streams['{app_name="web",job="t1",level="info",service="billing"}'] == 2, streams
    assert streams['{app_name="web",job="t1",level="error"}'] == 1, streams
    # The structured metadata is a field of the entry, and not in the line any more.
    assert {r["source_id"] for r in rows} == {"/var/log/app.log"}
    assert sorted(r["message"] for r in rows) == sorted(lines)


def test_json_gzip_tenants_from_a_field_and_an_invalid_tenant_refused_alone(
    server: LocalVictoriaLogs, tmp_path: Path
) -> None:
    """VictoriaLogs refuses a push whose X-Scope-OrgID is not a tenant id it can read (400): only
    the records of that tenant are parked, with its message; the others are delivered."""
    sec = Section(
        server,
        encoding="json",
        compression="gzip",
        default_labels={"job": "t2"},
        tenant_id="5",
        tenant_field="labels.tenant",
    )
    cp = Checkpoint()
    chunks = [
        chunk(Origin("file", "/a.log", {"tenant": "7"}), [f"seven {i}" for i in range(50)], 0),
        chunk(Origin("file", "/b.log"), [f"five {i}" for i in range(40)], 50),
        chunk(Origin("file", "/c.log", {"tenant": "not-a-tenant"}), [f"bad {i}" for i in range(3)], 90),
    ]
    with Rig(sec, tmp_path) as rig:  # type: ignore[arg-type]
        submit(rig, chunks, cp)
        wait_committed({cp: 93}, 30, "every line delivered or parked")
        rig.assert_acknowledged_once()
        stats = rig.stats()
    assert server.count('{job="t2"}', tenant="7") == 50
    assert server.count('{job="t2"}', tenant="5") == 40
    assert server.count('{job="t2"}') == 0
    parked = rig.parked()
    assert sorted(e["original_entry"]["message"] for e in parked) == [f"bad {i}" for i in range(3)]
    assert all("cannot parse common params" in e["error_message"] for e in parked), parked[0]
    assert stats["delivered"] == 90 and stats["parked"] == 3 and stats["splits"] >= 1


def test_max_streams_overflow_is_sent_under_its_own_label_and_counted(
    server: LocalVictoriaLogs, tmp_path: Path
) -> None:
    sec = Section(server, default_labels={"job": "t3"}, label_fields={}, max_streams=3)
    cp = Checkpoint()
    chunks = [chunk(Origin("file", f"/p{i}.log", {"pod": f"p{i}"}), [f"pod {i}"], i) for i in range(10)]
    with Rig(sec, tmp_path) as rig:  # type: ignore[arg-type]
        submit(rig, chunks, cp)
        wait_committed({cp: 10}, 30, "the lines delivered")
        rig.sink.stats()
        time.sleep(0.1)  # the service's round counts the overflow
        overflow = rig.metrics.registry.get_sample_value("loki_stream_overflow_total", {"sink_name": "loki"})
    streams = Counter(r["_stream"] for r in server.query('{job="t3"}'))
    assert streams['{job="t3",stream_overflow="true"}'] == 7, streams
    assert len(streams) == 4
    assert overflow == 7
    # Nothing merged silently: the overflowed entries keep their labels in their line.
    pods = {r["labels.pod"] for r in server.query('{stream_overflow="true"}')}
    assert pods == {f"p{i}" for i in range(3, 10)}


def test_old_timestamps_are_parked_or_clamped_before_victorialogs_drops_them(tmp_path: Path) -> None:
    """VictoriaLogs takes entries older than its retention with 204 and drops them (its log says
    "skipping log entry with too small timestamp"): no error ever tells the sink. So the sink checks
    the age itself (timestamp_learning.default_max_age): too old entries are parked with the reason,
    or clamped to now with clamp_enabled."""
    server = start_server(tmp_path, "-retentionPeriod=1d")
    try:
        old = time.time_ns() - 3 * 86400 * 10**9
        o = Origin("file", "/old.log")

        def run(name: str, **tl: Any) -> Rig:
            sec = Section(server, default_labels={"job": name}, timestamp_learning=tl)
            cp = Checkpoint()
            lines = [f"{name} recent", f"{name} old"]
            with Rig(sec, tmp_path / name) as rig:  # type: ignore[arg-type]
                submit(rig, [chunk(o, lines, stamps=[time.time_ns(), old])], cp)
                wait_committed({cp: 2}, 30, "the lines settled")
            return rig

        run("unchecked", enabled=False)
        assert [r["message"] for r in server.query('{job="unchecked"}')] == ["unchecked recent"]
        assert "too small timestamp" in server.log_tail(200)

        parked = run("checked", default_max_age="1d").parked()
        assert [r["message"] for r in server.query('{job="checked"}')] == ["checked recent"]
        assert [(e["original_entry"]["message"], e["error_type"]) for e in parked] == [
            ("checked old", "timestamp_too_old")
        ]

        clamped = run("clamped", default_max_age="1d", clamp_enabled=True)
        assert sorted(r["message"] for r in server.query('{job="clamped"}')) == [
            "clamped old",
            "clamped recent",
        ]
        assert clamped.parked() == []
    finally:
        server.down()


def test_refused_credentials_open_the_breaker_and_lose_nothing(tmp_path: Path) -> None:
    """401 from the server: the breaker opens at once, /health says why, nothing is parked or
    acknowledged; once the server takes the sink's credentials every line arrives."""
    port = free_port()
    server = start_server(tmp_path, auth=("agent", "right"), port=port)
    sec = Section(
        server,
        default_labels={"job": "t5"},
        auth={"type": "basic", "username": "agent", "password": "wrong"},
        circuit_breaker={"timeout": "1s"},
    )
    cp = Checkpoint()
    lines = [f"auth {i}" for i in range(100)]
    try:
        with Rig(sec, tmp_path, {"timeout": "120s"}) as rig:  # type: ignore[arg-type]
            submit(rig, [chunk(Origin("file", "/auth.log"), lines)], cp)
            wait_until(lambda: rig.sink.health().status == "unhealthy", 30, "the breaker to open")
            health = rig.sink.health()
            assert "401" in health.message or "credentials" in health.message, health.message
            assert rig.sink.stats()["circuit_breaker"]["times_opened"] >= 1  # type: ignore[index]
            time.sleep(2)
            assert cp.committed == 0 and rig.parked() == []
            server.down()
            server = start_server(tmp_path, auth=("agent", "wrong"), port=port)
            wait_committed({cp: 100}, 60, "the lines delivered once the credentials work")
            rig.assert_acknowledged_once()
        assert sorted(r["message"] for r in server.query('{job="t5"}')) == sorted(lines)
    finally:
        server.down()


def test_the_server_away_for_30_seconds_loses_nothing(server: LocalVictoriaLogs, tmp_path: Path) -> None:
    """Stopped for 30 s while lines keep coming (timeout longer than that): nothing is parked,
    nothing past the server's stop is acknowledged, and every line is there exactly once after."""
    sec = Section(server, default_labels={"job": "t6"}, circuit_breaker={"timeout": "2s"})
    o = Origin("file", "/away.log")
    cp = Checkpoint()
    before = [f"before {i}" for i in range(500)]
    during = [f"during {i}" for i in range(2000)]
    with Rig(sec, tmp_path, {"timeout": "120s"}) as rig:  # type: ignore[arg-type]
        submit(rig, [chunk(o, before[i : i + 100], i) for i in range(0, 500, 100)], cp)
        wait_committed({cp: 500}, 30, "the first lines delivered")
        server.stop()
        feeder = threading.Thread(
            target=submit,
            args=(rig, [chunk(o, during[i : i + 100], 500 + i) for i in range(0, 2000, 100)], cp),
            daemon=True,
        )
        feeder.start()
        time.sleep(30)
        assert cp.committed == 500, "a line was acknowledged while the server was away"
        assert rig.parked() == []
        server.up(timeout=60)
        feeder.join(60)
        wait_committed({cp: 2500}, 120, "every line delivered after the server came back")
        rig.assert_acknowledged_once()
        stats = rig.stats()
    got = Counter(r["message"] for r in server.query('{job="t6"}'))
    assert sorted(got) == sorted(before + during)
    assert set(got.values()) == {1}
    assert stats["parked"] == 0 and stats["delivered"] == 2500 and stats["retried"] > 0


def test_https_with_the_servers_ca_and_a_certificate_it_cannot_verify(tmp_path: Path) -> None:
    """VictoriaLogs serving HTTPS: with tls.ca_file the lines arrive; without it (the system's
    CAs do not know the local CA) pushes fail verification, are retried, and nothing is lost or
    acknowledged."""
    from log_capturer.devtools.certs import generate

    material = generate(tmp_path / "certs")
    server = LocalVictoriaLogs(tmp_path / "victorialogs", port=free_port(), tls=material)
    started(server, "VictoriaLogs", VictoriaLogsError, timeout=60)
    try:
        assert server.url.startswith("https://")
        trusted = Section(
            server, default_labels={"job": "tls"}, tls={"enabled": True, "ca_file": str(material.ca_file)}
        )
        cp = Checkpoint()
        with Rig(trusted, tmp_path / "ok") as rig:  # type: ignore[arg-type]
            submit(rig, [chunk(Origin("file", "/tls.log"), ["over tls 1", "over tls 2"])], cp)
            wait_committed({cp: 2}, 30, "the lines delivered over TLS")
        assert sorted(r["message"] for r in server.query('{job="tls"}')) == ["over tls 1", "over tls 2"]

        untrusted = Section(server, default_labels={"job": "untrusted"}, tls={"enabled": True})
        cp = Checkpoint()
        with Rig(untrusted, tmp_path / "bad", {"timeout": "120s"}) as rig:  # type: ignore[arg-type]
            submit(rig, [chunk(Origin("file", "/tls.log"), ["not verified"])], cp)
            wait_until(
                lambda: "CERTIFICATE_VERIFY_FAILED" in str(rig.stats()["last_error"]), 30, "a verify error"
            )
            assert cp.committed == 0 and rig.parked() == []
        assert server.count('{job="untrusted"}') == 0
    finally:
        server.down()


def test_adaptive_batching_sends_a_trickle_at_once_and_fixed_batching_waits(
    server: LocalVictoriaLogs, tmp_path: Path
) -> None:
    """batch_timeout 3 s: with adaptive_batching a lone line leaves as soon as the dispatcher has
    nothing more (no push in flight); without it, it waits for its batch to fill or time out."""
    o = Origin("file", "/trickle.log")
    for adaptive in (True, False):
        name = f"adaptive-{adaptive}".lower()
        sec = Section(
            server,
            default_labels={"job": name},
            batch_timeout="3s",
            adaptive_batching={"enabled": adaptive},
        )
        cp = Checkpoint()
        with Rig(sec, tmp_path / name) as rig:  # type: ignore[arg-type]
            started = time.monotonic()
            submit(rig, [chunk(o, ["one line"])], cp)
            wait_committed({cp: 1}, 30, "the line delivered")
            took = time.monotonic() - started
        if adaptive:
            assert took < 1.5, took
        else:
            assert 2.5 < took < 10, took
        assert server.count(f'{{job="{name}"}}') == 1


def test_mutual_tls_through_a_terminator_that_requires_a_client_certificate(
    server: LocalVictoriaLogs, tmp_path: Path
) -> None:
    """socat (OpenSSL) terminates TLS in front of VictoriaLogs and verifies client certificates
    against the local CA: with tls.cert_file/key_file the lines arrive; without them nothing is
    delivered, acknowledged or parked (retried)."""
    import shutil
    import subprocess

    from log_capturer.devtools.certs import generate

    socat = shutil.which("socat")
    assert socat, "socat is not installed: run scripts/system-deps.sh (apt-get install socat)"
    tls = generate(tmp_path / "certs")
    port = free_port()
    listen = (
        f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={tls.server_cert},"
        f"key={tls.server_key},cafile={tls.ca_file},verify=1"
    )
    log = (tmp_path / "socat.log").open("wb")
    proc = subprocess.Popen([socat, "-d", listen, f"TCP:127.0.0.1:{server.port}"], stdout=log, stderr=log)
    try:
        wait_until(lambda: _port_open(port), 10, "socat to listen")
        base = {"url": f"https://127.0.0.1:{port}", "tls": {"enabled": True, "ca_file": str(tls.ca_file)}}
        with_cert = Section(
            server,
            **base,
            default_labels={"job": "mtls"},
        )
        with_cert.extra["tls"] = {
            **base["tls"],
            "cert_file": str(tls.client_cert),
            "key_file": str(tls.client_key),
        }
        cp = Checkpoint()
        with Rig(with_cert, tmp_path / "ok") as rig:  # type: ignore[arg-type]
            submit(rig, [chunk(Origin("file", "/m.log"), ["mutual 1", "mutual 2"])], cp)
            wait_committed({cp: 2}, 30, "the lines delivered over mutual TLS")
        assert sorted(r["message"] for r in server.query('{job="mtls"}')) == ["mutual 1", "mutual 2"]

        no_cert = Section(server, **base, default_labels={"job": "nocert"})
        cp = Checkpoint()
        with Rig(no_cert, tmp_path / "bad", {"timeout": "120s"}) as rig:  # type: ignore[arg-type]
            submit(rig, [chunk(Origin("file", "/m.log"), ["no certificate"])], cp)
            wait_until(lambda: rig.stats()["retried"] > 0 or rig.stats()["retry_queue"] > 0, 30, "a retry")
            time.sleep(1)
            assert cp.committed == 0 and rig.parked() == []
            # The terminator's alert, or (TLS 1.3: it may close before the client reads the alert)
            # the connection it reset.
            error = str(rig.stats()["last_error"])
            assert "CERTIFICATE_REQUIRED" in error or "reset by peer" in error, error
        assert server.count('{job="nocert"}') == 0
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_parked_records_are_replayed_to_loki_once_it_is_back(
    server: LocalVictoriaLogs, tmp_path: Path
) -> None:
    """Lines parked because Loki was away past ``timeout`` are pushed by the DLQ's replay (the
    reprocessor's call) once it is back, each with its original timestamp and labels."""
    from log_capturer.reliability.dlq.replay import record_of

    sec = Section(server, default_labels={"job": "replay"}, circuit_breaker={"timeout": "1s"})
    o = Origin("file", "/replay.log", {"app": "web"})
    lines = [f"parked {i}" for i in range(20)]
    cp = Checkpoint()
    with Rig(sec, tmp_path, {"timeout": "1s"}) as rig:  # type: ignore[arg-type]
        server.stop()
        submit(rig, [chunk(o, lines)], cp)
        wait_committed({cp: 20}, 60, "the lines parked after the timeout")
        parked = rig.parked()
        assert sorted(e["original_entry"]["message"] for e in parked) == sorted(lines)
        assert {e["failed_sink"] for e in parked} == {"loki_sink"}
        server.up(timeout=60)
        wait_until(lambda: rig.sink.replay_blocker() == "", 30, "the sink to accept replays")  # type: ignore[attr-defined]
        results = rig.sink.replay([record_of(e) for e in parked], 30)  # type: ignore[attr-defined]
    assert set(results.values()) == {None}, results
    rows = server.query('{job="replay"}')
    assert sorted(r["message"] for r in rows) == sorted(lines)
    assert {r["_stream"] for r in rows} == {
        '{app="web",job="replay",source_id="/replay.log",source_type="file"}'
    }
