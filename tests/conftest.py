"""Session fixtures: a real Apache Kafka broker (KRaft) and a real OpenSearch node, both started
from Maven Central jars, a real VictoriaLogs (the Loki-API server, built with ``go install``), and
a private Docker Engine (dockerd with its own data root and socket) with local images."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.devtools import docker_images
from log_capturer.devtools.docker_local import LocalDocker, LocalDockerError, mounts_under
from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError, free_port
from log_capturer.devtools.opensearch_local import LocalOpenSearch, LocalOpenSearchError
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs, VictoriaLogsError
from tests.support import started

REPO = Path(__file__).resolve().parent.parent

#: Session servers too costly to start once per pytest-xdist worker: every test that needs one
#: runs on the same worker (``make test`` runs ``--dist loadgroup``).
SHARED_SERVERS = ("opensearch", "docker_engine")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which turns the marks into the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups tests for pytest-xdist's ``loadgroup``: a module's tests stay on one worker (its
    module fixtures, such as a 3-node cluster, start once), and so do all tests of OpenSearch, of
    the private Docker Engine, or of a package's own server (its fixture starts once). Without
    xdist the marks do nothing."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stops a worker whose tests did not get their group: pytest-xdist sends a test's group to
    the scheduler as a suffix of its node id, which pytest 9.2 no longer lets it write
    (pytest-xdist#1386). Without the groups the suite still passes but starts OpenSearch, the
    Docker Engine and every module's servers once per worker."""
    # The option exists only in a pytest-xdist worker.
    if not getattr(session.config.option, "loadgroup", False) or not session.items:
        return
    ungrouped = [item.nodeid for item in session.items if "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(
            f"--dist loadgroup: {len(ungrouped)} tests have no group suffix (first: {ungrouped[0]});"
            " pytest-xdist could not group them: check the pytest and pytest-xdist versions"
        )


def xdist_group(item: pytest.Item) -> str:
    names = getattr(item, "fixturenames", ())
    callspec = getattr(item, "callspec", None)
    harness = callspec.params.get("harness") if callspec is not None else None
    if harness == "elasticsearch":  # the conformance harness asks for ``opensearch`` at run time
        return "opensearch"
    for server in SHARED_SERVERS:
        if server in names:
            return server
    package_server = package_scoped_fixture(item)
    if package_server:
        return package_server
    module = item.nodeid.split("::", 1)[0]
    return f"{module}[{harness}]" if harness else module


def package_scoped_fixture(item: pytest.Item) -> str | None:
    """``<package>::<fixture>`` for a test that uses a package-scoped fixture (a server of the
    package's own, such as the broker the reliability tests stop): its tests run in one group, one
    after the other, so the server starts once instead of once per module."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in sorted(info.name2fixturedefs):
        defs = info.name2fixturedefs[name]
        if defs and defs[-1].scope == "package":
            return f"{defs[-1].baseid}::{name}"
    return None


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node broker on free ports, for the whole session. Fails (never skips) with its log."""
    workdir = tmp_path_factory.mktemp("kafka")
    cluster = LocalKafka(workdir, nodes=1, port=free_port(), controller_ports=[free_port()], log=print)
    started(cluster, "the Kafka broker", LocalKafkaError, timeout=120)
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
def bootstrap(kafka: LocalKafka) -> str:
    state = kafka.load_state()
    assert state is not None
    return state.bootstrap


@pytest.fixture(scope="session")
def victorialogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVictoriaLogs]:
    """A VictoriaLogs server on a free port, for the whole session (tests tell their records apart
    by a label of their own). Fails (never skips) with its log."""
    server = LocalVictoriaLogs(tmp_path_factory.mktemp("victorialogs"), port=free_port(), log=print)
    # The first run builds it with 'go install'.
    started(server, "VictoriaLogs", VictoriaLogsError, timeout=600)
    yield server
    server.down()


@pytest.fixture(scope="session")
def opensearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOpenSearch]:
    """One OpenSearch 2.x node on free loopback ports for the whole session (about 1 GB: never one
    per test). Fails (never skips) with its log."""
    node = LocalOpenSearch(tmp_path_factory.mktemp("opensearch"), port=0, log=print)
    started(node, "OpenSearch", LocalOpenSearchError, timeout=180)
    yield node
    node.down(purge=True)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDocker]:
    """A private Docker Engine for the session (``--iptables=false --bridge=none``, its own data
    root, exec root and socket in a temp dir). Fails (never skips) with dockerd's log. At the end
    its containers are removed, it is stopped, and no mount or file of it is left."""
    workdir = tmp_path_factory.mktemp("dockerd")
    engine = LocalDocker(workdir, log=print)
    started(engine, "the Docker Engine", LocalDockerError, timeout=90)
    yield engine
    ran = engine.down(purge=True)
    assert ran, f"the session's Docker Engine had stopped before the end; its log:\n{engine.log_tail()}"
    assert engine.pid() is None
    assert not mounts_under(workdir), f"mounts left behind: {mounts_under(workdir)}"
    assert not workdir.exists()


@pytest.fixture(scope="session")
def busybox(docker_engine: LocalDocker) -> str:
    """The busybox image (local/busybox:1), imported from the host's busybox-static."""
    try:
        return docker_images.busybox_image(docker_engine)
    except LocalDockerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def agent_image(docker_engine: LocalDocker) -> str:
    """The agent's image built from the project's Dockerfile over a local debootstrap base, with
    wheels made on the host (in a directory of the build context, removed once built)."""
    wheels = REPO / "build" / f"test-wheels-{uuid.uuid4().hex[:8]}"
    try:
        base = docker_images.debian_python_base(docker_engine)
        docker_images.build_wheels(REPO, wheels)
        return docker_images.agent_image(docker_engine, REPO, base, wheels)
    except LocalDockerError as exc:
        pytest.fail(f"the agent image could not be built:\n{exc}", pytrace=False)
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
