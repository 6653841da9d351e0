"""The many-files scenario's pieces that need no agent: file layout, line marks, percentiles, options."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from log_capturer.devtools.bench.manyfiles import (
    ERROR_LINE,
    FILES_PER_DIRECTORY,
    MARK,
    ManyFilesBench,
    ManyFilesError,
    ManyFilesOptions,
    _paths,
    _percentile,
    _read_time_ms,
)


def test_files_are_spread_over_directories_of_a_hundred(tmp_path: Path) -> None:
    paths = _paths(tmp_path, 250)
    assert len(set(paths)) == 250
    dirs = {p.parent for p in paths}
    assert len(dirs) == 3 and all(p.suffix == ".log" for p in paths)
    assert sum(1 for p in paths if p.parent == paths[0].parent) == FILES_PER_DIRECTORY


def test_an_active_line_carries_its_file_sequence_and_write_time() -> None:
    ns = time.time_ns()
    line = b"mf-line f=%d seq=%d ns=%d\n" % (42, 7, ns)
    # The line arrives inside the agent's JSON record.
    m = MARK.search(b'{"message":"' + line.rstrip() + b'","level":"info"}')
    assert m is not None and (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (42, 7, ns)
    assert MARK.search(b"mf-init f00001.log") is None


def test_percentiles_and_error_lines() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (_percentile(values, 0.5), _percentile(values, 0.99)) == (51.0, 100.0)
    assert _percentile([], 0.99) == 0.0
    log = '{"level": "ERROR", "msg": "x"}\n{"level":"CRITICAL"}\n{"level": "INFO"}\n'
    assert len(ERROR_LINE.findall(log)) == 2


def test_the_read_time_splits_the_latency_into_its_two_stages() -> None:
    seconds: dict[bytes, int] = {}
    value = b'{"timestamp":"2026-12-06T20:00:01.123456789Z","message":"mf-line f=1 seq=2 ns=3"}'
    assert _read_time_ms(value, seconds) == pytest.approx(1796587201123.456789)
    assert seconds == {b"2026-12-06T20:00:01": 1796587201}
    assert _read_time_ms(b'{"timestamp":"2026-12-06T20:00:01Z","message":"x"}', seconds) == 1796587201000
    assert _read_time_ms(b'{"message":"no time"}', seconds) is None


@pytest.mark.parametrize(("files", "active", "rate"), [(0, 0, 1.0), (10, 11, 1.0), (10, 5, 0.0)])
def test_impossible_options_are_refused(tmp_path: Path, files: int, active: int, rate: float) -> None:
    with pytest.raises(ManyFilesError):
        ManyFilesBench(ManyFilesOptions("127.0.0.1:1", tmp_path, files, active, rate))


def test_agent_config_tunes_the_agent_but_not_what_the_scenario_sets(tmp_path: Path) -> None:
    """``--agent-config`` goes under the scenario's config: its tuning is kept, the scenario's own
    keys (brokers, topic, directories, acks, compression, keys) win, the watcher is the one asked."""
    tuning = tmp_path / "tuning.yaml"
    tuning.write_text(
        "sinks:\n  kafka:\n    batch_timeout: 20ms\n    required_acks: 1\n    brokers: [10.0.0.1:9092]\n"
        "dispatcher:\n  worker_count: 1\n"
    )
    opts = ManyFilesOptions("127.0.0.1:1", tmp_path, 10, 1, 1.0, "inotify", agent_config=tuning)
    config = ManyFilesBench(opts)._config()
    kafka = config["sinks"]["kafka"]
    assert (kafka["batch_timeout"], kafka["required_acks"], kafka["brokers"]) == ("20ms", -1, ["127.0.0.1:1"])
    assert config["dispatcher"]["worker_count"] == 1 and "dlq_config" in config["dispatcher"]
    assert config["files_config"]["watcher"] == "inotify"
    bare = ManyFilesBench(ManyFilesOptions("127.0.0.1:1", tmp_path, 10, 1, 1.0))._config()
    assert "batch_timeout" not in bare["sinks"]["kafka"]
