"""Benchmark options, the agent config it writes, and the ceiling's producer properties."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from log_capturer.config import load_config
from log_capturer.config.schema import KafkaSinkConfig
from log_capturer.devtools.bench import SCENARIOS, BenchError, BenchOptions
from log_capturer.devtools.bench.ceiling import cli_properties
from log_capturer.devtools.bench.harness import MAX_LINES_PER_SECOND, Bench, by_thread
from log_capturer.sinks.kafka.client import producer_config


def test_scenarios_are_the_design_documents() -> None:
    assert {n: (s.rate, s.duration) for n, s in SCENARIOS.items()} == {
        "baseline": (1000, 300),
        "high": (10_000, 300),
        "peak": (20_000, 120),
        "max": (0, 10),
    }


def test_line_counts(tmp_path: Path) -> None:
    assert Bench(BenchOptions("peak", out_dir=tmp_path)).expected == 2_400_000
    assert Bench(BenchOptions("high", duration=5, out_dir=tmp_path)).expected == 50_000
    assert Bench(BenchOptions("max", duration=2, out_dir=tmp_path)).expected == 2 * MAX_LINES_PER_SECOND
    assert Bench(BenchOptions("max", lines=1234, out_dir=tmp_path)).expected == 1234


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="unknown scenario"):
        Bench(BenchOptions("huge", out_dir=tmp_path))
    with pytest.raises(BenchError, match="ceiling"):
        Bench(BenchOptions(ceiling="java", out_dir=tmp_path))
    with pytest.raises(BenchError, match="no line"):
        Bench(BenchOptions("baseline", duration=0, out_dir=tmp_path))


def test_the_agent_config_is_valid_and_merges_a_tuning_file(tmp_path: Path) -> None:
    tuning = tmp_path / "tuning.yaml"
    tuning.write_text(
        yaml.safe_dump({"files_config": {"poll_interval": "10ms"}, "dispatcher": {"worker_count": 4}})
    )
    b = Bench(BenchOptions("baseline", bootstrap="127.0.0.1:9", agent_config=tuning, out_dir=tmp_path))
    topics = {
        n: f"x-{n}"
        for n in (
            "logs",
            "logs-high-priority",
            "logs-normal-priority",
            "logs-low-priority",
            "logs-dlq",
            "log-capturer-positions",
        )
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(b._agent_config(topics)))
    cfg = load_config(path)
    assert cfg.files_config.poll_interval == 0.01
    assert cfg.dispatcher.worker_count == 4
    k = cfg.sinks.kafka
    assert (k.required_acks, k.compression, k.brokers) == (-1, "zstd", ["127.0.0.1:9"])
    assert k.priority_routing.high_topic == "x-logs-high-priority" and k.topic == "x-logs"
    assert k.partitioning.enabled and k.partitioning.key_field == "tenant_id"


def test_ceiling_gets_the_agents_producer_properties() -> None:
    props = cli_properties(
        producer_config(KafkaSinkConfig(compression="zstd", required_acks=-1, batch_timeout=0.02))
    )
    assert props["compression.type"] == "zstd"
    assert props["acks"] == "all"
    assert props["enable.idempotence"] == "true"
    assert props["linger.ms"] == "20"
    assert props["client.id"] == "log-capturer-bench-ceiling"
    assert all(isinstance(v, str) for v in props.values())


def test_machine_info_names_the_clients() -> None:
    import confluent_kafka

    from log_capturer.devtools.bench.system import machine_info

    info = machine_info()
    assert info["confluent_kafka"] == confluent_kafka.__version__
    assert info["librdkafka"] == confluent_kafka.libversion()[0]
    assert info["cores"] >= 1 and info["memory_gib"] > 0
    assert info["kcat"] is not None and "librdkafka 2." in info["kcat"]


def test_bench_files_split_evenly_between_workers(tmp_path: Path) -> None:
    from collections import Counter

    from log_capturer.devtools.bench.harness import bench_files
    from log_capturer.workers.shard import shard_of

    assert bench_files(tmp_path, 3, 1) == [tmp_path / f"bench-{i}.log" for i in range(3)]
    for count, workers in ((4, 2), (5, 2), (6, 3), (2, 4)):
        files = bench_files(tmp_path, count, workers)
        assert len(set(files)) == count
        per = Counter(shard_of(str(f), workers) for f in files)
        assert max(per.values()) - min(per.get(w, 0) for w in range(workers)) <= 1, (count, workers, per)


def test_agent_src_goes_first_on_the_agents_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert Bench(BenchOptions("max", out_dir=tmp_path))._agent_env() is None  # the agent inherits ours
    env = Bench(BenchOptions("max", out_dir=tmp_path, agent_src=tmp_path / "before"))._agent_env()
    assert env is not None
    assert env["PYTHONPATH"] == f"{tmp_path / 'before'}{os.pathsep}/elsewhere"


def test_cpu_by_thread_is_per_line_largest_first_without_the_idle_ones() -> None:
    seconds = {"log-capturer": 1.0, "rdk:broker": 2.5, "dispatch": 2.0, "status": 0.000001}
    out = by_thread(seconds, 1_000_000)
    assert list(out.items()) == [("rdk:broker", 2.5), ("dispatch", 2.0), ("log-capturer", 1.0)]
    assert by_thread(seconds, 0) == {}
