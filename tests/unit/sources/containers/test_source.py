"""The container source over Docker and Kubernetes trees built on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.config.schema import (
    ContainerMonitorConfig,
    FilesConfig,
    KubernetesConfig,
    PositionsConfig,
)
from log_capturer.observability.metrics import Metrics
from log_capturer.sources.containers.source import ContainerPaths, ContainerSource, Known
from log_capturer.sources.file import rotation
from tests.container_trees import DockerContainer, PodContainer
from tests.support import wait_until
from tests.unit.sources.containers import test_events as events_test
from tests.unit.sources.harness import MemorySink, make_dispatcher, settle


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "ROTATED_GRACE", 0.0)


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.docker_root = tmp / "containers"
        self.pods_root = tmp / "pods"
        self.docker_root.mkdir()
        self.pods_root.mkdir()
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher = make_dispatcher(self.sink, self.metrics)
        self.sources: list[ContainerSource] = []

    def source(
        self, docker: dict[str, Any] | None = None, k8s: dict[str, Any] | None = None
    ) -> ContainerSource:
        src = ContainerSource(
            ContainerMonitorConfig(
                enabled=True, containers_directory=str(self.docker_root), socket_path="", **(docker or {})
            ),
            KubernetesConfig(enabled=True, pods_directory=str(self.pods_root), **(k8s or {})),
            FilesConfig(),
            PositionsConfig(directory=str(self.tmp / "pos")),
            self.dispatcher,
            self.metrics,
        )
        src.tailer.rescan()
        self.sources.append(src)
        return src

    def settle(self, src: ContainerSource) -> None:
        settle(src.tailer, self.dispatcher)

    def by_source(self) -> dict[str, list[tuple[str, dict[str, Any] | None]]]:
        out: dict[str, list[tuple[str, dict[str, Any] | None]]] = {}
        for sid, line, meta in self.sink.records:
            out.setdefault(sid, []).append((line, meta))
        return out

    def close(self) -> None:
        for s in self.sources:
            s.tailer.close()
        self.dispatcher.close(5)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def cid(n: int) -> str:
    return f"{n:04d}" + "c" * 60


def test_docker_containers_come_and_go(env: Env) -> None:
    web = DockerContainer(env.docker_root, cid(1), "web", "nginx:1", {"tenant_id": "acme"}).create()
    web.write(["GET /", "GET /health"])
    web.write(["upstream timed out"], "stderr")
    src = env.source(docker={"labels": {"env": "test"}})
    env.settle(src)
    assert env.metrics.containers_monitored._value.get() == 1
    got = env.by_source()[web.id]
    assert got == [
        ("GET /", {"stream": "stdout"}),
        ("GET /health", {"stream": "stdout"}),
        ("upstream timed out", {"stream": "stderr"}),
    ]
    origin = src.files()[0].origin
    assert origin.source_type == "docker"
    assert origin.labels == {"env": "test", "tenant_id": "acme", "container_name": "web", "image": "nginx:1"}
    # A container starts later: read from its first line. One with a long (split) line.
    api = DockerContainer(env.docker_root, cid(2), "api").create()
    long_line = "x" * 40000
    api.write(["api up", long_line])
    src.tailer.rescan()
    env.settle(src)
    assert [line for line, _ in env.by_source()[api.id]] == ["api up", long_line]
    assert env.metrics.containers_monitored._value.get() == 2
    # Docker rotates web's log (max-size): nothing lost, nothing twice.
    web.write(["before rotation"])
    web.rotate()
    web.write(["after rotation"])
    src.tailer.rescan()
    env.settle(src)
    assert [line for line, _ in env.by_source()[web.id]][-2:] == ["before rotation", "after rotation"]
    # api stops, then is removed: its lines written before removal still arrive.
    api.stop()
    api.write(["last words"])
    src.tailer.rescan()
    env.settle(src)
    src.tailer.save_positions()
    saved = orjson.loads((env.tmp / "pos" / "containers.json").read_bytes())["positions"]
    assert saved[api.id]["status"] == "exited" and saved[api.id]["log_count"] == 3
    assert saved[web.id]["status"] == "running" and saved[web.id]["name"] == "web"
    assert set(saved[web.id]) >= {"since", "last_read", "log_count", "status", "files"}
    assert str(web.log) in saved[web.id]["files"]
    api.remove()
    src.tailer.rescan()
    env.settle(src)
    assert env.metrics.containers_monitored._value.get() == 1
    src.tailer.save_positions()
    saved = orjson.loads((env.tmp / "pos" / "containers.json").read_bytes())["positions"]
    assert saved[api.id]["status"] == "removed" and saved[api.id]["files"] == {}
    src.tailer.rescan()  # dropped at the next scan once its last file was released
    src.tailer.save_positions()
    saved = orjson.loads((env.tmp / "pos" / "containers.json").read_bytes())["positions"]
    assert api.id not in saved
    assert [line for line, _ in env.by_source()[api.id]] == ["api up", long_line, "last words"]
    assert not env.sink.duplicates()


def test_docker_filters_and_streams(env: Env) -> None:
    keep = DockerContainer(env.docker_root, cid(1), "keep", labels={"logs": "true"}).create()
    skip = DockerContainer(env.docker_root, cid(2), "skip").create()
    keep.write(["out"])
    keep.write(["err"], "stderr")
    skip.write(["nope"])
    src = env.source(docker={"include_labels": {"logs": "true"}, "include_stderr": False})
    env.settle(src)
    assert env.by_source() == {keep.id: [("out", {"stream": "stdout"})]}


def test_restart_resumes_containers_without_resending(env: Env) -> None:
    web = DockerContainer(env.docker_root, cid(1), "web").create()
    web.write([f"line {i}" for i in range(100)])
    src = env.source()
    env.settle(src)
    src.tailer.save_positions()
    src.tailer.close()
    web.write([f"line {i}" for i in range(100, 120)])
    src2 = env.source()
    env.settle(src2)
    assert [line for line, _ in env.by_source()[web.id]] == [f"line {i}" for i in range(120)]


def test_log_count_counts_a_released_rotated_file_once_before_and_after_restart(env: Env) -> None:
    web = DockerContainer(env.docker_root, cid(1), "web").create()
    web.write([f"line {i}" for i in range(30)])
    src = env.source()
    env.settle(src)
    web.rotate()
    web.write([f"line {i}" for i in range(30, 40)])
    src.tailer.rescan()
    env.settle(src)
    assert not src.files(live=False), "the rotated file was read and released (it is still on disk)"

    def saved_count() -> int:
        saved = orjson.loads((env.tmp / "pos" / "containers.json").read_bytes())["positions"]
        return int(saved[web.id]["log_count"])

    src.tailer.save_positions()
    assert src.positions()[web.id]["log_count"] == 40
    assert saved_count() == 40
    src.tailer.close()
    src2 = env.source()
    env.settle(src2)
    src2.tailer.save_positions()
    assert saved_count() == 40
    web.write(["line 40"])
    src2.tailer.rescan()
    env.settle(src2)
    src2.tailer.save_positions()
    assert saved_count() == 41
    assert len(env.sink.lines()) == 41 and not env.sink.duplicates()


def test_a_container_found_after_start_up_is_read_from_its_first_generation(env: Env) -> None:
    """A container that starts while the agent runs and rotates its log (max-size) before the
    agent's first look: its rotated generations are read too, oldest first ("containers that
    start later are read from their first line"). At start-up rotated files are history."""
    old = DockerContainer(env.docker_root, cid(1), "old").create()
    old.write(["history, before the agent"])
    old.rotate()
    old.write(["old, live"])
    src = env.source()
    env.settle(src)
    assert [line for line, _ in env.by_source()[old.id]] == ["old, live"]
    fast = DockerContainer(env.docker_root, cid(2), "fast").create()
    fast.write(["gen 1"])
    fast.rotate()
    fast.write(["gen 2"])
    fast.rotate()
    fast.write(["gen 3"])
    src.tailer.rescan()
    env.settle(src)
    assert [line for line, _ in env.by_source()[fast.id]] == ["gen 1", "gen 2", "gen 3"]
    assert not env.sink.duplicates()


