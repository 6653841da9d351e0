"""Docker containers found by reading Docker's own files, without a daemon.

Each container has a directory ``<containers_directory>/<id>/`` with
``config.v2.json`` (name, image, labels, state, log path) and, with the
``json-file`` log driver, ``<id>-json.log`` (read there, whatever directory
dockerd's ``LogPath`` names: see :func:`read_container`) (rotated by Docker to
``<id>-json.log.1``, ... when ``max-size`` is set). Containers using another
log driver (``hostconfig.json`` ``LogConfig.Type``) have no file to follow
and are skipped.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field

import orjson

from log_capturer.sources.containers.config import ContainerMonitorConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    running: bool = False
    log_path: str = ""
    log_driver: str = "json-file"


def _read_json(path: str) -> dict[str, object] | None:
    try:
        with open(path, "rb") as f:
            data = orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_container(directory: str) -> Container | None:
    """The container described by ``directory/config.v2.json``, or None if it cannot be read."""
    cfg = _read_json(os.path.join(directory, "config.v2.json"))
    if cfg is None:
        return None
    cid = cfg.get("ID")
    if not isinstance(cid, str) or not cid:
        cid = os.path.basename(directory)
    inner = cfg.get("Config") if isinstance(cfg.get("Config"), dict) else {}
    assert isinstance(inner, dict)
    raw_labels = inner.get("Labels")
    labels = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, dict) else {}
    state = cfg.get("State") if isinstance(cfg.get("State"), dict) else {}
    assert isinstance(state, dict)
    name = cfg.get("Name")
    image = inner.get("Image")
    # LogPath is the path on dockerd's side (under its --data-root); an agent in a container sees
    # the directory mounted elsewhere, and a container never started has LogPath "". The json-file
    # log is always in the container's own directory: the one being scanned.
    log_path = cfg.get("LogPath")
    name_of_log = os.path.basename(log_path) if isinstance(log_path, str) and log_path else ""
    log_path = os.path.join(directory, name_of_log or f"{cid}-json.log")
    driver = "json-file"
    host = _read_json(os.path.join(directory, "hostconfig.json"))
    log_config = host.get("LogConfig") if host is not None else None
    if isinstance(log_config, dict):
        t = log_config.get("Type")
        if isinstance(t, str) and t:
            driver = t
    return Container(
        id=cid,
        name=name.lstrip("/") if isinstance(name, str) else cid[:12],
        image=image if isinstance(image, str) else "",
        labels=labels,
        running=bool(state.get("Running")),
        log_path=log_path,
        log_driver=driver,
    )


def _label_match(labels: dict[str, str], key: str, want: str) -> bool:
    return key in labels and (want == "*" or labels[key] == want)


def wanted(c: Container, cfg: ContainerMonitorConfig) -> bool:
    """The include/exclude rules of ``container_monitor``, by labels and names."""
    if any(_label_match(c.labels, k, v) for k, v in cfg.exclude_labels.items()):
        return False
    if not all(_label_match(c.labels, k, v) for k, v in cfg.include_labels.items()):
        return False
    if any(fnmatch.fnmatchcase(c.name, p) for p in cfg.exclude_names):
        return False
    return not cfg.include_names or any(fnmatch.fnmatchcase(c.name, p) for p in cfg.include_names)


class DockerDirectory:
    """Scans ``containers_directory``; re-reads a container's files only when they changed."""

    def __init__(self, cfg: ContainerMonitorConfig) -> None:
        self.cfg = cfg
        self._cache: dict[str, tuple[tuple[int, int], Container | None]] = {}
        self._warned: set[str] = set()

    def scan(self) -> dict[str, Container]:
        """Followed containers (the rules applied), by id."""
        found: dict[str, Container] = {}
        seen: set[str] = set()
        try:
            with os.scandir(self.cfg.containers_directory) as it:
                dirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            dirs = []
        for d in dirs:
            seen.add(d)
            try:
                st = os.stat(os.path.join(d, "config.v2.json"))
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(d)
            if cached is None or cached[0] != stamp:
                cached = (stamp, read_container(d))
                self._cache[d] = cached
            c = cached[1]
            if c is None or not wanted(c, self.cfg):
                continue
            if c.log_driver != "json-file":
                if c.id not in self._warned:
                    self._warned.add(c.id)
                    log.info(
                        "container uses the %s log driver; only json-file logs can be followed",
                        c.log_driver,
                        extra={"container": c.name},
                    )
                continue
            found[c.id] = c
        for d in [d for d in self._cache if d not in seen]:
            del self._cache[d]
        return found
