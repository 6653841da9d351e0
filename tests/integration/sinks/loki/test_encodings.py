"""``sinks.loki.encoding`` (and ``line_format``, its short form): every codec's line read back from
a real VictoriaLogs (its Loki push API) with LogsQL."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Origin
from tests.conformance.test_sink_conformance import Rig, wait_committed
from tests.integration.sinks.loki.test_loki_sink import Section, chunk, submit

pytestmark = pytest.mark.integration

LINES = ['GET /a 200 "ok"', "été ✓ level=info", "x=1 back\\slash", "plain words"]


def ship(victorialogs: LocalVictoriaLogs, tmp_path: Path, **section: Any) -> list[dict[str, Any]]:
    """Send LINES with this section (its own job label, no other stream label); the entries."""
    job = f"enc-{uuid.uuid4().hex[:10]}"
    sec = Section(victorialogs, default_labels={"job": job}, label_fields={}, source_labels=False, **section)
    cp = Checkpoint()
    c = chunk(Origin("file", "/var/log/app.log", {"app": "shop", "team": "core"}), list(LINES))
    with Rig(sec, tmp_path, dispatcher={"batch_timeout": "10ms"}) as rig:  # type: ignore[arg-type]
        submit(rig, [c], cp)
        wait_committed({cp: len(LINES)}, 30, "the lines delivered")
        rig.assert_acknowledged_once()
    rows = victorialogs.query(f'{{job="{job}"}}')
    assert len(rows) == len(LINES), rows
    return rows


def own_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What the line put in the entry (VictoriaLogs parses a JSON line into fields)."""
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "job"}


def parse_logfmt(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    pair = re.compile(r'([^ ="]+)=("(?:[^"\\]|\\.)*"|[^ "=]*)(?: |$)')
    while pos < len(text):
        m = pair.match(text, pos)
        assert m, f"not logfmt at {pos}: {text!r}"
        value = m.group(2)
        out[m.group(1)] = orjson.loads(value) if value.startswith('"') else value
        pos = m.end()
    return out


@pytest.mark.parametrize("section", [{"encoding": {"codec": "raw"}}, {"line_format": "message"}])
def test_raw_is_the_line_as_read(
    victorialogs: LocalVictoriaLogs, tmp_path: Path, section: dict[str, Any]
) -> None:
    rows = ship(victorialogs, tmp_path, **section)
    assert sorted(r["_msg"] for r in rows) == sorted(LINES)


@pytest.mark.parametrize(
    "section",
    [
        {"encoding": {"codec": "logfmt"}},
        {"line_format": "key_value"},
        {"encoding": {"codec": "logfmt"}, "push_format": "json"},
    ],
)
def test_logfmt_reads_back_as_the_record_without_its_timestamp(
    victorialogs: LocalVictoriaLogs, tmp_path: Path, section: dict[str, Any]
) -> None:
    rows = ship(victorialogs, tmp_path, **section)
    got = sorted((parse_logfmt(r["_msg"]) for r in rows), key=lambda d: str(d["message"]))
    assert got == sorted(
        (
            {
                "message": line,
                **({"level": "info"} if "level=info" in line else {}),  # found by the analysis
                "source_type": "file",
                "source_id": "/var/log/app.log",
                "labels.app": "shop",
                "labels.team": "core",
            }
            for line in LINES
        ),
        key=lambda d: d["message"],
    )  # no level found: logfmt leaves it out


def test_json_with_paths_and_unix_ms_timestamp(victorialogs: LocalVictoriaLogs, tmp_path: Path) -> None:
    rows = ship(
        victorialogs,
        tmp_path,
        encoding={"only_fields": ["timestamp", "message", "labels.app"], "timestamp_format": "unix_ms"},
    )
    for r in rows:
        fields = own_fields(r)
        assert set(fields) == {"timestamp", "message", "labels.app"}, r
        assert fields["labels.app"] == "shop" and fields["message"] in LINES
        assert fields["timestamp"].isdigit() and len(fields["timestamp"]) == 13


def test_the_default_json_line_is_the_record_without_its_timestamp(
    victorialogs: LocalVictoriaLogs, tmp_path: Path
) -> None:
    rows = ship(victorialogs, tmp_path, encoding={"except_fields": ["labels.team"]})
    for r in rows:
        fields = own_fields(r)
        assert "timestamp" not in fields and "labels.team" not in fields, r
        assert fields["labels.app"] == "shop" and fields["source_type"] == "file"
    assert sorted(r["message"] for r in rows) == sorted(LINES)
