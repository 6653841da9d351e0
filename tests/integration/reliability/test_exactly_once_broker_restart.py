"""``delivery: exactly_once`` across a broker restart: the broker stopped for a few seconds while
lines flow, then started again; read back read_committed: every line once, in order. If a
transaction had to be aborted, the agent ends with status 75 and is started again here, as its
supervisor would."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import LocalKafka
from log_capturer.sinks.kafka.transactions import EXIT_ABORTED
from tests.integration.reliability.conftest import generate, leave_clean, own_bootstrap
from tests.integration.sinks.kafka.test_exactly_once import (
    caught_up,
    check_exactly_once,
    eos_config,
    read_committed,
)
from tests.support import AgentProcess, create_prefixed_topics, write_config

pytestmark = pytest.mark.integration

LINES = 30_000
RATE = 2000
OUTAGE = 6.0


def test_a_broker_restart_loses_and_duplicates_nothing(
    tmp_path: Path, own_kafka: LocalKafka, topic_prefix: str
) -> None:
    bootstrap = own_bootstrap(own_kafka)
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = eos_config(tmp_path, bootstrap, topics, f"{topic_prefix}-restart")
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    writer = generate(log, RATE, count=LINES)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    restarts = 0

    def supervise() -> None:
        """Start the agent again when it ended after an aborted transaction (status 75)."""
        nonlocal agent, restarts
        assert agent.proc is not None
        code = agent.proc.poll()
        if code is None:
            return
        assert code == EXIT_ABORTED, f"the agent exited {code}:\n{agent.log()}"
        restarts += 1
        agent = AgentProcess(path, tmp_path / "agent.log").start()

    try:
        time.sleep(4)
        own_kafka.stop_node(1)
        time.sleep(OUTAGE)
        own_kafka.start_node(1, timeout=120)
        deadline = time.monotonic() + 180
        while True:
            supervise()
            if writer.poll() == 0 and caught_up(agent, [log]):
                break
            assert time.monotonic() < deadline, f"not caught up:\n{agent.log()}"
            time.sleep(0.5)
        # Each abort ended a run; the running agent still counts them (kept in positions.directory).
        aborted = agent.get("/stats")["sinks"]["kafka_sink"]["transactions"]["aborted"]
        assert aborted == restarts, (aborted, restarts)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        leave_clean(writer, agent, own_kafka)
    report = check_exactly_once(read_committed(bootstrap, topics["logs"]), [log], LINES)
    print(json.dumps({"per_file": report, "restarts_after_abort": restarts}))
