"""Per-line analysis: pipelines, level detection and the partition key, done a chunk at a time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import orjson

from log_capturer.processing.levels import (
    CANONICAL,
    NUMERIC,
    detect_level,
    level_of_mapping,
    level_of_text,
    loads_tolerant,
    parse_json_object,
)
from log_capturer.record import Chunk

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    # Typed as the module (``_speedups.pyi``); None picks the Python code at each use.
    _speedups = cast(Any, None)

if TYPE_CHECKING:
    from log_capturer.processing.pipelines import Pipeline

__all__ = ["Analyzer", "detect_level"]


class Analyzer:
    """Fills ``chunk.levels`` and ``chunk.keys`` for every line of a chunk.

    ``keys[i]`` is the value of ``key_field`` found in line ``i`` (a field
    given by the source or a pipeline, a JSON member or a logfmt pair), or
    None. When the origin carries ``key_field`` as a label, the key is the
    same for the whole chunk and ``keys`` stays None.

    A chunk whose origin names a pipeline (or whose source_type has one in
    ``by_source_type``) goes through it first. Levels preset by the source or
    the pipeline are kept; the others are detected. Chunks with neither stay
    on the fast path, which creates nothing per line.
    """

    def __init__(
        self,
        key_field: str | None,
        pipelines: Mapping[str, Pipeline] | None = None,
        by_source_type: Mapping[str, str] | None = None,
    ) -> None:
        self.key_field = key_field or None
        self._logfmt_key = (
            re.compile(rf'(?:^|\s){re.escape(key_field)}=(?:"([^"]*)"|(\S+))') if key_field else None
        )
        self._logfmt_pair = f"{key_field}=" if key_field else ""
        self.pipelines = dict(pipelines or {})
        self.by_source_type = dict(by_source_type or {})

    def pipeline_for(self, chunk: Chunk) -> Pipeline | None:
        name = self.pipeline_name(chunk)
        return self.pipelines.get(name) if name else None

    def pipeline_name(self, chunk: Chunk) -> str:
        """The pipeline the chunk's lines go through ('' for none)."""
        name = chunk.origin.pipeline or self.by_source_type.get(chunk.origin.source_type, "")
        return name if name in self.pipelines else ""

    def analyze(self, chunk: Chunk) -> None:
        if self.pipelines:
            pipeline = self.pipeline_for(chunk)
            if pipeline is not None:
                pipeline.apply(chunk)
        if chunk.preset_levels is not None or chunk.meta is not None:
            self._analyze_rich(chunk)
            return
        kf = self.key_field
        want_key = kf is not None and kf not in chunk.origin.labels
        lines = chunk.lines
        if _speedups is not None:
            # C decides the usual JSON lines (same results); the rest come back as None.
            found, keys = _speedups.json_levels(lines, kf if want_key else None, CANONICAL, NUMERIC)
            if None in found:
                rest = [i for i, lv in enumerate(found) if lv is None]
                more, more_keys = self._analyze_lines([lines[i] for i in rest], want_key)
                for j, i in enumerate(rest):
                    found[i] = more[j]
                    if keys is not None and more_keys is not None:
                        keys[i] = more_keys[j]
            levels = cast("list[str]", found)  # every None was decided just above
        else:
            levels, keys = self._analyze_lines(lines, want_key)
        chunk.levels = levels
        chunk.keys = keys

    def _analyze_lines(self, lines: list[str], want_key: bool) -> tuple[list[str], list[str | None] | None]:
        kf = self.key_field
        levels: list[str] = []
        add_level = levels.append
        keys: list[str | None] | None = [] if want_key else None
        # The hot path without the C module: one loop, no call per line but orjson's and a dict
        # lookup for the usual ``"level": "<lower-case name>"``; anything else goes through the
        # general helpers.
        loads = orjson.loads
        bad_json = orjson.JSONDecodeError
        canonical = CANONICAL.get
        for line in lines:
            if line[:1] == "{":
                try:
                    obj = loads(line)
                except bad_json:  # not JSON, or invalid bytes or lone surrogates in a string
                    obj = loads_tolerant(line)
                if type(obj) is dict:
                    lv = obj.get("level")
                    level = canonical(lv) if type(lv) is str else None
                    if level is None:
                        level = level_of_mapping(obj)
                    add_level(level)
                    if keys is not None:
                        v = obj.get(kf)
                        if type(v) is not str:  # the usual key is a string: no conversion
                            v = None if v is None or isinstance(v, dict | list) else str(v)
                        keys.append(v)
                    continue
            add_level(level_of_text(line))
            if keys is not None:
                keys.append(self._logfmt_value(line))
        return levels, keys

    def _analyze_rich(self, chunk: Chunk) -> None:
        """Like the fast path, but honours preset levels and takes the key from fields first."""
        kf = self.key_field
        want_key = kf is not None and kf not in chunk.origin.labels
        preset = chunk.preset_levels
        meta = chunk.meta
        if not want_key and preset is not None and None not in preset:
            # Every level given and no key wanted (HTTP ingest, forward): nothing to read per line.
            chunk.levels = cast("list[str]", list(preset))
            chunk.keys = None
            return
        levels: list[str] = []
        keys: list[str | None] | None = [] if want_key else None
        for i, line in enumerate(chunk.lines):
            level = preset[i] if preset is not None else None
            key: str | None = None
            found_key = False
            if keys is not None and meta is not None:
                fields = meta[i]
                if fields and kf in fields:
                    v = fields[kf]
                    found_key = True
                    key = None if v is None or isinstance(v, dict | list) else str(v)
            need_key = keys is not None and not found_key
            if level is None or need_key:
                obj = parse_json_object(line) if line[:1] == "{" else None
                if obj is not None:
                    if level is None:
                        level = level_of_mapping(obj)
                    if need_key and kf is not None:  # need_key: keys, so a key field
                        v = obj.get(kf)
                        key = None if v is None or isinstance(v, dict | list) else str(v)
                else:
                    if level is None:
                        level = level_of_text(line)
                    if need_key:
                        key = self._logfmt_value(line)
            levels.append(level)
            if keys is not None:
                keys.append(key)
        chunk.levels = levels
        chunk.keys = keys

    def _logfmt_value(self, line: str) -> str | None:
        if self._logfmt_key is None or self._logfmt_pair not in line:
            return None
        m = self._logfmt_key.search(line)
        if m is None:
            return None
        return m.group(1) if m.group(1) is not None else m.group(2)
