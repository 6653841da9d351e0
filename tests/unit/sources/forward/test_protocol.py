"""The forward protocol's frames: the four modes, EventTime, bad messages, the handshake."""

from __future__ import annotations

import gc
import gzip
import hashlib
import struct
from typing import Any

import msgpack
import orjson
import pytest

from log_capturer.processing.timestamps import NS
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward.protocol import (
    INVALID_COMPRESSION,
    INVALID_EVENT,
    INVALID_MESSAGE,
    ProtocolError,
    decode,
)
from log_capturer.sources.http.source import INVALID_MSGPACK, EventTime, Rejected

LIMIT = 1 << 20
T = 1_764_000_000


def et(seconds: int, nanos: int = 0) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def roundtrip(*values: Any) -> list[protocol.Message]:
    """Values packed as a client sends them, read back through a connection's decoder."""
    return from_wire(b"".join(msgpack.packb(v) for v in values))


def from_wire(wire: bytes) -> list[protocol.Message]:
    decoder = protocol.unpacker(LIMIT)
    out: list[Any] = []
    for i in range(0, len(wire), 7):  # in small reads: values split across them
        out.extend(protocol.feed(decoder, wire[i : i + 7]))
    return [decode(v, n, LIMIT) for n, v in enumerate(out, 1)]


def shape(m: protocol.Message) -> list[Any]:
    return [(i.reason, i.number) if isinstance(i, Rejected) else i for i in m.items]


def test_message_mode_with_event_time_and_integer_time() -> None:
    [a, b] = roundtrip(
        ["app.web", et(T, 123_456_789), {"log": "one"}],
        ["app.web", T, {"log": "two"}, {"chunk": "abc"}],
    )
    assert (a.tag, a.mode, a.chunk) == ("app.web", "Message", None)
    assert shape(a) == [({"log": "one"}, T * NS + 123_456_789)]
    assert (b.mode, b.chunk) == ("Message", "abc")
    assert shape(b) == [({"log": "two"}, T * NS)]


def test_forward_mode_and_fluent_bit_metadata_events() -> None:
    [m] = roundtrip(
        ["k8s", [[et(T, 1), {"log": "a"}], [[et(T, 2), {"meta": 1}], {"log": "b"}], [T, {"log": "c"}]]]
    )
    assert m.mode == "Forward"
    assert shape(m) == [({"log": "a"}, T * NS + 1), ({"log": "b"}, T * NS + 2), ({"log": "c"}, T * NS)]


def packed(n: int) -> bytes:
    return b"".join(msgpack.packb([et(T, i), {"log": f"line {i}"}]) for i in range(n))


def test_packed_and_compressed_packed_forward() -> None:
    entries = packed(3)
    halves = gzip.compress(entries[:10]) + gzip.compress(entries[10:])  # Fluent Bit appends members
    [p, c, c2] = roundtrip(
        ["tag.p", entries, {"chunk": "p1", "size": 3}],
        ["tag.c", gzip.compress(entries), {"chunk": "c1", "compressed": "gzip", "size": 3}],
        ["tag.c", halves, {"compressed": "gzip"}],
    )
    want = [({"log": f"line {i}"}, T * NS + i) for i in range(3)]
    assert (p.mode, p.chunk, shape(p)) == ("PackedForward", "p1", want)
    assert (c.mode, c.chunk, shape(c)) == ("CompressedPackedForward", "c1", want)
    assert shape(c2) == want


def test_bad_messages_are_rejected_one_by_one_and_the_stream_goes_on() -> None:
    entries = packed(2)
    msgs = roundtrip(
        "just a string",
        [42, T, {"log": "numeric tag"}, {"chunk": "n1"}],
        ["t", "not a time", {"log": "x"}],
        ["t", [[T, {"log": "good"}], "not an event", [T, "not a map"]]],
        ["t", entries + b"\xc1\xc1", {"chunk": "x1"}],
        ["t", b"not gzip", {"compressed": "gzip"}],
        ["t", entries, {"compressed": "zstd"}],
        ["t", T],
        ["t", entries, {"fluent_signal": 1}],
        ["t", T, {"log": "after all that"}],
    )
    assert [(m.tag, shape(m)) for m in msgs] == [
        ("", [(INVALID_MESSAGE, 1)]),
        ("", [(INVALID_MESSAGE, 2)]),
        ("t", [(INVALID_EVENT, 3)]),
        ("t", [({"log": "good"}, T * NS), (INVALID_EVENT, 4), (INVALID_EVENT, 4)]),
        ("t", [({"log": "line 0"}, T * NS), ({"log": "line 1"}, T * NS + 1), (INVALID_MSGPACK, 5)]),
        ("t", [(INVALID_COMPRESSION, 6)]),
        ("t", [(INVALID_COMPRESSION, 7)]),
        ("", [(INVALID_MESSAGE, 8)]),
        ("", [(INVALID_MESSAGE, 9)]),
        ("t", [({"log": "after all that"}, T * NS)]),
    ]
    # A message whose tag is wrong still names its chunk: it is acknowledged once parked.
    assert msgs[1].chunk == "n1" and msgs[4].chunk == "x1"
    assert "the tag must be text" in msgs[1].items[0].error  # type: ignore[union-attr]


