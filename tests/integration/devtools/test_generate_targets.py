"""`log-capturer generate` into real peers: a file, a Kafka broker, rsyslog, and an HTTP server.

The agent's own HTTP ingest and syslog endpoints are not on main yet, so the
syslog target is checked against a real rsyslogd (Debian's, installed by
scripts/system-deps.sh) on loopback, and the HTTP target against a plain
aiohttp server in this test that records what it receives and answers 503 and
429 first: it checks the wire format and the retries, not the agent.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from log_capturer.devtools.generate import DEFAULT_LEVELS, LINE_MARK, SYSLOG_SEVERITY, LineFactory
from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.topics import TopicSpec, create_topics
from tests.support import consume_all, wait_until

pytestmark = pytest.mark.integration

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def generate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "log_capturer", "generate", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"generate {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def untimed(line: str) -> str:
    return TIME.sub("T", line)


def expected_lines(fmt: str, count: int, seed: int = 1, levels: str = DEFAULT_LEVELS) -> list[str]:
    return [untimed(x) for x in LineFactory(fmt, 150, levels, seed).batch(0, count, 0).lines]


def seq_of(line: str | bytes) -> int:
    m = LINE_MARK.search(line if isinstance(line, bytes) else line.encode())
    assert m is not None, line
    return int(m.group(2))


def test_file_target_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "logs" / "gen.log"
    summary = tmp_path / "summary.json"
    generate(
        "--target",
        "file",
        "--output",
        str(out),
        "--rate",
        "4000",
        "--duration",
        "1",
        "--format",
        "mixed",
        "--seed",
        "9",
        "--summary",
        str(summary),
    )
    lines = out.read_text().splitlines()
    # 4,000 lines, four of them followed by their stack trace's lines (one in a thousand).
    want = expected_lines("mixed", 4000, seed=9)
    assert sum(1 for x in lines if LINE_MARK.search(x.encode())) == 4000
    assert [untimed(x) for x in lines] == "\n".join(want).split("\n")
    s = orjson.loads(summary.read_bytes())
    assert s["lines"] == 4000 and s["last_seq"] == 3999 and s["target"] == "file"


def test_kafka_target_produces_every_line_once(bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-gen"
    create_topics(bootstrap, topics=(TopicSpec(topic, 3, 1, "generator test"),))
    generate(
        "--target",
        "kafka",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--rate",
        "0",
        "--count",
        "20000",
        "--format",
        "json",
    )
    records = consume_all(bootstrap, [topic], expected=20_000)
    assert len(records) == 20_000
    by_seq = {seq_of(r.value): untimed(r.value.decode()) for r in records}
    assert sorted(by_seq) == list(range(20_000))
    want = expected_lines("json", 20_000)
    assert all(by_seq[i] == want[i] for i in range(20_000))


def test_kafka_target_fails_loudly_without_a_topic(bootstrap: str, topic_prefix: str) -> None:
    proc = generate(
        "--target",
        "kafka",
        "--bootstrap",
        bootstrap,
        "--topic",
        f"{topic_prefix}-absent",
        "--count",
        "10",
        "--rate",
        "0",
        check=False,
    )
    assert proc.returncode == 1
    assert f"topic {topic_prefix}-absent does not exist at {bootstrap}" in proc.stderr, proc.stderr


# -- syslog ---------------------------------------------------------------------------------------

RSYSLOG_CONF = """\
global(workDirectory="{dir}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string"
         string="%syslogseverity%|%syslogfacility%|%timereported:::date-rfc3339%|%app-name%|%msg%\\n")
