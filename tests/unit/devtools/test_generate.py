"""The load generator's lines, pacing and file target (no network)."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.generate import (
    LINE_MARK,
    POOL_SIZE,
    SYSLOG_SEVERITY,
    Batch,
    FileTarget,
    GenerateError,
    LineFactory,
    SyslogTarget,
    parse_levels,
    rfc3339_us,
    run,
)
from log_capturer.processing import Analyzer
from log_capturer.processing.multiline import JAVA_CONTINUATION
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.encode import encode_chunk

FORMATS = ("json", "logfmt", "plain", "mixed")
EMIT_NS = 1_795_590_000_123_456_789


def test_parse_levels_reads_weights_and_rejects_bad_input() -> None:
    assert parse_levels("info=70, error=30") == (("info", 70.0), ("error", 30.0))
    assert parse_levels("warn") == (("warn", 1.0),)
    with pytest.raises(GenerateError, match="unknown level 'verbose'"):
        parse_levels("verbose=1")
    with pytest.raises(GenerateError, match="not a number"):
        parse_levels("info=lots")
    with pytest.raises(GenerateError, match="negative"):
        parse_levels("info=-1")
    with pytest.raises(GenerateError, match="positive weight"):
        parse_levels("info=0")


def test_rfc3339_us() -> None:
    assert rfc3339_us(EMIT_NS) == "2026-11-25T07:00:00.123456Z"


@pytest.mark.parametrize("fmt", FORMATS)
def test_lines_have_the_requested_length_seq_and_emit_time(fmt: str) -> None:
    f = LineFactory(fmt, 150, seed=7)
    batch = f.batch(995, 10_000, EMIT_NS)
    if fmt == "mixed":  # each line the length its template drew (see the next test)
        assert {len(line.split("\n")[0]) for line in batch.lines} <= set(range(80, 301))
    else:
        assert {len(line) for line in batch.lines} == {150}
    assert batch.first_seq == 995
    for i, line in enumerate(batch.lines):
        m = LINE_MARK.search(line.encode())
        assert m is not None, line
        assert int(m.group(2)) == 995 + i
        assert m.group(1).decode() == "2026-11-25T07:00:00.123456"
    if fmt == "json":
        doc = orjson.loads(batch.lines[0])
        assert doc["seq"] == 995 and doc["time"] == "2026-11-25T07:00:00.123456Z"


def test_short_line_bytes_keep_every_field() -> None:
    batch = LineFactory("json", 10, levels="info=1").batch(0, 3, EMIT_NS)
    for i, line in enumerate(batch.lines):
        doc = orjson.loads(line)
        assert doc["seq"] == i and doc["msg"] == "" and doc["tenant_id"].startswith("tenant-")


def test_same_seed_same_lines_other_seed_other_lines() -> None:
    a = LineFactory("mixed", 150, seed=1).batch(0, 2000, EMIT_NS).lines
    b = LineFactory("mixed", 150, seed=1).batch(0, 2000, EMIT_NS).lines
    c = LineFactory("mixed", 150, seed=2).batch(0, 2000, EMIT_NS).lines
    assert a == b
    assert sum(x != y for x, y in zip(a, c, strict=True)) > 1900
    # Only the time changes with the emit time.
    later = LineFactory("mixed", 150, seed=1).batch(0, 2000, EMIT_NS + 10**9).lines
    assert [x.replace("07:00:00", "") for x in a] == [x.replace("07:00:01", "") for x in later]


def test_mixed_format_has_the_issues_shares_lengths_and_stack_traces() -> None:
    f = LineFactory("mixed", 150)
    batch = f.batch(0, POOL_SIZE, EMIT_NS)
    shares = Counter(f.format_of(i) for i in range(POOL_SIZE))
    assert shares.keys() == {"json", "logfmt", "plain"}
    assert 0.36 < shares["plain"] / POOL_SIZE < 0.44
    assert 0.26 < shares["logfmt"] / POOL_SIZE < 0.34
    assert 0.26 < shares["json"] / POOL_SIZE < 0.34
    heads = [line.split("\n")[0] for line in batch.lines]
    sizes = [len(h) for h in heads]
    assert 80 <= min(sizes) < 100 and 280 < max(sizes) <= 300
    assert 170 < sum(sizes) / len(sizes) < 210
    traces = [i for i, line in enumerate(batch.lines) if "\n" in line]
    assert traces == [500, 1500, 2500, 3500]  # one line in a thousand
    java = re.compile(JAVA_CONTINUATION)
    for i in traces:
        assert f.format_of(i) == "plain" and f.level_of(i) == "error"
        head, *rest = batch.lines[i].split("\n")
        assert " ERROR " in head and 5 <= len(rest) <= 12
        assert all(java.match(x) for x in rest)  # the java preset joins them to their line
    for i, h in enumerate(heads):
        if f.format_of(i) == "plain":
            assert re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z ", h)
        elif f.format_of(i) == "logfmt":
            assert h.startswith("ts=") and " caller=" in h and h.endswith('"')


def test_level_mix_follows_the_weights() -> None:
    f = LineFactory("json", 150, levels="info=3,error=1")
    counts = Counter(f.level_of(i) for i in range(POOL_SIZE))
    assert set(counts) == {"info", "error"}
    assert 0.70 < counts["info"] / POOL_SIZE < 0.80


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_agent_detects_the_intended_level_and_key(fmt: str) -> None:
    """The agent's own analyzer sees in each line exactly the level the generator planned."""
    f = LineFactory(fmt, 150, levels="trace=1,debug=1,info=1,warn=1,error=1,fatal=1,critical=1,none=1")
    batch = f.batch(0, POOL_SIZE, EMIT_NS)
    chunk = Chunk(Origin("file", "/var/log/x.log"), batch.lines)
    Analyzer("tenant_id").analyze(chunk)
    want = ["" if lvl == "none" else lvl for lvl in batch.levels]
    assert chunk.levels == want
    assert chunk.keys is not None
    for i, key in enumerate(chunk.keys):
        # A plain line has no key, but the mixed format's plain lines carry tenant_id=.
        assert key == (None if fmt == "plain" else batch.tenants[i])


