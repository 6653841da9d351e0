from __future__ import annotations

from datetime import UTC, datetime

from log_capturer.processing.timestamps import (
    parse_any,
    parse_epoch,
    parse_rfc3339,
    parse_strptime,
    with_inferred_year,
    zone,
)

BASE = 1_795_593_600 * 1_000_000_000  # 2026-11-25T08:00:00Z


def test_rfc3339_keeps_nanoseconds_and_offsets() -> None:
    assert parse_rfc3339("2026-11-25T08:00:00Z") == BASE
    assert parse_rfc3339("2026-11-25T08:00:00.123456789Z") == BASE + 123_456_789
    assert parse_rfc3339("2026-11-25T09:00:00.5+01:00") == BASE + 500_000_000
    assert parse_rfc3339("2026-11-25 03:00:00-0500") == BASE
    assert parse_rfc3339("2026-11-25T08:00:00,25Z") == BASE + 250_000_000


def test_rfc3339_without_offset_uses_the_given_zone() -> None:
    assert parse_rfc3339("2026-11-25T08:00:00") == BASE
    assert parse_rfc3339("2026-11-25T09:00:00", zone("Europe/Paris")) == BASE


def test_rfc3339_rejects_what_is_not_a_time() -> None:
    for text in ("", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-25"):
        assert parse_rfc3339(text) is None, text


def test_epochs() -> None:
    assert parse_epoch(1_795_593_600, 1_000_000_000) == BASE
    assert parse_epoch("1795593600.5", 1_000_000_000) == BASE + 500_000_000
    assert parse_epoch(1_795_593_600_000, 1_000_000) == BASE
    assert parse_epoch(True, 1) is None
    assert parse_epoch("abc", 1) is None
    assert parse_epoch(float("nan"), 1) is None


def test_strptime_with_and_without_offset() -> None:
    assert parse_strptime("25/Nov/2026:09:00:00 +0100", "%d/%b/%Y:%H:%M:%S %z") == BASE
    assert parse_strptime("2026-11-25 08:00:00.250", "%Y-%m-%d %H:%M:%S.%f") == BASE + 250_000_000
    assert parse_strptime("not it", "%Y") is None


def test_parse_any_tries_formats_in_order() -> None:
    formats = ["%d/%b/%Y:%H:%M:%S %z", "rfc3339", "unix_ms"]
    assert parse_any("2026-11-25T08:00:00Z", formats) == BASE
    assert parse_any(1_795_593_600_000, formats) == BASE
    assert parse_any("nope", formats) is None


def test_year_is_inferred_without_landing_in_the_future() -> None:
    now = datetime.now(UTC)
    past = with_inferred_year(datetime(1900, now.month, now.day, tzinfo=UTC))
    assert past.year == now.year
    future_month = (now.month % 12) + 1
    guess = with_inferred_year(datetime(1900, future_month, 28, tzinfo=UTC))
    assert guess.year in (now.year, now.year - 1)
    assert (guess - now).total_seconds() <= 86400