def test_kubernetes_cri_partial_lines_labels_and_restarts(env: Env) -> None:
    app = PodContainer(env.pods_root, "shop", "cart-7d9f", "uid-1", "app").create()
    app.write(["short", "a long line split by the runtime"], split_at=7)
    app.write(["oops"], "stderr")
    app.write_raw("2026-01-01T00:00:00.000000001Z stdout P held until its end \n")
    src = env.source(k8s={"labels": {"cluster": "dev"}})
    env.settle(src)
    assert env.by_source()[app.source_id] == [
        ("short", {"stream": "stdout"}),
        ("a long line split by the runtime", {"stream": "stdout"}),
        ("oops", {"stream": "stderr"}),
    ]
    tf = src.files()[0]
    assert tf.origin.source_type == "kubernetes"
    assert tf.origin.labels == {
        "cluster": "dev",
        "namespace": "shop",
        "pod": "cart-7d9f",
        "pod_uid": "uid-1",
        "container": "app",
    }
    # The checkpoint stays before the unfinished line.
    held_at = app.log.read_bytes().rindex(b"2026-01-01T00:00:00.000000001Z")
    assert tf.checkpoint.committed == held_at
    app.write_raw("2026-01-01T00:00:00.000000002Z stdout F arrives\n")
    app.rotate()
    app.write(["after rotation"])
    app.restart_container()
    app.write(["after restart"])
    src.tailer.rescan()
    env.settle(src)
    lines = [line for line, _ in env.by_source()[app.source_id]]
    assert lines[3] == "held until its end arrives"  # the rotated file is read first
    assert sorted(lines[4:]) == ["after restart", "after rotation"]
    app.remove_pod()
    src.tailer.rescan()
    env.settle(src)
    assert env.metrics.containers_monitored._value.get() == 0
    assert not env.sink.duplicates()


