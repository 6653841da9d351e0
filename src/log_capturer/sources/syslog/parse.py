"""Syslog message parsing: RFC 5424 and RFC 3164 (BSD), detected per message.

The result of :func:`parse` is the text shipped as ``message`` (the MSG part),
the fields (facility, severity, hostname, appname, procid, msgid,
structured_data), the message's time in ns when it has one, and the level the
severity maps to. A message that is not syslog at all (no ``<PRI>``) is kept
whole as the message, with no level (it is detected later), and reported as a
parse error.

RFC 3164 times carry no year and no zone: they are read in the agent's local
zone, in the latest year that does not put them more than a day in the future.
The RFC 3164 tag after the hostname ends with ``:``, ``[pid]:`` or a space, as
rsyslog's parser takes it; in a message with no time (so no hostname either)
only a tag ending with ``:`` is taken, since the first word may as well be text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from log_capturer.processing.timestamps import NS, parse_rfc3339, with_inferred_year

FACILITIES = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
#: Severity number -> the record's level.
LEVELS = ("fatal", "fatal", "critical", "error", "warn", "info", "info", "debug")

_PRI = re.compile(r"<(\d{1,3})>")
_5424_HEAD = re.compile(r"(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ?")
_SD_ELEMENT = re.compile(r'\[([^\s\]=]+)((?:\s+[^\s=\]"]+="(?:[^"\\]|\\.)*")*)\s*\]')
_SD_PARAM = re.compile(r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"')
_SD_ESCAPE = re.compile(r'\\(["\\\]])')
_3164_TIME = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ")
_3164_ISO = re.compile(r"(\d{4}-\d{2}-\d{2}T\S+) ")
_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,32})\])?: ?")
#: After a hostname, the tag may also end with a space, as rsyslog's RFC 3164 parser takes it
#: (`interop3 message`, `app[12] message`); a last word with nothing after it stays the message.
_LOOSE_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,32})\])?(?:: ?| )")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_BOM = "\ufeff"


class Parsed(NamedTuple):
    message: str
    fields: dict[str, Any]
    #: The message's own time (ns since the epoch), None when it has none.
    ts: int | None
    #: Level from the severity, None when there was no valid priority.
    level: str | None
    #: '' when parsed, else the reason it was not (for metrics).
    error: str


def parse(text: str) -> Parsed:
    """Parse one syslog message (already decoded, framing removed)."""
    m = _PRI.match(text)
    if m is None:
        return Parsed(text, {}, None, None, "no_priority")
    pri = int(m.group(1))
    if pri > 191:
        return Parsed(text, {}, None, None, "bad_priority")
    facility, severity = divmod(pri, 8)
    fields: dict[str, Any] = {"facility": FACILITIES[facility], "severity": SEVERITIES[severity]}
    level = LEVELS[severity]
    rest = text[m.end() :]
    head = _5424_HEAD.match(rest)
    if head is not None and head.group(1) != "0":
        return _parse_5424(rest, head, fields, level)
    return _parse_3164(rest, fields, level)


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _parse_5424(rest: str, head: re.Match[str], fields: dict[str, Any], level: str) -> Parsed:
    _version, stamp, host, app, procid, msgid = head.groups()
    for key, value in (("hostname", host), ("appname", app), ("procid", procid), ("msgid", msgid)):
        if value != "-":
            fields[key] = value
    ts = None
    error = ""
    if stamp != "-":
        ts = parse_rfc3339(stamp)
        if ts is None:
            error = "bad_timestamp"
    pos = head.end()
    if rest[pos : pos + 1] == "-" and rest[pos + 1 : pos + 2] in ("", " "):
        pos += 2
    elif rest[pos : pos + 1] == "[":
        sd: dict[str, dict[str, str]] = {}
        while (el := _SD_ELEMENT.match(rest, pos)) is not None:
            params = sd.setdefault(el.group(1), {})
            for name, value in _SD_PARAM.findall(el.group(2)):
                params[name] = _SD_ESCAPE.sub(r"\1", value)
            pos = el.end()
        if sd:
            fields["structured_data"] = sd
        else:
            error = error or "bad_structured_data"
        if rest[pos : pos + 1] == " ":
            pos += 1
    message = rest[pos:]
    if message.startswith(_BOM):
        message = message[1:]
    return Parsed(message, fields, ts, level, error)


def _parse_3164(rest: str, fields: dict[str, Any], level: str) -> Parsed:
    ts = None
    tm = _3164_TIME.match(rest)
    if tm is not None:
        month = _MONTHS.get(tm.group(1))
        if month is not None:
            ts = _bsd_time(month, int(tm.group(2)), int(tm.group(3)), int(tm.group(4)), int(tm.group(5)))
        rest = rest[tm.end() :]
    elif (iso := _3164_ISO.match(rest)) is not None and (ts := parse_rfc3339(iso.group(1))) is not None:
        rest = rest[iso.end() :]
    if ts is None:
        # No time: what follows is the tag (if any, ending with ':') and the message, no hostname.
        return _tagged(rest, fields, level, None, _TAG)
    if _TAG.match(rest) is None:
        host, sep, after = rest.partition(" ")
        if sep and host:
            fields["hostname"] = host
            return _tagged(after, fields, level, ts, _LOOSE_TAG)
    return _tagged(rest, fields, level, ts, _TAG)


def _tagged(
    rest: str, fields: dict[str, Any], level: str, ts: int | None, pattern: re.Pattern[str]
) -> Parsed:
    tag = pattern.match(rest)
    if tag is not None:
        fields["appname"] = tag.group(1)
        if tag.group(2):
            fields["procid"] = tag.group(2)
        rest = rest[tag.end() :]
    return Parsed(rest, fields, ts, level, "")


def _bsd_time(month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    local = datetime.now().astimezone().tzinfo
    try:
        dt = datetime(2000, month, day, hour, minute, second, tzinfo=local)
    except ValueError:
        return None
    dt = with_inferred_year(dt)
    return int(dt.timestamp()) * NS
