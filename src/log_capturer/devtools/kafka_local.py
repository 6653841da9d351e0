"""A real Apache Kafka (KRaft) cluster on loopback, run from Maven Central jars.

The jars are resolved once with Maven into a user cache directory
(``$LOG_CAPTURER_CACHE``, else ``$XDG_CACHE_HOME/log-capturer``, else
``~/.cache/log-capturer``). A cluster lives in a work directory holding one
folder per node (``server.properties``, data, ``server.log``) and a
``cluster.json`` state file, so ``up`` is idempotent and ``down``/``status``
work from another process.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from log_capturer.devtools import maven, processes
from log_capturer.devtools.certs import TlsMaterial, require
from log_capturer.devtools.certs import generate as generate_tls

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
STATE_FILE = "cluster.json"


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started or reached; the message carries its log."""


def cache_home() -> Path:
    """Where downloaded jars and the default cluster live."""
    explicit = os.environ.get("LOG_CAPTURER_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "log-capturer"


def default_workdir() -> Path:
    return cache_home() / "cluster"


def ensure_jars(version: str = KAFKA_VERSION, log: Callable[[str], None] = print) -> Path:
    """Return the directory holding the broker's runtime jars, fetching them once with Maven."""
    libs = cache_home() / f"kafka-{version}" / "libs"
    pom_text = (
        resources.files("log_capturer.devtools")
        .joinpath("resources/pom.xml")
        .read_text()
        .replace("@KAFKA_VERSION@", version)
        .replace("@LOG4J_VERSION@", LOG4J_VERSION)
    )
    return maven.ensure_jars(
        libs,
        pom_text,
        expect="kafka_2.13-*.jar",
        what=f"Apache Kafka {version}",
        stamp=version,
        error=LocalKafkaError,
        log=log,
    )


def new_cluster_id() -> str:
    """A random KRaft cluster id that never starts with '-'.

    One in 64 base64url ids does, and the storage tool's argument parser then
    takes it for an option ("--cluster-id: expected one argument"); Kafka's own
    Uuid.randomUuid() skips such ids the same way.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


#: The lowest port :func:`free_port` gives.
LOWEST_PORT = 10000


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of client source ports (``ip_local_port_range``; Linux's default)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free on 127.0.0.1 now, below the ephemeral range: while a local server is stopped (a
    restart in a test), no client's source port can take its port, and a client reconnecting to
    it cannot connect to itself (TCP simultaneous open, which happens when the port it dials is in
    that range and nothing listens). The kernel's pick when that range leaves no room."""
    lo, _hi = ephemeral_ports()
    rng = random.SystemRandom()
    for _ in range(100 if lo - LOWEST_PORT >= 1000 else 0):
        port = rng.randrange(LOWEST_PORT, lo)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


#: Client listeners beyond PLAINTEXT: name -> (security protocol, port offset from the node's port).
SASL_LISTENERS = {"SASL_PLAINTEXT": ("SASL_PLAINTEXT", 10)}
TLS_LISTENERS = {
    "SSL": ("SSL", 20),  # server certificate valid for 127.0.0.1 and localhost
    "MTLS": ("SSL", 30),  # requires a client certificate signed by the local CA
    "BADHOST": ("SSL", 40),  # server certificate for another host name
}
BOTH_LISTENERS = {"SASL_SSL": ("SASL_SSL", 50)}
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: The SASL user created on every local cluster started with ``sasl=True``.
SASL_USER = ("alice", "alice-secret")


@dataclass
class NodeState:
    node_id: int
    port: int
    controller_port: int
    pid: int | None = None
    #: Extra client listeners: name -> port.
    listeners: dict[str, int] = field(default_factory=dict)


@dataclass
class ClusterState:
    version: str
    cluster_id: str
    nodes: list[NodeState] = field(default_factory=list)
    sasl: bool = False
    tls: bool = False

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_for("PLAINTEXT")

    def bootstrap_for(self, listener: str) -> str:
        """Bootstrap address of one listener (PLAINTEXT, SASL_PLAINTEXT, SSL, MTLS, BADHOST, SASL_SSL)."""
        if listener == "PLAINTEXT":
            return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return ",".join(f"127.0.0.1:{n.listeners[listener]}" for n in self.nodes)


def _pid_alive(pid: int | None, workdir: Path) -> bool:
    """``pid`` is a Kafka node of ``workdir`` (not some recycled pid)."""
    return processes.is_running(pid, b"kafka.Kafka", workdir)


class LocalKafka:
    """One local cluster of 1 or 3 combined broker+controller nodes in ``workdir``."""

    def __init__(
        self,
        workdir: Path | None = None,
        nodes: int = 1,
        port: int = 9092,
        controller_ports: list[int] | None = None,
        version: str = KAFKA_VERSION,
        sasl: bool = False,
        tls: bool = False,
        listener_ports: dict[str, list[int]] | None = None,
        heap: str = "512m",
        log: Callable[[str], None] = print,
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError("nodes must be 1 or 3")
        self.workdir = (workdir or default_workdir()).resolve()
        self.nodes = nodes
        self.port = port
        self.controller_ports = controller_ports
        self.sasl = sasl
        self.tls = tls
        self.listener_ports = listener_ports or {}
        self.version = version
        self.heap = heap
        self.log = log

    # -- state ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.workdir / STATE_FILE

    def load_state(self) -> ClusterState | None:
        try:
            raw = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return ClusterState(
            version=raw["version"],
            cluster_id=raw["cluster_id"],
            nodes=[NodeState(**n) for n in raw["nodes"]],
            sasl=raw.get("sasl", False),
            tls=raw.get("tls", False),
        )

    def _save_state(self, state: ClusterState) -> None:
        processes.write_state(self.state_path, asdict(state), indent=2)

    def node_dir(self, node_id: int) -> Path:
        return self.workdir / f"node-{node_id}"

    def node_log(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.log"

    # -- configuration -------------------------------------------------------------------------
    def _plan(self) -> ClusterState:
        ctrl = self.controller_ports or [self.port + 100 + i for i in range(self.nodes)]
        if len(ctrl) != self.nodes:
            raise ValueError("one controller port per node is needed")
        nodes = [NodeState(i + 1, self.port + i, ctrl[i]) for i in range(self.nodes)]
        for name, (_proto, offset) in self._extra_listeners().items():
            ports = self.listener_ports.get(name) or [self.port + offset + i for i in range(self.nodes)]
            for node, port in zip(nodes, ports, strict=True):
                node.listeners[name] = port
        return ClusterState(self.version, new_cluster_id(), nodes, sasl=self.sasl, tls=self.tls)

    def _extra_listeners(self) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        if self.sasl:
            out.update(SASL_LISTENERS)
        if self.tls:
            out.update(TLS_LISTENERS)
        if self.sasl and self.tls:
            out.update(BOTH_LISTENERS)
        return out

    @property
    def tls_material(self) -> TlsMaterial:
        return TlsMaterial.at(self.workdir / "tls")

    def _server_properties(self, state: ClusterState, node: NodeState) -> str:
        n = len(state.nodes)
        voters = ",".join(f"{x.node_id}@127.0.0.1:{x.controller_port}" for x in state.nodes)
        extra = {
            name: proto
            for name, (proto, _o) in {**SASL_LISTENERS, **TLS_LISTENERS, **BOTH_LISTENERS}.items()
            if name in node.listeners
        }
        client = [f"PLAINTEXT://127.0.0.1:{node.port}"] + [
            f"{name}://127.0.0.1:{node.listeners[name]}" for name in extra
        ]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"] + [
            f"{name}:{proto}" for name, proto in extra.items()
        ]
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "listeners": ",".join([*client, f"CONTROLLER://127.0.0.1:{node.controller_port}"]),
            "advertised.listeners": ",".join(client),
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(self.node_dir(node.node_id) / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "default.replication.factor": str(n),
            "min.insync.replicas": "2" if n == 3 else "1",
            "offsets.topic.replication.factor": str(n),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(n),
            "transaction.state.log.min.isr": "2" if n == 3 else "1",
            "share.coordinator.state.topic.replication.factor": str(n),
            "share.coordinator.state.topic.min.isr": "2" if n == 3 else "1",
            "group.initial.rebalance.delay.ms": "0",
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update(self._security_properties(extra))
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _security_properties(self, extra: dict[str, str]) -> dict[str, str]:
        props: dict[str, str] = {}
        sasl_listeners = [n for n, proto in extra.items() if proto.startswith("SASL")]
        if sasl_listeners:
            props["sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
            user, password = SASL_USER
            for name in sasl_listeners:
                ln = f"listener.name.{name.lower()}"
                props[f"{ln}.plain.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'user_{user}="{password}";'
                )
                for mech in ("scram-sha-256", "scram-sha-512"):
                    props[f"{ln}.{mech}.sasl.jaas.config"] = (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    )
        if any(proto.endswith("SSL") for proto in extra.values()):
            m = self.tls_material
            store = {"type": "PKCS12", "password": m.password}
            props.update(
                {
                    "ssl.keystore.type": store["type"],
                    "ssl.keystore.location": str(m.broker_keystore),
                    "ssl.keystore.password": store["password"],
                    "ssl.key.password": store["password"],
                }
            )
            if "BADHOST" in extra:
                props.update(
                    {
                        "listener.name.badhost.ssl.keystore.type": store["type"],
                        "listener.name.badhost.ssl.keystore.location": str(m.badhost_keystore),
                        "listener.name.badhost.ssl.keystore.password": store["password"],
                        "listener.name.badhost.ssl.key.password": store["password"],
                    }
                )
            if "MTLS" in extra:
                props.update(
                    {
                        "listener.name.mtls.ssl.client.auth": "required",
                        "listener.name.mtls.ssl.truststore.type": store["type"],
                        "listener.name.mtls.ssl.truststore.location": str(m.truststore),
                        "listener.name.mtls.ssl.truststore.password": store["password"],
                    }
                )
        return props

    def _java(self, libs: Path, main: str, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("Java ('java', 17 or newer) is not on PATH")
        log4j = self.workdir / "log4j2.properties"
        cmd = [java]
        if heap:
            cmd += [f"-Xms{min_heap(heap)}", f"-Xmx{heap}"]
        cmd += [
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]
        return cmd

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> str:
        """Start the cluster (or find it running) and return its bootstrap address.
        :class:`~log_capturer.devtools.certs.MissingExtra` (before anything is fetched) when TLS
        listeners are asked for without the devtools extra."""
        if self.tls:
            require()
        state = self.load_state()
        if state is not None:
            if len(state.nodes) != self.nodes:
                raise LocalKafkaError(
                    f"a {len(state.nodes)}-node cluster already exists in {self.workdir}; "
                    "run 'log-capturer kafka down --purge' first"
                )
            if all(_pid_alive(n.pid, self.workdir) for n in state.nodes) and self._answers(state, 5):
                return state.bootstrap
        libs = ensure_jars(self.version, self.log)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(
            resources.files("log_capturer.devtools").joinpath("resources/log4j2.properties").read_text()
        )
        if state is None:
            state = self._plan()
            if self.tls:
                generate_tls(self.workdir / "tls")
            for node in state.nodes:
                for p in (node.port, node.controller_port, *node.listeners.values()):
                    if port_in_use(p):
                        raise LocalKafkaError(
                            f"port {p} on 127.0.0.1 is already in use; choose another with --port"
                        )
            for node in state.nodes:
                self._format(libs, state, node)
            self._save_state(state)
        for node in state.nodes:
            if not _pid_alive(node.pid, self.workdir):
                node.pid = self._spawn(libs, node)
        self._save_state(state)
        self._wait_ready(state, timeout)
        return state.bootstrap

    def _format(self, libs: Path, state: ClusterState, node: NodeState) -> None:
        ndir = self.node_dir(node.node_id)
        ndir.mkdir(parents=True, exist_ok=True)
        props = ndir / "server.properties"
        props.write_text(self._server_properties(state, node))
        scram: list[str] = []
        if state.sasl:
            user, password = SASL_USER
            for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                scram += ["--add-scram", f"{mech}=[name={user},password={password}]"]
        proc = subprocess.run(
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                state.cluster_id,
                "-c",
                str(props),
                *scram,
                heap="256m",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LocalKafkaError(
                f"formatting node {node.node_id} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )

    def _spawn(self, libs: Path, node: NodeState) -> int:
        ndir = self.node_dir(node.node_id)
        proc = processes.spawn(
            self._java(libs, "kafka.Kafka", str(ndir / "server.properties"), heap=self.heap),
            self.node_log(node.node_id),
            ndir,
        )
        processes.wait_exec(proc, lambda pid: _pid_alive(pid, self.workdir))
        return proc.pid

    def _answers(self, state: ClusterState, timeout: float) -> bool:
        from confluent_kafka.admin import AdminClient

        conf: dict[str, Any] = {
            "bootstrap.servers": state.bootstrap,
            "log_level": 0,
            "logger": _silent_logger(),
        }
        admin = AdminClient(conf)
        try:
            md = admin.list_topics(timeout=timeout)
        except Exception:
            return False
        return len(md.brokers) == len(state.nodes)

    def _wait_ready(self, state: ClusterState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n in state.nodes if not _pid_alive(n.pid, self.workdir)]
            if dead:
                raise LocalKafkaError(
                    f"Kafka node {dead[0].node_id} exited during start-up; its log:\n"
                    + self.log_tail(node_id=dead[0].node_id)
                )
            if self._answers(state, 2):
                return
            time.sleep(0.5)
        raise LocalKafkaError(
            f"Kafka did not answer at {state.bootstrap} within {timeout:.0f}s; logs:\n" + self.log_tail()
        )

    def stop_node(self, node_id: int, sig: int = signal.SIGTERM, wait: float = 30.0) -> None:
        """Stop one node (SIGTERM for a clean stop, SIGKILL for a crash) and wait for it to exit."""
        state = self.load_state()
        if state is None:
            return
        for node in state.nodes:
            if node.node_id == node_id and _pid_alive(node.pid, self.workdir):
                assert node.pid is not None
                _signal_and_wait(node.pid, sig, wait, self.workdir)
                node.pid = None
        self._save_state(state)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one stopped node again and wait until the cluster answers."""
        state = self.load_state()
        if state is None:
            raise LocalKafkaError(f"no cluster in {self.workdir}")
        libs = ensure_jars(self.version, self.log)
        for node in state.nodes:
            if node.node_id == node_id and not _pid_alive(node.pid, self.workdir):
                node.pid = self._spawn(libs, node)
        self._save_state(state)
        self._wait_ready(state, timeout)

    def down(self, purge: bool = False, wait: float = 30.0) -> bool:
        """Stop every node; with ``purge`` also delete the data. Returns whether anything ran."""
        state = self.load_state()
        ran = False
        if state is not None:
            # Every node at once: stopped one after the other, the last ones lose the controller
            # quorum and wait out ``wait`` in their controlled shutdown (30 s for three nodes).
            pids = [n.pid for n in state.nodes if n.pid is not None and _pid_alive(n.pid, self.workdir)]
            ran = bool(pids)
            with ThreadPoolExecutor(max(1, len(pids))) as pool:
                list(pool.map(lambda pid: _signal_and_wait(pid, signal.SIGTERM, wait, self.workdir), pids))
            for node in state.nodes:
                node.pid = None
            self._save_state(state)
        if purge and self.workdir.exists():
            shutil.rmtree(self.workdir)
        return ran

    def status(self) -> dict[str, object]:
        state = self.load_state()
        if state is None:
            return {"workdir": str(self.workdir), "state": "absent", "nodes": []}
        nodes = [
            {"node_id": n.node_id, "port": n.port, "pid": n.pid, "running": _pid_alive(n.pid, self.workdir)}
            for n in state.nodes
        ]
        running = all(bool(n["running"]) for n in nodes)
        answering = running and self._answers(state, 3)
        return {
            "workdir": str(self.workdir),
            "version": state.version,
            "bootstrap": state.bootstrap,
            "state": "up" if answering else ("starting" if running else "down"),
            "nodes": nodes,
            **self.security_info(state),
        }

    def security_info(self, state: ClusterState) -> dict[str, object]:
        """Listener addresses and credentials a client needs for the SASL/TLS listeners."""
        info: dict[str, object] = {}
        names = list(state.nodes[0].listeners) if state.nodes else []
        if names:
            info["listeners"] = {name: state.bootstrap_for(name) for name in names}
        if state.sasl:
            info["sasl"] = {
                "mechanisms": list(SASL_MECHANISMS),
                "username": SASL_USER[0],
                "password": SASL_USER[1],
            }
        if state.tls:
            m = self.tls_material
            info["tls"] = {
                "ca_file": str(m.ca_file),
                "client_cert": str(m.client_cert),
                "client_key": str(m.client_key),
            }
        return info

    def run_tool(self, main: str, *args: str, timeout: float = 120) -> str:
        """Run a Java tool from the broker's jars (e.g. kafka.tools.DumpLogSegments); its stdout."""
        libs = ensure_jars(self.version, self.log)
        proc = subprocess.run(
            self._java(libs, main, *args, heap="256m"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise LocalKafkaError(f"{main} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc.stdout

    def segment_files(self, topic: str, node_id: int = 1) -> list[Path]:
        """The log segment files of every partition of ``topic`` stored on one node."""
        data = self.node_dir(node_id) / "data"
        return sorted(
            p for d in data.glob(f"{topic}-*") if d.name.rsplit("-", 1)[0] == topic for p in d.glob("*.log")
        )

    def dump_batches(self, topic: str, node_id: int = 1) -> str:
        """``kafka.tools.DumpLogSegments`` output for a topic: one line per stored record batch."""
        files = self.segment_files(topic, node_id)
        if not files:
            return ""
        return self.run_tool("kafka.tools.DumpLogSegments", "--files", ",".join(map(str, files)))

    def stored_batches(self, topic: str, node_id: int = 1) -> list[StoredBatch]:
        """The record batches of ``topic`` as the broker stored them on one node, in log order."""
        return parse_batches(self.dump_batches(topic, node_id))

    def log_tail(self, lines: int = 80, node_id: int | None = None) -> str:
        parts = []
        ids = [node_id] if node_id else sorted(int(p.name.split("-")[1]) for p in self.workdir.glob("node-*"))
        for nid in ids:
            try:
                text = self.node_log(nid).read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                text = [f"<no log: {exc}>"]
            parts.append(f"--- node {nid}: {self.node_log(nid)} ---\n" + "\n".join(text))
        return "\n".join(parts)


@dataclass(frozen=True)
class StoredBatch:
    """One record batch of a partition's log, as ``DumpLogSegments`` describes it."""

    partition: int
    base_offset: int
    count: int
    #: -1 unless the batch came from an idempotent (or transactional) producer.
    producer_id: int
    base_sequence: int
    codec: str


_DUMPING = re.compile(r"^Dumping .*/(?P<dir>[^/]+)/\d+\.log$")
_BATCH = re.compile(
    r"^baseOffset: (?P<base>\d+) lastOffset: \d+ count: (?P<count>\d+) "
    r"baseSequence: (?P<seq>-?\d+) .*?producerId: (?P<pid>-?\d+) .*?compresscodec: (?P<codec>\w+)"
)


def parse_batches(dump: str) -> list[StoredBatch]:
    """The batches in ``DumpLogSegments`` output (one ``Dumping <dir>/<segment>.log`` section per
    segment; the partition is the number that ends the directory name)."""
    out: list[StoredBatch] = []
    partition = -1
    for line in dump.splitlines():
        head = _DUMPING.match(line)
        if head:
            partition = int(head["dir"].rsplit("-", 1)[1])
            continue
        m = _BATCH.match(line)
        if m:
            out.append(
                StoredBatch(
                    partition,
                    int(m["base"]),
                    int(m["count"]),
                    int(m["pid"]),
                    int(m["seq"]),
                    m["codec"],
                )
            )
    return out


def min_heap(heap: str) -> str:
    return "256m" if heap.endswith("m") and int(heap[:-1]) >= 256 else heap


def _signal_and_wait(pid: int, sig: int, wait: float, workdir: Path) -> None:
    processes.stop(pid, lambda p: _pid_alive(p, workdir), sig, wait)


def _silent_logger() -> object:
    import logging

    logger = logging.getLogger("log_capturer.devtools.librdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
