"""Identity: fingerprints, and finding a known file again after a rename."""

from __future__ import annotations

import os
from pathlib import Path

from log_capturer.sources.file.identity import (
    FINGERPRINT_BYTES,
    Fingerprint,
    current_path,
    find_inode,
    open_listed,
    read_head,
)


def key_of(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_a_renamed_file_is_found_by_its_inode_and_a_deleted_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("one\n")
    key = key_of(path)
    assert current_path(str(path), key) == str(path)
    os.rename(path, tmp_path / "app.log.1")
    path.write_text("new file at the old name\n")
    assert find_inode(str(tmp_path), key) == str(tmp_path / "app.log.1")
    assert current_path(str(path), key) == str(tmp_path / "app.log.1")
    os.unlink(tmp_path / "app.log.1")
    assert current_path(str(path), key) == ""
    assert find_inode(str(tmp_path / "missing"), key) == ""


def test_a_fingerprint_grows_with_the_file_and_breaks_when_the_start_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"a" * 10)
    with path.open("rb") as f:
        fp = Fingerprint.of(f.fileno())
    assert fp.length == 10 and not fp.complete
    path.write_bytes(b"a" * (FINGERPRINT_BYTES + 5))
    with path.open("rb") as f:
        grown = fp.refresh(f.fileno(), os.fstat(f.fileno()).st_size)
    assert grown is not None and grown.complete and grown.length == FINGERPRINT_BYTES
    path.write_bytes(b"b" * (FINGERPRINT_BYTES + 5))  # rewritten from the start (copytruncate)
    with path.open("rb") as f:
        assert grown.refresh(f.fileno(), os.fstat(f.fileno()).st_size) is None
    head = read_head(str(path))
    assert head is not None and head[:2] == key_of(path) and head[2] == FINGERPRINT_BYTES + 5
    assert not grown.matches_prefix(head[3])
    assert Fingerprint.from_entry(grown.as_dict()) == grown


def test_a_listed_generation_is_found_by_its_inode_after_a_rename(tmp_path: Path) -> None:
    """The catch-up lists a directory, then opens each name: Docker may have renamed every
    generation in between (.1 -> .2), so the listed inode is looked for, not the name."""
    listed = tmp_path / "c-json.log.1"
    listed.write_text("generation A\n")
    ino = listed.stat().st_ino
    listed.rename(tmp_path / "c-json.log.2")
    listed.write_text("generation B, the next one\n")  # a new file under the listed name
    found = open_listed(str(listed), ino)
    assert found is not None
    path, st, head = found
    assert (path, st.st_ino, head) == (str(tmp_path / "c-json.log.2"), ino, b"generation A\n")
    (tmp_path / "c-json.log.2").unlink()
    assert open_listed(str(listed), ino) is None  # deleted since the listing
