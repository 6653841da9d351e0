"""GlobPaths, the file source's paths provider: discovery and the questions rotation asks."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from log_capturer.processing.multiline import MultilineJoiner
from log_capturer.sources.file.config import FilesConfig
from log_capturer.sources.file.paths import GlobPaths


def test_discovery_follows_patterns_recursion_and_excluded_directories(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "skip").mkdir()
    for name in ["a.log", "b.txt", "a.log.1", "x.log.gz", "sub/c.log", "skip/d.log"]:
        (tmp_path / name).write_text("x\n")
    paths = GlobPaths(
        FilesConfig(watch_directories=[str(tmp_path)], exclude_directories=[str(tmp_path / "skip")])
    )
    found = paths.discover()
    assert set(found) == {str(tmp_path / "a.log"), str(tmp_path / "sub/c.log")}
    target = found[str(tmp_path / "a.log")]
    assert (target.origin.source_type, target.origin.source_id) == ("file", str(tmp_path / "a.log"))
    assert paths.discover()[str(tmp_path / "a.log")] is target  # one target (one Origin) per path
    assert target.new_assembler() is None

    flat = GlobPaths(FilesConfig(watch_directories=[str(tmp_path)], recursive=False))
    assert set(flat.discover()) == {str(tmp_path / "a.log")}
    assert flat.target_for(str(tmp_path / "sub/new.log")) is None  # not watched without recursion


def test_what_rotation_asks_about_paths_not_discovered(tmp_path: Path) -> None:
    paths = GlobPaths(FilesConfig(watch_directories=[str(tmp_path)], labels={"team": "a"}, read_from="end"))
    assert paths.target_for(str(tmp_path / "new.log")) is not None  # renamed to a watched name
    assert paths.target_for(str(tmp_path / "new.log.1")) is None
    assert paths.target_for(str(tmp_path.parent / "elsewhere.log")) is None
    gone = paths.target_for_source(str(tmp_path / "gone.log"))  # a rotated file's lines: its old path
    assert gone is not None and gone.origin.labels == {"team": "a"}
    assert paths.rotated_name_ok(str(tmp_path / "app.log.1"))
    assert not paths.rotated_name_ok(str(tmp_path / "app.log.1.gz"))
    assert paths.read_from_end(gone)
    assert not paths.reads_rotated_when_new(gone)  # a new path's rotated neighbours are history


def test_multiline_applies_to_the_paths_it_names(tmp_path: Path) -> None:
    for name in ["java.log", "plain.log"]:
        (tmp_path / name).write_text("x\n")
    cfg = FilesConfig(
        watch_directories=[str(tmp_path)],
        multiline={"start_pattern": "^\\d", "path_patterns": ["java*"]},
    )
    found = GlobPaths(cfg).discover()
    assert isinstance(found[str(tmp_path / "java.log")].new_assembler(), MultilineJoiner)
    assert found[str(tmp_path / "plain.log")].new_assembler() is None


def test_the_patterns_in_one_expression_match_as_fnmatch_does(tmp_path: Path) -> None:
    include = ["*.log", "app-[0-9].txt", "x?.out"]
    exclude = ["*.gz", "*/private/*", "debug-*"]
    paths = GlobPaths(
        FilesConfig(watch_directories=[str(tmp_path)], include_patterns=include, exclude_patterns=exclude)
    )
    names = ["a.log", "A.LOG", "a.log.1", "app-3.txt", "app-x.txt", "x1.out", "x12.out", "b.log.gz"]
    names += ["debug-a.log", "nested/private/c.log", "nested/c.log", ".log", "line\nbreak.log"]
    for name in names:
        path = str(tmp_path / name)
        base = os.path.basename(path)
        expected = any(fnmatch.fnmatch(base, p) for p in include) and not any(
            fnmatch.fnmatch(base, p) or fnmatch.fnmatch(path, p) for p in exclude
        )
        assert paths._match(path) == expected, name
    nothing = GlobPaths(FilesConfig(watch_directories=[str(tmp_path)], exclude_patterns=[]))
    assert nothing._match(str(tmp_path / "a.log")) and not nothing._match(str(tmp_path / "a.txt"))
