"""``bench --source kafka``'s own logic: the agents' configuration. The
run itself (Kafka, VictoriaLogs, the agents) is what ``log-capturer bench --source kafka`` does
against real servers; its results are in BENCHMARKS.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from log_capturer.config import load_config
from log_capturer.devtools.bench.kafka_consumer import (
    KafkaBenchError,
    Options,
    agent_config,
    run_kafka_consumer_bench,
)


@pytest.mark.parametrize("sink", ["loki", "elasticsearch"])
def test_the_agent_config_is_valid_and_the_benchs_own_keys_win(tmp_path: Path, sink: str) -> None:
    import yaml

    opts = Options(
        sink=sink,
        agent_config={"kafka": {"batch_size": 20_000, "topics": ["other"]}, "server": {"port": 1}},
    )
    cfg, api = agent_config(tmp_path, "127.0.0.1:9", "t1", "g1", sink, "http://127.0.0.1:9428", opts, "tag")
    assert cfg["kafka"]["batch_size"] == 20_000  # tuning is merged
    assert (cfg["kafka"]["topics"], cfg["kafka"]["group_id"], cfg["server"]["port"]) == (["t1"], "g1", api)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    assert loaded.kafka.enabled and not loaded.files_config.enabled
    assert getattr(loaded.sinks, sink).enabled and not loaded.sinks.kafka.enabled


@pytest.mark.parametrize(
    ("opts", "why"),
    [
        (Options(sink="kafka"), "--sink is loki or elasticsearch"),
        (Options(consumers=3, partitions=2), "at most --partitions"),
    ],
)
def test_options_it_cannot_run_are_refused_before_any_server_starts(
    tmp_path: Path, opts: Options, why: str
) -> None:
    with pytest.raises(KafkaBenchError, match=why):
        run_kafka_consumer_bench(opts, tmp_path, Console(file=open(os.devnull, "w")))  # noqa: SIM115
    assert list(tmp_path.iterdir()) == []
