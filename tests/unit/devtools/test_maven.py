"""devtools/maven.py: a complete jar folder is reused, a failed fetch leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_capturer.devtools import maven


class FetchError(RuntimeError):
    pass


def _fetch(libs: Path, pom_text: str) -> Path:
    return maven.ensure_jars(
        libs,
        pom_text,
        expect="thing-*.jar",
        what="Thing 1.0",
        stamp="1.0",
        error=FetchError,
        log=lambda _: None,
    )


def test_a_complete_folder_is_reused_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = tmp_path / "thing-1.0" / "libs"
    libs.mkdir(parents=True)
    (libs / maven.MARKER).write_text("1.0")
    (libs / "thing-1.0.jar").write_bytes(b"jar")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # Maven would not be found
    assert _fetch(libs, "<not a pom>") == libs
    assert (libs / "thing-1.0.jar").read_bytes() == b"jar"


def test_without_maven_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FetchError, match=r"Maven \('mvn'\) is not on PATH; install it"):
        _fetch(tmp_path / "libs", "<project/>")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_fetch_carries_mavens_output_and_leaves_nothing(tmp_path: Path) -> None:
    libs = tmp_path / "thing-1.0" / "libs"
    logged: list[str] = []
    with pytest.raises(FetchError, match=r"Maven could not fetch Thing 1\.0:\n(.|\n)*pom\.xml"):
        maven.ensure_jars(
            libs,
            "<project><this is not xml",
            expect="thing-*.jar",
            what="Thing 1.0",
            stamp="1.0",
            error=FetchError,
            log=logged.append,
        )
    assert logged == [f"fetching Thing 1.0 jars from Maven Central into {libs} (once)"]
    assert list(libs.parent.iterdir()) == []  # no libs, no staging folder
