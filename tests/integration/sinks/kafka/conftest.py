"""A second broker with SASL and TLS listeners, shared by the security tests of this folder.

It is started the way a user starts one, with ``log-capturer kafka up --sasl --tls`` (and stopped
with ``kafka down``), so the tests also cover that command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from log_capturer.devtools.kafka_local import LocalKafka
from tests.support import free_port_base, run_cli

#: Offsets from --port of what `kafka up --sasl --tls` listens on: PLAINTEXT, SASL_PLAINTEXT,
#: SSL, MTLS, BADHOST, SASL_SSL, and the controller.
SECURE_OFFSETS = (0, 10, 20, 30, 40, 50, 100)


@dataclass(frozen=True)
class CliCluster:
    kafka: LocalKafka
    #: What `kafka up` printed: the bootstrap address on stdout, the security details on stderr.
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    work = tmp_path_factory.mktemp("secure-kafka")
    port = free_port_base(SECURE_OFFSETS)
    up = ("kafka", "up", "--sasl", "--tls", "--workdir", str(work), "--port", str(port), "--timeout", "150")
    proc = run_cli(*up, check=False)
    if proc.returncode != 0:
        run_cli("kafka", "down", "--workdir", str(work), check=False)
        pytest.fail(
            f"`log-capturer {' '.join(up)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    yield CliCluster(LocalKafka(work), proc.stdout, proc.stderr)
    down = run_cli("kafka", "down", "--workdir", str(work), check=False)
    assert down.returncode == 0 and down.stdout.strip() == "stopped", down


@pytest.fixture(scope="module")
def secure_kafka(secure_cluster: CliCluster) -> LocalKafka:
    return secure_cluster.kafka
