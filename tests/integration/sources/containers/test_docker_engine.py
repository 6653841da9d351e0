"""The container source against a real Docker Engine (the session's private dockerd).

Containers of the local busybox image write to stdout and stderr; dockerd
writes its real json-file logs (split lines, rotation), answers
``/containers/json`` and streams ``/events``. The agent runs as a process on
the host and reads the engine's containers directory. The oracle is what
Docker itself says the containers wrote (``docker logs``); every line of it
must be in Kafka with the container's id, name and labels, exactly once (at
least once across a kill -9, with duplicates bounded by what was delivered
but not yet checkpointed).

Each test follows only its own containers (a ``run`` label unique to it), since
the engine is shared by the session.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from log_capturer.devtools.docker_local import LocalDocker
from tests.support import (
    AgentProcess,
    Rec,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

Line = tuple[str, str, str]  # (source_id, stream, message)


class Run:
    """One test's containers on the shared engine, and the agent config that follows them."""

    def __init__(self, engine: LocalDocker, image: str, tmp: Path) -> None:
        self.engine = engine
        self.image = image
        self.tmp = tmp
        self.id = uuid.uuid4().hex[:12]
        self.names: dict[str, str] = {}  # container id -> name

    def name(self, base: str) -> str:
        return f"{base}-{self.id}"

    def start(self, base: str, script: str, *opts: str, labels: dict[str, str] | None = None) -> str:
        """``docker run -d`` a busybox shell ``script``; returns the container id."""
        args = ["run", "-d", "--network", "none", "--name", self.name(base), "--label", f"run={self.id}"]
        for k, v in (labels or {}).items():
            args += ["--label", f"{k}={v}"]
        proc = self.engine.docker(*args, *opts, self.image, "sh", "-c", script)
        cid = proc.stdout.decode().strip()
        self.names[cid] = self.name(base)
        return cid

    def wait(self, cid: str) -> None:
        self.engine.docker("wait", cid, timeout=300)

    def logged(self, cid: str) -> Counter[Line]:
        """What Docker says the container wrote (``docker logs``), per stream."""
        proc = self.engine.docker("logs", cid, timeout=300)
        out: Counter[Line] = Counter()
        for stream, data in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            for line in data.decode().split("\n"):
                if line:
                    out[(cid, stream, line)] += 1
        return out

    def config(self, bootstrap: str, topics: dict[str, str], **monitor: Any) -> Path:
        section = {
            "enabled": True,
            "containers_directory": str(self.engine.containers_directory),
            "socket_path": self.engine.host,
            "include_labels": {"run": self.id},
            "rescan_interval": "500ms",
            "reconnect_interval": "500ms",
            **monitor,
        }
        return write_config(
            self.tmp / "config.yaml",
            agent_config(
                self.tmp,
                bootstrap,
                topics,
                files_config={"enabled": False},
                container_monitor=section,
                positions={"flush_interval": "200ms"},
            ),
        )


def shipped(
    records: list[Rec], ids: set[str] | None = None
) -> tuple[Counter[Line], dict[str, dict[str, Any]]]:
    seen: Counter[Line] = Counter()
    docs: dict[str, dict[str, Any]] = {}
    for rec in records:
        doc = rec.json()
        if ids is not None and doc["source_id"] not in ids:
            continue
        seen[(doc["source_id"], doc["fields"].get("stream", ""), doc["message"])] += 1
        docs[doc["source_id"]] = doc
    return seen, docs


def assert_exactly(seen: Counter[Line], expected: Counter[Line]) -> None:
    missing = expected - seen
    extra = seen - expected
    print(f"{sum(expected.values())} lines expected, {sum(seen.values())} shipped")
    assert not missing, f"{sum(missing.values())} lines missing, e.g. {list(missing)[:3]}"
    assert not extra, f"{sum(extra.values())} lines too many, e.g. {list(extra)[:3]}"


