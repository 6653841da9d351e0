"""What a ``_bulk`` request carries and what its answer means. No network, no threads.

- :class:`Documents`: a chunk's records as documents: each one's index, ``_id`` and JSON source
  (the record ``encoding`` makes, by default the one Kafka gets, its ``timestamp`` named as
  ``timestamp_field``; with ``codec: raw`` or ``logfmt``, ``{timestamp_field, message}``).
- :func:`doc_ids`: the deterministic document ids (see the function).
- :func:`body`: the NDJSON body of a request (an action line and a source line per record).
- :func:`outcome_of_item`, :func:`outcome_of_status`: what the server's answers mean to the
  engine (delivered, retry, retry alone, reject).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import os
import re
import time
from typing import Any, cast

import orjson

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    # Typed as the module (``_speedups.pyi``); None picks the Python code at each use.
    _speedups = cast(Any, None)

from log_capturer.engine.contract import Failure, Record
from log_capturer.record import Chunk
from log_capturer.sinks.elasticsearch.config import BAD_INDEX_CHARS, ElasticsearchSinkConfig
from log_capturer.sinks.encoding import ChunkEncoder, rfc3339_ns
from log_capturer.sinks.kafka.encode import encode_chunk

#: An item's error types that mean "not now" (the node is busy or a shard is moving): retried.
RETRIABLE_TYPES = frozenset(
    {
        "es_rejected_execution_exception",
        "rejected_execution_exception",
        "circuit_breaking_exception",
        "unavailable_shards_exception",
        "no_shard_available_action_exception",
        "node_not_connected_exception",
        "node_disconnected_exception",
        "process_cluster_event_timeout_exception",
        "cluster_manager_not_discovered_exception",
        "master_not_discovered_exception",
        "shard_not_in_primary_mode_exception",
        "timeout_exception",
        "receive_timeout_transport_exception",
    }
)
#: Item statuses that mean "not now".
RETRIABLE_STATUS = frozenset({429, 502, 503, 504})


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def doc_ids(chunk: Chunk, encoded: list[bytes] | None = None) -> list[str]:
    """One ``_id`` per line of ``chunk`` (``encoded``: its lines as UTF-8, a lone surrogate as with
    ``surrogatepass``, made here when not given), the same every time the same line is read from
    the same place:

    - positions exact (a file or container log whose chunk holds plain newline-ended lines:
      ``start`` plus each line's bytes and newline ends exactly at ``end``): the line's byte offset
      is known, and the id hashes the source id, the file's identity (``chunk.stream``: device and
      inode), that offset and the line's text. Stable across a restart whatever the chunk
      boundaries are then.
    - event times known (``chunk.timestamps``, e.g. Docker's json-file): source id, stream, the
      line's time, its text and how many identical (time, text) lines precede it in the chunk.
      Stable across a restart unless two identical lines with the same nanosecond time fall on
      either side of a chunk boundary.
    - other positions (CRLF or blank lines, a line cut for its length): source id, stream, the
      chunk's start and the line's index in it. Stable for retries and DLQ replays (the id travels
      with the record); after a restart, for the first chunk read again only.
    - an offset per line (``chunk.offsets``: the Kafka source): the topic and partition
      (``chunk.stream``) and the line's offset, nothing else. A record read again after a crash
      or a rebalance gets the same id, whatever its chunk and origin are then.
    - no positions (syslog, HTTP, stdin without an offset): a random id per chunk and the line's
      index: stable for retries and DLQ replays only (nothing is read again after a restart).
    """
    n = len(chunk.lines)
    blake = hashlib.blake2b
    offsets = chunk.offsets
    if offsets is not None and len(offsets) == n:
        at = f"kafka\0{chunk.stream}\0".encode()
        if _speedups is not None:  # the same ids, hashed in C
            return _speedups.doc_ids_offsets(at, offsets if type(offsets) is list else list(offsets))
        return [_b64(blake(at + off.to_bytes(8, "little"), digest_size=15).digest()) for off in offsets]
    o = chunk.origin
    base = f"{o.source_type}\0{o.source_id}\0{chunk.stream}\0".encode()
    start, end = chunk.start, chunk.end
    # chunk.text_bytes: the lines' UTF-8 bytes, a lone surrogate counted 3 (as surrogatepass).
    if end > start and start + chunk.text_bytes + n == end:
        if _speedups is not None:  # the same ids, hashed in C (the lines encoded there too)
            return _speedups.doc_ids_at(base, start, encoded if encoded is not None else chunk.lines)
        if encoded is None:
            encoded = [line.encode("utf-8", "surrogatepass") for line in chunk.lines]
        out = []
        pos = start
        for data in encoded:
            h = blake(base, digest_size=15)
            h.update(pos.to_bytes(8, "little"))
            h.update(data)
            out.append(_b64(h.digest()))
            pos += len(data) + 1
        return out
    stamps = chunk.timestamps
    if stamps is not None and end > start:
        if encoded is None:
            encoded = [line.encode("utf-8", "surrogatepass") for line in chunk.lines]
        seen: dict[tuple[int, bytes], int] = {}
        out = []
        for ns, data in zip(stamps, encoded, strict=True):
            k = seen.get((ns, data), 0)
            seen[(ns, data)] = k + 1
            h = blake(base, digest_size=15)
            h.update(ns.to_bytes(8, "little", signed=True))
            h.update(k.to_bytes(4, "little"))
            h.update(data)
            out.append(_b64(h.digest()))
        return out
    seed = base + (b"c" + start.to_bytes(8, "little") if end > start else b"r" + os.urandom(16))
    prefix = _b64(blake(seed, digest_size=12).digest())
    return [f"{prefix}{i:x}" for i in range(n)]


class IndexNamer:
    """Index names from a strftime pattern, per second of the records' timestamps (cached)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.fixed = "%" not in pattern
        self._cache: dict[int, str] = {}

    def at(self, ns: int) -> str:
        if self.fixed:
            return self.pattern
        sec = ns // 1_000_000_000
        name = self._cache.get(sec)
        if name is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            name = self._cache[sec] = time.strftime(self.pattern, time.gmtime(sec))
        return name


def valid_index(name: str) -> bool:
    return (
        bool(name)
        and len(name.encode()) <= 255
        and name == name.lower()
        and not any(c in BAD_INDEX_CHARS for c in name)
        and not name.startswith(("-", "_", "+"))
        and name not in (".", "..")
    )


class Documents:
    """Turns an analysed chunk into its records: ``Record(index, source JSON, _id)``."""

    def __init__(self, config: ElasticsearchSinkConfig, key_field: str | None = None) -> None:
        self.config = config
        self.key_field = key_field
        self.namer = IndexNamer(config.index)
        self.field = b'{"' + orjson.dumps(config.timestamp_field)[1:-1] + b'":'
        self.rename = self.field if config.timestamp_field != "timestamp" else b""
        enc = config.encoding
        self.envelope = enc.envelope
        self.codec = enc.codec
        self.encoder = ChunkEncoder(enc, key_field, encode_chunk)
        self.with_ids = config.document_id == "source_position"
        field = config.index_field
        self.index_field = field
        self._label = field.removeprefix("labels.") if field.startswith("labels.") else ""
        self._meta = field.removeprefix("fields.") if field.startswith("fields.") else ""

    def values(self, chunk: Chunk) -> list[bytes]:
        """The chunk's documents, as ``encoding`` says (the timestamp not renamed yet)."""
        if self.envelope:
            return encode_chunk(chunk, self.key_field)
        records = self.encoder.encode(chunk)
        if self.codec == "json":
            return records
        # raw, logfmt: the text in ``message``, beside the line's time (renamed by ``records``).
        stamps = chunk.timestamps or [chunk.read_time_ns] * len(records)
        heads: dict[int, bytes] = {}
        out = []
        for ns, text in zip(stamps, records, strict=True):
            head = heads.get(ns)
            if head is None:
                head = heads[ns] = b'{"timestamp":"' + rfc3339_ns(ns).encode() + b'","message":'
            out.append(head + orjson.dumps(text.decode()) + b"}")
        return out

    def docs(self, chunk: Chunk, values: list[bytes] | None = None) -> Docs:
        """The chunk's documents as columns (``values``: from :meth:`values`, made when not given):
        no Python object per document."""
        if values is None:
            values = self.values(chunk)
        ids = doc_ids(chunk) if self.with_ids else None
        return Docs(self._indexes(chunk), values, ids, self.rename)

    def records(self, chunk: Chunk, values: list[bytes]) -> list[Record]:
        """The chunk's documents as records (``values``: from :meth:`values`), as parked."""
        return self.docs(chunk, values).records()

    def _indexes(self, chunk: Chunk) -> str | list[str]:
        """Each document's index: one name for all (no field chooses, and one time), or a list."""
        n = len(chunk.lines)
        stamps = chunk.timestamps
        at = self.namer.at
        if stamps is None or self.namer.fixed:
            if not self.index_field:
                return at(chunk.read_time_ns)
            names = [at(chunk.read_time_ns)] * n
        else:
            names = [at(ns) for ns in stamps]
        if not self.index_field:
            return names
        o = chunk.origin
        chosen: list[str | None]
        if self._label:
            chosen = [o.labels.get(self._label)] * n
        elif self._meta:
            meta = chunk.meta
            chosen = [(m or {}).get(self._meta) if meta is not None else None for m in (meta or [None] * n)]
        elif self.index_field == "level":
            chosen = list(chunk.levels) if chunk.levels else [None] * n
        else:
            value = o.source_type if self.index_field == "source_type" else o.source_id
            chosen = [value] * n
        return [
            c if isinstance(c, str) and valid_index(c) else name
            for c, name in zip(chosen, names, strict=True)
        ]


#: How a document from the encoder starts; with another ``timestamp_field`` the name is replaced.
TIMESTAMP_HEAD = b'{"timestamp":'


class Docs:
    """A chunk's documents as columns, held from the dispatcher to the answer without a Python
    object per document: ``index`` (one name for all, or one per document), ``values`` (the
    encoder's, whose leading ``{"timestamp":`` becomes ``rename`` when it is not empty), ``ids``
    (None: no ``_id``). :meth:`record` makes a document's :class:`Record` when one is needed (a
    retry, the DLQ)."""

    __slots__ = ("_cum", "_raw", "ids", "index", "nbytes", "rename", "values")

    def __init__(
        self,
        index: str | list[str],
        values: list[bytes],
        ids: list[str] | None,
        rename: bytes = b"",
    ) -> None:
        self.index = index
        self.values = values
        self.ids = ids
        self.rename = rename
        n = len(values)
        grown = len(rename) - len(TIMESTAMP_HEAD) if rename else 0
        self._raw = sum(map(len, values))
        #: Bytes of the documents as sent (with a renamed timestamp: the renamed size of each).
        self.nbytes = self._raw + grown * n
        self._cum: list[int] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def counts(self) -> dict[str, int]:
        """Documents per index."""
        if isinstance(self.index, str):
            return {self.index: len(self.values)}
        return dict(collections.Counter(self.index))

    def value(self, i: int) -> bytes:
        v = self.values[i]
        if self.rename and v.startswith(TIMESTAMP_HEAD):
            return self.rename + v[len(TIMESTAMP_HEAD) :]
        return v

    def record(self, i: int) -> Record:
        """Document ``i`` as a record: (index, source, ``_id``)."""
        index = self.index if isinstance(self.index, str) else self.index[i]
        return Record(index, self.value(i), self.ids[i] if self.ids is not None else None)

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self.values))]

    def size(self, lo: int, hi: int) -> int:
        """Bytes of the documents lo..hi-1 as the encoder gave them."""
        if lo == 0 and hi == len(self.values):
            return self._raw
        return self.cumulative[hi] - self.cumulative[lo]

    @property
    def cumulative(self) -> list[int]:
        """Bytes of the documents before each one (made once, when a batch cuts the documents)."""
        if self._cum is None:
            self._cum = list(itertools.accumulate(map(len, self.values), initial=0))
        return self._cum

    def body(self, lo: int, hi: int, op_type: str, pipeline: str, doc_type: str) -> bytes:
        """The ``_bulk`` body of documents lo..hi-1 (in C when the module is built)."""
        if _speedups is not None:
            return _speedups.bulk_docs(
                self.index,
                self.values,
                self.ids,
                lo,
                hi,
                op_type,
                pipeline,
                doc_type,
                self.rename,
                orjson.dumps,
            )
        return docs_body_py(self, lo, hi, op_type, pipeline, doc_type)


