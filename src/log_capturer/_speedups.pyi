"""Type stub of ``_speedups.c``: the hot path's per-line work, a chunk at a time.

Each function gives what its Python twin gives (``processing.Analyzer``, ``sinks.kafka.encode``,
``record.text_bytes_py``); the argument types are those the C code checks (``PyArg_ParseTuple``).
"""

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from log_capturer.engine.contract import Record
from log_capturer.sinks.loki.push import Entry, LazyValues

_T = TypeVar("_T")

def text_bytes(lines: list[str], /) -> int:
    """UTF-8 size of the lines' text (a lone surrogate counts 3). TypeError: not a list of str."""

def json_levels(
    lines: list[str],
    key_field: str | None,
    canonical: dict[str, str],
    numeric: dict[int, str],
    /,
) -> tuple[list[str | None], list[str | None] | None]:
    """(levels, keys): a level per line, None where the Python code must decide; keys is None
    without ``key_field``."""

def text_levels(
    lines: list[str],
    levels: list[str | None],
    keys: list[str | None] | None,
    key_field: str | None,
    canonical: dict[str, str],
    /,
) -> int:
    """``levels.level_of_text`` (and, when ``keys`` is a list, ``Analyzer._logfmt_value``) of each
    line whose level is None, written in place, for ASCII lines that do not start with ``{``;
    returns how many lines are still None (for the Python code)."""

def line_heads(lines: list[str], table: bytes, /) -> list[int]:
    """Indexes of the lines whose first character may start a match: ASCII ``c`` with
    ``table[c]`` (128 bytes) not zero, any other character, or an empty line."""

def encode(
    head: bytes,
    lines: list[str],
    levels: list[str],
    tails: dict[str, bytes],
    keys: list[str | None] | None,
    fields: dict[str | None, bytes],
    dumps: Callable[[str], bytes],
    /,
) -> list[bytes]:
    """Record i = head + JSON(lines[i]) + tails[levels[i]] + fields[keys[i]] (fields[None] without
    keys). ValueError: lists of different lengths; KeyError: a level or key without its bytes."""

def event_items(entries: list[Any], event_time: type[int], /) -> list[tuple[dict[str, Any], int]] | None:
    """[(record, int(time))] when every entry is [event_time, record] (a list or tuple of two,
    exactly those types); None otherwise."""

def forward_columns(
    message: bytes,
    message_keys: tuple[str, ...],
    level_keys: tuple[str, ...],
    slow_keys: frozenset[str],
    level_cache: dict[Any, str],
    max_distinct: int,
    /,
) -> (
    tuple[
        str,
        dict[str, Any] | None,
        list[
            tuple[
                dict[str, str] | None,
                list[str],
                list[str | None] | None,
                list[int],
                list[dict[str, Any]] | None,
            ]
        ],
    ]
    | None
):
    """(tag, option, groups) of a Fluent forward message's bytes (Forward or PackedForward mode):
    one group (labels, lines, levels, stamps, meta) per distinct labels member, as
    msgpack_values, event_items, uniform_columns and label_groups give them together; None
    where those (or the Python code after them) must decide."""

def uniform_columns(
    items: list[tuple[dict[str, Any], int | None]],
    message_keys: tuple[str, ...],
    level_keys: tuple[str, ...],
    slow_keys: frozenset[str],
    level_cache: dict[Any, str],
    /,
) -> (
    tuple[list[str], list[str | None] | None, list[dict[str, Any] | None] | None, list[int | None], bool]
    | None
):
    """(lines, levels, meta, stamps, labelled) of a batch whose records all have the same
    members, as ``Records._uniform`` reads them; None where that code must decide."""

def label_groups(
    recs: list[dict[str, Any]] | list[tuple[dict[str, Any], int | None]], max_distinct: int, /
) -> list[tuple[int, list[int]]] | None:
    """The indexes of ``recs`` (records, or (record, time) items) by their ``labels`` (as
    grouping by ``tuple(labels.items())`` does), each set with its first index, in the order of
    first records; None when a record has no labels dict, a label that is not text, or there are
    more than ``max_distinct`` sets.
    ValueError: ``max_distinct`` outside 1-512."""

