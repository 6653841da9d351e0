"""What a new configuration changes, and which changes need a restart (log_capturer.reload)."""

from __future__ import annotations

from log_capturer.config.schema import Config
from log_capturer.reload import Outcome, changes, restart_only_changes


def config(**sections: object) -> Config:
    base: dict[str, object] = {"sinks": {"kafka": {"enabled": True, "brokers": ["127.0.0.1:9092"]}}}
    base.update(sections)
    return Config.model_validate(base)


def test_the_same_configuration_changes_nothing() -> None:
    assert not changes(config(), config())
    assert restart_only_changes(config(), config()) == []


def test_changed_sections_are_named_by_kind() -> None:
    new = config(
        files_config={"watch_directories": ["/var/log/other"]},
        sinks={"kafka": {"enabled": True, "brokers": ["127.0.0.1:9092"], "compression": "lz4"}},
    )
    got = changes(config(), new)
    assert (got.sources, got.sinks, got.processing) == (["files_config"], ["kafka"], False)
    assert got.sections == ["files_config", "sinks.kafka"]


def test_a_section_without_a_component_changes_the_source_that_reads_it() -> None:
    got = changes(config(), config(kubernetes={"enabled": True}))
    assert got.sources == ["container_monitor"]


def test_only_the_pipelines_file_changed_reloads_processing_when_it_is_on(tmp_path: object) -> None:
    on = {"enabled": True, "pipelines_file": "configs/pipelines.yaml"}
    assert changes(config(processing=on), config(processing=on), pipelines_changed=True).processing
    assert not changes(config(), config(), pipelines_changed=True)


def test_restart_only_settings_name_every_changed_key() -> None:
    new = config(
        server={"port": 9999}, dispatcher={"queue_size": 10, "batch_size": 7}, stdin={"enabled": True}
    )
    problems = restart_only_changes(config(), new)
    assert [p.split(":")[0] for p in problems] == [
        "server.port",
        "dispatcher.batch_size, dispatcher.queue_size",
        "stdin.enabled",
    ]
    # stdin is a source section, but it is never rebuilt by a reload.
    assert "stdin" not in changes(config(), new).sources


def test_outcomes_answer_with_their_http_status() -> None:
    assert Outcome("reloaded", ["sinks.kafka"]).http_status == 200
    assert Outcome.refused(["x: bad"]).as_dict() == {"status": "refused", "changed": [], "errors": ["x: bad"]}
    assert Outcome.refused([]).http_status == 422
    assert Outcome("failed").http_status == 503


def test_changed_routes_are_applied() -> None:
    sinks = {
        "kafka": {"enabled": True, "brokers": ["127.0.0.1:9092"]},
        "local_file": {"enabled": True, "directory": "/tmp/logs"},
    }
    new = config(sinks=sinks, routes=[{"source_types": ["syslog"], "sinks": ["local_file"]}])
    got = changes(config(sinks=sinks), new)
    assert got.routes and got.sections == ["routes"]


def test_with_exactly_once_the_file_source_and_the_kafka_sink_need_a_restart() -> None:
    kafka = {"enabled": True, "brokers": ["127.0.0.1:9092"], "required_acks": -1}
    eos = {**kafka, "delivery": "exactly_once"}
    base = {"http_ingest": {"enabled": False}}
    old = config(**base, sinks={"kafka": eos})
    problems = restart_only_changes(old, config(**base, sinks={"kafka": {**eos, "compression": "lz4"}}))
    assert problems == [
        "sinks.kafka: cannot change while the agent runs with sinks.kafka.delivery: exactly_once; "
        "restart the agent to apply it"
    ]
    moved = config(**base, sinks={"kafka": eos}, files_config={"watch_directories": ["/srv/x"]})
    assert [p.split(":")[0] for p in restart_only_changes(old, moved)] == ["files_config"]
    # Turning it on (or off) is a change of sinks.kafka: a restart too.
    assert restart_only_changes(config(**base, sinks={"kafka": kafka}), old)
    # At least once, both reload as before.
    assert restart_only_changes(config(), config(files_config={"watch_directories": ["/srv/x"]})) == []