def test_values_json_cannot_hold_are_made_plain() -> None:
    [m] = roundtrip(["t", T, {"log": b"bytes \xff", "ext": msgpack.ExtType(5, b"x"), 1: "int key"}])
    assert shape(m) == [
        ({"log": "bytes \\xff", "ext": {"ext_type": 5, "data_base64": "eA=="}, "1": "int key"}, T * NS)
    ]


def text(raw: bytes) -> bytes:
    """A msgpack str (fixstr) holding ``raw`` as it is, UTF-8 or not (packb cannot write that)."""
    return bytes([0xA0 | len(raw)]) + raw


def test_text_that_is_not_utf8_is_kept_as_escapes_in_every_mode() -> None:
    """Some clients send msgpack str that is not UTF-8: the records are shipped, those bytes as
    ``\\xNN`` escapes (as every input writes them), in the tag, the keys and the values, in the
    Message, Forward and PackedForward modes."""
    record = b"\x82" + text(b"log") + text(b"bad \xff\xfe end") + text(b"k\xff") + text(b"v")
    message = b"\x93" + text(b"tag\xff") + b"\xce" + T.to_bytes(4, "big") + record
    forward = b"\x92" + text(b"tag") + b"\x91\x92" + b"\xce" + T.to_bytes(4, "big") + record
    entry = b"\x92" + b"\xce" + T.to_bytes(4, "big") + record
    packed = b"\x92" + text(b"tag") + b"\xc4" + bytes([len(entry)]) + entry
    messages = from_wire(message + forward + packed)
    assert [m.mode for m in messages] == ["Message", "Forward", "PackedForward"]
    for m in messages:
        assert shape(m) == [({"log": "bad \\xff\\xfe end", "k\\xff": "v"}, T * NS)]
        assert m.tag in ("tag\\xff", "tag")
        orjson.dumps([m.tag, *m.items])  # what the sinks encode: valid UTF-8 only


def test_a_stream_that_is_not_msgpack_or_too_large_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not msgpack"):
        protocol.feed(protocol.unpacker(LIMIT), b"\xc1 hello")
    small = protocol.unpacker(1 << 10)
    with pytest.raises(ProtocolError, match="max_message_bytes"):
        protocol.feed(small, msgpack.packb(["t", T, {"log": "x" * 4096}]))


def test_compressed_bombs_stop_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (2 * LIMIT))
    [m] = roundtrip(["t", bomb, {"compressed": "gzip"}])
    assert shape(m) == [(INVALID_COMPRESSION, 1)]
    assert "max_message_bytes" in m.items[0].error  # type: ignore[union-attr]


def test_shared_key_handshake() -> None:
    nonce = protocol.new_nonce()
    helo = msgpack.unpackb(protocol.helo(nonce))
    assert helo[0] == "HELO" and helo[1]["nonce"] == nonce
    salt = b"0123456789abcdef"

    def ping(key: str) -> list[Any]:
        proof = hashlib.sha512(salt + b"client-1" + nonce + key.encode()).hexdigest()
        return ["PING", "client-1", salt, proof, "", ""]

    answer, why = protocol.pong(ping("s3cret"), nonce, "s3cret", "agent-host")
    assert why == ""
    expected = hashlib.sha512(salt + b"agent-host" + nonce + b"s3cret").hexdigest()
    assert msgpack.unpackb(answer) == ["PONG", True, "", "agent-host", expected]
    answer, why = protocol.pong(ping("wrong"), nonce, "s3cret", "agent-host")
    assert why == "shared_key mismatch"
    assert msgpack.unpackb(answer)[:2] == ["PONG", False]
    _, why = protocol.pong(["t", T, {"log": "no handshake"}], nonce, "s3cret", "agent-host")
    assert "must be PING" in why


def test_ack_answer() -> None:
    assert msgpack.unpackb(protocol.ack("Y2h1bmsx")) == {"ack": "Y2h1bmsx"}