def encode_raw(lines: list[str], /) -> list[bytes]:
    """Record i = the UTF-8 bytes of lines[i] (a lone surrogate as U+FFFD). TypeError: not a
    list of str."""

def encode_logfmt(
    head: bytes,
    lines: list[str],
    levels: list[str],
    tails: dict[str, bytes],
    keys: list[str | None] | None,
    fields: dict[str | None, bytes],
    /,
) -> list[bytes]:
    """Record i = head + logfmt value of lines[i] + tails[levels[i]] + fields[keys[i]], as
    :func:`encode` with logfmt's quoting."""

def agent_scan(
    values: list[bytes], keys: tuple[str, ...], message: int, time: int, level: int, /
) -> tuple[list[str], list[str] | None, list[str] | None] | None:
    """JSON objects with the members ``keys`` in that order, each member but ``keys[message]``,
    ``keys[time]`` and ``keys[level]`` (-1: none) byte for byte the first record's: those three
    members' texts (lines, times or None, levels or None). None when a record is anything else (a
    member not text, an escape ``\\u``, text that is not UTF-8, other bytes, another order)."""

def utc_stamps(texts: list[Any], /) -> list[int] | None:
    """The ns since the epoch of each ``YYYY-MM-DDTHH:MM:SS[.fraction]Z`` (1-9 fraction digits,
    years 1678-2261), as ``sources.http.source.time_ns`` reads them; None when one is anything
    else (not text, another shape, a date that does not exist). TypeError: not a list."""

def all_ascii(lines: list[Any], /) -> bool:
    """Whether every item is a str of ASCII characters only (each its own UTF-8 bytes)."""

def lookup_each(keys: list[Any], mapping: dict[Any, _T], /) -> list[_T]:
    """``[mapping[k] for k in keys]``, the dict asked only when the key is another object than
    the one before. KeyError: a key not in mapping; TypeError: not a list and a dict."""

def tally(
    topics: list[str], values: list[bytes] | list[str], bounds: tuple[float, ...], /
) -> tuple[dict[str, list[int]], int]:
    """({topic: [records, bytes, le_0, ..., le_k]}, longest record). ValueError: lists of
    different lengths, more than 32 bounds or 16 topics; TypeError: a value that is neither bytes
    nor an ASCII str (whose size is its length)."""

def encode_full(
    head: bytes,
    lines: list[str],
    levels: list[str],
    tails: dict[str, bytes],
    keys: list[str | None] | None,
    fields: dict[str | None, bytes],
    dumps: Callable[[Any], bytes],
    stamps: list[int] | None,
    heads: Mapping[int, bytes],
    meta: list[Any] | None,
    key_field: str | None,
    truncated: AbstractSet[int] | None,
    /,
) -> list[bytes]:
    """Record i = head_i + JSON(lines[i]) + tails[levels[i]] + fields_i + ``}`` (or
    ``,"truncated":true}`` for an index in ``truncated``): head_i is ``head``, or with stamps the
    head of stamps[i] (``heads[stamps[i]]`` outside 1970-9999); fields_i is dumps(meta[i]) (plus
    ``key_field: keys[i]``) when meta[i] is not empty, else fields[keys[i]] (fields[None] without
    keys): what ``sinks.kafka.encode.encode_chunk_py`` gives. A meta[i] that is bytes is a fields
    object already encoded, without key_field as a member: with key_field and keys[i], the key
    member of fields[keys[i]] (``{"<key_field>":<key>}``) is spliced in as its last member."""

def msgpack_values(
    data: bytes, event_time: Callable[[int], int], surrogates: bool = True, /
) -> tuple[list[Any], bool] | None:
    """Every msgpack value of ``data``, as msgpack decodes them (``raw=False``,
    ``strict_map_key=False``, text that is not UTF-8 with surrogateescape, or left to msgpack
    without ``surrogates``), EventTimes (extension 0 of 8 bytes) as ``event_time(ns)``; and
    whether no value holds what JSON cannot (binary, an integer map key, a surrogate). None:
    something this code leaves to msgpack (another extension, another map key, deep nesting,
    bytes that are not complete msgpack)."""

