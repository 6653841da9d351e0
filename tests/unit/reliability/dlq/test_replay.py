"""The record of a DLQ entry (``record_of``), old entries and entries with their exact value."""

from __future__ import annotations

import base64

import orjson

from log_capturer.reliability.dlq.replay import record_of


def test_an_old_entry_replays_its_json_record() -> None:
    doc = {"entry_id": "e1", "topic": "logs", "key": "k", "original_entry": {"message": "hi", "fields": {}}}
    rec = record_of(doc)
    assert rec.value == orjson.dumps(doc["original_entry"])
    assert (rec.entry_id, rec.topic, rec.key, rec.headers) == ("e1", "logs", "k", None)


def test_the_exact_value_wins_over_the_readable_one() -> None:
    doc = {"entry_id": "e1", "topic": "t", "original_entry": {"raw": "x"}, "value": "x  y"}
    assert record_of(doc).value == b"x  y"
    doc = {
        "entry_id": "e1",
        "topic": "t",
        "original_entry": {"raw": "x"},
        "value_base64": base64.b64encode(b"\xff").decode(),
    }
    assert record_of(doc).value == b"\xff"


def test_a_broken_base64_value_falls_back_to_the_json_record_and_bad_headers_are_skipped() -> None:
    doc = {
        "entry_id": "e1",
        "topic": "t",
        "original_entry": {"raw": "x"},
        "value_base64": "%%%",
        "headers": [["level", "error"], ["bad"], "nope", ["n", None]],
    }
    rec = record_of(doc)
    assert rec.value == b'{"raw":"x"}'
    assert rec.headers == [("level", b"error"), ("n", None)]
