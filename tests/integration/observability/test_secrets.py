"""No secret ever leaves the agent: logs (librdkafka debug included), /health, /stats, metrics, config dump.

Against the real SASL_SSL listener: SCRAM credentials from KAFKA_PASSWORD (and from ${VAR}
interpolation), a client certificate and its private key, debug logging everywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.kafka_local import SASL_USER, LocalKafka
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration
USER, PASSWORD = SASL_USER


def read(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def outputs(agent: AgentProcess) -> dict[str, str]:
    return {
        "/health": read(agent.api + "/health"),
        "/stats": read(agent.api + "/stats"),
        "/positions": read(agent.api + "/positions"),
        "/metrics": agent.metrics(),
    }


def key_material(path: Path) -> list[str]:
    """The base64 lines of a PEM private key: what must never be printed."""
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("-----") and len(ln) > 20]


def assert_absent(secrets: list[str], texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for s in secrets:
            assert s not in text, f"a secret ({s[:4]}...) appears in {where}"


def secure_section(k: LocalKafka) -> dict[str, Any]:
    state = k.load_state()
    assert state is not None
    m = k.tls_material
    return {
        "brokers": state.bootstrap_for("SASL_SSL").split(","),
        "auth": {"enabled": True, "mechanism": "SCRAM-SHA-256", "username": USER},
        "tls": {
            "enabled": True,
            "ca_file": str(m.ca_file),
            "cert_file": str(m.client_cert),
            "key_file": str(m.client_key),
        },
        # Everything librdkafka can say about brokers, security, protocol and its configuration.
        "librdkafka_options": {"debug": "all"},
    }


def test_no_secret_in_any_output_at_debug_level(
    tmp_path: Path, secure_kafka: LocalKafka, topic_prefix: str
) -> None:
    state = secure_kafka.load_state()
    assert state is not None
    plain = state.bootstrap
    topics = create_prefixed_topics(plain, topic_prefix)
    kafka = secure_section(secure_kafka)
    secrets = [PASSWORD, *key_material(secure_kafka.tls_material.client_key)]
    cfg = agent_config(tmp_path, plain, topics, app={"log_level": "debug"}, sinks={"kafka": kafka})
    path = write_config(tmp_path / "config.yaml", cfg)
    lines = [f"ERROR secret-free line {i}" for i in range(200)]
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    env = {"KAFKA_PASSWORD": PASSWORD}
    agent = AgentProcess(path, tmp_path / "agent.log", env=env).start()
    try:
        records = consume_all(plain, topics.values(), expected=len(lines), timeout=60)
        assert sorted(r.json()["message"] for r in records) == sorted(lines)  # the credentials worked
        assert_absent(secrets, outputs(agent))
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    log_text = (tmp_path / "agent.log").read_text()
    assert_absent(secrets, {"the agent's log": log_text})
    entries = [orjson.loads(line) for line in log_text.splitlines() if line]
    # The debug output really was there: librdkafka's SASL/TLS chatter and the config dump.
    rdkafka = [e for e in entries if e["logger"] == "librdkafka" and e["level"] == "debug"]
    assert any("SCRAM" in e["message"] or "SASL" in e["message"] for e in rdkafka)
    (dump,) = [e for e in entries if e["message"] == "effective configuration"]
    assert dump["config"]["sinks"]["kafka"]["auth"] == {
        "enabled": True,
        "mechanism": "SCRAM-SHA-256",
        "username": USER,
        "password": "***",
    }
    # The configuration dump of `validate --show`.
    shown = subprocess.run(
        [sys.executable, "-m", "log_capturer", "validate", "--show", "-c", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=True,
    )
    assert_absent(secrets, {"validate --show": shown.stdout + shown.stderr})
    assert "password: '***'" in shown.stdout


def test_a_wrong_password_is_reported_without_being_shown(
    tmp_path: Path, secure_kafka: LocalKafka, topic_prefix: str
) -> None:
    state = secure_kafka.load_state()
    assert state is not None
    topics = create_prefixed_topics(state.bootstrap, topic_prefix)
    kafka = secure_section(secure_kafka)
    kafka["auth"]["password"] = "${SASL_SECRET}"
    wrong = "wrong-" + topic_prefix + "-credential"
    cfg = agent_config(
        tmp_path,
        state.bootstrap,
        topics,
        app={"log_level": "debug"},
        dispatcher={"drain_timeout": "2s"},
        sinks={"kafka": {**kafka, "timeout": "5s"}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text("WARN never delivered\n")
    agent = AgentProcess(path, tmp_path / "agent.log", env={"SASL_SECRET": wrong}).start()
    try:

        def unhealthy() -> dict[str, Any] | None:
            sink = orjson.loads(read(agent.api + "/health"))["services"]["sinks"][0]
            return sink if sink["status"] == "unhealthy" else None

        sink = wait_until(unhealthy, 60, "health to report the failed authentication")
        assert "Authentication failed" in sink["message"]
        assert_absent([wrong], outputs(agent))
        agent.stop(signal.SIGTERM)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert_absent([wrong], {"the agent's log": (tmp_path / "agent.log").read_text()})
