"""Syslog from util-linux `logger` (a real client) -> agent (real process) -> real Kafka broker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from log_capturer.devtools.certs import TlsMaterial
from log_capturer.devtools.certs import generate as generate_certs
from log_capturer.devtools.kafka_local import free_port
from log_capturer.processing.timestamps import parse_rfc3339
from tests.support import (
    REPO,
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    run_cli,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

HOST = socket.gethostname()


def logger(port: int, *args: str, stdin: str | None = None) -> None:
    cmd = ["logger", "--server", "127.0.0.1", "--port", str(port), *args]
    done = subprocess.run(cmd, input=stdin, text=True, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, f"{cmd} failed: {done.stderr}"


def test_logger_over_udp_and_tcp_in_both_formats_reaches_kafka(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    port = free_port()
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        syslog={
            "enabled": True,
            "udp": {"host": "127.0.0.1", "port": port},
            "tcp": {"host": "127.0.0.1", "port": port},
            "labels": {"site": "lab"},
            "pipeline": "syslog",
        },
        processing={"enabled": True, "pipelines_file": str(REPO / "configs" / "pipelines.yaml")},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        logger(
            port,
            "--tcp",
            "--rfc5424",
            "-p",
            "local3.err",
            "-t",
            "tcp5424",
            "--msgid",
            "M1",
            "--sd-id",
            "order@32473",
            "--sd-param",
            'tenant_id="acme"',
            "payment failed password=hunter2",
        )
        logger(port, "--udp", "--rfc5424", "-p", "user.warning", "-t", "udp5424", "disk almost full")
        logger(port, "--tcp", "--rfc3164", "-p", "daemon.info", "-t", "tcp3164", "service started")
        logger(port, "--udp", "--rfc3164", "-p", "auth.debug", "-t", "udp3164", "--id=4242", "auth check")
        logger(
            port, "--tcp", "--octet-count", "--rfc5424", "-p", "local0.crit", "-t", "octets", "octet framed"
        )
        logger(port, "--udp", "--rfc5424", "-p", "user.emerg", "-t", "panic", "kernel panic")
        # Many lines on one TCP connection: one message each, batched into few chunks.
        bulk = "".join(f"bulk line {i}\n" for i in range(2000))
        logger(port, "--tcp", "--rfc5424", "-p", "user.notice", "-t", "bulk", stdin=bulk)
        records = consume_all(bootstrap, topics.values(), expected=2006, timeout=120)
        docs = [(r.topic, r.json()) for r in records]
        assert len(docs) == 2006, agent.log()
        by_app: dict[str, list[tuple[str, dict]]] = {}
        for topic, doc in docs:
            by_app.setdefault(doc["fields"].get("appname", ""), []).append((topic, doc))
        for _, doc in docs:
            assert doc["source_type"] == "syslog"
            assert doc["labels"] == {"site": "lab"}
            assert doc["fields"]["source_ip"] == "127.0.0.1"
            assert doc["fields"]["hostname"] == HOST
            assert doc["fields"]["service"] == doc["fields"]["appname"]  # from the pipeline

        [(topic, doc)] = by_app["tcp5424"]
        assert topic == topics["logs-high-priority"]
        assert doc["level"] == "error"
        assert doc["message"] == "payment failed password=[REDACTED]"
        assert doc["source_id"] == "tcp://127.0.0.1"
        assert doc["fields"]["facility"] == "local3"
        assert doc["fields"]["severity"] == "err"
        assert doc["fields"]["msgid"] == "M1"
        assert doc["fields"]["structured_data"]["order@32473"] == {"tenant_id": "acme"}
        ts = parse_rfc3339(doc["timestamp"])
        assert ts is not None

        [(topic, doc)] = by_app["udp5424"]
        assert (topic, doc["level"], doc["message"]) == (
            topics["logs-normal-priority"],
            "warn",
            "disk almost full",
        )
        assert doc["source_id"] == "udp://127.0.0.1"
        assert doc["fields"]["severity"] == "warning"

        [(topic, doc)] = by_app["tcp3164"]
        assert (topic, doc["level"], doc["message"]) == (
            topics["logs-normal-priority"],
            "info",
            "service started",
        )
        assert doc["fields"]["facility"] == "daemon"

        [(topic, doc)] = by_app["udp3164"]
        assert (topic, doc["level"], doc["message"]) == (topics["logs-low-priority"], "debug", "auth check")
        assert doc["fields"]["procid"] == "4242"
        assert doc["fields"]["facility"] == "auth"

        [(topic, doc)] = by_app["octets"]
        assert (topic, doc["level"], doc["message"]) == (
            topics["logs-high-priority"],
            "critical",
            "octet framed",
        )

        [(topic, doc)] = by_app["panic"]
        assert (topic, doc["level"]) == (topics["logs-high-priority"], "fatal")

        bulk_docs = [doc for _, doc in by_app["bulk"]]
        assert sorted(d["message"] for d in bulk_docs) == sorted(f"bulk line {i}" for i in range(2000))
        assert {d["level"] for d in bulk_docs} == {"info"}
        # One TCP sender keeps its order (one origin -> one shard -> one partition key).
        offsets = sorted(
            (r.partition, r.offset, r.json()["message"])
            for r in records
            if r.json()["fields"].get("appname") == "bulk"
        )
        assert [m for _, _, m in offsets] == [f"bulk line {i}" for i in range(2000)]

        metrics = wait_until(
            lambda: (
                (m := agent.metrics())
                and 'source_lines_received_total{source="syslog",transport="tcp"} 2003.0' in m
                and m
            ),
            30,
            "the syslog metrics",
        )
        assert 'source_lines_received_total{source="syslog",transport="udp"} 3.0' in metrics
        assert 'pipeline_lines_total{pipeline="syslog"} 2006.0' in metrics
        stats = agent.get("/stats")
        assert stats["syslog"]["received"] == 2006
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_non_syslog_text_and_oversized_messages_are_kept_and_counted(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    port = free_port()
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        syslog={
            "enabled": True,
            "udp": {"enabled": False},
            "tcp": {"host": "127.0.0.1", "port": port},
            "max_message_bytes": 300,
        },
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"plain text ERROR without priority\n")
            s.sendall(b"<11>1 - host app - - - " + b"x" * 1000 + b"\n")
            s.sendall(b"<14>after the long one")  # no newline: ends with the connection
        records = consume_all(bootstrap, topics.values(), expected=3, timeout=60)
        docs = {r.json()["message"][:20]: r.json() for r in records}
        assert len(records) == 3, agent.log()
        plain = docs["plain text ERROR wit"]
        assert plain["level"] == "error"  # detected: no severity to go by
        assert plain["fields"] == {"source_ip": "127.0.0.1"}
        cut = docs["x" * 20]
        assert cut["truncated"] is True and cut["level"] == "error"
        assert len(cut["message"]) == 300 - len("<11>1 - host app - - - ")
        assert docs["after the long one"]["level"] == "info"
        metrics = wait_until(
            lambda: (
                (m := agent.metrics())
                and 'source_parse_errors_total{reason="no_priority",source="syslog"} 1.0' in m
                and m
            ),
            30,
            "the parse error metric",
        )
        assert 'logs_truncated_total{source_type="syslog"} 1.0' in metrics
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_a_taken_port_is_a_clear_start_error(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = agent_config(
            tmp_path,
            bootstrap,
            topics,
            syslog={"enabled": True, "udp": {"enabled": False}, "tcp": {"host": "127.0.0.1", "port": port}},
        )
        agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log")
        agent.start(wait=False)
        assert agent.proc is not None
        assert agent.proc.wait(60) == 2
        assert "cannot listen for syslog" in agent.log()


def test_kernel_udp_drops_are_read_for_the_socket() -> None:
    from log_capturer.sources.syslog.source import udp_drops

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unread:
        unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        unread.bind(("127.0.0.1", 0))
        inode = os.fstat(unread.fileno()).st_ino
        assert udp_drops(inode) == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(200):
                sender.sendto(b"<14>x" * 100, unread.getsockname())
        dropped = udp_drops(inode)
        assert dropped is not None and dropped > 0


# -- rsyslog forwarding: RFC 3164 tags as rsyslog writes them, RFC 5425 (TLS) -----------------------

RSYSLOG_FORWARDER = """\
global(workDirectory="{dir}"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{inp}")
# RFC 3164 as omfwd sends it by default (RSYSLOG_TraditionalForwardFormat), over UDP.
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp")
# RFC 5424, octet-counted, over TLS with rsyslog's GnuTLS driver, which presents a client
# certificate and checks the agent's.
action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format" StreamDriver="gtls" StreamDriverMode="1"
       StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost")
"""


@pytest.fixture
def rsyslog_forwarder(tmp_path: Path) -> Iterator[Callable[[int, int, TlsMaterial], int]]:
    """Starts rsyslogd (Debian's, with rsyslog-gnutls: scripts/system-deps.sh) forwarding what it
    receives on a TCP port to the agent's UDP and TLS ports; returns its input port."""
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "rsyslogd.log"

    def start(udp: int, tls: int, certs: TlsMaterial) -> int:
        exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        assert Path(exe).exists(), "rsyslogd is missing: run scripts/system-deps.sh (make test does)"
        work = tmp_path / "rsyslog"
        work.mkdir()
        inp = free_port()
        conf = work / "rsyslog.conf"
        conf.write_text(
            RSYSLOG_FORWARDER.format(
                dir=work,
                ca=certs.ca_file,
                cert=certs.client_cert,
                key=certs.client_key,
                inp=inp,
                udp=udp,
                tls=tls,
            )
        )
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [exe, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")], stdout=log, stderr=log
            )
        procs.append(proc)

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited {proc.returncode}:\n{log_path.read_text()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", inp)) == 0

        wait_until(listening, 30, "rsyslogd to listen")
        return inp

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def refused_without_a_certificate(port: int, certs: TlsMaterial) -> bool:
    """Whether the listener refuses a TLS client (Python's ssl module) that has no certificate."""
    client = ssl.create_default_context(cafile=str(certs.ca_file))
    try:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            s.sendall(b"<13>Nov 25 12:00:00 myhost anonymous: without a certificate\n")
            # TLS 1.3: the handshake ends on the client's side first; the refusal comes after it.
            return s.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_rsyslog_forwarding_over_udp_and_tls_keeps_tags_that_end_with_a_space(
    tmp_path: Path,
    bootstrap: str,
    topic_prefix: str,
    rsyslog_forwarder: Callable[[int, int, TlsMaterial], int],
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    certs = generate_certs(tmp_path / "certs")
    udp, tls = free_port(), free_port()
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        syslog={
            "enabled": True,
            "udp": {"host": "127.0.0.1", "port": udp},
            "tcp": {
                "host": "127.0.0.1",
                "port": tls,
                "tls": {
                    "enabled": True,
                    "cert_file": str(certs.server_cert),
                    "key_file": str(certs.server_key),
                    "ca_file": str(certs.ca_file),
                },
            },
        },
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        # Refused by the TLS listener: plain TCP, and TLS without a client certificate (Python's
        # ssl module as the client).
        with socket.create_connection(("127.0.0.1", tls)) as s:
            s.sendall(b"<13>Nov 25 12:00:00 myhost plain: over plain TCP\n")
        assert refused_without_a_certificate(tls, certs)

        inp = rsyslog_forwarder(udp, tls, certs)
        with socket.create_connection(("127.0.0.1", inp)) as s:
            # A tag ending with a space, then one with a pid and a colon, as applications write them.
            s.sendall(b"<13>Nov 25 12:00:00 myhost interop3 message one\n")
            s.sendall(b"<11>Nov 25 12:00:01 myhost interop4[77]: message two\n")
        logger(inp, "--tcp", "--rfc3164", "-p", "local0.warning", "-t", "interop5", "message three")

        records = consume_all(bootstrap, topics.values(), expected=6, timeout=60)
        docs = sorted(
            ((r.json()["source_id"], r.json()["fields"]["appname"], r.json()) for r in records),
            key=lambda t: (t[0], t[1]),
        )
        assert [(sid, app) for sid, app, _ in docs] == [
            ("tls://127.0.0.1", "interop3"),
            ("tls://127.0.0.1", "interop4"),
            ("tls://127.0.0.1", "interop5"),
            ("udp://127.0.0.1", "interop3"),
            ("udp://127.0.0.1", "interop4"),
            ("udp://127.0.0.1", "interop5"),
        ], agent.log()
        want = {"interop3": "message one", "interop4": "message two", "interop5": "message three"}
        levels = {"interop3": "info", "interop4": "error", "interop5": "warn"}
        for sid, app, doc in docs:
            # RFC 5424 from rsyslog keeps the space after the 3164 tag as content (rsyslog counts it
            # as part of the message); the 3164 form is parsed back to the bare text.
            assert doc["message"].strip() == want[app], doc
            if sid.startswith("udp"):
                assert doc["message"] == want[app], doc
            assert doc["fields"]["hostname"] in ("myhost", HOST), doc
            assert doc["level"] == levels[app]
        assert {d["fields"].get("procid") for _, app, d in docs if app == "interop4"} == {"77"}
        metrics = wait_until(
            lambda: (
                (m := agent.metrics())
                and 'source_lines_received_total{source="syslog",transport="tls"} 3.0' in m
                and m
            ),
            30,
            "the TLS messages counted",
        )
        assert 'source_lines_received_total{source="syslog",transport="udp"} 3.0' in metrics
        # The plain-TCP client and the one without a certificate: counted, and logged once.
        assert 'errors_total{component="syslog_source",error_type="tls_handshake"} 2.0' in metrics
        assert agent.log().count("syslog: TLS handshake with 127.0.0.1 failed") == 1, agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_unusable_tls_files_stop_the_start_with_the_key_to_fix(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    missing = tmp_path / "missing.pem"
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        syslog={
            "enabled": True,
            "udp": {"enabled": False},
            "tcp": {
                "host": "127.0.0.1",
                "port": free_port(),
                "tls": {"enabled": True, "cert_file": str(missing), "key_file": str(missing)},
            },
        },
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    validate = run_cli("validate", "--config", str(path), check=False)
    assert validate.returncode == 2
    assert f"syslog.tcp.tls.cert_file: {missing} cannot be read" in validate.stdout + validate.stderr
    agent = AgentProcess(path, tmp_path / "agent.log")
    agent.start(wait=False)
    assert agent.proc is not None
    assert agent.proc.wait(60) == 2
    assert f"syslog.tcp.tls.cert_file: {missing} cannot be read" in agent.log()
    assert "Traceback" not in agent.log()
