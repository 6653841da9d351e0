"""The Fluent forward protocol (v1): the frames a connection carries, decoded into records.

A connection is a stream of msgpack values, each one *message* in one of four modes (the tag
is text; ``option`` is an optional map)::

    Message                  [tag, time, record, option?]
    Forward                  [tag, [[time, record], ...], option?]
    PackedForward            [tag, bin: a stream of msgpack [time, record] entries, option?]
    CompressedPackedForward  the same, the bin gzipped, option {"compressed": "gzip"}

``time`` is an integer number of seconds or an EventTime (msgpack extension 0: seconds and
nanoseconds, big-endian); Fluent Bit 2.1+ may send ``[[time, metadata], record]`` entries (the
metadata is left out). An ``option`` with ``chunk`` asks for ``{"ack": chunk}`` once the
message is taken care of; see the source for when that is.

Shared-key authentication (the handshake phase): with a key set, the server speaks first::

    server: ["HELO", {"nonce": bin, "auth": "", "keepalive": true}]
    client: ["PING", hostname, shared_key_salt, hex(sha512(salt + hostname + nonce + key)),
             username, password_digest]
    server: ["PONG", true, "", self_hostname, hex(sha512(salt + self_hostname + nonce + key))]
            or ["PONG", false, reason, "", ""] and the connection is closed

A bad message is never fatal to the others: a value that is not a forward message, an entry
that is not an event, a packed stream that cannot be decoded or a gzip stream that cannot be
inflated become :class:`Rejected` items (with their reason), and the connection goes on with
the next message. Only bytes that are not msgpack at all, or a message larger than the limit,
break the stream: :class:`ProtocolError`, and the connection is closed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
import orjson

from log_capturer.processing.timestamps import NS
from log_capturer.record import Chunk
from log_capturer.sources.http.source import (
    INVALID_MSGPACK,
    EventTime,
    Item,
    Rejected,
    _event,
    _ext,
    _kind,
    _plain,
)

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)

#: Why a whole message or one of its entries was rejected (the ``reason`` label).
INVALID_MESSAGE = "invalid_message"
INVALID_EVENT = "invalid_event"
INVALID_COMPRESSION = "invalid_compression"
#: The keys of a message's option map.
_OPTIONS = frozenset({"size", "chunk", "compressed", "fluent_signal"})


class ProtocolError(Exception):
    """The stream cannot be read on (not msgpack, a message over the limit): close the connection."""


@dataclass(slots=True)
class Message:
    """One decoded forward message: its tag, its items (records with their event time in ns, or
    :class:`Rejected` entries) and the ``chunk`` option it asks an ack for (None: no ack)."""

    tag: str
    items: list[Item] = field(default_factory=list)
    chunk: Any = None
    mode: str = ""
    #: The chunks of its records, when they were made straight from its bytes (then ``items``
    #: is empty): see the source's ``columns``.
    chunks: list[Chunk] | None = None


class Stream:
    """One connection's stream of msgpack values. msgpack's own streaming decoder finds where each
    value ends (``skip``: its limits and its errors, no objects built); the complete values are
    then decoded in one C call (``_speedups.msgpack_values``: shared short text, EventTimes made
    there), or by msgpack when that call leaves them to it (another extension, a map key that is
    neither text nor an integer, deep nesting). Either way the values are the same."""

    __slots__ = ("_decoder", "_pending", "_start", "plain")

    def __init__(self, max_bytes: int) -> None:
        self._decoder = msgpack.Unpacker(
            raw=False,
            strict_map_key=False,
            ext_hook=_ext,
            max_buffer_size=max_bytes,
            unicode_errors="surrogateescape",
        )
        #: The bytes fed whose values were not returned yet; ``_start``: their stream offset.
        self._pending = bytearray()
        self._start = 0
        #: Whether every value the last :meth:`feed` returned holds only what JSON can (no
        #: binary, no integer map key, no text that is not UTF-8): then no record needs
        #: :func:`_jsonable`'s check.
        self.plain = False

    def spans(self, data: bytes) -> list[bytes]:
        """The bytes of each complete value ``data`` adds to the stream, one item per value (the
        rest waits for more bytes). ProtocolError: not msgpack, or a value over the limit."""
        decoder = self._decoder
        try:
            decoder.feed(data)
        except msgpack.BufferFull:
            raise ProtocolError(
                "a message is larger than forward.max_message_bytes; raise it, or send smaller chunks"
            ) from None
        self._pending += data
        start = self._start
        ends: list[int] = []
        try:
            while True:
                decoder.skip()
                ends.append(decoder.tell())
        except msgpack.OutOfData:
            pass
        except (msgpack.FormatError, msgpack.StackError, ValueError) as exc:
            raise ProtocolError(f"the stream is not msgpack ({describe_error(exc)})") from None
        if not ends:
            return []
        pending = self._pending
        with memoryview(pending) as view:
            out = [bytes(view[a - start : b - start]) for a, b in zip([start, *ends], ends, strict=False)]
        del pending[: ends[-1] - start]
        self._start = ends[-1]
        return out

    def feed(self, data: bytes) -> list[Any]:
        """The values ``data`` completes, decoded (see :attr:`plain`)."""
        spans = self.spans(data)
        self.plain = not spans
        if not spans:
            return []
        values, self.plain = values_of(spans[0] if len(spans) == 1 else b"".join(spans))
        return values


def values_of(raw: bytes) -> tuple[list[Any], bool]:
    """The msgpack values of ``raw`` (complete ones), and whether they are plain (see
    :attr:`Stream.plain`). ProtocolError when msgpack cannot decode them."""
    if _speedups is not None:
        got = _speedups.msgpack_values(raw, EventTime)
        if got is not None:
            return got
    decoder = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        ext_hook=_ext,
        max_buffer_size=max(len(raw), 1),
        unicode_errors="surrogateescape",
    )
    decoder.feed(raw)
    try:
        return list(decoder), False
    except (msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise ProtocolError(f"the stream is not msgpack ({describe_error(exc)})") from None


def unpacker(max_bytes: int) -> Stream:
    """A streaming decoder for one connection, refusing to buffer more than ``max_bytes``."""
    return Stream(max_bytes)


def feed(decoder: Stream, data: bytes) -> list[Any]:
    """The complete values ``data`` adds to the stream (the rest waits for more bytes)."""
    return decoder.feed(data)


def describe_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.isascii() else _valid_text(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return None


def _raw(value: Any) -> dict[str, Any]:
    """A value as the DLQ keeps it (JSON)."""
    return {"raw": _plain(value)}


def decode(obj: Any, number: int, max_bytes: int, plain: bool = False) -> Message:
    """The forward message ``obj`` (the ``number``-th of its batch, for the reasons given).
    Never raises for a bad message: it becomes one rejected item. ``plain``: ``obj`` holds only
    what JSON can (:attr:`Stream.plain`), its records need no check."""
    if not isinstance(obj, list) or len(obj) < 2:
        what = f"an array of {len(obj)}" if isinstance(obj, list) else _kind(obj)
        return _invalid(obj, number, f"message {number}: not a forward message ([tag, ...]), but {what}")
    tag = _text(obj[0])
    option = obj[-1] if len(obj) > 2 and isinstance(obj[-1], dict) else None
    chunk = option.get("chunk") if option is not None else None
    if tag is None:
        msg = _invalid(obj, number, f"message {number}: the tag must be text, not {_kind(obj[0])}")
        msg.chunk = chunk
        return msg
    signal = option.get("fluent_signal", 0) if option is not None else 0
    if signal not in (0, None):
        msg = _invalid(
            obj, number, f"message {number}: fluent_signal {signal!r} (metrics or traces): only logs"
        )
        msg.chunk = chunk
        return msg
    second = obj[1]
    if isinstance(second, list):
        message = Message(tag, chunk=chunk, mode="Forward")
        message.items = _events(second, number)
    elif isinstance(second, bytes) or (isinstance(second, str) and _packed_option(obj)):
        packed = second.encode("utf-8", "surrogateescape") if isinstance(second, str) else second
        compressed = option.get("compressed") if option is not None else None
        message = Message(tag, chunk=chunk, mode="PackedForward")
        if compressed is not None:
            message.mode = "CompressedPackedForward"
            if compressed != "gzip":
                message.items = [
                    Rejected(
                        number,
                        INVALID_COMPRESSION,
                        f"message {number}: compressed {compressed!r} is not supported (only 'gzip')",
                        _b64(packed),
                    )
                ]
                return message
            try:
                packed = gunzip(packed, max_bytes)
            except ValueError as exc:
                message.items = [
                    Rejected(number, INVALID_COMPRESSION, f"message {number}: {exc}", _b64(packed))
                ]
                return message
        message.items, plain = _packed(packed, number)
    elif len(obj) in (3, 4) and isinstance(obj[2], dict):
        message = Message(tag, chunk=chunk, mode="Message")
        event = _event([second, obj[2]])
        message.items = [
            event
            if event is not None
            else Rejected(
                number,
                INVALID_EVENT,
                f"message {number}: the time must be a number or an EventTime, not {_kind(second)}",
                _raw(obj),
            )
        ]
    else:
        msg = _invalid(obj, number, f"message {number}: neither Message, Forward nor PackedForward mode")
        msg.chunk = chunk
        return msg
    return message if plain else _jsonable(message)


def inflated(obj: Any, max_bytes: int) -> bytes | None:
    """A CompressedPackedForward message ``obj`` (decoded: its entries are one bytes object) as
    the bytes of the PackedForward message of its inflated entries, for the source's one-pass
    reading of a message's bytes; None when ``obj`` is not one, or its gzip cannot be inflated
    (:func:`decode` then says why)."""
    if not (isinstance(obj, list) and len(obj) == 3 and isinstance(obj[1], bytes)):
        return None
    option = obj[2]
    if not isinstance(option, dict) or option.get("compressed") != "gzip":
        return None
    try:
        entries = gunzip(obj[1], max_bytes)
    except ValueError:
        return None
    plain = {k: v for k, v in option.items() if k != "compressed"}
    try:
        return cast(bytes, msgpack.packb([obj[0], entries, plain], use_bin_type=True))
    except (TypeError, ValueError):  # text that was not UTF-8 (UnicodeEncodeError), an extension
        return None


def _packed_option(obj: list[Any]) -> bool:
    """Whether ``[tag, text, ...]`` is a PackedForward message of an old client (entries as msgpack
    str, not bin) rather than a Message whose time is text: nothing or an option map follows."""
    return len(obj) == 2 or (len(obj) == 3 and isinstance(obj[2], dict) and not (obj[2].keys() - _OPTIONS))


def _invalid(obj: Any, number: int, text: str) -> Message:
    return Message("", [Rejected(number, INVALID_MESSAGE, text, _raw(obj))])


def _b64(data: bytes) -> dict[str, Any]:
    return {"raw_base64": base64.b64encode(data[:65536]).decode(), "bytes": len(data)}


def _events(entries: list[Any], number: int) -> list[Item]:
    if _speedups is not None:
        got = _speedups.event_items(entries, EventTime)
        if got is not None:
            return cast("list[Item]", got)
    try:
        # The usual entries, [EventTime, record], in one pass; anything else entry by entry.
        fast: list[Item] = [
            (e[1], int(e[0])) for e in entries if type(e[0]) is EventTime and type(e[1]) is dict
        ]
    except (TypeError, KeyError, IndexError):
        fast = []
    if len(fast) == len(entries) and all(len(e) == 2 for e in entries):
        return fast
    out: list[Item] = []
    for i, entry in enumerate(entries, 1):
        event = _event(entry)
        if event is None:
            text = f"message {number}, entry {i}: not an event ([time, record]), but {_kind(entry)}"
            out.append(Rejected(number, INVALID_EVENT, text, _raw(entry)))
        else:
            out.append(event)
    return out


def _packed(data: bytes, number: int) -> tuple[list[Item], bool]:
    """The entries of a PackedForward message, and whether they are plain (see :class:`Stream`)."""
    if _speedups is not None:
        # Text that is not UTF-8 as in the other modes: surrogates here, \\xNN escapes once
        # :func:`_jsonable` made the records plain.
        got = _speedups.msgpack_values(data, EventTime)
        if got is not None:
            return _events(got[0], number), got[1]
    decoder = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        ext_hook=_ext,
        max_buffer_size=len(data) + 1,
        unicode_errors="surrogateescape",
    )
    decoder.feed(data)
    entries: list[Any] = []
    error = ""
    try:
        entries.extend(decoder)
    except (msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        error = describe_error(exc)
    out = _events(entries, number)
    consumed = decoder.tell()
    if consumed < len(data):
        why = error or "they end in the middle of a value"
        rest = len(data) - consumed
        text = f"message {number}: the last {rest} bytes of its entries cannot be decoded ({why})"
        out.append(Rejected(number, INVALID_MSGPACK, text, _b64(data[consumed:])))
    return out, False


def _jsonable(message: Message) -> Message:
    """Records whose values JSON cannot hold (binary, extension types, non-text keys, text that
    was not UTF-8) are made plain (see the HTTP ingest's ``_plain``; such text as ``\\xNN``
    escapes, as every input writes it); the check is one C call for the whole message."""
    try:
        orjson.dumps([i[0] for i in message.items if not isinstance(i, Rejected)])
    except TypeError:
        message.items = [
            i if isinstance(i, Rejected) else (_plain(_valid_text(i[0])), i[1]) for i in message.items
        ]
    return message


def _valid_text(value: Any) -> Any:
    """``value`` with its text (map keys too) valid UTF-8: the stream is decoded with
    ``surrogateescape``, so bytes that were not UTF-8 are lone surrogates; they become ``\\xNN``."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return [_valid_text(v) for v in value]
    return value


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` inflated (one gzip member or several, as Fluent Bit appends them); ValueError when
    it is not gzip or inflates past ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise ValueError(f"the gzip stream cannot be inflated ({exc})") from None
        size += len(part)
        if size > limit or d.unconsumed_tail:
            raise ValueError(f"it inflates past forward.max_message_bytes ({limit} bytes)")
        if not d.eof:
            raise ValueError("the gzip stream ends early")
        out.append(part)
        rest = d.unused_data
    return b"".join(out)


def pack_event_time(ns: int) -> msgpack.ExtType:
    """An EventTime as the forward protocol sends it: extension 0, seconds and nanoseconds."""
    return msgpack.ExtType(0, (ns // NS).to_bytes(4, "big") + (ns % NS).to_bytes(4, "big"))


# -- the handshake ----------------------------------------------------------------------------


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return str(value).encode()


def digest(salt: Any, hostname: Any, nonce: bytes, key: str) -> str:
    """hex(sha512(salt + hostname + nonce + key)), the handshake's proof of the shared key."""
    return hashlib.sha512(_bytes(salt) + _bytes(hostname) + nonce + key.encode()).hexdigest()


def helo(nonce: bytes) -> bytes:
    return msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}])  # type: ignore[no-any-return]


def new_nonce() -> bytes:
    return os.urandom(16)


def pong(ping: Any, nonce: bytes, key: str, self_hostname: str) -> tuple[bytes, str]:
    """The answer to a client's first message when a shared key is set, and '' if the client
    proved the key, else why not (then the answer refuses it and the connection is closed)."""
    why = ""
    if not (isinstance(ping, list) and len(ping) >= 4 and ping[0] == "PING"):
        why = "the first message after HELO must be PING (set the shared key on the client)"
    elif digest(ping[2], ping[1], nonce, key) != _text(ping[3]):
        why = "shared_key mismatch"
    if why:
        return msgpack.packb(["PONG", False, why, "", ""]), why
    salt = ping[2]
    answer = ["PONG", True, "", self_hostname, digest(salt, self_hostname, nonce, key)]
    return msgpack.packb(answer), ""


def ack(chunk: Any) -> bytes:
    return msgpack.packb({"ack": chunk})  # type: ignore[no-any-return]
