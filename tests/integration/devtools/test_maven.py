"""devtools/maven.py against real Maven: a small artifact's jars land in the cache folder, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_capturer.devtools import maven

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>log-capturer.test</groupId>
  <artifactId>maven-fetch-test</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""


class FetchError(RuntimeError):
    pass


def test_jars_are_fetched_atomically_and_then_reused(tmp_path: Path) -> None:
    libs = tmp_path / "slf4j" / "libs"
    logged: list[str] = []

    def fetch() -> Path:
        return maven.ensure_jars(
            libs,
            POM,
            expect="slf4j-api-*.jar",
            what="SLF4J",
            stamp="1.7.36",
            error=FetchError,
            log=logged.append,
        )

    assert fetch() == libs
    assert (libs / "slf4j-api-1.7.36.jar").stat().st_size > 0
    assert (libs / maven.MARKER).read_text() == "1.7.36"
    assert sorted(p.name for p in libs.parent.iterdir()) == ["libs"]  # the staging folder is gone
    assert fetch() == libs  # reused: Maven is not run again
    assert logged == [f"fetching SLF4J jars from Maven Central into {libs} (once)"]


def test_a_missing_expected_jar_is_a_failure(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    with pytest.raises(FetchError, match=r"^Maven could not fetch Kafka:"):
        maven.ensure_jars(
            libs, POM, expect="kafka_2.13-*.jar", what="Kafka", stamp="x", error=FetchError, log=print
        )
    assert list(tmp_path.iterdir()) == []
