"""Parking keeps what a replay needs to send a record exactly as it would have been sent."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from log_capturer.config.schema import DispatcherDLQConfig
from log_capturer.engine.parking import Parking
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.reliability.dlq.replay import record_of

ENVELOPE = b'{"timestamp":"2026-11-25T06:40:00.000000000Z","message":"hi","level":"info","fields":{}}'


@pytest.fixture
def parking(tmp_path: Path) -> Parking:
    store = DeadLetterStore(DispatcherDLQConfig(directory=str(tmp_path / "dlq")), Metrics())
    return Parking(store, Metrics(), "kafka", "kafka")


def parked_and_read_back(
    parking: Parking, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> dict:
    entry = parking.entry(value, "logs", "k1", "send_error", "boom", headers=headers)
    assert parking.park([entry])
    assert parking.store is not None
    [(_, doc)] = parking.store.read()
    return doc


def test_a_json_envelope_is_parked_as_before(parking: Parking) -> None:
    doc = parked_and_read_back(parking, ENVELOPE)
    assert doc["original_entry"] == orjson.loads(ENVELOPE)
    assert "value" not in doc and "value_base64" not in doc and "headers" not in doc
    assert record_of(doc).value == ENVELOPE


@pytest.mark.parametrize(
    "value",
    [
        b"GET /health 200 - plain text",
        b"[1,2]",
        'été "quoted"'.encode(),
        b"",
    ],
)
def test_a_raw_record_is_replayed_byte_for_byte_with_its_headers(parking: Parking, value: bytes) -> None:
    headers = [("level", b"error"), ("source_id", b"/var/log/app.log"), ("labels", b'{"env":"prod"}')]
    doc = parked_and_read_back(parking, value, headers)
    assert doc["original_entry"] == {"raw": value.decode()}
    rec = record_of(doc)
    assert (rec.value, rec.topic, rec.key) == (value, "logs", "k1")
    assert rec.headers == headers


def test_json_not_written_as_orjson_writes_it_stays_readable_and_is_replayed_as_it_was(
    parking: Parking,
) -> None:
    value = b'{"message": "hi",  "n":1}'
    doc = parked_and_read_back(parking, value)
    assert doc["original_entry"] == {"message": "hi", "n": 1}
    assert doc["value"] == value.decode()
    assert record_of(doc).value == value


def test_bytes_that_are_not_utf8_are_kept_in_base64(parking: Parking) -> None:
    value = b"bad \xff\xfe byte"
    doc = parked_and_read_back(parking, value)
    assert "value" not in doc and doc["value_base64"]
    assert record_of(doc).value == value
    assert record_of(doc).headers is None