def _messages(monkeypatch: pytest.MonkeyPatch, wire: bytes, c_decoder: bool, limit: int = LIMIT) -> Any:
    """The messages of ``wire`` read in 7-byte pieces, with the C decoder or with msgpack's alone
    (the code before it), as the connection does (``plain`` from the stream); or the error."""
    with monkeypatch.context() as m:
        if not c_decoder:
            m.setattr(protocol, "_speedups", None)
        decoder = protocol.unpacker(limit)
        out: list[protocol.Message] = []
        try:
            for i in range(0, len(wire), 7):
                values = protocol.feed(decoder, wire[i : i + 7])
                out.extend(decode(v, n, limit, decoder.plain) for n, v in enumerate(values, 1))
        except ProtocolError as exc:
            return ("error", str(exc), out)
        return out


def _deep_types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (type(k), _deep_types(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_types(v) for v in value]
    return type(value)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


_RECORDS: list[dict[Any, Any]] = [
    {"log": "plain line"},
    {"log": "caf\xe9 \U0001f600", "level": "info", "labels": {"tenant_id": "t1"}},
    {"message": "x" * 300_000},  # a huge line
    {"level": "error"},  # no message
    {"log": ""},
    {"log": "nested", "kubernetes": {"pod": {"name": "p", "labels": {"app": "a"}}, "ids": [1, 2, [3]]}},
    {"log": b"bytes \xff\xfe not UTF-8"},
    {"log": "n", 1: "integer key", "f": 1.5, "big": 2**64 - 1, "neg": -(2**63), "none": None, "t": True},
    {"log": "ext", "e": msgpack.ExtType(5, b"abc")},
    {"log": "ts", "when": msgpack.Timestamp(1, 2)},
    {"log": "et", "when": msgpack.ExtType(0, struct.pack(">II", T, 7))},
    {"log": "deep", "d": _nested(70)},  # deeper than the C decoder goes
]
_INVALID_UTF8 = b"\xa4ab\xff\xfe"  # a msgpack str of 4 bytes that are not UTF-8


def _wire_cases() -> list[bytes]:
    pk = msgpack.packb
    entries = [[et(T, i), rec] for i, rec in enumerate(_RECORDS)]
    packed = b"".join(pk(e) for e in entries)
    bad_text = pk(["app", [[et(T), {"log": "x"}]]]).replace(b"\xa1x", _INVALID_UTF8)
    return [
        pk(["app", entries, {"chunk": "c1"}]),  # Forward
        *(pk(["app", et(T, 5), rec]) for rec in _RECORDS),  # Message
        pk(["app", T, {"log": "integer time"}, {"chunk": "c2"}]),
        pk(["app", [[[et(T), {"meta": 1}], {"log": "fluent bit 2.1"}], [T, {"log": "int time"}]]]),
        pk(["app", [[1.5, {"log": "float time"}], ["bad", {"log": "x"}], [et(T)]]]),
        pk(["app", packed, {"chunk": "c3"}]),  # PackedForward
        pk(["app", packed + packed[:10]]),  # its entries end in the middle of a value
        pk(["app", pk([et(T), {"log": "x"}]).replace(b"\xa1x", _INVALID_UTF8)]),  # not UTF-8 in packed
        pk(["app", gzip.compress(packed), {"compressed": "gzip"}]),
        pk(["app", [[msgpack.ExtType(0, struct.pack(">II", T, 1) + b"x"), {"log": "ext of 9"}]]]),
        bad_text,  # text that is not UTF-8 in a Forward message
        pk([1, 2]) + pk("not a message") + pk({"a": 1}),
        b"".join(pk(["app", [[et(T, i), {"log": f"line {i}", "level": "warn"}]]]) for i in range(50)),
        pk(["app", [[et(T), {"log": "x"}]]]) + b"\xc1 not msgpack",
    ]


@pytest.mark.parametrize("wire", _wire_cases(), ids=lambda w: f"{len(w)}-bytes")
def test_the_c_decoder_gives_what_msgpack_gave(monkeypatch: pytest.MonkeyPatch, wire: bytes) -> None:
    """The stream decoded by ``_speedups.msgpack_values`` (with its ``plain`` shortcut) gives the
    messages, items, values and value types that msgpack alone gives."""
    new = _messages(monkeypatch, wire, True)
    old = _messages(monkeypatch, wire, False)
    assert new == old
    assert _deep_types(repr(new)) == _deep_types(repr(old))
    if isinstance(new, list):
        for a, b in zip(new, old, strict=True):
            assert [_deep_types(i) for i in a.items] == [_deep_types(i) for i in b.items]


def test_the_c_decoder_keeps_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = msgpack.packb(["t", [[et(T), {"log": "x" * 4096}]]])
    for c_decoder in (True, False):
        result = _messages(monkeypatch, wire, c_decoder, limit=1 << 10)
        assert result[0] == "error" and "max_message_bytes" in result[1]


def test_plain_values_need_no_json_check() -> None:
    decoder = protocol.unpacker(LIMIT)
    assert protocol.feed(decoder, msgpack.packb(["t", [[et(T), {"log": "x", "n": [1, {"a": None}]}]]]))
    assert decoder.plain
    for not_plain in ({"log": b"bin"}, {"log": "x", 1: "int key"}):
        protocol.feed(decoder, msgpack.packb(["t", [[et(T), not_plain]]]))
        assert not decoder.plain
    protocol.feed(decoder, msgpack.packb(["t", [[et(T), {"log": "x"}]]]).replace(b"\xa1x", _INVALID_UTF8))
    assert not decoder.plain


def test_the_c_decoder_takes_the_usual_values_and_leaves_the_rest_to_msgpack() -> None:
    """The comparison above compares the C decoder's values, not only msgpack's twice."""
    assert protocol._speedups is not None
    left = {"ext", "ts", "deep"}
    for rec in _RECORDS:
        got = protocol._speedups.msgpack_values(msgpack.packb(["app", et(T), rec]), EventTime)
        assert (got is None) == (rec["log"] in left if "log" in rec else False), rec
    # ext 0 of another size than 8, and text that is not UTF-8 without surrogates, go to msgpack
    assert (
        protocol._speedups.msgpack_values(msgpack.packb(msgpack.ExtType(0, b"123456789")), EventTime) is None
    )
    assert protocol._speedups.msgpack_values(_INVALID_UTF8, EventTime, False) is None
    assert protocol._speedups.msgpack_values(_INVALID_UTF8, EventTime) == (["ab\udcff\udcfe"], False)


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(0, 0), (0, 1), (1, 0), (1_764_000_000, 123_456_789), (2**32 - 1, 999_999_999)]
)
def test_event_times_made_in_c_are_the_ints_the_class_makes_and_untracked(seconds: int, nanos: int) -> None:
    """``msgpack_values`` makes EventTimes without calling the class (and out of the cyclic GC:
    an int refers to nothing); they are what ``EventTime(ns)`` gives in every way that counts."""
    assert protocol._speedups is not None
    packed = msgpack.packb([msgpack.ExtType(0, struct.pack(">II", seconds, nanos))])
    got = protocol._speedups.msgpack_values(packed, EventTime)
    assert got is not None
    value = got[0][0][0]
    expected = EventTime(seconds * NS + nanos)
    assert type(value) is EventTime
    assert value == expected == seconds * NS + nanos
    assert hash(value) == hash(expected)
    assert int(value) + 1 == int(expected) + 1
    assert repr(value) == repr(expected)
    assert not gc.is_tracked(value)


