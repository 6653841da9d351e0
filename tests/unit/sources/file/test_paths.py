"""GlobPaths, the file source's paths provider: discovery and the questions rotation asks."""

from __future__ import annotations

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
