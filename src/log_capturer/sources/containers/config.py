"""The ``container_monitor`` (Docker) and ``kubernetes`` sections: the container source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from log_capturer.config.base import Duration, Strict
from log_capturer.processing.config import MultilineConfig


class ContainerMonitorConfig(Strict):
    enabled: bool = Field(False, description="Follow the logs of Docker containers (json-file driver).")
    socket_path: str = Field(
        "unix:///var/run/docker.sock",
        description="Docker Engine API socket, used (when present) for container events so new "
        "containers are picked up at once ('' = do not use it). Discovery itself reads "
        "containers_directory and works without a Docker daemon.",
    )
    containers_directory: str = Field(
        "/var/lib/docker/containers",
        description="Docker's containers directory: <id>/config.v2.json (name, image, labels) and "
        "<id>/<id>-json.log.",
    )
    include_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Follow only containers that have all these labels with these values "
        "(a value of '*' accepts any value).",
    )
    exclude_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Never follow containers that have any of these labels with these values "
        "('*' = any value).",
    )
    include_names: list[str] = Field(
        default_factory=list,
        description="Follow only containers whose name matches one of these glob patterns (empty = all).",
    )
    exclude_names: list[str] = Field(
        default_factory=list,
        description="Never follow containers whose name matches one of these glob patterns.",
    )
    include_stdout: bool = Field(True, description="Ship lines the containers wrote to stdout.")
    include_stderr: bool = Field(True, description="Ship lines the containers wrote to stderr.")
    read_from: Literal["beginning", "end"] = Field(
        "beginning",
        description="Where to start in the log of a container found at start-up with no saved "
        "position. Containers that start later are read from their first line.",
    )
    rescan_interval: Duration = Field(
        10.0,
        description="How often containers_directory is scanned for containers that came or went "
        "(events from the socket trigger a scan at once).",
    )
    reconnect_interval: Duration = Field(
        30.0, description="Wait before reconnecting to the Docker socket after it failed or was absent."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Static labels added to every container record."
    )
    multiline: MultilineConfig = Field(default_factory=MultilineConfig)


class KubernetesConfig(Strict):
    enabled: bool = Field(
        False, description="Follow Kubernetes pod logs written by the container runtime in CRI format."
    )
    pods_directory: str = Field(
        "/var/log/pods",
        description="Where the kubelet keeps pod logs: <namespace>_<pod>_<uid>/<container>/<n>.log.",
    )
    include_namespaces: list[str] = Field(
        default_factory=list, description="Glob patterns of namespaces to follow (empty = all)."
    )
    exclude_namespaces: list[str] = Field(
        default_factory=list, description="Glob patterns of namespaces never followed."
    )
    read_from: Literal["beginning", "end"] = Field(
        "beginning",
        description="Where to start in a log found at start-up with no saved position. Logs that "
        "appear later are read from their first line.",
    )
    rescan_interval: Duration = Field(5.0, description="How often pods_directory is scanned.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Static labels added to every pod record."
    )
    multiline: MultilineConfig = Field(default_factory=MultilineConfig)
