"""Configuration reload against a real broker: POST /config/reload and SIGHUP apply a changed
configuration while lines flow, and every line arrives exactly once; a configuration that fails
validation, or changes a setting that needs a restart, is refused and the agent goes on."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.reliability.conftest import metric
from tests.integration.workers.conftest import ROUTED, generate, missing_and_duplicated
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LINES = 30_000
RATE = 3000


def post(agent: AgentProcess, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(agent.api + path, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _lines_read(agent: AgentProcess) -> int:
    return int(agent.get("/stats")["files"]["lines_read"])


def _drain_and_stop(agent: AgentProcess, expected: int, bootstrap: str, topics: list[str]) -> list[Any]:
    records = consume_all(bootstrap, topics, expected=expected)
    wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")
    assert agent.stop(signal.SIGTERM) == 0, agent.log()
    return records


def test_post_reload_applies_sources_sinks_and_processing_while_lines_flow_exactly_once(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    first = [tmp_path / "logs" / "a.log", tmp_path / "logs" / "b.log"]
    later = tmp_path / "more"
    later.mkdir()
    second = [later / "c.log"]
    writer = generate(first, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: _lines_read(agent) > 3000, 60, "lines flowing")
        # A second directory (the file source), another batching and compression (the Kafka
        # sink), a pipeline for files (processing): all while the generator writes.
        pipelines = tmp_path / "pipelines.yaml"
        pipelines.write_text("pipelines:\n  tag:\n    - type: field_add\n      fields: {reloaded: 'yes'}\n")
        cfg["files_config"]["watch_directories"].append(str(later))
        cfg["sinks"]["kafka"].update({"batch_timeout": "5ms", "compression": "lz4"})
        cfg["processing"] = {"enabled": True, "pipelines_file": str(pipelines)}
        cfg["files_config"]["pipeline"] = "tag"
        write_config(path, cfg)
        code, answer = post(agent, "/config/reload")
        assert code == 200, answer
        assert answer["status"] == "reloaded"
        assert set(answer["changed"]) == {"files_config", "sinks.kafka", "processing"}
        # The same file again: nothing to do.
        assert post(agent, "/config/reload") == (200, {"status": "unchanged", "changed": []})
        writer2 = generate(second, 5000, rate=2000, seed=2)
        assert writer.wait(120) == 0 and writer2.wait(120) == 0
        assert agent.get("/stats")["reload"]["status"] == "unchanged"
        assert metric(agent.metrics(), "config_reloads_total", status="reloaded") == 1.0
        assert agent.get("/health")["status"] == "healthy"
        records = _drain_and_stop(agent, LINES + 5000, bootstrap, [topics[t] for t in ROUTED])
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    missing, duplicated = missing_and_duplicated(records, first + second)
    assert not missing, f"{len(missing)} lines lost across the reload, e.g. {missing[:2]}"
    assert duplicated == 0, f"{duplicated} lines sent twice across the reload"
    # Lines read after the reload went through the new pipeline, the ones before did not.
    tagged = [r for r in records if r.json()["fields"].get("reloaded") == "yes"]
    assert {r.json()["source_id"] for r in tagged} >= {str(second[0])}
    assert 0 < len(tagged) < len(records)


def test_sighup_moves_the_lines_to_another_topic_without_losing_or_repeating_one(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    other = create_prefixed_topics(bootstrap, topic_prefix + "b")
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    files = [tmp_path / "logs" / "a.log"]
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: _lines_read(agent) > 3000, 60, "lines flowing")
        kafka = cfg["sinks"]["kafka"]
        kafka["topic"] = other["logs"]
        kafka["priority_routing"] = {
            "high_topic": other["logs-high-priority"],
            "normal_topic": other["logs-normal-priority"],
            "low_topic": other["logs-low-priority"],
        }
        write_config(path, cfg)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: agent.get("/stats")["reload"].get("status") == "reloaded", 60, "the reload")
        assert agent.get("/stats")["reload"]["changed"] == ["sinks.kafka"]
        assert writer.wait(120) == 0
        before = consume_all(bootstrap, [topics[t] for t in ROUTED])
        after = _drain_and_stop(agent, LINES - len(before), bootstrap, [other[t] for t in ROUTED])
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert before and after, (len(before), len(after))
    missing, duplicated = missing_and_duplicated(before + after, files)
    assert not missing and duplicated == 0, (len(missing), duplicated)


def test_an_invalid_or_restart_only_change_is_refused_and_the_running_configuration_kept(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    good = path.read_text()
    files = [tmp_path / "logs" / "a.log"]
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        path.write_text(good + "files_config_typo: {}\n")
        code, answer = post(agent, "/config/reload")
        assert code == 422 and answer["status"] == "refused", answer
        assert any("files_config_typo" in e for e in answer["errors"]), answer
        cfg["server"]["port"] = cfg["server"]["port"] + 1
        cfg["sinks"]["kafka"]["batch_timeout"] = "7ms"
        write_config(path, cfg)
        code, answer = post(agent, "/config/reload")
        assert code == 422, answer
        assert answer["errors"] == [
            "server.port: cannot change while the agent runs; restart the agent to apply it, or put "
            "the running value back to reload the rest"
        ]
        # SIGHUP with the broken file: refused the same way, said in the log.
        path.write_text("sinks: [\n")
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: metric(agent.metrics(), "config_reloads_total", status="refused") == 3.0, 30, "refusal"
        )
        assert "not valid YAML" in agent.get("/stats")["reload"]["errors"][0]
        # The agent still runs with its configuration: lines flow, it is healthy.
        writer = generate(files, 2000)
        assert writer.wait(60) == 0
        records = _drain_and_stop(agent, 2000, bootstrap, [topics[t] for t in ROUTED])
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    missing, duplicated = missing_and_duplicated(records, files)
    assert not missing and duplicated == 0
    assert '"message":"configuration reload: refused"' in agent.log(500)
    assert "Traceback" not in agent.log(2000)


def test_a_multi_process_agent_reloads_every_worker_on_sighup(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    from tests.integration.workers.conftest import files_for_workers

    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics, app={"workers": 2})
    path = write_config(tmp_path / "config.yaml", cfg)
    files = files_for_workers(tmp_path / "logs", 2, 1)
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: _lines_read(agent) > 3000, 60, "lines flowing")
        cfg["sinks"]["kafka"]["compression"] = "gzip"
        write_config(path, cfg)
        code, answer = post(agent, "/config/reload")
        assert code == 200, answer
        assert [(w["worker"], w["status"], w["changed"]) for w in answer["workers"]] == [
            (0, "reloaded", ["sinks.kafka"]),
            (1, "reloaded", ["sinks.kafka"]),
        ]
        cfg["dispatcher"]["queue_size"] = 1234
        write_config(path, cfg)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reload: refused" in agent.log(500), 60, "the refusal")
        assert writer.wait(120) == 0
        records = _drain_and_stop(agent, LINES, bootstrap, [topics[t] for t in ROUTED])
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    missing, duplicated = missing_and_duplicated(records, files)
    assert not missing and duplicated == 0, (len(missing), duplicated)


def test_sinks_that_cannot_drain_fail_the_reload_and_nothing_changes(tmp_path: Path) -> None:
    from log_capturer.devtools.kafka_local import free_port

    # A broker nobody runs: nothing is ever acknowledged, so the sinks never drain.
    away = f"127.0.0.1:{free_port()}"
    topics = {t: f"away-{t}" for t in ("logs", *ROUTED[1:], "logs-dlq")}
    cfg = agent_config(tmp_path, away, topics, dispatcher={"drain_timeout": "2s"})
    path = write_config(tmp_path / "config.yaml", cfg)
    writer = generate([tmp_path / "logs" / "a.log"], 500)
    assert writer.wait(60) == 0
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: _lines_read(agent) == 500, 60, "the lines read")
        cfg["sinks"]["kafka"]["compression"] = "lz4"
        write_config(path, cfg)
        code, answer = post(agent, "/config/reload")
        assert code == 503, answer
        assert answer["status"] == "failed" and answer["changed"] == []
        assert "were not acknowledged within dispatcher.drain_timeout (2s)" in answer["errors"][0]
        assert metric(agent.metrics(), "config_reloads_total", status="failed") == 1.0
        # Still the running configuration: the sink kept its compression, the source its lines.
        assert agent.get("/stats")["sinks"]["kafka_sink"]["outstanding"] == 500
        assert _lines_read(agent) == 500
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def test_a_reload_adds_a_sink_and_a_route_and_each_line_reaches_the_sinks_of_its_moment(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    out = tmp_path / "out"
    files = [tmp_path / "logs" / "a.log"]
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: _lines_read(agent) > 3000, 60, "lines flowing")
        cfg["sinks"]["local_file"] = {
            "enabled": True,
            "directory": str(out),
            "filename_pattern": "{source_type}.log",
        }
        cfg["routes"] = [{"source_types": ["file"], "sinks": ["local_file"]}]
        write_config(path, cfg)
        code, answer = post(agent, "/config/reload")
        assert code == 200, answer
        assert answer["changed"] == ["sinks.local_file", "routes"]
        assert writer.wait(120) == 0
        wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")
        wait_until(lambda: _lines_read(agent) == LINES, 60, "every line read")
        health = agent.get("/health")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    in_kafka = consume_all(bootstrap, [topics[t] for t in ROUTED])
    local = [orjson.loads(line) for line in (out / "file.log").read_bytes().splitlines()]
    assert {s["name"] for s in health["services"]["sinks"]} == {"kafka_sink", "local_file_sink"}
    # Before the reload the lines went to Kafka only, after it to the file only: each line once.
    missing, duplicated = missing_and_duplicated(in_kafka, files)
    assert len(missing) == len(local) > 0 and duplicated == 0
    on_disk = {line for f in files for line in f.read_text().splitlines()}
    assert {r["message"] for r in local} == {m for _f, m in missing} and len(local) == len(on_disk) - len(
        in_kafka
    )
