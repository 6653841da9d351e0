from __future__ import annotations

import random

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


def _result(out: Lines) -> tuple[list[str], list[int], set[int]]:
    return out.text, [out.raw_count(i) for i in range(len(out))], out.truncated


@pytest.mark.parametrize(
    ("preset", "start", "cont", "max_lines", "max_bytes"),
    [
        ("java", "", "", 500, 1 << 20),
        ("python", "", "", 500, 1 << 20),
        ("java", "", "", 3, 1 << 20),
        ("java", "", "", 500, 90),
        ("", r"\d{4}-", "", 500, 1 << 20),
        ("", r"\d{4}-", r"\s", 4, 1 << 20),
        ("", "", r"(?i)[a-c]", 500, 200),
    ],
)
def test_a_batch_at_a_time_gives_what_the_line_by_line_loop_gives(
    preset: str, start: str, cont: str, max_lines: int, max_bytes: int
) -> None:
    """feed() takes runs of lines as slices; _feed_lines, the loop over each line, is the reference:
    the same records, raw counts, truncated records and held lines, batch after batch."""
    rnd = random.Random(f"{preset}{start}{cont}{max_lines}{max_bytes}")
    pool = [
        "2026-11-25 07:00:00 INFO ok",
        "2026-11-25 07:00:01 ERROR failed",
        "\tat com.x.Y.z(Y.java:1)",
        "Caused by: java.io.IOException: x",
        "java.lang.IllegalStateException: boom",
        "\t... 3 more",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: bad",
        "ts=2026 level=info msg=x",
        '{"level":"info"}',
        "a plain line",
        "b",
        " ",
    ]
    rule = MultilineRule.build(preset or None, start, cont, 1.0, max_lines, max_bytes)
    fast, slow = MultilineJoiner(rule), MultilineJoiner(rule)
    for step in range(300):
        n = rnd.choice([0, 1, 2, 5, 30, 200])
        text = [rnd.choice(pool) for _ in range(n)]
        raw = [rnd.randint(1, 3) for _ in range(n)] if rnd.random() < 0.5 else None
        trunc = {i for i in range(n) if rnd.random() < 0.1}
        got = fast.feed(Lines(list(text), raw and list(raw), set(trunc)), float(step))
        want = slow._feed_lines(Lines(list(text), raw and list(raw), set(trunc)), float(step))
        assert _result(got) == _result(want), step
        assert fast.held == slow.held and fast.due(step + 0.5) == slow.due(step + 0.5)
    assert _result(fast.flush()) == _result(slow.flush())


@pytest.mark.parametrize("preset", ["java", "python"])
def test_a_presets_first_characters_never_skip_a_continuation_line(preset: str) -> None:
    """The lines the pattern is not run on (line_heads) are exactly those that cannot match it."""
    rule = MultilineRule.build(preset, "", "", 1.0, 500, 1 << 20)
    assert rule.heads is not None
    rnd = random.Random(preset)
    tails = [
        "at a.B(B.java:1)",
        "Caused by: x",
        "Traceback (most recent call last):",
        "x.YError: z",
        "Error",
        "",
    ]
    heads = [chr(c) for c in range(128)] + ["\u00a0", "\u2003", "é", "\u3000", ""]
    lines = [h + rnd.choice(tails) for h in heads for _ in range(3)] + ["", "\t", " at x"]
    full = MultilineRule(None, rule.continuation, 1.0, 500, 1 << 20)
    assert MultilineJoiner(rule)._continuing(lines) == MultilineJoiner(full)._continuing(lines)
    assert len(MultilineJoiner(rule)._continuing(lines)) > 40
    # Only a preset left as it is gets the table: a pattern of one's own may start anywhere.
    assert MultilineRule.build(preset, "", r"\d", 1.0, 500, 1 << 20).heads is None
    assert MultilineRule.build(preset, r"\d", "", 1.0, 500, 1 << 20).heads is None
