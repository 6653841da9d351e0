"""Type stub of ``_walk.c``: OTLP log requests' protobuf walked in C (see ``decode.Decoder._walked``).

Each function returns None where the request must be left to the Python walk (protobuf decides).
"""

from collections.abc import Callable
from typing import Any

def scopes(body: bytes, /) -> list[tuple[int, bytes, bytes, int, int]] | None:
    """One entry per ScopeLogs, in order: (index of its ResourceLogs, the Resource's bytes, the
    InstrumentationScope's bytes, where the ScopeLogs' fields start and end in ``body``)."""

def records(
    body: bytes,
    start: int,
    end: int,
    common: dict[str, Any],
    n: int,
    level_of: Callable[[int, str], str | None],
    dumps: Callable[[Any], bytes],
    common_json: bytes | None = None,
    /,
) -> (
    tuple[
        list[str],
        list[Any],
        list[str | None],
        list[int | None],
        list[tuple[int, str, str, int, int]],
        int,
    ]
    | None
):
    """The LogRecords of the ScopeLogs at ``body[start:end]`` as (lines, fields, levels, stamps,
    rejected, count): ``common`` first in each record's fields; ``n`` records of the request
    before them; rejected: (record number, reason, text, the record's start and end in ``body``).
    Each record's fields are a dict or None; with ``common_json`` (``dumps(common)``) the bytes
    ``dumps`` gives for that dict, written from the wire (``common_json``'s members first), or
    the dict itself where JSON would not carry it exactly (an attribute key given twice, a
    double that is not finite). ValueError: start/end outside ``body``; TypeError: a
    ``common_json`` that is not a JSON object as bytes."""
