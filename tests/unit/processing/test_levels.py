from __future__ import annotations

import pytest

from log_capturer.processing import Analyzer
from log_capturer.processing.levels import detect_level
from log_capturer.record import Chunk, Origin


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level":"WARNING","msg":"x"}', "warn"),
        ('{"severity":"Error"}', "error"),
        ('{"lvl":"dbg"}', "debug"),
        ('{"level":50,"msg":"pino"}', "error"),
        ('{"msg":"no level"}', ""),
        ('{"level": {"nested": 1}}', ""),
        ("ts=1 level=debug msg=hi", "debug"),
        ('ts=1 level="INFO" msg=hi', "info"),
        ("ts=1 severity=crit", "critical"),
        ("2024-01-01 12:00:00 ERROR boom", "error"),
        ("[WARN] disk", "warn"),
        ("[warn] lower case", "warn"),
        ("2024/01/01 00:00:00 [error] 123#0: x", "error"),
        ("ERROR:root:msg", "error"),
        ("INFO  [main] x", "info"),
        ("<Critical> z", "critical"),
        ("TRACE x", "trace"),
        ("Fatal: x", "fatal"),
        ("W1125 12:00:00.000 1 x.go:1] w", "warn"),
        ("E1125 12:00:00.000 1 x.go:1] e", "error"),
        ("E/ActivityManager: x", "error"),
        ("W 12:00:01 filling", "warn"),
        ("I am here", ""),
        ("hello world", ""),
        ("no errors here", ""),
        ("foo.error.bar", ""),
        ("{not json ERROR", "error"),
        ("x" * 200 + " ERROR late", ""),
        ("LEVEL=Warning msg=x", "warn"),
        ("seq=2 took=3ms WARN slow", "warn"),
        ("error-prone code ran, then Notice", "info"),
        ("x-error and y.error are names", ""),
        ("ERRORS were none", ""),
        ("12:00 [tenant-01] seq=2 Fatal", "fatal"),
    ],
)
def test_detect_level(line: str, level: str) -> None:
    assert detect_level(line) == level


def test_analyzer_levels_and_keys() -> None:
    chunk = Chunk(
        Origin("file", "/a.log"),
        [
            '{"level":"error","tenant_id":"t1"}',
            "level=info tenant_id=t2",
            'tenant_id="t 3" x',
            "plain",
            '{"tenant_id":7}',
        ],
    )
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.levels == ["error", "info", "", "", ""]
    assert chunk.keys == ["t1", "t2", "t 3", None, "7"]


def test_analyzer_skips_keys_when_the_label_carries_them() -> None:
    chunk = Chunk(Origin("file", "/a.log", {"tenant_id": "acme"}), ['{"tenant_id":"t1"}'])
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.keys is None


def test_analyzer_without_key_field() -> None:
    chunk = Chunk(Origin("file", "/a.log"), ["ERROR x"])
    Analyzer(None).analyze(chunk)
    assert chunk.levels == ["error"] and chunk.keys is None


def test_analyzer_fast_path_agrees_with_detect_level() -> None:
    """The analyzer's inlined JSON path gives what detect_level gives, line by line."""
    lines = [
        '{"level":"info","tenant_id":"a"}',
        '{"level":"INFO","tenant_id":"b"}',
        '{"level":" Warning ","tenant_id":1}',
        '{"level":null,"severity":"error"}',
        '{"level":30}',
        '{"level":true}',
        '{"level":"nonsense","tenant_id":{"x":1}}',
        '{"severity":"crit","tenant_id":[1]}',
        '{"levelname":"DEBUG","tenant_id":null}',
        '{"level":"fatal"',
        "[1,2]",
        "{} ERROR trailing",
        "level=warn tenant_id=c",
    ]
    chunk = Chunk(Origin("file", "/a.log"), lines)
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.levels == [detect_level(line) for line in lines]
    assert chunk.keys == ["a", "b", "1", None, None, None, None, None, None, None, None, None, "c"]
