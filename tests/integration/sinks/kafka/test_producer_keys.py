"""`required_acks` and `queue_size` each change something the broker (or the agent's metrics) shows.
(`batch_size` and `batch_timeout`: test_batching.py; `retry_max`: test_three_nodes.py.)"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.kafka_local import LocalKafka, free_port
from tests.integration.sinks.kafka.util import metric, ship_lines
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("acks", [0, 1, -1])
def test_required_acks_delivers_and_only_all_replicas_makes_the_producer_idempotent(
    acks: int, tmp_path: Path, kafka: LocalKafka, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"ERROR acks {acks} line {i}" for i in range(2000)]
    records, _ = ship_lines(tmp_path, bootstrap, topics, lines, sinks={"kafka": {"required_acks": acks}})
    # acks 0 is fire-and-forget, yet on a healthy broker every line still arrives, once.
    assert sorted(r.json()["message"] for r in records) == sorted(lines)
    batches = kafka.stored_batches(topics["logs-high-priority"])
    assert sum(b.count for b in batches) == len(lines)
    # The broker stores a producer id and sequence numbers only for an idempotent producer.
    idempotent = {b.producer_id >= 0 and b.base_sequence >= 0 for b in batches}
    assert idempotent == {acks == -1}, batches[:3]


def test_queue_size_bounds_the_records_the_producer_holds(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """With no broker to talk to, the producer fills up to queue_size records, never more; the other
    lines wait in front of it, unread lines in the file. Pointed at the broker again, every line
    arrives, once."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    queue_size = 100
    lines = [f"WARN queued line {i}" for i in range(3000)]
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    section = {"brokers": [nowhere], "queue_size": queue_size, "timeout": "120s"}
    cfg = agent_config(
        tmp_path, bootstrap, topics, dispatcher={"drain_timeout": "1s"}, sinks={"kafka": section}
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent-1.log").start()
    samples: list[float] = []
    try:

        def producer_full() -> bool:
            samples.append(metric(agent.metrics(), "kafka_queue_size"))
            return samples[-1] >= queue_size

        wait_until(producer_full, 60, "a full producer queue")
        for _ in range(5):
            time.sleep(0.5)
            producer_full()
        stats = agent.get("/stats")["sinks"]["kafka_sink"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    print(json.dumps({"queue_size": queue_size, "producer_queue_samples": samples}))
    assert max(samples) == queue_size, samples
    assert stats["delivered"] == 0 and stats["parked"] == 0, stats
    saved = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"]
    assert saved[str(tmp_path / "logs" / "app.log")]["offset"] == 0
    cfg["sinks"]["kafka"]["brokers"] = bootstrap.split(",")
    write_config(path, cfg)
    agent = AgentProcess(path, tmp_path / "agent-2.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=len(lines), timeout=90)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert sorted(r.json()["message"] for r in records) == sorted(lines)


@pytest.mark.parametrize(
    ("read_buffer", "native", "emergency"),
    [
        # Reads of 64 KiB: chunks smaller than the room. The sink admits chunks up to the emergency
        # level (95 % of queue_max_bytes), counting records as the broker would get them (encoded:
        # short lines grow severalfold), never more than queue_max_bytes.
        (64 << 10, True, 0.95),
        (64 << 10, False, 0.95),
        # backpressure_config.queue_emergency_threshold moves that level: here to half of it.
        (64 << 10, True, 0.5),
        # One read of 1 MiB: a chunk larger than the room goes alone (as with queue_size); it is
        # counted while it waits for room in librdkafka, which holds at most queue_max_bytes of it.
        (1 << 20, True, 0.95),
    ],
    ids=["reads-64k-native", "reads-64k-confluent", "reads-64k-emergency-0.5", "read-1m-alone"],
)
def test_queue_max_bytes_bounds_the_bytes_the_sink_holds(
    read_buffer: int, native: bool, emergency: float, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """With no broker to talk to, the sink fills up to queue_max_bytes, not to queue_size (a
    million records); /stats counts every record it holds, in bytes as encoded; the other lines
    wait in the dispatcher, unread in the file's checkpoint. Pointed at the broker again, every line
    arrives, once."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    limit = 1 << 20  # the smallest queue_max_bytes
    lines = [f"WARN held line {i:06d} " + "x" * 80 for i in range(20000)]  # ~100 bytes, one length
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    section = {
        "brokers": [nowhere],
        "queue_size": 1_000_000,
        "queue_max_bytes": limit,
        "timeout": "120s",
        "native_producer": native,
        # The warning and critical levels must stay below it (0.75 and 0.9 at the default 0.95).
        "backpressure_config": {
            "queue_warning_threshold": emergency - 0.2,
            "queue_critical_threshold": emergency - 0.05,
            "queue_emergency_threshold": emergency,
        },
    }
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        dispatcher={"drain_timeout": "1s"},
        files_config={"read_buffer_bytes": read_buffer},
        sinks={"kafka": section},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent-1.log").start()
    samples: list[dict[str, object]] = []
    try:

        def settled() -> bool:
            """The sink holds records and took none for the last three samples (it is full)."""
            stats = agent.get("/stats")
            kafka = stats["sinks"]["kafka_sink"]
            samples.append(
                {
                    "outstanding": kafka["outstanding"],
                    "outstanding_bytes": kafka["outstanding_bytes"],
                    "utilization": kafka["utilization"],
                    "level": kafka["backpressure"]["level"],
                    "in_librdkafka": metric(agent.metrics(), "kafka_queue_size"),
                    "dispatched": stats["dispatcher"]["lines_dispatched"],
                    "delivered": kafka["delivered"],
                    "parked": kafka["parked"],
                }
            )
            last = samples[-3:]
            return len(last) == 3 and last[0]["outstanding"] != 0 and all(s == last[0] for s in last)

        wait_until(settled, 60, "the sink to fill up", interval=0.5)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    saved = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"]
    assert saved[str(log)]["offset"] == 0
    cfg["sinks"]["kafka"]["brokers"] = bootstrap.split(",")
    write_config(path, cfg)
    agent = AgentProcess(path, tmp_path / "agent-2.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=len(lines), timeout=90)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert sorted(r.json()["message"] for r in records) == sorted(lines)
    [size] = {len(r.value) for r in records}  # every record the same size
    full = samples[-1]
    print(json.dumps({"limit": limit, "record_bytes": size, "full": full}))
    held = int(str(full["outstanding"]))
    assert full["delivered"] == full["parked"] == 0, full
    assert int(str(full["dispatched"])) < len(lines), "the other lines wait in the dispatcher"
    # Every record the sink holds is counted, as encoded, also while it waits for librdkafka.
    assert full["outstanding_bytes"] == held * size, full
    # librdkafka holds at most queue_max_bytes of records (it counts their values, not their keys).
    assert float(str(full["in_librdkafka"])) * size <= limit, full
    # Full: the sources are held (critical), and a read queued before they were waits at the
    # emergency level (it would overflow to the DLQ after the 120 s timeout), if there was one.
    assert full["level"] in ("critical", "emergency"), full
    if read_buffer < limit:
        # Full at the emergency level: one more read would not have fitted.
        assert emergency * limit / 2 < held * size <= emergency * limit, full
    else:
        # One read, alone: more than the room.
        assert float(str(full["utilization"])) > 1, full
        assert held <= read_buffer // (len(lines[0]) + 1), "that one read, nothing more"