def loki_entries(
    cls: type[Entry],
    values: list[bytes] | LazyValues,
    lines: list[str] | None,
    stamps: list[int] | None,
    ts: int,
    levels: list[str],
    streams: dict[str, tuple[str, str]],
    dest: str,
    /,
) -> list[Entry]:
    """The Loki sink's entries of a chunk on its fast path (``Shaper._fast_lines_py``): entry i
    has value ``values[i]``, line ``lines[i]`` as UTF-8 (backslashreplace) or, when lines is None,
    ``values[i]`` without its timestamp member, timestamp ``stamps[i]`` (``ts`` when stamps is
    None), (stream, tenant) ``streams[levels[i]]``; values not a list (``LazyValues``, with
    lines): each entry's ``_value`` is values and its ``index`` i. TypeError: ``cls`` without
    these slots."""

def loki_protobuf(cls: type[Entry], streams: dict[str, list[Entry]], /) -> bytes:
    """``push.protobuf_body_py``: the PushRequest of the streams' entries, byte for byte."""

def bulk_body(
    cls: type[Record],
    records: list[Record],
    op_type: str,
    pipeline: str,
    doc_type: str,
    dumps: Callable[[Any], bytes],
    /,
) -> bytes:
    """``elasticsearch.bulk.body_py``: the NDJSON ``_bulk`` body of the records, byte for byte.
    TypeError: not records of ``cls``, a key neither str, bytes nor None."""

def bulk_docs(
    index: str | list[str],
    values: list[bytes],
    ids: list[str] | None,
    lo: int,
    hi: int,
    op_type: str,
    pipeline: str,
    doc_type: str,
    rename: bytes,
    dumps: Callable[[Any], bytes],
    /,
) -> bytes:
    """``elasticsearch.bulk.docs_body_py``: the NDJSON ``_bulk`` body of documents lo..hi-1 of
    the columns (``index``: one for all, or one per document; a value starting with
    ``{"timestamp":`` starts with ``rename`` instead when it is not empty), byte for byte.
    TypeError: an index not str, a value not bytes, an id neither str, bytes nor None;
    ValueError: lists of different lengths; IndexError: lo..hi outside them."""

def kafka_fields(
    prefix: bytes,
    offsets: list[int],
    keys: list[Any],
    stamps: list[int | None],
    dumps: Callable[[Any], bytes],
    /,
) -> list[bytes]:
    """Each Kafka record's fields object as ``dumps`` gives ``{field: {"topic", "partition",
    "offset", "key", "timestamp"}}``: ``prefix`` (up to the offset's value) + the offset +
    ``,"key":`` + ``null`` or ``dumps(key)`` + ``,"timestamp":`` + ``null`` or the stamp + ``}}``."""

def doc_ids_offsets(base: bytes, offsets: list[int], /) -> list[str]:
    """``elasticsearch.bulk.doc_ids`` for a Kafka chunk: id i is the URL-safe base64 of the
    15-byte BLAKE2b of ``base`` + ``offsets[i]`` (8 bytes, little-endian), as ``hashlib.blake2b``
    gives it. OverflowError: an offset below 0 or from 2**64 on (as ``int.to_bytes``)."""

def doc_ids_at(base: bytes, start: int, lines: list[bytes] | list[str], /) -> list[str]:
    """``elasticsearch.bulk.doc_ids`` for exact positions: id i is the URL-safe base64 of the
    15-byte BLAKE2b of ``base`` + the line's offset (8 bytes, little-endian; from ``start``, each
    line and its newline) + ``lines[i]`` (a str as its UTF-8, a lone surrogate as with
    ``surrogatepass``), as ``hashlib.blake2b`` gives it."""

def split_lines(
    data: bytes, start: int, end: int, max_line: int, errors: str, /
) -> tuple[list[str], list[int]]:
    """The lines of ``data[start:end]`` (ending with a newline), decoded with ``errors``, a
    trailing ``\\r`` removed, empty ones skipped; a line over ``max_line`` bytes is cut to
    ``max_line`` (on a UTF-8 boundary) before it is decoded, and its index is in the second list.
    ValueError: a range outside ``data``."""

def key_fields(
    keys: list[str | None], cache: dict[str | None, bytes], prefix: bytes, suffix: bytes, dumps: Any, /
) -> int:
    """``cache[k] = prefix + JSON(k) + suffix`` for each key not None nor cached yet (JSON as
    ``encode`` writes strings, ``dumps`` for non-ASCII ones); returns how many were added."""
