"""The container source: Docker json-file logs and Kubernetes CRI pod logs.

Both are files, followed by a :class:`~..file.tailer.Tailer` with the same
identity, rotation, copytruncate, descriptor and restart handling as plain
files; what differs is discovery (:class:`ContainerPaths`, the tailer's paths
provider), the record format, the labels and the positions file's shape:

- Docker (``container_monitor``): ``source_type: docker``, ``source_id`` = the
  container id, labels = the container's labels plus ``container_name`` and
  ``image``, ``fields.stream`` = ``stdout`` or ``stderr``.
- Kubernetes (``kubernetes``): ``source_type: kubernetes``, ``source_id`` =
  ``<namespace>_<pod>_<uid>/<container>``, labels ``namespace``, ``pod``,
  ``pod_uid``, ``container``, ``fields.stream``.

Static ``labels`` of the section are added first; the container's own labels
override them. Split lines (Docker's 16 KiB parts, CRI ``P`` lines) are
reassembled, then the section's multiline rule applies per stream.

Positions (``containers.json``, format version 1): container id ->
``{since, last_read, log_count, status, source_type, name, files}``, where
``files`` maps each log file's path to the same entry the file source keeps
(offset, inode, device, fingerprint, ...). ``status`` is ``running``,
``exited`` or ``removed``.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from log_capturer.config.schema import FilesConfig, PositionsConfig
from log_capturer.observability.health import worst
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing.assembly import Assembler, Chain
from log_capturer.processing.config import MultilineConfig
from log_capturer.processing.multiline import MultilineJoiner, MultilineRule
from log_capturer.record import Origin
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.containers.config import ContainerMonitorConfig, KubernetesConfig
from log_capturer.sources.containers.docker import DockerDirectory
from log_capturer.sources.containers.events import DockerEvents
from log_capturer.sources.containers.formats import CriDecoder, DockerJsonDecoder, Finish
from log_capturer.sources.containers.kubernetes import scan_pods
from log_capturer.sources.file.checkpointer import Checkpointer, Entry
from log_capturer.sources.file.paths import COMPRESSED, Target
from log_capturer.sources.file.source import settings_of
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.file.tailer import Tailer
from log_capturer.sources.positions import PositionStore
from log_capturer.sources.supervise import Supervisor
from log_capturer.workers.shard import Shard

log = logging.getLogger(__name__)

#: A split line whose last part never came is emitted after this long.
PARTIAL_TIMEOUT = 5.0


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _rule(cfg: MultilineConfig, max_bytes: int) -> MultilineRule | None:
    if not cfg.enabled:
        return None
    preset = None if cfg.preset == "none" else cfg.preset
    return MultilineRule.build(
        preset, cfg.start_pattern, cfg.continuation_pattern, cfg.timeout, cfg.max_lines, max_bytes
    )


def assembler_factory(
    decoder: Callable[[], DockerJsonDecoder | CriDecoder],
    rule: MultilineRule | None,
    drop_streams: frozenset[str],
) -> Callable[[], Assembler | None]:
    def make() -> Assembler:
        inner: Assembler = decoder()
        if rule is not None:
            inner = Chain(inner, MultilineJoiner(rule))
        return Finish(inner, drop_streams)

    return make


@dataclass
class Known:
    """What the positions file says about a container besides its files."""

    source_type: str
    name: str
    since: float
    status: str
    #: Lines acknowledged in earlier runs from log files no longer followed.
    released_count: int = 0


class ContainerPaths:
    """The container source's paths provider: the log files of Docker containers and pods.

    It also keeps what the positions file says about each container (:class:`Known`) and each
    container's status at the last discovery (``running``, ``exited``, ``removed``).
    """

    def __init__(
        self,
        docker: ContainerMonitorConfig,
        kubernetes: KubernetesConfig,
        files: FilesConfig,
        known: dict[str, Known],
        shard: Shard | None = None,
    ) -> None:
        self.docker_cfg = docker
        self.k8s_cfg = kubernetes
        self.known = known
        self.shard = shard
        self.docker_dir = DockerDirectory(docker) if docker.enabled else None
        streams = {
            s for s, on in (("stdout", docker.include_stdout), ("stderr", docker.include_stderr)) if not on
        }
        self._docker_asm = assembler_factory(
            lambda: DockerJsonDecoder(files.max_line_bytes, PARTIAL_TIMEOUT),
            _rule(docker.multiline, files.max_line_bytes),
            frozenset(streams),
        )
        self._cri_asm = assembler_factory(
            lambda: CriDecoder(files.max_line_bytes, PARTIAL_TIMEOUT),
            _rule(kubernetes.multiline, files.max_line_bytes),
            frozenset(),
        )
        self._origins: dict[str, Origin] = {}
        self.status: dict[str, str] = {}
        #: The paths the last discovery returned.
        self.targets: dict[str, Target] = {}

    def _origin(self, source_type: str, source_id: str, labels: dict[str, str]) -> Origin:
        o = self._origins.get(source_id)
        if o is None or o.labels != labels:
            o = self._origins[source_id] = Origin(source_type, source_id, labels)
        return o

    def discover(self) -> dict[str, Target]:
        found: dict[str, Target] = {}
        status: dict[str, str] = {}
        now = time.time()
        if self.docker_dir is not None:
            for c in self.docker_dir.scan().values():
                if self.shard is not None and not self.shard.owns(c.id):
                    continue  # another worker's container
                labels = {**self.docker_cfg.labels, **c.labels, "container_name": c.name, "image": c.image}
                found[c.log_path] = Target(self._origin("docker", c.id, labels), self._docker_asm)
                status[c.id] = "running" if c.running else "exited"
                self._remember(c.id, "docker", c.name, now)
        if self.k8s_cfg.enabled:
            for p in scan_pods(self.k8s_cfg):
                if self.shard is not None and not self.shard.owns(p.source_id):
                    continue
                labels = {**self.k8s_cfg.labels, **p.labels()}
                found[p.path] = Target(self._origin("kubernetes", p.source_id, labels), self._cri_asm)
                status[p.source_id] = "running"
                self._remember(p.source_id, "kubernetes", p.pod, now)
        for cid in [c for c in self._origins if c not in status]:
            del self._origins[cid]
        for cid in self.known:
            if cid not in status:
                status[cid] = "removed"
        self.status = status
        self.targets = found
        return found

    def _remember(self, cid: str, source_type: str, name: str, now: float) -> None:
        k = self.known.get(cid)
        if k is None:
            self.known[cid] = Known(source_type, name, now, "running")
            log.info("following container logs", extra={"source_type": source_type, "container": name})
        else:
            k.name = name

    def target_for(self, path: str) -> Target | None:
        return self.targets.get(path)

    def target_for_source(self, source_id: str) -> Target | None:
        for t in self.targets.values():
            if t.origin.source_id == source_id:
                return t
        return None

    def rotated_name_ok(self, path: str) -> bool:
        return not path.endswith(COMPRESSED)

    def read_from_end(self, target: Target) -> bool:
        cfg = self.docker_cfg if target.origin.source_type == "docker" else self.k8s_cfg
        return cfg.read_from == "end"

    def reads_rotated_when_new(self, target: Target) -> bool:
        """A Docker container found after start-up may have rotated its json-file before the
        first look (max-size, at full speed): its generations are all its own, read them."""
        return target.origin.source_type == "docker"


class ContainerSource:
    """Follows the log files :class:`ContainerPaths` finds, with a :class:`Tailer`, and listens to
    Docker's events to look again as soon as a container starts."""

    name = "container_source"
    positions_key = "containers"

    def __init__(
        self,
        docker: ContainerMonitorConfig,
        kubernetes: KubernetesConfig,
        files: FilesConfig,
        positions: PositionsConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
        shard: Shard | None = None,
    ) -> None:
        self.docker_cfg = docker
        self.metrics = metrics
        name = shard.positions_name if shard else "containers"
        store = PositionStore(positions.directory, name, 1) if positions.enabled else None
        known, flat = _unpack(store.load() if store else {})
        self.paths = ContainerPaths(docker, kubernetes, files, known, shard)
        rescans = [c.rescan_interval for c in (docker, kubernetes) if c.enabled]
        self.tailer = Tailer(
            self.name,
            settings_of(files, rescan=min(rescans, default=files.rescan_interval)),
            self.paths,
            Checkpointer(
                flat,
                store,
                metrics,
                positions.flush_interval,
                shape=self.container_entries,
                write_delay=positions.write_delay,
            ),
            dispatcher,
            metrics,
            shard,
            after_rescan=self._after_rescan,
        )
        self._events: DockerEvents | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.tailer.start()
        if self.paths.docker_dir is not None and self.docker_cfg.socket_path:
            self._events = DockerEvents(
                self.docker_cfg.socket_path,
                self._on_event,
                self.docker_cfg.reconnect_interval,
                Supervisor(self.name, self.metrics),
            )
            self._events.start()

    def health(self) -> dict[str, Any]:
        """The read loop's state, and the ``docker-events`` thread's (the worse one wins)."""
        files = self.tailer.files()
        out = {
            **self.tailer.health(),
            "containers": len({tf.origin.source_id for tf in files}),
            "files": len(files),
            "docker_events_connected": self.events_connected,
        }
        if self._events is not None:
            events = self._events.supervisor.health()
            out["docker_events"] = events
            status = worst([out["status"], events["status"]])
            if status != out["status"]:
                out["status"] = status
                out["message"] = f"docker events: {events['message']}"
        return out

    def stop(self, timeout: float = 30.0) -> None:
        if self._events is not None:
            self._events.stop()
        self.tailer.stop()

    def finish(self) -> None:
        self.tailer.finish()

    def files(self, live: bool = True) -> list[TailedFile]:
        return self.tailer.files(live)

    def stats(self) -> dict[str, Any]:
        t = self.tailer
        files = t.files()
        return {
            "monitored": len({tf.origin.source_id for tf in files}),
            "files": len(files),
            "open_files": t.open_files,
            "lines_read": t.lines_read,
            "in_flight_lines": t.in_flight(),
            "docker_events_connected": self.events_connected,
        }

    def positions(self) -> dict[str, Entry]:
        return self.container_entries(self.tailer.positions())

    def resume_from(self, entries: dict[str, Entry]) -> None:
        """Resume from ``entries`` (container id -> entry, the positions a sink commits with the
        lines: Kafka's ``delivery: exactly_once``) instead of ``containers.json``, which is then
        neither read nor written. One worker of several keeps its own containers' entries and
        remembers the others' files as not to take. Call before :meth:`start`."""
        shard = self.tailer.shard
        if shard is not None:
            foreign = {cid: e for cid, e in entries.items() if not shard.owns(cid)}
            shard.remember_foreign(_unpack(foreign)[1].values())
            entries = {cid: e for cid, e in entries.items() if cid not in foreign}
        known, flat = _unpack(entries)
        self.paths.known.clear()
        self.paths.known.update(known)
        cp = self.tailer.checkpointer
        cp.unclaimed = Checkpointer(flat, None, self.metrics, cp.flush_interval).unclaimed
        cp.store = None
        cp.writer = None  # its thread starts with the first write: none comes

    def _on_event(self, event: dict[str, Any]) -> None:
        self.tailer.request_rescan()

    @property
    def events_connected(self) -> bool:
        return self._events is not None and self._events.connected

    def _after_rescan(self) -> None:
        known, status = self.paths.known, self.paths.status
        followed = {tf.origin.source_id for tf in self.tailer.followed.tracked.values()}
        for cid in [c for c in known if status.get(c) == "removed" and c not in followed]:
            del known[cid]  # gone, and its last file was released
            self.tailer.checkpointer.released_lines.pop(cid, None)
        self.metrics.containers_monitored.set(len({tf.origin.source_id for tf in self.tailer.files()}))

    # -- positions ---------------------------------------------------------------------------------
    def container_entries(self, entries: dict[str, Entry]) -> dict[str, Entry]:
        """The tailer's flat entries (path -> entry) grouped by container, as containers.json has them."""
        by_container: dict[str, dict[str, Entry]] = {}
        for path, entry in entries.items():
            by_container.setdefault(str(entry.get("source_id", "")), {})[path] = entry
        out: dict[str, Entry] = {}
        status_of = self.paths.status
        released_lines = self.tailer.checkpointer.released_lines
        for cid, k in list(self.paths.known.items()):
            files = by_container.get(cid, {})
            status = status_of.get(cid, "removed")
            last = max((str(e.get("last_read", "")) for e in files.values()), default="")
            out[cid] = {
                "since": _utc(k.since),
                "last_read": last,
                # Released files keep their entry while on disk, but their lines are already
                # in released_lines (this run) or released_count (earlier runs).
                "log_count": k.released_count
                + released_lines[cid]
                + sum(_count(e.get("log_count")) for e in files.values() if e.get("state") != "released"),
                "status": status,
                "source_type": k.source_type,
                "name": k.name,
                "files": {p: {f: v for f, v in e.items() if f != "source_id"} for p, e in files.items()},
            }
        return out


