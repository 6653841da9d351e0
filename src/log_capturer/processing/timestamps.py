"""Timestamps to nanoseconds since the epoch: RFC 3339, strptime formats and epoch numbers.

Nanosecond precision is kept for RFC 3339 (``datetime`` stops at microseconds).
Values without a UTC offset are read in a given time zone (UTC by default).
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NS = 1_000_000_000

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)
#: Keywords a ``timestamp_parse`` format may be instead of a strptime pattern.
EPOCH_UNITS = {"unix": NS, "unix_s": NS, "unix_ms": 1_000_000, "unix_us": 1_000, "unix_ns": 1}
KEYWORDS = ("rfc3339", *EPOCH_UNITS)


def zone(name: str) -> tzinfo:
    """A time zone by name: ``UTC``, ``local`` (the agent's) or an IANA name like ``Europe/Paris``."""
    if name.upper() == "UTC":
        return UTC
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use 'UTC', 'local' or an IANA name") from None


def _offset_of(tz: tzinfo, naive: datetime) -> int:
    off = tz.utcoffset(naive)
    return int(off.total_seconds()) if off is not None else 0


def parse_rfc3339(text: str, tz: tzinfo = UTC) -> int | None:
    """``2026-11-25T12:00:00.123456789Z`` (or with an offset, or naive in ``tz``) -> ns; None if not."""
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        naive = datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None
    frac = m.group(7)
    frac_ns = int(frac.ljust(9, "0")) if frac else 0
    if m.group(8):
        offset = 0
    elif m.group(9):
        offset = (int(m.group(10)) * 3600 + int(m.group(11)) * 60) * (1 if m.group(9) == "+" else -1)
    else:
        offset = _offset_of(tz, naive)
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    return secs * NS + frac_ns


def parse_epoch(value: Any, unit_ns: int) -> int | None:
    """A number (or numeric text) of seconds/ms/us/ns since the epoch -> ns; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return None
    if isinstance(value, int):
        return value * unit_ns
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1e20:
        return round(value * unit_ns)
    return None


def parse_strptime(text: str, fmt: str, tz: tzinfo = UTC) -> int | None:
    """``text`` in strptime ``fmt`` -> ns; naive results are read in ``tz``. None if it does not match."""
    try:
        dt = datetime.strptime(text.strip(), fmt)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    if dt.year == 1900 and "%Y" not in fmt and "%y" not in fmt:
        # Formats without a year (syslog style) mean the last such date that is not in the future.
        dt = with_inferred_year(dt)
    micro = dt.microsecond
    return calendar.timegm(dt.utctimetuple()) * NS + micro * 1000


def with_inferred_year(dt: datetime) -> datetime:
    """``dt`` (aware, year unknown) in the current year, or the previous one if that is >1 day ahead."""
    now = datetime.now(dt.tzinfo)
    for year in range(now.year, now.year - 5, -1):
        try:
            guess = dt.replace(year=year)
        except ValueError:  # 29 February outside a leap year
            continue
        if (guess - now).total_seconds() <= 86400:
            return guess
    return dt


def parse_any(value: Any, formats: list[str], tz: tzinfo = UTC) -> int | None:
    """Try each format in order (strptime patterns or the keywords in :data:`KEYWORDS`)."""
    for fmt in formats:
        if fmt in EPOCH_UNITS:
            ns = parse_epoch(value, EPOCH_UNITS[fmt])
        elif not isinstance(value, str):
            continue
        elif fmt == "rfc3339":
            ns = parse_rfc3339(value, tz)
        else:
            ns = parse_strptime(value, fmt, tz)
        if ns is not None:
            return ns
    return None
