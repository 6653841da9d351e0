"""``sinks.kafka.headers``: the values of each header, and those of a parked JSON record."""

from __future__ import annotations

import orjson

from log_capturer.sinks.kafka.headers import HOST, headers_for, headers_of_record


def test_the_headers_asked_for_in_that_order_labels_as_a_json_object() -> None:
    got = headers_for(["labels", "level", "host", "source_id"], "error", "file", "/a.log", {"env": "prod"})
    assert got == [
        ("labels", b'{"env":"prod"}'),
        ("level", b"error"),
        ("host", HOST),
        ("source_id", b"/a.log"),
    ]
    assert headers_for(["labels"], "", "file", "/a.log") == [("labels", b"{}")]


def test_a_json_record_gives_its_headers_back_and_other_records_empty_values() -> None:
    doc = {"level": "warn", "source_type": "file", "source_id": "/a.log", "labels": {"team": "a b"}}
    names = ["level", "source_type", "source_id", "labels"]
    assert headers_of_record(names, orjson.dumps(doc)) == [
        ("level", b"warn"),
        ("source_type", b"file"),
        ("source_id", b"/a.log"),
        ("labels", b'{"team":"a b"}'),
    ]
    assert headers_of_record(names, b"not json") == [
        ("level", b""),
        ("source_type", b""),
        ("source_id", b""),
        ("labels", b"{}"),
    ]
    assert headers_of_record([], b"{}") is None
