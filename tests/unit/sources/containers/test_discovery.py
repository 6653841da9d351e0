from __future__ import annotations

import json
from pathlib import Path

from log_capturer.config.schema import ContainerMonitorConfig, KubernetesConfig
from log_capturer.sources.containers.docker import DockerDirectory, read_container, wanted
from log_capturer.sources.containers.kubernetes import parse_pod_dir, scan_pods
from tests.container_trees import DockerContainer, PodContainer


def cid(n: int) -> str:
    return f"{n:02d}" + "ab" * 31


def test_container_metadata_from_config_v2(tmp_path: Path) -> None:
    c = DockerContainer(tmp_path, cid(1), "web-1", "nginx:1.27", {"tenant_id": "acme"}).create()
    got = read_container(str(c.dir))
    assert got is not None
    assert (got.id, got.name, got.image, got.labels, got.running) == (
        c.id,
        "web-1",
        "nginx:1.27",
        {"tenant_id": "acme"},
        True,
    )
    assert got.log_path == str(c.log) and got.log_driver == "json-file"
    (c.dir / "config.v2.json").write_text("{damaged")
    assert read_container(str(c.dir)) is None


def test_the_log_is_found_in_the_scanned_directory_whatever_path_dockerd_recorded(tmp_path: Path) -> None:
    """config.v2.json's LogPath is the path on dockerd's side (its --data-root). The agent in a
    container sees the same directory mounted elsewhere (/var/lib/docker/containers), and a
    container created but never started has LogPath "": the log is always <dir>/<id>-json.log."""
    c = DockerContainer(tmp_path, cid(1), "web").create()
    cfg_path = c.dir / "config.v2.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["LogPath"] = f"/srv/docker-data/containers/{c.id}/{c.id}-json.log"  # dockerd's view
    cfg_path.write_text(json.dumps(cfg))
    got = read_container(str(c.dir))
    assert got is not None and got.log_path == str(c.log)
    cfg["LogPath"] = ""
    cfg_path.write_text(json.dumps(cfg))
    got = read_container(str(c.dir))
    assert got is not None and got.log_path == str(c.log)


def test_include_exclude_rules_by_labels_and_names(tmp_path: Path) -> None:
    def c(name: str, **labels: str):  # type: ignore[no-untyped-def]
        return read_container(
            str(DockerContainer(tmp_path, cid(len(name)) + name, name, labels=labels).create().dir)
        )

    cfg = ContainerMonitorConfig(
        include_labels={"logs": "true"},
        exclude_labels={"internal": "*"},
        include_names=["web-*", "api"],
        exclude_names=["*-debug"],
    )
    assert wanted(c("web-1", logs="true"), cfg)
    assert wanted(c("api", logs="true", other="x"), cfg)
    assert not wanted(c("web-2"), cfg)  # lacks the include label
    assert not wanted(c("web-3", logs="false"), cfg)
    assert not wanted(c("web-4", logs="true", internal="yes"), cfg)
    assert not wanted(c("db", logs="true"), cfg)  # not in include_names
    assert not wanted(c("web-1-debug", logs="true"), cfg)
    assert wanted(c("anything"), ContainerMonitorConfig())


def test_directory_scan_skips_other_log_drivers_and_sees_changes(tmp_path: Path) -> None:
    a = DockerContainer(tmp_path, cid(1), "a").create()
    DockerContainer(tmp_path, cid(2), "b", driver="journald").create()
    (tmp_path / "not-a-container").mkdir()
    scanner = DockerDirectory(ContainerMonitorConfig(containers_directory=str(tmp_path), exclude_names=["x"]))
    assert set(scanner.scan()) == {a.id}
    a.labels = {"new": "label"}
    a.stop()
    got = scanner.scan()[a.id]
    assert got.labels == {"new": "label"} and not got.running
    a.remove()
    assert scanner.scan() == {}


def test_pod_paths(tmp_path: Path) -> None:
    assert parse_pod_dir("default_web-7d9f_0f1e2d3c-aaaa-bbbb") == (
        "default",
        "web-7d9f",
        "0f1e2d3c-aaaa-bbbb",
    )
    assert parse_pod_dir("nope") is None
    p = PodContainer(tmp_path, "shop", "cart-1", "uid-1", "app").create()
    PodContainer(tmp_path, "kube-system", "dns", "uid-2", "coredns").create()
    p.rotate()
    (p.dir / "0.log.20260101-000000.gz").write_bytes(b"\x1f\x8b")
    p.restart_container()
    logs = scan_pods(KubernetesConfig(pods_directory=str(tmp_path), exclude_namespaces=["kube-*"]))
    assert sorted(Path(x.path).name for x in logs) == ["0.log", "1.log"]
    assert {x.source_id for x in logs} == {"shop_cart-1_uid-1/app"}
    assert logs[0].labels() == {"namespace": "shop", "pod": "cart-1", "pod_uid": "uid-1", "container": "app"}
    only = scan_pods(KubernetesConfig(pods_directory=str(tmp_path), include_namespaces=["kube-system"]))
    assert [x.container for x in only] == ["coredns"]