def _unpack(saved: dict[str, Entry]) -> tuple[dict[str, Known], dict[str, Entry]]:
    """containers.json's entries as the known containers and the tailer's flat file entries."""
    known: dict[str, Known] = {}
    flat: dict[str, Entry] = {}
    for cid, entry in saved.items():
        files_ = entry.get("files") if isinstance(entry.get("files"), dict) else {}
        assert isinstance(files_, dict)
        in_files = 0
        for path, fe in files_.items():
            if isinstance(fe, dict):
                flat[path] = {**fe, "source_id": cid}
                if fe.get("state") != "released":  # see container_entries
                    in_files += _count(fe.get("log_count"))
        known[cid] = Known(
            str(entry.get("source_type", "docker")),
            str(entry.get("name", "")),
            _parse_utc(entry.get("since")),
            str(entry.get("status", "")),
            max(0, _count(entry.get("log_count")) - in_files),
        )
    return known, flat


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _parse_utc(value: object) -> float:
    if isinstance(value, str):
        try:
            return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            pass
    return time.time()


def build(config: ContainerMonitorConfig, ctx: BuildContext) -> ContainerSource | None:
    """Docker (this section) and Kubernetes (``kubernetes``) containers, read as files with the
    read settings of ``files_config``."""
    cfg = ctx.config
    if not (config.enabled or cfg.kubernetes.enabled):
        return None
    return ContainerSource(
        config,
        cfg.kubernetes,
        cfg.files_config,
        cfg.positions,
        ctx.dispatcher,
        ctx.metrics,
        ctx.shard("containers"),
    )


COMPONENT = SourceComponent(build=build, stats_key="containers")
