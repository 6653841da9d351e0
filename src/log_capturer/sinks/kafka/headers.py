"""Kafka headers of a record (``sinks.kafka.headers``), the same whether it is sent by the sink,
or replayed from the DLQ by the agent or by ``log-capturer dlq replay``."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

#: A record's headers, as confluent-kafka takes them.
Headers = list[tuple[str, str | bytes | None]]

HOST = socket.gethostname().encode()


def headers_for(
    names: Sequence[str],
    level: str,
    source_type: str,
    source_id: str,
    labels: Mapping[str, Any] | None = None,
) -> Headers:
    """The headers ``names`` asks for, with these values, in that order (``labels`` as a JSON
    object)."""
    values = {
        "level": level.encode(),
        "source_type": source_type.encode(),
        "source_id": source_id.encode(),
        "labels": orjson.dumps(dict(labels or {})),
        "host": HOST,
    }
    return [(name, values[name]) for name in names if name in values]


def headers_of_record(names: Sequence[str], value: bytes) -> Headers | None:
    """The headers of an encoded record (a DLQ entry's), read from its JSON; None when none are
    configured. A record that is not a JSON object gets empty values."""
    if not names:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    labels = doc.get("labels")
    return headers_for(
        names,
        str(doc.get("level", "")),
        str(doc.get("source_type", "")),
        str(doc.get("source_id", "")),
        labels if isinstance(labels, dict) else None,
    )