*.* action(type="omfile" file="{out}" template="fields")
"""


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[dict[str, Any]]:
    exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    assert Path(exe).exists(), "rsyslogd is missing: run scripts/system-deps.sh (make test does)"
    udp, tcp = free_port(), free_port()
    out = tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(dir=tmp_path, udp=udp, tcp=tcp, out=out))
    log = (tmp_path / "rsyslogd.log").open("wb")
    proc = subprocess.Popen(
        [exe, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"rsyslogd exited:\n{(tmp_path / 'rsyslogd.log').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", tcp)) == 0

    try:
        wait_until(listening, 30, "rsyslogd to listen")
        yield {"udp": udp, "tcp": tcp, "out": out}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def received(out: Path, n: int) -> list[list[str]]:
    def enough() -> list[list[str]] | None:
        rows = [r.split("|", 4) for r in out.read_text().splitlines()] if out.exists() else []
        return rows if len(rows) >= n else None

    rows: list[list[str]] = wait_until(enough, 30, f"{n} messages in rsyslog's output")
    return rows


@pytest.mark.parametrize(("protocol", "framing"), [("udp", "octet"), ("tcp", "octet"), ("tcp", "lf")])
def test_syslog_target_reaches_rsyslog(rsyslog: dict[str, Any], protocol: str, framing: str) -> None:
    port = rsyslog[protocol]
    generate(
        "--target",
        "syslog",
        "--port",
        str(port),
        "--protocol",
        protocol,
        "--framing",
        framing,
        "--rate",
        "2000",
        "--duration",
        "0.5",
        "--format",
        "logfmt",
    )
    rows = received(rsyslog["out"], 1000)
    assert len(rows) == 1000
    factory = LineFactory("logfmt", 150)
    want = expected_lines("logfmt", 1000)
    for sev, facility, ts, app, msg in rows:
        seq = seq_of(msg)
        assert untimed(msg) == want[seq]
        assert int(sev) == SYSLOG_SEVERITY[factory.level_of(seq)]
        assert facility == "1" and app == "loggen"
        # The syslog header's time is the line's emit time.
        assert ts.replace("+00:00", "Z") in msg or ts[:19] in msg
    assert sorted(seq_of(r[4]) for r in rows) == list(range(1000))


# -- http -----------------------------------------------------------------------------------------


class RecordingPeer:
    """An aiohttp server that refuses the first requests (503, then 429) and records the rest."""

    def __init__(self, refuse: list[int]) -> None:
        self.refuse = list(refuse)
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.refuse.pop(0) if self.refuse else 200
        self.statuses.append(status)
        if status != 200:
            return web.json_response({"error": "queue full"}, status=status)
        assert request.headers["Content-Type"] == "application/x-ndjson"
        self.bodies.append(body)
        return web.json_response({"status": "accepted"})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/v1/logs", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> RecordingPeer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_http_target_posts_ndjson_and_retries_on_503_and_429() -> None:
    with RecordingPeer(refuse=[503, 429]) as peer:
        generate(
            "--target",
            "http",
            "--url",
            f"http://127.0.0.1:{peer.port}/api/v1/logs",
            "--rate",
            "0",
            "--count",
            "2500",
            "--http-batch",
            "1000",
            "--format",
            "plain",
            "--levels",
            "info=1,none=1",
        )
    assert peer.statuses[:2] == [503, 429] and set(peer.statuses[2:]) == {200}
    docs = [orjson.loads(x) for body in peer.bodies for x in body.splitlines()]
    assert len(docs) == 2500
    factory = LineFactory("plain", 150, levels="info=1,none=1")
    want = expected_lines("plain", 2500, levels="info=1,none=1")
    for i, doc in enumerate(docs):
        assert seq_of(doc["message"]) == i
        assert untimed(doc["message"]) == want[i]
        assert doc["labels"] == {"tenant_id": factory.tenant_of(i)}
        assert doc["timestamp"] in doc["message"]
        assert doc.get("level") == (None if factory.level_of(i) == "none" else "info")


def test_http_target_stops_on_a_client_error() -> None:
    with RecordingPeer(refuse=[400]) as peer:
        proc = generate(
            "--target",
            "http",
            "--url",
            f"http://127.0.0.1:{peer.port}/api/v1/logs",
            "--rate",
            "0",
            "--count",
            "10",
            check=False,
        )
    assert proc.returncode == 1
    assert "answered 400" in proc.stderr