def test_kubernetes_multiline_over_cri(env: Env) -> None:
    app = PodContainer(env.pods_root, "shop", "api", "uid-9", "api").create()
    trace = [
        "2026-01-01 ERROR failed",
        "Traceback (most recent call last):",
        '  File "/app.py", line 1, in <module>',
        "ValueError: bad",
    ]
    app.write([*trace, "2026-01-01 INFO next"], "stderr", split_at=10)
    src = env.source(k8s={"multiline": {"preset": "python", "timeout": "0s"}})
    env.settle(src)
    assert [line for line, _ in env.by_source()[app.source_id]] == ["\n".join(trace), "2026-01-01 INFO next"]


def test_workers_split_containers_and_pods_by_id_and_keep_their_own_positions(env: Env) -> None:
    from log_capturer.workers.shard import Shard, shard_of

    dockers = [DockerContainer(env.docker_root, cid(i), f"c{i}").create() for i in range(1, 9)]
    pods = [PodContainer(env.pods_root, "ns", f"pod-{i}", f"uid-{i}", "app").create() for i in range(6)]
    for c in dockers:
        c.write([f"{c.name} says hi"])
    for p in pods:
        p.write([f"{p.pod} says hi"])
    sources = []
    for index in (0, 1):
        src = ContainerSource(
            ContainerMonitorConfig(enabled=True, containers_directory=str(env.docker_root), socket_path=""),
            KubernetesConfig(enabled=True, pods_directory=str(env.pods_root)),
            FilesConfig(),
            PositionsConfig(directory=str(env.tmp / "pos")),
            env.dispatcher,
            env.metrics,
            Shard(index, 2, env.tmp / "pos", "containers"),
        )
        src.tailer.rescan()
        env.sources.append(src)
        env.settle(src)
        src.tailer.save_positions()
        sources.append(src)
    ids = [c.id for c in dockers] + [p.source_id for p in pods]
    got = env.by_source()
    assert sorted(got) == sorted(ids) and all(len(v) == 1 for v in got.values())  # each read once
    for index, src in enumerate(sources):
        mine = {i for i in ids if shard_of(i, 2) == index}
        assert mine and {tf.origin.source_id for tf in src.files()} == mine
        saved = orjson.loads((env.tmp / "pos" / f"containers.worker-{index}.json").read_bytes())["positions"]
        assert set(saved) == mine  # only its own containers, none of the other worker's


def test_a_crashing_docker_events_thread_degrades_the_container_source(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = events_test.EventServer(tmp_path / "docker.sock")
    server.start()
    src = ContainerSource(
        ContainerMonitorConfig(
            enabled=True, containers_directory=str(env.docker_root), socket_path=f"unix://{server.path}"
        ),
        KubernetesConfig(),
        FilesConfig(),
        PositionsConfig(directory=str(tmp_path / "pos")),
        env.dispatcher,
        env.metrics,
    )

    def on_event(event: dict[str, Any]) -> None:
        raise RuntimeError("rescan request failed")

    monkeypatch.setattr(src, "_on_event", on_event)
    src.start()
    try:
        wait_until(lambda: src.health()["status"] != "healthy", 10, "the crash to show")
        h = src.health()
        assert h["status"] == "degraded"
        assert h["message"].startswith("docker events: crashed: RuntimeError: rescan request failed")
        assert h["docker_events"]["last_error"] == "RuntimeError: rescan request failed"
        assert h["restarts"] == 0  # the read loop itself runs on
    finally:
        src.stop()
        src.tailer.close()
        server.close()


def test_container_paths_name_log_files_and_remember_containers(tmp_path: Path) -> None:
    """ContainerPaths, the tailer's paths provider for containers, on its own (no tailer)."""
    web = DockerContainer(tmp_path / "containers", cid(1), "web", "nginx:1", {}).create()
    app = PodContainer(tmp_path / "pods", "shop", "cart", "uid-1", "app").create()
    known = {"gone": Known("docker", "old", 0.0, "running")}
    paths = ContainerPaths(
        ContainerMonitorConfig(
            enabled=True, containers_directory=str(tmp_path / "containers"), socket_path="", read_from="end"
        ),
        KubernetesConfig(enabled=True, pods_directory=str(tmp_path / "pods")),
        FilesConfig(),
        known,
    )
    found = paths.discover()
    assert set(found) == {str(web.log), str(app.log)}
    docker, pod = found[str(web.log)], found[str(app.log)]
    assert (docker.origin.source_type, docker.origin.source_id) == ("docker", web.id)
    assert docker.origin.labels["container_name"] == "web"
    assert (pod.origin.source_type, pod.origin.source_id) == ("kubernetes", app.source_id)
    assert docker.new_assembler() is not None  # the json-file decoder
    assert paths.status == {web.id: "running", app.source_id: "running", "gone": "removed"}
    assert set(known) == {web.id, app.source_id, "gone"}
    assert paths.read_from_end(docker) and not paths.read_from_end(pod)
    assert paths.reads_rotated_when_new(docker) and not paths.reads_rotated_when_new(pod)
    assert paths.target_for(str(web.log)) is docker and paths.target_for(str(web.log) + ".1") is None
    assert paths.target_for_source(app.source_id) is pod
    assert paths.rotated_name_ok(str(web.log) + ".1") and not paths.rotated_name_ok(str(web.log) + ".1.gz")
