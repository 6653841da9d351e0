from __future__ import annotations

from pathlib import Path

from log_capturer.devtools.config_doc import format_duration, render


def test_reference_is_up_to_date(repo_root: Path) -> None:
    committed = (repo_root / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is stale: run "
        "`python -m log_capturer.devtools.config_doc > docs/configuration.md`"
    )


def test_format_duration() -> None:
    assert [format_duration(x) for x in (0.1, 5, 120, 3600, 1.5, 604800)] == [
        "100ms",
        "5s",
        "2m",
        "1h",
        "1.5s",
        "7d",
    ]
