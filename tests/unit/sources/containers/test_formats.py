from __future__ import annotations

import orjson

from log_capturer.processing.assembly import Chain, Lines
from log_capturer.processing.multiline import MultilineJoiner, MultilineRule
from log_capturer.sources.containers.formats import CriDecoder, DockerJsonDecoder, Finish


def docker(log: str, stream: str = "stdout") -> str:
    return orjson.dumps({"log": log, "stream": stream, "time": "2026-01-01T00:00:00.000000001Z"}).decode()


def test_docker_lines_streams_and_crlf() -> None:
    d = DockerJsonDecoder(1 << 20, 5.0)
    out = d.feed(Lines([docker("a\n"), docker("b\r\n", "stderr"), docker("\n")]), 0.0)
    assert out.text == ["a", "b", ""] and out.streams == ["stdout", "stderr", "stdout"]
    assert out.raw == [1, 1, 1] and d.held == 0


def test_docker_split_lines_are_reassembled_and_held_until_complete() -> None:
    d = DockerJsonDecoder(1 << 20, 5.0)
    out = d.feed(Lines([docker("x\n"), docker("part1-"), docker("part2-")]), 0.0)
    assert out.text == ["x"] and d.held == 2
    out = d.feed(Lines([docker("end\n")]), 1.0)
    assert out.text == ["part1-part2-end"] and out.raw == [3] and d.held == 0


def test_docker_parts_interleaved_with_the_other_stream_join_per_stream() -> None:
    """A long stderr line written while stdout is busy: its parts are between stdout's lines."""
    d = DockerJsonDecoder(1 << 20, 5.0)
    out = d.feed(Lines([docker("half ", "stderr"), docker("out 1\n"), docker("out 2\n")]), 0.0)
    assert out.text == ["out 1", "out 2"] and out.streams == ["stdout", "stdout"]
    # Until the stderr line ends, the checkpoint stays before its first part.
    assert d.held == 3
    out = d.feed(Lines([docker("and", "stderr"), docker("out 3\n"), docker(" more\n", "stderr")]), 0.0)
    assert out.text == ["out 3", "half and more"] and out.streams == ["stdout", "stderr"]
    assert out.raw == [1, 3] and d.held == 0
    d.feed(Lines([docker("out "), docker("err\n", "stderr")]), 0.0)
    assert d.held == 2  # stdout's part is still open
    assert d.flush().text == ["out "] and d.held == 0


def test_unfinished_lines_of_both_streams_flush_oldest_first() -> None:
    d = DockerJsonDecoder(1 << 20, 5.0)
    d.feed(Lines([docker("b", "stderr"), docker("a")]), 0.0)
    assert d.flush().text == ["b", "a"]


def test_damaged_lines_are_passed_on_unchanged() -> None:
    d = DockerJsonDecoder(1 << 20, 5.0)
    out = d.feed(Lines(['{"log": "tru', "not json", docker("ok\n")]), 0.0)
    assert out.text == ['{"log": "tru', "not json", "ok"] and out.streams == ["", "", "stdout"]


def test_over_long_reassembled_line_is_cut_marked_and_its_rest_discarded() -> None:
    d = DockerJsonDecoder(10, 5.0)
    out = d.feed(
        Lines([docker("0123456"), docker("789abc"), docker("def"), docker("ghi\n"), docker("z\n")]), 0.0
    )
    assert out.text == ["0123456789", "", "z"] and out.truncated == {0}
    assert out.raw == [2, 2, 1] and d.held == 0


def test_partial_timeout() -> None:
    d = DockerJsonDecoder(1 << 20, 5.0)
    d.feed(Lines([docker("never ends")]), 10.0)
    assert not d.due(14.0) and d.due(15.0)
    assert d.flush().text == ["never ends"] and d.held == 0


def test_cri_full_partial_and_invalid() -> None:
    c = CriDecoder(1 << 20, 5.0)
    out = c.feed(
        Lines(
            [
                "2026-01-01T00:00:00.1Z stdout F hello world",
                "2026-01-01T00:00:00.2Z stderr P first ",
                "2026-01-01T00:00:00.3Z stderr P second ",
            ]
        ),
        0.0,
    )
    assert out.text == ["hello world"] and c.held == 2
    out = c.feed(
        Lines(
            [
                "2026-01-01T00:00:00.4Z stderr F third",
                "2026-01-01T00:00:00.5Z stdout F",
                "garbage",
                "2026-01-01T00:00:00.6+02:00 stdout F:x  two  spaces ",
            ]
        ),
        1.0,
    )
    assert out.text == ["first second third", "", "garbage", " two  spaces "]
    assert out.streams == ["stderr", "stdout", "", "stdout"]
    assert out.raw == [3, 1, 1, 1]


def test_finish_drops_empty_records_and_excluded_streams() -> None:
    f = Finish(CriDecoder(1 << 20, 5.0), frozenset({"stderr"}))
    out = f.feed(
        Lines(
            [
                "2026-01-01T00:00:00Z stdout F a",
                "2026-01-01T00:00:00Z stderr F b",
                "2026-01-01T00:00:00Z stdout F",
                "2026-01-01T00:00:00Z stdout F c",
            ]
        ),
        0.0,
    )
    assert out.text == ["a", "c"] and out.streams == ["stdout", "stdout"]


def test_cri_and_multiline_chain_counts_held_raw_lines() -> None:
    rule = MultilineRule.build("java", "", "", 1.0, 500, 1 << 20)
    chain = Chain(CriDecoder(1 << 20, 5.0), MultilineJoiner(rule))
    out = chain.feed(
        Lines(
            [
                "t stdout F 12:00 INFO ok",
                "t stdout F 12:00 ERROR failed",
                "t stdout P java.lang.IllegalState",
                "t stdout F Exception: boom",
                "t stdout F \tat com.x.A.run(A.java:1)",
            ]
        ),
        0.0,
    )
    assert out.text == ["12:00 INFO ok"] and out.raw == [1]
    assert chain.held == 4  # the ERROR line, two parts of the exception line, one frame
    out = chain.feed(Lines(["t stdout P \tat com.x.Main"]), 0.5)
    assert out.text == [] and chain.held == 5
    out = chain.feed(Lines(["t stdout F .main(Main.java:5)", "t stdout F 12:01 INFO next"]), 0.6)
    assert out.text == [
        "12:00 ERROR failed\njava.lang.IllegalStateException: boom\n\tat com.x.A.run(A.java:1)\n"
        "\tat com.x.Main.main(Main.java:5)"
    ]
    assert out.raw == [6] and chain.held == 1
    assert chain.due(1.6) and chain.flush().text == ["12:01 INFO next"] and chain.held == 0