@pytest.mark.parametrize("keys", [16, 10_000])
def test_keys_sets_the_number_of_distinct_tenants_the_agent_reads(keys: int) -> None:
    """``--keys N``: N distinct tenant_id values, each as often as the others, consecutive lines
    on different ones, the line length unchanged; the agent reads them as the record keys."""
    f = LineFactory("json", 150, keys=keys)
    batch = f.batch(0, 4 * keys, EMIT_NS)
    assert {len(line) for line in batch.lines} == {150}
    counts = Counter(batch.tenants)
    assert len(counts) == keys and set(counts.values()) == {4}
    assert all(a != b for a, b in zip(batch.tenants, batch.tenants[1:], strict=False))
    assert [f.tenant_of(i) for i in range(50)] == batch.tenants[:50]
    chunk = Chunk(Origin("file", "/var/log/x.log"), batch.lines)
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.keys == batch.tenants
    with pytest.raises(GenerateError, match="--keys"):
        LineFactory("json", 150, keys=0)


def test_seq_and_emit_time_are_found_inside_the_agents_record() -> None:
    """The harness reads seq and emit time from the JSON record the agent writes to Kafka."""
    f = LineFactory("mixed", 150)
    batch = f.batch(40, 500, EMIT_NS)
    chunk = Chunk(Origin("file", "/var/log/x.log"), batch.lines, read_time_ns=EMIT_NS + 5_000_000)
    Analyzer("tenant_id").analyze(chunk)
    for i, rec in enumerate(encode_chunk(chunk, "tenant_id")):
        m = LINE_MARK.search(rec)
        assert m is not None
        assert int(m.group(2)) == 40 + i
        emitted = datetime.fromisoformat(m.group(1).decode() + "+00:00").timestamp()
        assert emitted == pytest.approx(EMIT_NS / 1e9, abs=1e-6)


def test_run_writes_exactly_rate_times_duration_lines_in_order(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    s = run(LineFactory("logfmt", 120), FileTarget([out]), rate=5000, duration=0.5)
    lines = out.read_text().splitlines()
    assert s.lines == len(lines) == 2500
    assert s.last_seq == 2499
    assert [int(LINE_MARK.search(x.encode()).group(2)) for x in lines] == list(range(2500))  # type: ignore[union-attr]
    assert s.target_info["bytes"] == 2500 * 121
    # Emit times never go backwards.
    stamps = [LINE_MARK.search(x.encode()).group(1) for x in lines]  # type: ignore[union-attr]
    assert stamps == sorted(stamps)


def test_run_as_fast_as_possible_with_a_count_and_several_files(tmp_path: Path) -> None:
    files = [tmp_path / "a.log", tmp_path / "b.log"]
    s = run(LineFactory("plain", 100), FileTarget(files), rate=0, count=50_001)
    seqs = sorted(
        int(LINE_MARK.search(line.encode()).group(2))  # type: ignore[union-attr]
        for p in files
        for line in p.read_text().splitlines()
    )
    assert seqs == list(range(50_001))
    assert all(p.stat().st_size > 0 for p in files)
    assert s.requested_rate == 0 and s.lines == 50_001


def test_run_stops_when_asked(tmp_path: Path) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    s = run(LineFactory(), FileTarget([tmp_path / "x.log"]), rate=0, duration=600, stop=stop)
    assert 0 < s.lines <= 3 * 20_000


def test_run_needs_a_limit_and_a_valid_rate(tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="duration"):
        run(LineFactory(), FileTarget([tmp_path / "x.log"]), rate=10)
    with pytest.raises(GenerateError, match="negative"):
        run(LineFactory(), FileTarget([tmp_path / "y.log"]), rate=-1, count=1)


def test_progress_reports_lines() -> None:
    seen: list[int] = []

    class Null:
        name = "null"

        def write(self, batch: Batch) -> None:
            time.sleep(0.02)

        def close(self) -> dict[str, int]:
            return {}

    run(LineFactory(), Null(), rate=0, count=100_000, progress=lambda n, _t: seen.append(n))
    assert seen[-1] == 100_000 and seen == sorted(seen)


def test_syslog_messages_are_rfc5424_with_the_levels_severity() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        target = SyslogTarget("127.0.0.1", rx.getsockname()[1], "udp")
        batch = LineFactory("plain", 150, levels="error=1,debug=1,none=1").batch(0, 30, EMIT_NS)
        target.write(batch)
        target.close()
        rx.settimeout(5)
        got = [rx.recv(65536).decode() for _ in range(30)]
    for msg, line, level in zip(got, batch.lines, batch.levels, strict=True):
        head, _, rest = msg.partition(" ")
        assert head == f"<{8 + SYSLOG_SEVERITY[level]}>1"
        ts, host, app, procid, msgid, sd, text = rest.split(" ", 6)
        assert ts == "2026-11-25T07:00:00.123456Z" and app == "loggen" and procid.isdigit()
        assert (msgid, sd) == ("-", "-") and host
        assert text == line


def test_unknown_format_and_missing_output() -> None:
    with pytest.raises(GenerateError, match="unknown format"):
        LineFactory("xml")
    with pytest.raises(GenerateError, match="--output"):
        FileTarget([])
