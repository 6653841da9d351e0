"""Record encodings (``sinks.encoding``): the codecs, field selection, the C writers against their
Python twins, and the validation of conflicting choices."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from log_capturer import _speedups
from log_capturer.record import Chunk, Origin
from log_capturer.sinks import encoding as encoding_mod
from log_capturer.sinks.encoding import (
    FIELDS,
    ChunkEncoder,
    EncodingConfig,
    logfmt_key,
    logfmt_value,
    utf8,
)
from log_capturer.sinks.kafka.encode import encode_chunk
from tests.support import parse_logfmt

ORIGIN = Origin("file", "/var/log/app.log", {"env": "prod", "team": "a b"})
LINES = [
    "GET /health 200",
    'x=1 "quoted" back\\slash',
    "été ✓ \U0001f600",
    "",
    "tab\there\nnewline\x01ctl\x7f",
    "plain",
    '{"level":"error","tenant_id":"acme"}',
]
LEVELS = ["info", "error", "", "debug", "warn", "info", "error"]
KEYS: list[str | None] = ["t1", None, "t2", None, "t1", None, "acme"]


def chunk(keys: bool = True, extras: bool = False) -> Chunk:
    c = Chunk(ORIGIN, list(LINES), read_time_ns=1_700_000_000_123_456_789)
    c.levels = list(LEVELS)
    c.keys = list(KEYS) if keys else None
    if extras:
        c.meta = [None, {"status": 200, "ok": True}, None, {"nested": {"a": [1]}}, None, None, None]
        c.truncated = frozenset({2})
        c.timestamps = [1_000_000_000 * i + 5 for i in range(len(LINES))]
    return c


def encoder(**kw: Any) -> ChunkEncoder:
    return ChunkEncoder(EncodingConfig(**kw), "tenant_id", encode_chunk)


# -- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"codec": "raw", "only_fields": ["message"]}, "encoding.only_fields does not apply to codec: raw"),
        (
            {"codec": "raw", "except_fields": ["labels"]},
            "encoding.except_fields does not apply to codec: raw",
        ),
        ({"codec": "raw", "timestamp_format": "unix_ms"}, "encoding.timestamp_format does not apply"),
        ({"only_fields": ["message"], "except_fields": ["labels"]}, "exclude each other; keep one"),
        ({"only_fields": ["mesage"]}, "unknown member 'mesage'; use some of timestamp, message"),
        ({"except_fields": list(FIELDS)}, "leaves no member in the record"),
        ({"only_fields": []}, "leaves no member in the record"),
        ({"codec": "text"}, "Input should be 'json', 'raw' or 'logfmt'"),
    ],
)
def test_conflicting_choices_are_refused_with_the_key_and_the_fix(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        EncodingConfig(**kw)
    assert says in str(err.value)


def test_the_default_is_the_json_envelope() -> None:
    cfg = EncodingConfig()
    assert cfg.codec == "json" and cfg.envelope and cfg.selected == FIELDS
    assert not EncodingConfig(timestamp_format="unix_ms").envelope
    assert EncodingConfig(timestamp_format="rfc3339_ns").envelope
    assert not EncodingConfig(except_fields=["labels"]).envelope
    assert EncodingConfig(only_fields=["level", "message"]).selected == ("message", "level")


# -- json -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extras", [False, True])
def test_json_is_byte_for_byte_the_envelope(extras: bool) -> None:
    assert encoder().encode(chunk(extras=extras)) == encode_chunk(chunk(extras=extras), "tenant_id")


@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize(
    "kw",
    [
        {"timestamp_format": "unix_ms"},
        {"only_fields": ["timestamp", "message", "level"]},
        {"except_fields": ["labels", "source_id"]},
        {"except_fields": ["message"]},
        {"only_fields": ["fields", "truncated"]},
    ],
)
def test_json_with_a_selection_is_the_envelope_less_the_members_left_out(
    kw: dict[str, Any], extras: bool
) -> None:
    full = [orjson.loads(r) for r in encode_chunk(chunk(extras=extras), "tenant_id")]
    got = [orjson.loads(r) for r in encoder(**kw).encode(chunk(extras=extras))]
    keep = EncodingConfig(**kw).selected
    stamps = chunk(extras=extras).timestamps or [1_700_000_000_123_456_789] * len(LINES)
    for i, (doc, whole) in enumerate(zip(got, full, strict=True)):
        want = {k: v for k, v in whole.items() if k in keep}
        if kw.get("timestamp_format") == "unix_ms":
            want["timestamp"] = stamps[i] // 1_000_000
        assert doc == want
        assert list(doc) == [k for k in FIELDS if k in doc]  # the envelope's order


# -- raw --------------------------------------------------------------------------------------------
def test_raw_is_the_line_as_read_nothing_added() -> None:
    records = encoder(codec="raw").encode(chunk(extras=True))
    assert records == [line.encode() for line in LINES]


def test_raw_writes_a_lone_surrogate_as_the_replacement_character() -> None:
    lines = ["a\ud800b", "\udcff"]
    assert _speedups.encode_raw(lines) == [utf8(s) for s in lines] == [b"a\xef\xbf\xbdb", b"\xef\xbf\xbd"]


def test_raw_c_and_python_agree_on_random_text(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    alphabet = 'ab ="\\\n\t\x00\x7féü✓\U0001f600\u0100\uffff'
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(500)]
    assert _speedups.encode_raw(lines) == [s.encode() for s in lines]
    with pytest.raises(TypeError):
        _speedups.encode_raw([b"bytes"])  # type: ignore[list-item]


# -- logfmt -----------------------------------------------------------------------------------------
def test_logfmt_values_are_quoted_only_when_needed() -> None:
    assert logfmt_value("plain") == b"plain"
    assert logfmt_value("") == b'""'
    assert logfmt_value("a b") == b'"a b"'
    assert logfmt_value('x="1"\\') == b'"x=\\"1\\"\\\\"'
    assert logfmt_value("l1\nl2\t\x01") == b'"l1\\nl2\\t\\u0001"'
    assert logfmt_value("été") == "été".encode()
    assert logfmt_value(3) == b"3" and logfmt_value(True) == b"true" and logfmt_value(None) == b'""'
    assert logfmt_value({"a": [1]}) == b'"{\\"a\\":[1]}"'
    assert logfmt_key("a b=c") == b"a_b_c" and logfmt_key("") == b"_"


@pytest.mark.parametrize("extras", [False, True])
def test_logfmt_records_read_back_as_the_envelopes_members(extras: bool) -> None:
    records = encoder(codec="logfmt").encode(chunk(extras=extras))
    envelopes = [orjson.loads(r) for r in encode_chunk(chunk(extras=extras), "tenant_id")]
    for record, env in zip(records, envelopes, strict=True):
        doc = parse_logfmt(record)
        assert doc["message"] == env["message"]
        assert doc["timestamp"] == env["timestamp"]
        assert doc.get("level", "") == env["level"]
        assert (doc["source_type"], doc["source_id"]) == (env["source_type"], env["source_id"])
        assert {k[7:]: v for k, v in doc.items() if k.startswith("labels.")} == env["labels"]
        fields = {k[7:]: v for k, v in doc.items() if k.startswith("fields.")}
        assert fields == {k: parse_logfmt(b"v=" + logfmt_value(v))["v"] for k, v in env["fields"].items()}
        assert ("truncated" in doc) == env.get("truncated", False)


@pytest.mark.parametrize("keys", [False, True])
@pytest.mark.parametrize("kw", [{"codec": "logfmt"}, {"codec": "json", "except_fields": ["labels"]}])
def test_the_c_writers_give_what_the_python_code_gives(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any], keys: bool
) -> None:
    rng = random.Random(11)
    alphabet = 'ab ="\\\n\t\x00\x7féü✓\U0001f600'
    c = chunk(keys=keys)
    c.lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(len(LINES))]
    fast = encoder(**kw).encode(c)
    monkeypatch.setattr(encoding_mod, "_speedups", None)
    assert encoder(**kw).encode(c) == fast


def test_logfmt_leaves_out_an_unknown_level_and_selection_applies() -> None:
    records = encoder(codec="logfmt", only_fields=["level", "message"]).encode(chunk())
    assert records[0] == b'message="GET /health 200" level=info'
    assert records[2] == 'message="été ✓ \U0001f600"'.encode()
    unix = encoder(codec="logfmt", only_fields=["timestamp"], timestamp_format="unix_ms").encode(chunk())
    assert set(unix) == {b"timestamp=1700000000123"}


def test_an_origin_encoded_again_is_written_with_its_new_labels() -> None:
    origin = Origin("file", "/a.log", {"env": "prod"})
    enc = encoder(codec="logfmt", only_fields=["labels"])
    c = Chunk(origin, ["x"], read_time_ns=1)
    c.levels = ["info"]
    assert enc.encode(c) == [b"labels.env=prod"]
    origin.labels["env"] = "dev"
    origin.reencode()
    assert enc.encode(c) == [b"labels.env=dev"]


# -- paths into labels and fields --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"only_fields": ["level.name"]}, "'level.name' is not a path into labels or fields"),
        ({"except_fields": ["fields..a"]}, "'fields..a' is not a path into labels or fields"),
        ({"only_fields": ["label.app"]}, "unknown member 'label.app'"),
        ({"codec": "raw", "only_fields": ["labels.app"]}, "does not apply to codec: raw"),
    ],
)
def test_bad_paths_are_refused_with_the_fix(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        EncodingConfig(**kw)
    assert says in str(err.value)


@pytest.mark.parametrize("codec", ["json", "logfmt"])
@pytest.mark.parametrize("extras", [False, True])
def test_only_fields_paths_keep_just_those_parts(codec: str, extras: bool) -> None:
    kw: dict[str, Any] = {"codec": codec, "only_fields": ["message", "labels.team", "fields.nested.a"]}
    cfg = EncodingConfig(**kw)
    assert cfg.selected == ("message", "labels", "fields") and not cfg.envelope
    got = encoder(**kw).encode(chunk(extras=extras))
    for i, rec in enumerate(got):
        if codec == "logfmt":
            pairs = parse_logfmt(rec)
            expected = {"message": LINES[i], "labels.team": "a b"}
            if extras and i == 3:
                expected["fields.nested"] = '{"a":[1]}'
            assert pairs == expected
        else:
            doc = orjson.loads(rec)
            expected_doc: dict[str, Any] = {"message": LINES[i], "labels": {"team": "a b"}}
            if extras and i == 3:
                expected_doc["fields"] = {"nested": {"a": [1]}}
            assert doc == expected_doc  # a member with none of the named parts is left out


@pytest.mark.parametrize("extras", [False, True])
def test_except_fields_paths_drop_just_those_parts(extras: bool) -> None:
    got = encoder(except_fields=["labels.env", "fields.tenant_id", "fields.nested.a"]).encode(
        chunk(extras=extras)
    )
    full = [orjson.loads(r) for r in encode_chunk(chunk(extras=extras), "tenant_id")]
    for rec, whole in zip(got, full, strict=True):
        doc = orjson.loads(rec)
        whole["labels"].pop("env")
        whole["fields"].pop("tenant_id", None)
        if "nested" in whole["fields"]:
            whole["fields"]["nested"] = {}
        assert doc == whole


def test_a_whole_member_wins_over_a_path_into_it() -> None:
    cfg = EncodingConfig(only_fields=["labels", "labels.env", "fields.user.id", "fields.user"])
    assert cfg.paths == {"fields": {"user": {}}}
    assert list(cfg.paths["fields"]["user"]) == []


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"codec": "logfmt"},
        {"codec": "raw"},
        {"timestamp_format": "unix_ms"},
        {"codec": "logfmt", "only_fields": ["timestamp", "message", "labels.team"]},
        {"except_fields": ["source_id", "labels.env", "fields.nested.a"]},
    ],
)
@pytest.mark.parametrize("extras", [False, True])
def test_a_parsed_record_encodes_to_the_same_bytes_as_its_chunk(kw: dict[str, Any], extras: bool) -> None:
    """DocEncoder (Loki's line, a replayed record) and ChunkEncoder write the same records."""
    cfg = EncodingConfig(**kw)
    from_chunk = encoder(**kw).encode(chunk(extras=extras))
    doc_encoder = encoding_mod.DocEncoder(cfg)
    from_docs = [doc_encoder.encode(orjson.loads(r)) for r in encode_chunk(chunk(extras=extras), "tenant_id")]
    if cfg.codec == "raw":  # \ud800-free lines: the same UTF-8
        assert from_docs == [utf8(line) for line in LINES]
    else:
        assert from_docs == from_chunk


def test_with_the_time_beside_the_record_the_timestamp_is_written_only_when_named() -> None:
    doc = orjson.loads(encode_chunk(chunk(), "tenant_id")[0])
    plain = encoding_mod.DocEncoder(EncodingConfig(), entry_time=True).encode(doc)
    assert b"timestamp" not in plain and orjson.loads(plain)["message"] == LINES[0]
    named = encoding_mod.DocEncoder(
        EncodingConfig(only_fields=["timestamp", "message"], timestamp_format="unix_ms"), entry_time=True
    ).encode(doc)
    assert orjson.loads(named) == {"timestamp": 1_700_000_000_123, "message": LINES[0]}


def test_rfc3339_ns_shares_each_second_and_is_exact_across_seconds() -> None:
    """Stamps of one second share its text (kept from the last call), stamps of another second get
    theirs: every stamp as datetime writes it, in any order."""
    from datetime import UTC, datetime

    def expected(ns: int) -> str:
        return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"

    rng = random.Random(7)
    base = 1_796_633_570 * 10**9
    stamps = [base + rng.randrange(-3 * 10**9, 3 * 10**9) for _ in range(500)] + [0, 5, base - 1, base]
    for ns in stamps:
        assert encoding_mod.rfc3339_ns(ns) == expected(ns)
