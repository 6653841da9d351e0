"""A worker's share of the configuration, and the config line the supervisor hands it."""

from __future__ import annotations

import orjson
import pytest

from log_capturer.config import ConfigError
from log_capturer.config.loader import load_config_text
from log_capturer.config.schema import Config
from log_capturer.workers.worker import config_line, worker_config

CONFIG = """
app: {workers: 3}
server: {port: 8401}
syslog: {enabled: true}
forward: {enabled: true}
dispatcher: {queue_size: 30000, queue_max_bytes: 2097152}
sinks:
  kafka:
    enabled: true
    queue_size: 90000
    queue_max_bytes: 3145728
    auth: {enabled: true, username: alice, password: "s3cret ${X}"}
"""


def test_each_worker_gets_its_share_of_the_queues_and_worker_0_the_network_sources() -> None:
    cfg = load_config_text(CONFIG, {"X": "x"})
    workers = [worker_config(cfg, i, 3) for i in range(3)]
    for w in workers:
        assert (w.server.host, w.server.port, w.metrics.host, w.metrics.port) == (
            "127.0.0.1",
            0,
            "127.0.0.1",
            0,
        )
        assert (w.dispatcher.queue_size, w.sinks.kafka.queue_size) == (10000, 30000)
        assert w.sinks.kafka.queue_max_bytes == 1 << 20  # a third, and never below the minimum
        assert w.dispatcher.queue_max_bytes == 1 << 20
    assert [w.syslog.enabled for w in workers] == [True, False, False]
    # Forward (and OTLP) stay on: each source's build decides per worker (every_worker).
    assert [w.forward.enabled for w in workers] == [True, True, True]
    assert [w.http_ingest.enabled for w in workers] == [True, False, False]
    assert [w.dispatcher.dlq_config.reprocessing_config.enabled for w in workers] == [True, False, False]
    assert cfg.server.port == 8401 and cfg.dispatcher.queue_size == 30000  # the original is untouched


def test_the_config_line_carries_secrets_and_reads_back_the_same() -> None:
    cfg = load_config_text(CONFIG, {"X": "x"})
    back = Config.model_validate(orjson.loads(config_line(cfg)))
    assert back.sinks.kafka.auth.password.get_secret_value() == "s3cret x"
    assert back == cfg


def test_stdin_cannot_be_split_between_workers() -> None:
    with pytest.raises(ConfigError, match=r"stdin\.enabled needs app\.workers: 1"):
        load_config_text("app: {workers: 2}\nstdin: {enabled: true}\n", {})


def test_the_supervisor_settings_survive_the_handoff_and_it_never_loads_the_schema() -> None:
    import subprocess
    import sys

    from log_capturer.sources.http.source import PATH
    from log_capturer.workers.api import INGEST_PATH
    from log_capturer.workers.supervisor import SupervisorSettings, settings_of

    cfg = load_config_text(CONFIG, {"X": "x"})
    st = settings_of(cfg)
    assert SupervisorSettings.loads(st.dumps()) == st
    assert (st.api, st.metrics, st.ingest, st.drain_timeout) == (
        ("0.0.0.0", 8401),
        ("0.0.0.0", 8001, "/metrics"),
        True,
        30.0,
    )
    assert Config.model_validate(orjson.loads(st.config_line)) == cfg
    assert INGEST_PATH == PATH
    probe = (
        "import sys, log_capturer.workers.supervisor; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'confluent_kafka', 'typer')"
        " or m.startswith('log_capturer.config')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
