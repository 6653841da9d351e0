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
        # The key as a member of a line that starts like JSON but is not (cut at max_line_bytes,
        # or text after the object): a string or a number, found where it stands.
        self._member_key = (
            re.compile(rf'"{re.escape(key_field)}"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d[\d.eE+-]*))')
            if key_field
            else None
        )
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
        if chunk.preset_levels is not None or chunk.meta_columns is not None or chunk.meta is not None:
            self._analyze_rich(chunk)
            return
        kf = self.key_field
        want_key = kf is not None and kf not in chunk.origin.labels
        chunk.levels, chunk.keys = self._levels_and_keys(chunk.lines, want_key)

    def _levels_and_keys(self, lines: list[str], want_key: bool) -> tuple[list[str], list[str | None] | None]:
        """Each line's level and (``want_key``) key, read from the line itself."""
        kf = self.key_field
        if _speedups is None:
            return self._analyze_lines(lines, want_key)
        # C decides the usual JSON lines (same results); the rest come back as None. Then C decides
        # the plain-text and logfmt lines among them, in place; what is left is Python's.
        found, keys = _speedups.json_levels(lines, kf if want_key else None, CANONICAL, NUMERIC)
        # text_levels returns at once when no line is left (C compares identities: ``None in
        # found`` would compare each str with None).
        if _speedups.text_levels(lines, found, keys, kf if want_key else None, CANONICAL):
            rest = [i for i, lv in enumerate(found) if lv is None]
            more, more_keys = self._analyze_lines([lines[i] for i in rest], want_key)
            for j, i in enumerate(rest):
                found[i] = more[j]
                if keys is not None and more_keys is not None:
                    keys[i] = more_keys[j]
        return cast("list[str]", found), keys  # every None was decided just above

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
                    keys.append(self._member_value(line) or self._logfmt_value(line))
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
        if not want_key and preset is not None and None not in preset:
            # Every level given and no key wanted (HTTP ingest, forward): nothing to read per line.
            chunk.levels = cast("list[str]", list(preset))
            chunk.keys = None
            return
        # The fields are read only for the key, and not when they are columns none of whose
        # members is the key (they stay columns: the Kafka source's metadata, OTLP's JSON).
        cols = chunk.meta_columns
        meta = None if not want_key or (cols is not None and kf not in cols.members) else chunk.meta
        lines = chunk.lines
        n = len(lines)
        levels: list[str | None] = list(preset) if preset is not None else [None] * n
        keys: list[str | None] | None = None
        # Lines whose key is in their fields (read from there, not from the line).
        keyed: list[int] = []
        if want_key and kf is not None:
            keys = [None] * n
            if meta is not None:
                keyed = [i for i, fields in enumerate(meta) if fields and kf in fields]
                for i in keyed:
                    v = cast("dict[str, Any]", meta[i])[kf]
                    keys[i] = None if v is None or isinstance(v, dict | list) else str(v)
        # The other lines are read as the fast path reads them (in C), in one call: those
        # without a preset level, and those whose key is not in their fields.
        skip = set(keyed)
        if want_key and not keyed:
            need: list[int] | range = range(n)
        else:
            need = [i for i, lv in enumerate(levels) if lv is None or (want_key and i not in skip)]
        if isinstance(need, range):
            # Every line (the usual case with a key to find): no step per line here.
            found, found_keys = self._levels_and_keys(lines, want_key)
            if preset is None:
                levels = list(found)
            elif None in levels:
                levels = [f if lv is None else lv for lv, f in zip(levels, found, strict=True)]
            keys = found_keys
        elif need:
            found, found_keys = self._levels_and_keys([lines[i] for i in need], want_key)
            for j, i in enumerate(need):
                if levels[i] is None:
                    levels[i] = found[j]
                if found_keys is not None and keys is not None and i not in skip:
                    keys[i] = found_keys[j]
        chunk.levels = cast("list[str]", levels)  # every None was decided just above
        chunk.keys = keys

    def _member_value(self, line: str) -> str | None:
        """The key of a line that starts like JSON but is not JSON (a line cut at
        ``max_line_bytes``, or an object followed by text): ``"<key_field>": "value"`` (or a
        number) wherever it stands, so the line keeps its partition."""
        if self._member_key is None:
            return None
        m = self._member_key.search(line)
        if m is None:
            return None
        if m.group(1) is None:
            return m.group(2)
        text = m.group(1)
        if "\\" not in text:
            return text
        try:
            value = orjson.loads(f'"{text}"')
        except orjson.JSONDecodeError:  # an escape JSON does not know: the text as it stands
            return text
        return value if type(value) is str else text

    def _logfmt_value(self, line: str) -> str | None:
        if self._logfmt_key is None or self._logfmt_pair not in line:
            return None
        m = self._logfmt_key.search(line)
        if m is None:
            return None
        return m.group(1) if m.group(1) is not None else m.group(2)
