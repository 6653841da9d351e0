"""The ceiling's CPU accounting (``children_cpu``: what kcat's CPU per line is measured with) and
the keyed ceiling's copy of the files (each line's key in front, for ``kcat -K``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from log_capturer.devtools.bench.ceiling import KEY_DELIMITER, children_cpu, key_pattern, keyed_copy
from log_capturer.devtools.generate import LineFactory

EMIT_NS = 1_764_000_000_000_000_000


def test_the_cpu_of_a_finished_child_is_counted() -> None:
    before = children_cpu()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    assert children_cpu() - before >= 0.15


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_the_keyed_copy_puts_each_lines_key_in_front(tmp_path: Path, fmt: str) -> None:
    batch = LineFactory(fmt, 150, seed=3).batch(0, 2000, EMIT_NS)
    files = [tmp_path / "a.log", tmp_path / "b.log"]
    files[0].write_text("".join(f"{line}\n" for line in batch.lines[:1200]))
    # A line without the key goes as it is (kcat sends it unkeyed, as the agent does).
    files[1].write_text("".join(f"{line}\n" for line in batch.lines[1200:]) + "no key here\n")
    pattern = key_pattern(fmt, "tenant_id")
    assert pattern is not None
    out = tmp_path / "keyed.txt"
    assert keyed_copy(files, out, pattern) == 2000
    got = out.read_bytes().split(b"\n")
    assert got[-1] == b""
    for line, tenant, want in zip(got, batch.tenants, batch.lines, strict=False):
        key, _, rest = line.partition(KEY_DELIMITER.encode())
        assert key == tenant.encode()
        assert rest == want.encode()
    assert got[2000] == b"no key here"
    assert len(got) == 2002


def test_plain_lines_have_no_key() -> None:
    assert key_pattern("plain", "tenant_id") is None