def test_event_times_of_another_class_are_made_by_calling_it() -> None:
    """A class that adds to int (here a __new__) is called: its own construction is kept."""

    class Marked(int):
        def __new__(cls, ns: int) -> Marked:
            obj = super().__new__(cls, ns)
            obj.marked = True  # type: ignore[attr-defined]
            return obj

    assert protocol._speedups is not None
    packed = msgpack.packb(msgpack.ExtType(0, struct.pack(">II", 5, 6)))
    got = protocol._speedups.msgpack_values(packed, Marked)
    assert got is not None
    assert type(got[0][0]) is Marked and got[0][0] == 5 * NS + 6 and got[0][0].marked


def test_events_taken_in_c_as_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_speedups.event_items`` gives the items ``_events`` gives, on entries of every kind;
    anything but [EventTime, record] entries is left to the Python code."""
    import random

    rng = random.Random(5)
    kinds = [
        lambda i: [EventTime(T + i), {"log": f"l{i}"}],
        lambda i: (EventTime(T + i), {"log": "t"}),
        lambda i: [T // NS + i, {"log": "int time"}],
        lambda i: [1.5, {"log": "float time"}],
        lambda i: [EventTime(T), {"log": "three"}, "extra"],
        lambda i: [EventTime(T), ["not", "a", "map"]],
        lambda i: {"a": 1},
        lambda i: "text",
        lambda i: [],
    ]
    taken = 0
    for _ in range(300):
        weights = [50, 5, 5, 1, 1, 1, 1, 1, 1] if rng.random() < 0.5 else [1] + [0] * 8
        entries = [rng.choices(kinds, weights)[0](i) for i in range(rng.choice([1, 4, 30]))]
        got = protocol._events(entries, 3)
        assert protocol._speedups is not None
        taken += protocol._speedups.event_items(entries, EventTime) is not None
        with monkeypatch.context() as m:
            m.setattr(protocol, "_speedups", None)
            expected = protocol._events(entries, 3)
        assert got == expected
        assert [type(x[1]) for x in got if isinstance(x, tuple)] == [
            type(x[1]) for x in expected if isinstance(x, tuple)
        ]
    assert taken > 100
