from __future__ import annotations

import os
from pathlib import Path

import pytest

from log_capturer.sinks.local_file.writer import cut_torn_line


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b"a\nb\n", b"a\nb\n"),  # whole lines: nothing cut
        (b'a\nb\n{"mess', b"a\nb\n"),  # a kill in the middle of a line
        (b'{"message": "torn', b""),  # no whole line at all
        (b"first line\n" + b"x" * 50, b"first line\n"),  # the torn line longer than a block
    ],
)
def test_a_torn_last_line_is_cut_off_before_appending(tmp_path: Path, content: bytes, kept: bytes) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(content)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        assert cut_torn_line(path, fd, len(content), block=8) == len(kept)
        os.write(fd, b"next\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == kept + b"next\n"
