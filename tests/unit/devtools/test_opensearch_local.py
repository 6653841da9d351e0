"""Which Java an OpenSearch version needs and where the manager finds it (fake JDK folders: a
``release`` file and an executable ``bin/javac``; nothing is run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_capturer.devtools import opensearch_local
from log_capturer.devtools.opensearch_local import (
    LocalOpenSearchError,
    is_elasticsearch,
    java_home,
    java_major,
    main_class,
    required_java,
)


def jdk(root: Path, name: str, version: str, javac: bool = True) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    if javac:
        (home / "bin" / "javac").write_text("#!/bin/sh\n")
        (home / "bin" / "javac").chmod(0o755)
    return home


def test_opensearch_3_needs_java_21_and_the_others_17() -> None:
    assert required_java("3.8.0.0") == 21
    assert required_java("2.19.1.0") == 17
    assert required_java("1.3.13.0") == 17


def test_java_major_reads_the_release_file_of_a_jdk(tmp_path: Path) -> None:
    assert java_major(jdk(tmp_path, "a", "25.0.3")) == 25
    assert java_major(jdk(tmp_path, "b", "17.0.9")) == 17
    assert java_major(jdk(tmp_path, "c", "21", javac=False)) is None  # a runtime, not a JDK
    assert java_major(tmp_path / "missing") is None


def test_java_home_prefers_explicit_then_java_home_then_the_newest_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jvm = tmp_path / "jvm"
    old = jdk(jvm, "old", "17.0.9")
    new = jdk(jvm, "new", "25.0.3")
    mid = jdk(tmp_path, "mid", "21.0.1")
    monkeypatch.setattr(opensearch_local, "JVM_DIR", jvm)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert java_home(21) == new
    assert java_home(17) is None  # the java and javac on PATH
    monkeypatch.setenv("JAVA_HOME", str(mid))
    assert java_home(21) == mid
    assert java_home(17) is None  # Java 17 versions keep the one on PATH whatever JAVA_HOME says
    assert java_home(21, new) == new
    assert java_home(17, new) == new
    with pytest.raises(LocalOpenSearchError, match="not a JDK of Java 21"):
        java_home(21, old)


def test_no_jdk_new_enough_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jvm = tmp_path / "jvm"
    jdk(jvm, "old", "17.0.9")
    monkeypatch.setattr(opensearch_local, "JVM_DIR", jvm)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(LocalOpenSearchError, match=r"needs Java 21 or newer.*set JAVA_HOME"):
        java_home(21)


def test_a_runner_of_major_7_is_elasticsearch_on_java_17() -> None:
    assert is_elasticsearch("7.10.2.0") and not is_elasticsearch("3.8.0.0")
    assert main_class("7.10.2.0") == "LocalElasticsearch" and main_class("1.3.13.0") == "LocalOpenSearch"
    assert required_java("7.10.2.0") == 17
