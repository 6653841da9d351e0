"""Crashed sources against a real broker: restarted, visible in /health, no line lost or repeated.

The agent runs in this process (``Agent``) so that a crash can be made to happen in its real
objects: the file source's hand-over of a chunk fails once, HTTP ingest's handler fails once.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.app import Agent
from log_capturer.config.loader import validate
from log_capturer.record import Chunk
from log_capturer.sources.file.source import FileSource
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.http.source import HttpIngest
from tests.support import agent_config, consume_all, create_prefixed_topics, wait_until

pytestmark = pytest.mark.integration


def write(path: Path, tag: str, count: int) -> list[str]:
    lines = [f"{tag} line {i:05d}" for i in range(count)]
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def source(agent: Agent, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in agent.health()["services"]["sources"] if s["name"] == name)
    return found


def post(url: str, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=orjson.dumps(record), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_crashed_sources_are_restarted_reported_and_lose_no_line(
    tmp_path: Path, bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    data = agent_config(tmp_path, bootstrap, topics, http_ingest={"enabled": True})
    data["files_config"]["read_buffer_bytes"] = 4096  # many chunks: the crash comes mid-file
    agent = Agent(validate(data))
    log = tmp_path / "logs" / "app.log"
    expected = write(log, "before", 3000)
    src = agent.source("file_source")
    ingest = agent.source("http_ingest")
    assert isinstance(src, FileSource) and isinstance(ingest, HttpIngest)

    # The third hand-over of a chunk to the dispatcher fails; the restarted loop's first turn then
    # waits until the test has looked at /health (so "degraded" is seen whatever the timing).
    crashed, looked = threading.Event(), threading.Event()
    real_submit, real_pump = src.tailer._submit, src.tailer.pump_all
    hand_overs = [0]

    def submit(tf: TailedFile, chunk: Chunk) -> None:
        hand_overs[0] += 1
        if hand_overs[0] == 3:
            crashed.set()
            raise RuntimeError("injected crash")
        real_submit(tf, chunk)

    def pump_all(now: float, work: set[Any] | None = None) -> bool:
        if crashed.is_set():
            looked.wait(60)
        return real_pump(now, work)

    monkeypatch.setattr(src.tailer, "_submit", submit)
    monkeypatch.setattr(src.tailer, "pump_all", pump_all)
    real_chunks = ingest.records.chunks
    requests = [0]

    def chunks(records: list[dict[str, Any]]) -> list[Chunk]:
        requests[0] += 1
        if requests[0] == 1:
            raise KeyError("injected")
        return real_chunks(records)

    monkeypatch.setattr(ingest.records, "chunks", chunks)
    agent.start()
    try:
        wait_until(lambda: src.tailer.supervisor.restarts == 1, 30, "the file source to be restarted")
        fs = source(agent, "file_source")
        assert fs["status"] == "degraded"
        assert fs["message"] == "crashed: RuntimeError: injected crash; restarts: 1"
        assert fs["restarts"] == 1 and fs["last_error"] == "RuntimeError: injected crash"
        assert agent.health()["status"] != "healthy"
        health = {"component_type": "source", "component_name": "file_source"}
        assert agent.metrics.registry.get_sample_value("component_health", health) == 0.5
        expected += write(log, "after", 2000)  # written while the source was down
        looked.set()
        wait_until(lambda: source(agent, "file_source")["status"] == "healthy", 30, "healthy again")
        assert agent.metrics.registry.get_sample_value("component_health", health) == 1.0
        crash = {"component": "file_source", "error_type": "crash"}
        assert agent.metrics.registry.get_sample_value("errors_total", crash) == 1

        url = f"http://127.0.0.1:{data['server']['port']}/api/v1/logs"
        status, body = post(url, {"message": "lost to a crash"})
        assert status == 500 and body["status"] == "error" and "KeyError: 'injected'" in body["error"]
        ingest = source(agent, "http_ingest")
        assert ingest["status"] == "degraded" and ingest["last_error"] == "KeyError: 'injected'"
        assert post(url, {"message": "ingested after the crash"}) == (
            200,
            {"status": "accepted", "accepted": 1, "rejected": 0},
        )
        assert source(agent, "http_ingest")["status"] == "healthy"
        tailer = src.tailer
        wait_until(
            lambda: tailer.lines_read == len(expected) and tailer.in_flight() == 0, 60, "every line acked"
        )
    finally:
        looked.set()
        agent.stop()

    records = consume_all(bootstrap, topics.values(), expected=len(expected) + 1)
    messages = Counter(rec.json()["message"] for rec in records)
    assert messages.pop("ingested after the crash") == 1
    dups = {m: n for m, n in messages.items() if n > 1}
    missing = [m for m in expected if m not in messages]
    assert not dups, f"{len(dups)} lines sent twice, e.g. {list(dups.items())[:3]}"
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:3]}"
    assert sorted(messages) == sorted(expected)
    saved = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"][str(log)]
    assert saved["offset"] == log.stat().st_size
