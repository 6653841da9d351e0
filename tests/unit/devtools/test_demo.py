"""The demo's configs: the project's templates with the demo's brokers, VictoriaLogs, topics,
directories and ports, and still valid agent configs (the demo itself runs in
tests/integration/devtools/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from log_capturer.config import load_config_text
from log_capturer.devtools.demo import LOG_TOPICS, Demo, DemoError
from log_capturer.devtools.kafka_local import LocalKafka
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.support import REPO


def demo(tmp_path: Path, **kw: object) -> Demo:
    return Demo(
        logs=tmp_path / "logs",
        directory=tmp_path / "demo",
        agent_template=REPO / "configs" / "demo-agent.yaml",
        consumer_template=REPO / "configs" / "consumer-loki.yaml",
        kafka=LocalKafka(tmp_path / "kafka"),
        victorialogs=LocalVictoriaLogs(tmp_path / "vl", port=19999),
        **kw,  # type: ignore[arg-type]
    )


def test_the_configs_point_at_the_demo_servers_topics_and_directories(tmp_path: Path) -> None:
    agent, consumer = demo(tmp_path, topic_prefix="p-").configs("127.0.0.1:1111")
    a = load_config_text(yaml.safe_dump(agent), env={})
    c = load_config_text(yaml.safe_dump(consumer), env={})
    assert a.files_config.watch_directories == [str((tmp_path / "logs").resolve())]
    assert a.sinks.kafka.brokers == c.kafka.brokers == ["127.0.0.1:1111"]
    routing = a.sinks.kafka.priority_routing
    shipped = {a.sinks.kafka.topic, routing.high_topic, routing.normal_topic, routing.low_topic}
    assert shipped == set(c.kafka.topics) == {f"p-{t}" for t in LOG_TOPICS}
    assert a.sinks.kafka.dlq_config.topic == "p-logs-dlq"
    assert c.kafka.group_id.startswith("p-") and c.sinks.loki.url == "http://127.0.0.1:19999"
    assert c.sinks.loki.headers == {"VL-Msg-Field": "message"}
    dirs = {
        a.positions.directory,
        a.dispatcher.dlq_config.directory,
        c.positions.directory,
        c.dispatcher.dlq_config.directory,
    }
    assert len(dirs) == 4 and all(d.startswith(str((tmp_path / "demo").resolve())) for d in dirs)
    # The templates' own ports (8401/8001 and 8402/8002) unless --free-ports.
    assert (a.server.port, c.server.port) == (8401, 8402)
    agent, consumer = demo(tmp_path, free_ports=True).configs("127.0.0.1:1111")
    ports = [cfg[k]["port"] for cfg in (agent, consumer) for k in ("server", "metrics")]
    assert len(set(ports)) == 4 and not {8401, 8001, 8402, 8002} & set(ports)
    assert agent["sinks"]["kafka"]["topic"] == "logs"  # no prefix: the design document's topics


def test_outside_the_project_directory_it_says_so_before_starting_anything(tmp_path: Path) -> None:
    d = demo(tmp_path)
    d.consumer_template = tmp_path / "configs" / "consumer-loki.yaml"
    with pytest.raises(DemoError, match=r"consumer-loki\.yaml not found: run the demo from the project"):
        d.up()
    assert not (tmp_path / "kafka").exists() and not d.started_kafka and not d.started_victorialogs
