"""The agent's image run by the session's private Docker Engine, the way users run it.

The image is built from the project's Dockerfile (local debootstrap base,
wheels from the host). It runs on the host network (the engine has no bridge)
with the engine's containers directory and socket mounted read-only where the
image's config expects them (/var/lib/docker/containers, /var/run/docker.sock),
shipping to the session's broker. The design document's checks are run as
written: ``docker logs log-capturer | grep "Kafka sink initialized"`` and the
``curl | jq`` health query.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from log_capturer.devtools.docker_local import LocalDocker
from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.topics import create_topics
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.support import REPO, consume_all, create_prefixed_topics, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: The ports of the image's own config (deploy/docker/config.yaml): API, metrics, syslog.
IMAGE_PORTS = (8401, 8001, 5140)
#: The design document's health query, as written.
HEALTH_QUERY = (
    """curl http://localhost:8401/health | jq '.services.sinks[] | select(.name | contains("kafka"))'"""
)


def mounts(engine: LocalDocker) -> list[str]:
    return [
        "-v",
        f"{engine.containers_directory}:/var/lib/docker/containers:ro",
        "-v",
        f"{engine.socket}:/var/run/docker.sock:ro",
    ]


def inspect(engine: LocalDocker, name: str, template: str) -> str:
    return engine.docker("inspect", "-f", template, name).stdout.decode().strip()


