from __future__ import annotations

import pytest

from log_capturer.processing.assembly import Lines
from log_capturer.processing.multiline import MultilineJoiner, MultilineRule

JAVA_LOG = """\
2026-01-01 12:00:00,001 INFO  [main] c.e.App - starting
2026-01-01 12:00:01,002 ERROR [main] c.e.App - request failed
java.lang.IllegalStateException: boom
\tat com.example.Service.handle(Service.java:42)
\tat com.example.App.main(App.java:10)
Caused by: java.io.IOException: disk full
\tat com.example.Store.write(Store.java:7)
\t... 2 more
\tSuppressed: java.lang.RuntimeException: close failed
\t\tat com.example.Store.close(Store.java:9)
2026-01-01 12:00:02,003 WARN  [main] c.e.App - retrying
Exception in thread "worker-1" java.lang.OutOfMemoryError: Java heap space
\tat java.base/java.util.Arrays.copyOf(Arrays.java:3512)
Error: this plain line is not part of a trace
""".splitlines()

PYTHON_LOG = """\
2026-01-01 12:00:00 INFO app: starting
2026-01-01 12:00:01 ERROR app: request failed
Traceback (most recent call last):
  File "/srv/app.py", line 10, in handle
    do()
  File "/srv/app.py", line 5, in do
    raise KeyError("x")
KeyError: 'x'
During handling of the above exception, another exception occurred:
Traceback (most recent call last):
  File "/srv/app.py", line 12, in handle
    raise app.errors.RequestFailed("bad") from None
app.errors.RequestFailedError: bad
2026-01-01 12:00:02 INFO app: next request
""".splitlines()


def join(rule: MultilineRule, lines: list[str], batch: int = 3) -> list[str]:
    j = MultilineJoiner(rule)
    out: list[str] = []
    for i in range(0, len(lines), batch):
        out += j.feed(Lines(lines[i : i + batch]), float(i)).text
    return out + j.flush().text


@pytest.mark.parametrize("batch", [1, 3, 100])
def test_java_preset(batch: int) -> None:
    rule = MultilineRule.build("java", "", "", 1.0, 500, 1 << 20)
    assert join(rule, JAVA_LOG, batch) == [
        JAVA_LOG[0],
        "\n".join(JAVA_LOG[1:10]),
        JAVA_LOG[10],
        "\n".join(JAVA_LOG[11:13]),
        JAVA_LOG[13],
    ]


@pytest.mark.parametrize("batch", [1, 4, 100])
def test_python_preset(batch: int) -> None:
    rule = MultilineRule.build("python", "", "", 1.0, 500, 1 << 20)
    assert join(rule, PYTHON_LOG, batch) == [PYTHON_LOG[0], "\n".join(PYTHON_LOG[1:13]), PYTHON_LOG[13]]


def test_start_pattern_only() -> None:
    rule = MultilineRule.build(None, r"\d{4}-\d\d-\d\d ", "", 1.0, 500, 1 << 20)
    assert join(rule, ["2026-01-01 a", "more", "  more", "2026-01-02 b"]) == [
        "2026-01-01 a\nmore\n  more",
        "2026-01-02 b",
    ]


def test_held_count_timeout_and_limits() -> None:
    rule = MultilineRule.build("java", "", "", 2.0, 3, 1 << 20)
    j = MultilineJoiner(rule)
    out = j.feed(Lines(["ERROR x", "\tat a", "\tat b", "\tat c", "\tat d"]), 10.0)
    assert out.text == ["ERROR x\n\tat a\n\tat b"]  # max_lines reached; nothing dropped
    assert out.raw == [3] and j.held == 2
    assert not j.due(11.9) and j.due(12.0)
    assert j.flush().text == ["\tat c\n\tat d"] and j.held == 0


def test_streams_are_never_joined_and_truncation_is_kept() -> None:
    rule = MultilineRule.build("java", "", "", 1.0, 500, 1 << 20)
    j = MultilineJoiner(rule)
    out = j.feed(Lines(["ERROR x", "\tat a", "\tat b"], None, {1}, ["stderr", "stderr", "stdout"]), 0.0)
    assert out.text == ["ERROR x\n\tat a"] and out.streams == ["stderr"] and out.truncated == {0}
    flushed = j.flush()
    assert flushed.text == ["\tat b"] and flushed.streams == ["stdout"]


def test_a_rule_needs_a_pattern() -> None:
    with pytest.raises(ValueError, match="needs a preset"):
        MultilineRule.build(None, "", "", 1.0, 500, 1 << 20)
