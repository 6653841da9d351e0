from __future__ import annotations

from log_capturer.sources.stdin import LineSplitter


def test_lines_across_reads_crlf_and_blank_lines() -> None:
    s = LineSplitter(100)
    assert s.feed(b"one\r\ntw") == (["one"], set())
    assert s.feed(b"o\n\n\nthree\n") == (["two", "three"], set())
    assert s.finish() is None


def test_last_line_without_newline() -> None:
    s = LineSplitter(100)
    assert s.feed(b"a\nb") == (["a"], set())
    assert s.finish() == "b"


def test_invalid_utf8_is_escaped() -> None:
    s = LineSplitter(100)
    assert s.feed(b"caf\xc3\xa9 \xff\n") == (["caf\u00e9 \\xff"], set())


def test_long_lines_are_truncated_and_marked() -> None:
    s = LineSplitter(5)
    lines, cut = s.feed(b"abcdefgh\nok\n")
    assert (lines, cut) == (["abcde", "ok"], {0})
    s = LineSplitter(5)
    assert s.feed(b"abc") == ([], set())
    assert s.feed(b"defgh") == (["abcde"], {0})
    assert s.feed(b"ijk\nnext\n") == (["next"], set())
    assert s.finish() is None


def test_truncation_does_not_split_a_utf8_character() -> None:
    s = LineSplitter(5)
    lines, cut = s.feed("ab\u00e9\u00e9\u00e9\n".encode())
    assert lines == ["ab\u00e9"] and cut == {0}