def docs_body_py(docs: Docs, lo: int, hi: int, op_type: str, pipeline: str, doc_type: str) -> bytes:
    """:meth:`Docs.body` in Python: the reference for ``_speedups.bulk_docs`` (the body of the
    documents' records)."""
    return body_py([docs.record(i) for i in range(lo, hi)], op_type, pipeline, doc_type)


def action(record: Record, op_type: str, pipeline: str, doc_type: str) -> bytes:
    """The action line of one record (without its newline)."""
    meta: dict[str, Any] = {"_index": record.topic}
    if record.key is not None:
        meta["_id"] = record.key if isinstance(record.key, str) else record.key.decode()
    if doc_type:
        meta["_type"] = doc_type
    if pipeline:
        meta["pipeline"] = pipeline
    return orjson.dumps({op_type: meta})


def body(records: list[Record], op_type: str, pipeline: str, doc_type: str) -> bytes:
    """The NDJSON body: per record its action line and its source, each ended by a newline (in C
    when the module is built)."""
    if _speedups is not None:
        return _speedups.bulk_body(Record, records, op_type, pipeline, doc_type, orjson.dumps)
    return body_py(records, op_type, pipeline, doc_type)


def body_py(records: list[Record], op_type: str, pipeline: str, doc_type: str) -> bytes:
    """:func:`body` in Python: the reference for ``_speedups.bulk_body``."""
    parts: list[bytes] = []
    append = parts.append
    for r in records:
        append(action(r, op_type, pipeline, doc_type))
        append(r.value)
    parts.append(b"")
    return b"\n".join(parts)


