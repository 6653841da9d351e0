"""Chunks: their size in UTF-8 bytes, the same from the C helper and from its Python twin."""

from __future__ import annotations

import random

import pytest

from log_capturer import record
from log_capturer.record import Chunk, Origin

ORIGIN = Origin("file", "/a.log")

LINES = [
    "",
    "plain ascii",
    "é",
    "naïve café 日本語 🙂",
    "\udcff lone surrogate from surrogateescape",
    "\U0010ffff",
    "x" * 5000 + "é",
]


def python_text_bytes(lines: list[str]) -> int:
    return sum(len(s.encode("utf-8", "surrogatepass")) for s in lines)


def test_text_bytes_is_the_utf8_size_of_the_lines() -> None:
    assert Chunk(ORIGIN, LINES).text_bytes == python_text_bytes(LINES)
    assert Chunk(ORIGIN, ["é" * 40]).text_bytes == 80
    assert record.text_bytes_py(LINES) == python_text_bytes(LINES)


def test_the_c_helper_and_the_fallback_agree_on_random_text() -> None:
    from log_capturer import _speedups

    rng = random.Random(7)
    alphabet = 'aé日🙂\udc80\n"\\' + "".join(map(chr, range(32, 127)))
    for _ in range(200):
        lines = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60))) for _ in range(20)]
        assert _speedups.text_bytes(lines) == python_text_bytes(lines) == record.text_bytes_py(lines)


def test_text_bytes_refuses_what_is_not_a_list_of_str() -> None:
    from log_capturer import _speedups

    with pytest.raises(TypeError):
        _speedups.text_bytes(["ok", b"bytes"])