def shell(engine: LocalDocker, command: str) -> subprocess.CompletedProcess[str]:
    """A command of the design document, run by bash as written (DOCKER_HOST names the engine)."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=engine.env(),
        check=False,
    )


def port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def test_the_image_runs_healthy_ships_container_logs_and_drains_on_docker_stop(
    docker_engine: LocalDocker, busybox: str, agent_image: str, bootstrap: str
) -> None:
    taken = [p for p in IMAGE_PORTS if not port_free(p)]
    assert not taken, f"ports {taken} of the image's config are in use on this host; free them"
    engine = docker_engine
    create_topics(bootstrap, 1, None)  # the design document's five topics, as kafka-init makes them
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    web = (
        engine.docker(
            "run", "-d", "--network", "none", "--name", f"web-{tenant}", "--label", f"tenant_id={tenant}",
            busybox, "sh", "-c", "seq 1 3000 | while read i; do echo \"GET /item/$i\"; done",
        )
        .stdout.decode()
        .strip()
    )  # fmt: skip
    engine.docker("wait", web)
    engine.docker(
        "run", "-d", "--name", "log-capturer", "--network", "host", "--user", "0:0",
        "-e", f"KAFKA_BROKERS={bootstrap}", "-e", "ENVIRONMENT=test",
        *mounts(engine), agent_image,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (
                inspect(engine, "log-capturer", "{{.State.Health.Status}}") == "healthy"
                or inspect(engine, "log-capturer", "{{.State.Running}}") == "false"
            ),
            120,
            "the image's HEALTHCHECK to turn healthy",
            interval=1,
        )
        logs = engine.docker("logs", "log-capturer").stdout.decode()
        assert inspect(engine, "log-capturer", "{{.State.Health.Status}}") == "healthy", logs
        # The design document's checks, as written.
        grep = shell(engine, 'docker logs log-capturer | grep "Kafka sink initialized"')
        assert grep.returncode == 0 and "Kafka sink initialized" in grep.stdout, grep.stderr
        health = shell(engine, HEALTH_QUERY)
        assert health.returncode == 0, health.stderr
        sink = orjson.loads(health.stdout)
        assert sink["name"] == "kafka_sink" and sink["status"] == "healthy", sink
        breaker = shell(engine, "curl http://localhost:8001/metrics | grep kafka_circuit_breaker_state")
        assert breaker.returncode == 0 and "kafka_circuit_breaker_state" in breaker.stdout

        # The busybox container's lines, read through the mounted directory, with its labels.
        def mine() -> list[dict[str, Any]]:
            recs = consume_all(bootstrap, ["logs"])
            return [d for d in (r.json() for r in recs) if d.get("source_id") == web]

        docs = wait_until(lambda: len(mine()) >= 3000 and mine(), 120, "the container's 3000 lines")
        assert sorted(d["message"] for d in docs) == sorted(f"GET /item/{i}" for i in range(1, 3001))
        assert docs[0]["labels"] == {"tenant_id": tenant, "container_name": f"web-{tenant}", "image": busybox}
        # docker stop: SIGTERM, the agent drains and exits 0.
        engine.docker("stop", "-t", "60", "log-capturer", timeout=120)
        assert inspect(engine, "log-capturer", "{{.State.ExitCode}}") == "0"
        logs = engine.docker("logs", "log-capturer").stdout.decode()
        events = [orjson.loads(line).get("message") for line in logs.splitlines() if line.startswith("{")]
        assert "stopping: draining in-flight lines" in events and "stopped" in events, logs[-3000:]
    finally:
        engine.docker("rm", "-f", "log-capturer", check=False)
        engine.docker("rm", "-f", web, check=False)


def test_a_compose_stack_of_local_images_ships_lines(
    docker_engine: LocalDocker,
    busybox: str,
    agent_image: str,
    bootstrap: str,
    victorialogs: LocalVictoriaLogs,
    tmp_path: Path,
    topic_prefix: str,
) -> None:
    """Debian's docker-compose (v1) runs the agent (host network, the image's config with this
    test's ports and topics), the consumer (the same image with deploy/docker/consumer.yaml,
    reading the topics into the session's VictoriaLogs) and a writer container;
    ``docker-compose stop`` drains both."""
    engine = docker_engine
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    run_id = uuid.uuid4().hex[:10]
    config = yaml.safe_load((REPO / "deploy" / "docker" / "config.yaml").read_text())
    config["server"] = {"host": "127.0.0.1", "port": free_port()}
    config["metrics"] = {"host": "127.0.0.1", "port": free_port(), "path": "/metrics"}
    config["syslog"] = {"enabled": False}
    config["container_monitor"]["include_labels"] = {"run": run_id}
    config["container_monitor"]["rescan_interval"] = "1s"
    kafka = config["sinks"]["kafka"]
    kafka["topic"] = topics["logs"]
    kafka["priority_routing"] = {
        "high_topic": topics["logs-high-priority"],
        "normal_topic": topics["logs-normal-priority"],
        "low_topic": topics["logs-low-priority"],
    }
    kafka["dlq_config"] = {"topic": topics["logs-dlq"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    consumer = yaml.safe_load((REPO / "deploy" / "docker" / "consumer.yaml").read_text())
    consumer["server"] = {"host": "127.0.0.1", "port": free_port()}
    consumer["metrics"] = {"host": "127.0.0.1", "port": free_port(), "path": "/metrics"}
    consumer["kafka"].update(
        brokers=bootstrap.split(","),
        topics=[topics[t] for t in consumer["kafka"]["topics"]],
        group_id=f"{topic_prefix}-consumer",
    )
    loki = consumer["sinks"]["loki"]
    loki["url"] = victorialogs.url
    loki["default_labels"] = {**loki["default_labels"], "run": run_id}
    (tmp_path / "consumer.yaml").write_text(yaml.safe_dump(consumer, sort_keys=False))
    stack = {
        "version": "2.4",
        "services": {
            "log-capturer": {
                "image": agent_image,
                "network_mode": "host",
                "user": "0:0",
                "environment": {"KAFKA_BROKERS": bootstrap, "ENVIRONMENT": "docker-compose"},
                "volumes": [
                    f"{engine.containers_directory}:/var/lib/docker/containers:ro",
                    f"{engine.socket}:/var/run/docker.sock:ro",
                    "./config.yaml:/etc/log-capturer/config.yaml:ro",
                ],
                "stop_grace_period": "45s",
            },
            "log-capturer-consumer": {
                "image": agent_image,
                "network_mode": "host",
                "command": ["run", "--config", "/etc/log-capturer/consumer.yaml", "--no-status"],
                "volumes": ["./consumer.yaml:/etc/log-capturer/consumer.yaml:ro"],
                "stop_grace_period": "45s",
            },
            "writer": {
                "image": busybox,
                "network_mode": "none",
                "labels": {"run": run_id, "tenant_id": "acme"},
                "depends_on": ["log-capturer"],
                "command": ["sh", "-c", "seq 1 2000; seq 1 500 >&2"],
            },
        },
    }
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(stack, sort_keys=False))
    project = f"stack{run_id}"

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["docker-compose", "-p", project, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=engine.env(),
            check=False,
        )
        assert proc.returncode == 0, f"docker-compose {args}: {proc.stdout}\n{proc.stderr}"
        return proc

    compose("up", "-d")
    try:
        records = consume_all(bootstrap, topics.values(), expected=2500, timeout=120)
        docs = [r.json() for r in records]
        assert len(docs) == 2500
        streams = sorted((d["fields"]["stream"], d["message"]) for d in docs)
        assert streams == sorted(
            [("stdout", str(i)) for i in range(1, 2001)] + [("stderr", str(i)) for i in range(1, 501)]
        )
        assert {d["labels"]["container_name"] for d in docs} == {f"{project}_writer_1"}
        # The consumer read them back into VictoriaLogs, each line's message its _msg.
        wait_until(
            lambda: victorialogs.count(f'{{run="{run_id}"}}') >= 2500, 90, "2500 lines in VictoriaLogs"
        )
        stored = victorialogs.query(f'{{run="{run_id}"}}')
        assert sorted(r["_msg"] for r in stored) == sorted(
            [str(i) for i in range(1, 2001)] + [str(i) for i in range(1, 501)]
        )
        compose("stop")
        for name in ("log-capturer", "log-capturer-consumer"):
            container = f"{project}_{name}_1"
            assert inspect(engine, container, "{{.State.ExitCode}}") == "0", engine.docker(
                "logs", container
            ).stdout
    finally:
        compose("down", "-v")