@pytest.fixture
def run(docker_engine: LocalDocker, busybox: str, tmp_path: Path) -> Run:
    return Run(docker_engine, busybox, tmp_path)


def test_streams_long_lines_labels_and_filters(run: Run, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = run.config(
        bootstrap,
        topics,
        include_labels={"run": run.id, "ship": "yes"},
        exclude_labels={"private": "*"},
        exclude_names=["skip-*"],
    )
    agent = AgentProcess(cfg, run.tmp / "agent.log").start()
    try:
        script = (
            'i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; done; '
            # Lines over 16 KiB: Docker writes them as several json-file entries.
            "head -c 40000 /dev/zero | tr '\\0' a; echo; head -c 70000 /dev/zero | tr '\\0' b >&2; echo >&2"
        )
        web = run.start("web", script, labels={"ship": "yes", "tenant_id": "acme"})
        others = [
            run.start("skip-web", script, labels={"ship": "yes"}),
            run.start("other", script),
            run.start("secret", script, labels={"ship": "yes", "private": "1"}),
        ]
        for cid in [web, *others]:
            run.wait(cid)
        expected = run.logged(web)
        assert sum(expected.values()) == 6002
        assert (web, "stdout", "a" * 40000) in expected and (web, "stderr", "b" * 70000) in expected
        log = Path(run.engine.containers_directory, web, f"{web}-json.log").read_bytes()
        assert log.count(b'"log":"' + b"a" * 16384 + b'","stream"') == 2  # split by Docker
        records = consume_all(bootstrap, topics.values(), expected=6002, timeout=120)
        wait_until(
            lambda: agent.get("/positions")["containers"].get(web, {}).get("log_count", 0) >= 6002,
            60,
            "the last line's checkpoint",
        )
        records = consume_all(bootstrap, topics.values())
        seen, docs = shipped(records)
        assert set(docs) == {web}, "only the included container is followed"
        assert_exactly(seen, expected)
        assert agent.get("/positions")["containers"][web]["log_count"] == 6002
        doc = docs[web]
        assert doc["source_type"] == "docker"
        assert doc["labels"] == {
            "run": run.id,
            "ship": "yes",
            "tenant_id": "acme",
            "container_name": run.name("web"),
            "image": run.image,
        }
        assert {r.key for r in records} == {b"acme"}  # the tenant_id label is the key
        sources = {s["name"]: s for s in agent.get("/health")["services"]["sources"]}
        assert sources["container_source"]["docker_events_connected"] is True
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_docker_log_rotation_at_full_speed(run: Run, bootstrap: str, topic_prefix: str) -> None:
    """max-size=128k: about 60 generations written as fast as the container can; max-file keeps
    them all on disk, so every line Docker wrote can be read."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    agent = AgentProcess(run.config(bootstrap, topics), run.tmp / "agent.log").start()
    try:
        cid = run.start(
            "rot",
            "seq 1 100000; seq 1 30000 >&2",
            "--log-opt",
            "max-size=128k",
            "--log-opt",
            "max-file=200",
        )
        run.wait(cid)
        rotated = list(Path(run.engine.containers_directory, cid).glob(f"{cid}-json.log.*"))
        assert len(rotated) > 40, "Docker rotated its json-file many times"
        expected = run.logged(cid)
        assert sum(expected.values()) == 130_000
        consume_all(bootstrap, topics.values(), expected=130_000, timeout=180)
        wait_until(
            lambda: agent.get("/positions")["containers"].get(cid, {}).get("log_count") == 130_000,
            60,
            "every line's checkpoint",
        )
        seen, _ = shipped(consume_all(bootstrap, topics.values()))
        assert_exactly(seen, expected)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_restarted_then_removed_while_its_log_is_read(run: Run, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    agent = AgentProcess(run.config(bootstrap, topics), run.tmp / "agent.log").start()
    try:
        cid = run.start("rr", "seq 1 60000; echo stopping >&2")
        run.wait(cid)
        run.engine.docker("start", cid)  # the same log file continues
        run.wait(cid)
        expected = run.logged(cid)
        assert sum(expected.values()) == 120_002
        wait_until(
            lambda: agent.get("/stats")["containers"]["lines_read"] > 0, 60, "the agent to read the log"
        )
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGSTOP)  # it holds the file open, mid-read
        try:
            run.engine.docker("rm", cid)
        finally:
            agent.proc.send_signal(signal.SIGCONT)
        assert not Path(run.engine.containers_directory, cid).exists()
        consume_all(bootstrap, topics.values(), expected=120_002, timeout=180)
        wait_until(
            lambda: cid not in agent.get("/positions")["containers"],
            60,
            "the removed container's position to be dropped once read",
        )
        seen, docs = shipped(consume_all(bootstrap, topics.values()))
        assert_exactly(seen, expected)
        assert docs[cid]["labels"]["container_name"] == run.name("rr")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_catch_up_then_kill_9_and_resume(run: Run, bootstrap: str, topic_prefix: str) -> None:
    """Containers that wrote before the agent started are read from their first line; after a
    kill -9 the agent resumes from its saved positions: nothing lost, duplicates bounded by the
    lines delivered after the last saved checkpoint."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    early = run.start("early", "seq 1 40000; seq 1 1000 >&2")
    run.wait(early)
    steady = run.start(
        "steady",
        "i=0; while [ $i -lt 60 ]; do i=$((i+1)); seq $((i*1000-999)) $((i*1000)); sleep 0.05; done",
    )
    cfg = run.config(bootstrap, topics)
    agent = AgentProcess(cfg, run.tmp / "agent-1.log").start()
    positions = run.tmp / "positions" / "containers.json"
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["delivered"] > 5000,
            60,
            "the first deliveries",
        )
        wait_until(positions.exists, 30, "a saved position")
        agent.kill()
        saved = orjson.loads(positions.read_bytes())["positions"]
        checkpointed = sum(int(e["log_count"]) for e in saved.values())
        delivered = len(consume_all(bootstrap, topics.values()))
        print(f"killed with {delivered} lines in Kafka, {checkpointed} checkpointed")
        assert delivered >= checkpointed
        run.wait(steady)
        expected = run.logged(early) + run.logged(steady)
        assert sum(expected.values()) == 101_000
        agent = AgentProcess(cfg, run.tmp / "agent-2.log").start()
        consume_all(bootstrap, topics.values(), expected=101_000, timeout=180)
        wait_until(
            lambda: sum(e["log_count"] for e in agent.get("/positions")["containers"].values()) == 101_000,
            60,
            "every line's checkpoint",
        )
        seen, _ = shipped(consume_all(bootstrap, topics.values()))
        assert not expected - seen, f"lost: {list(expected - seen)[:3]}"
        duplicates = sum((seen - expected).values())
        assert set(seen) == set(expected)
        print(f"duplicates after kill -9: {duplicates} (bound {delivered - checkpointed})")
        assert duplicates <= delivered - checkpointed
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_engine_restarted_while_the_agent_runs(run: Run, bootstrap: str, topic_prefix: str) -> None:
    """dockerd stops (its containers with it) and starts again; a ``--restart always`` container
    runs again in the same log file and a new container appears: the agent reconnects to the
    events and ships every line once."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    agent = AgentProcess(run.config(bootstrap, topics), run.tmp / "agent.log").start()
    engine = run.engine
    try:
        cid = run.start(
            "always", "seq 1 20000; exec sleep 3600", "--restart", "always", "--stop-timeout", "1"
        )
        wait_until(lambda: agent.get("/stats")["containers"]["lines_read"] >= 20000, 60, "the first run")
        engine.stop_engine()
        sources = lambda: {s["name"]: s for s in agent.get("/health")["services"]["sources"]}  # noqa: E731
        wait_until(
            lambda: sources()["container_source"]["docker_events_connected"] is False,
            30,
            "the agent to see the events stream end",
        )
        engine.up(timeout=90)
        wait_until(
            lambda: sources()["container_source"]["docker_events_connected"] is True,
            30,
            "the agent to reconnect to the events",
        )
        wait_until(lambda: run.logged(cid).total() == 40000, 60, "the container's second run to write")
        later = run.start("later", "seq 1 5000 >&2")
        run.wait(later)
        expected = run.logged(cid) + run.logged(later)
        assert sum(expected.values()) == 45_000
        consume_all(bootstrap, topics.values(), expected=45_000, timeout=120)
        wait_until(
            lambda: sum(e["log_count"] for e in agent.get("/positions")["containers"].values()) == 45_000,
            60,
            "every line's checkpoint",
        )
        seen, _ = shipped(consume_all(bootstrap, topics.values()))
        assert_exactly(seen, expected)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        if engine.pid() is None:
            engine.up(timeout=90)
        engine.docker("rm", "-f", run.name("always"), check=False)


def test_exactly_once_kill_9_twice_read_committed_sees_every_line_once_in_order(
    run: Run, bootstrap: str, topic_prefix: str
) -> None:
    """``sinks.kafka.delivery: exactly_once``: the containers' positions are committed in the
    Kafka transaction of their lines (the positions topic's ``containers``). Killed with SIGKILL
    twice while a container writes, then read back read_committed: Docker's lines, each once, in
    order."""
    from tests.integration.sinks.kafka.test_exactly_once import read_committed

    topics = create_prefixed_topics(bootstrap, topic_prefix)
    steady = run.start(
        "eos",
        "i=0; while [ $i -lt 150 ]; do i=$((i+1)); seq $((i*200-199)) $((i*200)); sleep 0.1; done",
    )
    path = run.config(bootstrap, topics)
    cfg = yaml.safe_load(path.read_text())
    cfg["sinks"]["kafka"].update(
        {
            "delivery": "exactly_once",
            "exactly_once": {
                "transactional_id": f"{topic_prefix}-docker",
                "positions_topic": topics["log-capturer-positions"],
                "transaction_timeout": "20s",
            },
            "priority_routing": {"enabled": False},
            "partitioning": {"key_field": "no_such_field"},  # the key: the container id
        }
    )
    cfg["http_ingest"] = {"enabled": False}
    path = write_config(path, cfg)
    agent = AgentProcess(path, run.tmp / "agent.log").start()
    try:
        for _ in range(2):
            # Killed once lines and positions are committed, while the container still writes.
            wait_until(
                lambda a=agent: (
                    a.get("/stats")["sinks"]["kafka_sink"]["transactions"]["records_committed"]  # type: ignore[misc]
                    > 2000
                ),
                60,
                "lines committed",
            )
            assert run.engine.docker("inspect", "-f", "{{.State.Running}}", steady).stdout.strip() == b"true"
            agent.kill()
            agent = AgentProcess(path, run.tmp / "agent.log").start()
        run.wait(steady)
        # Each restart resumed from committed positions (not from the start of the log).
        assert agent.log(10_000).count("0 file and 1 container positions committed") == 2, agent.log()
        expected = run.logged(steady)
        assert sum(expected.values()) == 30_000
        wait_until(
            lambda: sum(e["log_count"] for e in agent.get("/positions")["containers"].values()) >= 30_000,
            90,
            "every line acknowledged",
        )
        time.sleep(1)  # the last transaction commits
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
    records = [
        Rec(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        for m in read_committed(bootstrap, topics["logs"])
    ]
    seen, _ = shipped(records, {steady})
    assert_exactly(seen, expected)
    got = [int(r.json()["message"]) for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    assert got == list(range(1, 30_001)), "out of order"
    # The positions record holds the container (no positions file written).
    docs = read_committed(bootstrap, topics["log-capturer-positions"])
    assert steady in orjson.loads(docs[-1].value())["containers"]
    assert not (run.tmp / "positions" / "containers.json").exists()
