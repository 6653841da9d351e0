from __future__ import annotations

from log_capturer.sources.syslog.framing import Framer


def feed_bytewise(framer: Framer, data: bytes) -> list[tuple[bytes, bool]]:
    out = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    return out


def test_newline_frames_with_crlf_and_blank_lines() -> None:
    f = Framer(100)
    assert f.feed(b"<1>a\r\n\n<2>b\n<3>c") == [(b"<1>a", False), (b"<2>b", False)]
    assert f.feed(b"d\n") == [(b"<3>cd", False)]
    assert f.pending == 0


def test_octet_counting_and_mixed_framing() -> None:
    data = b"5 <1>ab10 <2>with\nnl<3>plain\n3 <4>"
    expected = [(b"<1>ab", False), (b"<2>with\nnl", False), (b"<3>plain", False), (b"<4>", False)]
    assert Framer(100).feed(data) == expected
    assert feed_bytewise(Framer(100), data) == expected


def test_digits_without_a_space_are_a_newline_frame() -> None:
    f = Framer(100)
    assert f.feed(b"2026-11-25 started\n") == [(b"2026-11-25 started", False)]
    assert f.feed(b"12345678901234 x\n") == [(b"12345678901234 x", False)]


def test_overlong_frames_are_cut_and_the_rest_skipped() -> None:
    f = Framer(8)
    assert f.feed(b"<1>0123456789\n<2>ok\n") == [(b"<1>01234", True), (b"<2>ok", False)]
    f = Framer(8)
    got = feed_bytewise(f, b"<1>0123456789abcdef\n<2>ok\n")
    assert got == [(b"<1>01234", True), (b"<2>ok", False)]
    f = Framer(8)
    assert feed_bytewise(f, b"12 <1>456789abc4 <2>x") == [(b"<1>45678", True), (b"<2>x", False)]


def test_finish_returns_the_unterminated_last_frame() -> None:
    f = Framer(100)
    f.feed(b"<1>last without newline")
    assert f.finish() == (b"<1>last without newline", False)
    f = Framer(100)
    f.feed(b"20 <1>cut short")
    assert f.finish() == (b"<1>cut short", True)
    assert Framer(100).finish() is None