def outcome_of_status(status: int) -> Failure:
    """What a whole request's HTTP error status means for each of its records."""
    if status in RETRIABLE_STATUS or status >= 500 or status in (401, 403, 404, 408):
        # Overloaded, away, or not allowed now (credentials, a proxy's path): retried, the breaker
        # opens if it lasts; nothing is lost.
        return Failure.RETRY
    # 413 (the request is too large) and other refusals of the request: each record is sent alone,
    # so that only a record refused for its own sake is parked.
    return Failure.RETRY_ALONE


def outcome_of_item(item: dict[str, Any], op_type: str) -> tuple[Failure | None, str, str]:
    """One item of a ``_bulk`` answer: (None: delivered, else the failure), error type, text.
    A document that was there already (409 with ``op_type: create``) is delivered, type ``exists``."""
    status = int(item.get("status", 0))
    if 200 <= status < 300:
        return None, "", ""
    error = item.get("error")
    if isinstance(error, dict):
        etype = str(error.get("type", "")) or f"http_{status}"
        reason = str(error.get("reason", ""))
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason = f"{reason}: {cause.get('type', '')}: {cause.get('reason')}"
    else:
        etype, reason = f"http_{status}", str(error or "")
    if status == 409 and op_type == "create" and etype == "version_conflict_engine_exception":
        return None, "exists", ""  # the document is there already (a replay): delivered
    text = f"{status} {etype}: {reason}".strip()
    if status == 429 or etype in ("es_rejected_execution_exception", "rejected_execution_exception"):
        return Failure.RETRY_ALONE, etype, text
    if status in RETRIABLE_STATUS or etype in RETRIABLE_TYPES:
        return Failure.RETRY, etype, text
    return Failure.REJECT, etype, text


#: The start of a ``_bulk`` answer whose top-level ``errors`` is false (Elasticsearch and OpenSearch
#: write ``took`` first, or nothing before it under ``filter_path``; VictoriaLogs as Elasticsearch).
_NO_ERRORS = re.compile(rb'\s*\{\s*(?:"took"\s*:\s*\d+\s*,\s*)?"errors"\s*:\s*false\s*[,}]')


def all_delivered(raw: bytes) -> bool:
    """Whether a ``_bulk`` answer says at its start that no item failed (``"errors":false``): then
    every item was delivered, and its per-item list need not be parsed (a thousand objects). Any
    other start says nothing: the answer is parsed."""
    return _NO_ERRORS.match(raw) is not None


def parse_response(raw: bytes) -> dict[str, Any]:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("the _bulk answer is not a JSON object")
    return doc
