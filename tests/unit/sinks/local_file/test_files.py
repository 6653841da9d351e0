"""The local file sink's pure parts: names, text lines, rotated names, retention, its config."""

from __future__ import annotations

import calendar

import pytest
from pydantic import ValidationError

from log_capturer.sinks.local_file.config import LocalFileSinkConfig, TextFormatConfig
from log_capturer.sinks.local_file.files import (
    Namer,
    TextFormatter,
    describe_sync,
    expired,
    is_size_rotated,
    rotated_name,
    safe_part,
    strftime_of,
)

#: 2026-12-06 03:04:05.25 UTC
NOW = calendar.timegm((2026, 12, 6, 3, 4, 5, 0, 0, 0)) + 0.25


def test_the_pattern_takes_the_write_time_in_utc_and_safe_source_names() -> None:
    n = Namer("logs-{date}-{hour}-{source_type}-{source_id}-{level}.log")
    assert (
        n.name("file", "/var/log/app.log", "error", NOW)
        == "logs-2026-12-06-03-file-_var_log_app.log-error.log"
    )
    assert n.name("file", "..", "", NOW).endswith("-_-unknown.log")
    assert Namer("{year}_{month}_{day}").name("", "", "", NOW) == "2026_12_06"
    assert n.timed and not Namer("logs-{source_type}.log").timed


def test_a_source_id_cannot_leave_the_directory_nor_make_a_name_too_long() -> None:
    assert "/" not in safe_part("../../etc/passwd")
    assert not safe_part("../x").startswith(".")
    assert len(safe_part("x" * 1000)) == 96


def test_the_matcher_knows_every_name_the_pattern_makes_rotated_or_compressed() -> None:
    n = Namer("logs-{date}.log")
    m = n.matcher()
    name = n.name("f", "s", "", NOW)
    rotated = rotated_name(name, NOW)
    assert rotated == "logs-2026-12-06.log.20261206T030405.250000"
    assert is_size_rotated(rotated) and not is_size_rotated(name)
    for candidate in (name, rotated, rotated + ".gz", name + ".gz"):
        assert m.match(candidate), candidate
    for other in ("other.log", "logs-2026-12-06.log.tmp", ".logs-2026-12-06.log.gz.tmp"):
        assert not m.match(other), other


def test_text_lines_follow_text_format() -> None:
    ts = "2026-12-06T03:04:05.123456789Z"
    args = (ts, "warn", "file", "/a.log", {"env": "prod", "team": "x"}, "disk at 91%")
    assert (
        TextFormatter(TextFormatConfig()).line(*args) == f"{ts} WARN file//a.log env=prod,team=x disk at 91%"
    )
    custom = TextFormatConfig(
        timestamp_format="%Y-%m-%d %H:%M:%S.%f", include_labels=False, field_separator=" | "
    )
    assert (
        TextFormatter(custom).line(*args) == "2026-12-06 03:04:05.123456 | WARN | file//a.log | disk at 91%"
    )
    assert (
        TextFormatter(TextFormatConfig(include_timestamp=False)).line(*args[:4], {}, "m")
        == "WARN file//a.log m"
    )
    assert TextFormatter(TextFormatConfig(raw_message_only=True)).line(*args) == "disk at 91%"
    assert TextFormatter(TextFormatConfig()).line(ts, "", "stdin", "-", {}, "m").split(" ")[1] == "-"


def test_strftime_of_keeps_text_it_cannot_read() -> None:
    assert strftime_of("yesterday", "%Y") == "yesterday"
    assert strftime_of("2026-12-06T03:04:05Z", "%H:%M:%S.%f") == "03:04:05.000000"


def test_retention_deletes_the_oldest_beyond_max_files_and_what_is_too_old() -> None:
    day = 86400.0
    files = [("a", NOW - 1), ("b", NOW - 2), ("c", NOW - 3), ("old", NOW - 8 * day)]
    assert expired(files, NOW, max_files=10, retention_days=7) == ["old"]
    assert expired(files, NOW, max_files=2, retention_days=7) == ["c", "old"]
    assert expired([], NOW, 1, 1) == []


def test_the_config_names_the_key_and_the_fix() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \{host\}"):
        LocalFileSinkConfig(filename_pattern="logs-{host}.log")
    with pytest.raises(ValidationError, match="without '/'"):
        LocalFileSinkConfig(filename_pattern="a/b.log")
    with pytest.raises(ValidationError, match="like '0644'"):
        LocalFileSinkConfig.model_validate({"file_permissions": 644})
    with pytest.raises(ValidationError, match="not an octal mode"):
        LocalFileSinkConfig.model_validate({"dir_permissions": "rwx"})
    with pytest.raises(ValidationError, match="timestamp_format"):
        LocalFileSinkConfig.model_validate({"text_format": {"timestamp_format": "iso"}})
    with pytest.raises(ValidationError, match="extra"):
        LocalFileSinkConfig.model_validate({"sync_policy": "always"})
    cfg = LocalFileSinkConfig.model_validate({"file_permissions": "0600", "dir_permissions": 0o750})
    assert (cfg.file_permissions, cfg.dir_permissions) == (0o600, 0o750)


def test_the_sync_policy_is_described_for_health() -> None:
    assert describe_sync(LocalFileSinkConfig()) == "fsync per batch before acknowledging"
    assert "every 2s" in describe_sync(LocalFileSinkConfig(sync_interval=2))
    assert "not a machine crash" in describe_sync(LocalFileSinkConfig(auto_sync=False))


def test_files_the_pattern_still_writes_now_are_current_and_never_expire() -> None:
    n = Namer("app-{source_id}-{date}.log")
    cur = n.current(NOW)
    assert cur.match("app-x-2026-12-06.log")
    assert not cur.match("app-x-2026-12-05.log")
    assert not cur.match("app-x-2026-12-06.log.20261206T030405.250000.gz")
    assert Namer("app.log").current(NOW).match("app.log")


def test_each_worker_writes_and_expires_only_its_own_files() -> None:
    n = Namer("logs-{date}-{worker}.log", "1")
    assert n.name("file", "/a", "", NOW) == "logs-2026-12-06-1.log"
    assert n.matcher().match("logs-2026-12-05-1.log.gz")
    assert not n.matcher().match("logs-2026-12-05-0.log.gz")
    assert n.current(NOW).match("logs-2026-12-06-1.log") and not n.current(NOW).match("logs-2026-12-06-0.log")


def test_several_workers_need_the_worker_in_the_pattern() -> None:
    from log_capturer.config.schema import Config

    sinks = {"local_file": {"enabled": True, "filename_pattern": "logs-{date}.log"}}
    with pytest.raises(ValidationError, match=r"put \{worker\} in the pattern"):
        Config.model_validate({"app": {"workers": 2}, "sinks": sinks})
    sinks["local_file"]["filename_pattern"] = "logs-{date}-{worker}.log"
    assert Config.model_validate({"app": {"workers": 2}, "sinks": sinks}).app.workers == 2
