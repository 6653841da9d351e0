"""Kubernetes pod logs as the kubelet lays them out, in CRI format.

``<pods_directory>/<namespace>_<pod>_<uid>/<container>/<n>.log``, where ``n``
counts the container's restarts. The kubelet rotates ``0.log`` to
``0.log.<timestamp>`` and compresses older ones (``.gz``, never read).
Namespace, pod, pod uid and container come from the path.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from log_capturer.sources.containers.config import KubernetesConfig

_LOG_NAME = re.compile(r"^\d+\.log$")


@dataclass(frozen=True)
class PodLog:
    path: str
    namespace: str
    pod: str
    uid: str
    container: str

    @property
    def source_id(self) -> str:
        return f"{self.namespace}_{self.pod}_{self.uid}/{self.container}"

    def labels(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "pod_uid": self.uid,
            "container": self.container,
        }


def parse_pod_dir(name: str) -> tuple[str, str, str] | None:
    """(namespace, pod, uid) from ``<namespace>_<pod>_<uid>`` (names cannot contain '_')."""
    parts = name.split("_")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def scan_pods(cfg: KubernetesConfig) -> list[PodLog]:
    out: list[PodLog] = []
    try:
        with os.scandir(cfg.pods_directory) as it:
            pods = [e for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for pod_dir in pods:
        parsed = parse_pod_dir(pod_dir.name)
        if parsed is None:
            continue
        ns, pod, uid = parsed
        if cfg.include_namespaces and not any(fnmatch.fnmatchcase(ns, p) for p in cfg.include_namespaces):
            continue
        if any(fnmatch.fnmatchcase(ns, p) for p in cfg.exclude_namespaces):
            continue
        try:
            with os.scandir(pod_dir.path) as it:
                containers = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for cdir in containers:
            try:
                with os.scandir(cdir.path) as it:
                    logs = [e.path for e in it if _LOG_NAME.match(e.name) and e.is_file()]
            except OSError:
                continue
            out.extend(PodLog(p, ns, pod, uid, cdir.name) for p in logs)
    return out
