"""Docker json-file and Kubernetes CRI trees (built on disk) -> agent -> real Kafka.

No Docker engine or kubelet runs here: the trees are laid out as dockerd and
the kubelet write them, and the agent discovers them by scanning. The Docker
events socket is configured but absent, which is also what the agent meets
on a host where dockerd is down.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.container_trees import DockerContainer, PodContainer
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def cid(n: int) -> str:
    return f"{n:04d}" + "d" * 60


def test_docker_and_kubernetes_logs_arrive_with_their_labels(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    docker_root = tmp_path / "docker" / "containers"
    pods_root = tmp_path / "pods"
    docker_root.mkdir(parents=True)
    pods_root.mkdir()
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(
            tmp_path,
            bootstrap,
            topics,
            files_config={"enabled": False},
            container_monitor={
                "enabled": True,
                "containers_directory": str(docker_root),
                "socket_path": f"unix://{tmp_path}/docker.sock",
                "exclude_names": ["log-capturer*"],
                "rescan_interval": "500ms",
            },
            kubernetes={"enabled": True, "pods_directory": str(pods_root), "rescan_interval": "500ms"},
        ),
    )
    expected: Counter[tuple[str, str, str]] = Counter()  # (source_id, stream, message)

    def docker_write(c: DockerContainer, lines: list[str], stream: str = "stdout") -> None:
        c.write(lines, stream)
        expected.update((c.id, stream, line) for line in lines)

    def pod_write(p: PodContainer, lines: list[str], stream: str = "stdout", split_at: int = 0) -> None:
        p.write(lines, stream, split_at)
        expected.update((p.source_id, stream, line) for line in lines)

    web = DockerContainer(docker_root, cid(1), "web", "nginx:1.27", {"tenant_id": "acme"}).create()
    me = DockerContainer(docker_root, cid(2), "log-capturer", "ssw/logs:1").create()
    me.write(["the agent's own output is excluded by name"])
    docker_write(web, [f"GET /item/{i}" for i in range(300)])
    docker_write(web, ["upstream timed out", "x" * 50_000], "stderr")  # 50 KB: four json-file parts
    cart = PodContainer(pods_root, "shop", "cart-5f7c", "9a1b-uid", "app").create()
    pod_write(cart, [f"cart event {i}" for i in range(200)])
    pod_write(cart, ["a line the runtime split into parts " * 10], split_at=64)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        # Containers that come and go while the agent runs.
        api = DockerContainer(docker_root, cid(3), "api", "example/api:2", {"team": "core"}).create()
        docker_write(api, [f"api request {i}" for i in range(100)])
        docker_write(web, [f"GET /late/{i}" for i in range(50)])
        web.rotate()
        docker_write(web, [f"GET /after-rotation/{i}" for i in range(50)])
        job = PodContainer(pods_root, "batch", "job-1", "77c0-uid", "worker").create()
        pod_write(job, [f"job step {i}" for i in range(100)], "stderr", split_at=5)
        wait_until(lambda: agent.get("/stats")["containers"]["lines_read"] >= 800, 60, "the first lines")
        pod_write(job, ["job done"])
        api.stop()
        docker_write(api, ["api shutting down"])
        time.sleep(1.5)  # a few scans: the stopped container's last line is read
        api.remove()
        job.remove_pod()
        total = sum(expected.values())
        records = consume_all(bootstrap, topics.values(), expected=total, timeout=120)
        seen: Counter[tuple[str, str, str]] = Counter()
        docs: dict[str, dict[str, Any]] = {}
        for rec in records:
            doc = rec.json()
            seen[(doc["source_id"], doc["fields"].get("stream", ""), doc["message"])] += 1
            docs[doc["source_id"]] = doc
            if doc["source_id"] == web.id:
                assert rec.key == b"acme"  # the container's tenant_id label is the key
        dups = sum(n - 1 for n in seen.values() if n > 1)
        missing = [k for k in expected if k not in seen]
        print(
            f"containers: {total} lines expected, {len(records)} records, "
            f"duplicates={dups}, missing={len(missing)}"
        )
        assert not missing, missing[:5]
        assert dups == 0 and len(records) == total
        assert docs[web.id]["source_type"] == "docker"
        assert docs[web.id]["labels"] == {"tenant_id": "acme", "container_name": "web", "image": "nginx:1.27"}
        assert docs[api.id]["labels"]["team"] == "core"
        assert docs[cart.source_id]["source_type"] == "kubernetes"
        assert docs[cart.source_id]["labels"] == {
            "namespace": "shop",
            "pod": "cart-5f7c",
            "pod_uid": "9a1b-uid",
            "container": "app",
        }
        wait_until(
            lambda: "containers_monitored 2.0" in agent.metrics(), 30, "removed containers to be dropped"
        )
        positions = agent.get("/positions")["containers"]
        assert positions[web.id]["status"] == "running" and positions[web.id]["log_count"] == 402
        sources = {s["name"]: s for s in agent.get("/health")["services"]["sources"]}
        assert sources["container_source"]["docker_events_connected"] is False
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        saved = orjson.loads((tmp_path / "positions" / "containers.json").read_bytes())["positions"]
        assert set(saved[web.id]) >= {"since", "last_read", "log_count", "status", "files"}
        # Restarted: nothing is sent again; new lines are.
        docker_write(web, ["after restart"])
        agent = AgentProcess(cfg, tmp_path / "agent-2.log").start()
        records = consume_all(bootstrap, topics.values(), expected=total + 1, timeout=60)
        time.sleep(1.5)
        records = consume_all(bootstrap, topics.values())
        assert len(records) == total + 1
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
