from __future__ import annotations

from datetime import datetime

import pytest

from log_capturer.processing.timestamps import parse_rfc3339
from log_capturer.sources.syslog.parse import LEVELS, parse


def test_rfc5424_with_structured_data() -> None:
    p = parse(
        '<155>1 2026-11-25T07:05:14.787168+00:00 web1 myapp 42 M1 [timeQuality tzKnown="1"]'
        '[ex@32473 tenant_id="acme" q="a\\"b\\]c"] hello world'
    )
    assert p.message == "hello world"
    assert p.level == "error"
    assert p.ts == parse_rfc3339("2026-11-25T07:05:14.787168Z")
    assert p.fields == {
        "facility": "local3",
        "severity": "err",
        "hostname": "web1",
        "appname": "myapp",
        "procid": "42",
        "msgid": "M1",
        "structured_data": {"timeQuality": {"tzKnown": "1"}, "ex@32473": {"tenant_id": "acme", "q": 'a"b]c'}},
    }
    assert p.error == ""


def test_rfc5424_nil_values_bom_and_empty_message() -> None:
    p = parse("<14>1 - - - - - - \ufeffbody")
    assert (p.message, p.ts, p.fields) == ("body", None, {"facility": "user", "severity": "info"})
    assert parse("<14>1 2026-11-25T07:05:14Z h a - - -").message == ""


def test_rfc5424_bad_time_keeps_the_message() -> None:
    p = parse("<14>1 yesterday h a - - - text")
    assert (p.message, p.ts, p.error) == ("text", None, "bad_timestamp")


@pytest.mark.parametrize(
    ("line", "hostname", "appname", "procid", "message"),
    [
        ("<12>Nov 25 07:05:14 vm app2: line one", "vm", "app2", None, "line one"),
        ("<30>Nov  5 07:05:14 vm app4[14868]: udp 3164", "vm", "app4", "14868", "udp 3164"),
        ("<30>Nov 25 07:05:14 sshd[7]: no hostname", None, "sshd", "7", "no hostname"),
        # rsyslog's parser: after the hostname, a tag may end with a space (rsyslog forwards
        # `host interop3 message` for a tag without a colon).
        ("<30>Nov 25 07:05:14 host interop3 message one", "host", "interop3", None, "message one"),
        ("<30>Nov 25 07:05:14 host free text", "host", "free", None, "text"),
        ("<30>Nov 25 07:05:14 host app[12] pid, no colon", "host", "app", "12", "pid, no colon"),
        ("<30>Nov 25 07:05:14 host app:no space", "host", "app", None, "no space"),
        ("<30>Nov 25 07:05:14 host lone", "host", None, None, "lone"),
        ("<30>2026-11-25T07:05:14Z host interop3 iso time", "host", "interop3", None, "iso time"),
        ("<30>2026-11-25T07:05:14Z host tag: iso time", "host", "tag", None, "iso time"),
        # No time, so no hostname: a first word without ':' may be text, so it stays in the message.
        ("<30>no time at all", None, None, None, "no time at all"),
        ("<30>kernel: no time, a tag", None, "kernel", None, "no time, a tag"),
    ],
)
def test_rfc3164_variants(
    line: str, hostname: str | None, appname: str | None, procid: str | None, message: str
) -> None:
    p = parse(line)
    assert p.message == message
    assert p.fields.get("hostname") == hostname
    assert p.fields.get("appname") == appname
    assert p.fields.get("procid") == procid
    assert p.error == ""


def test_rfc3164_time_is_local_and_this_year() -> None:
    p = parse("<13>Jan  2 03:04:05 h t: x")
    assert p.ts is not None
    got = datetime.fromtimestamp(p.ts / 1e9)
    assert (got.month, got.day, got.hour, got.minute, got.second) == (1, 2, 3, 4, 5)
    assert got.year in (datetime.now().year, datetime.now().year - 1)


def test_severity_to_level() -> None:
    got = [parse(f"<{8 + sev}>x").level for sev in range(8)]
    assert got == list(LEVELS)
    assert got == ["fatal", "fatal", "critical", "error", "warn", "info", "info", "debug"]


def test_facility_names() -> None:
    assert parse("<0>x").fields["facility"] == "kern"
    assert parse("<191>x").fields == {"facility": "local7", "severity": "debug"}


def test_not_syslog_is_kept_whole() -> None:
    for line, reason in (("just text", "no_priority"), ("<192>x", "bad_priority"), ("<ab>x", "no_priority")):
        p = parse(line)
        assert (p.message, p.fields, p.level, p.ts, p.error) == (line, {}, None, None, reason)
