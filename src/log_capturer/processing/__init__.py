"""Per-line analysis: level detection and the partition key, done a chunk at a time."""

from __future__ import annotations

import re

from log_capturer.processing.levels import (
    detect_level,
    level_of_mapping,
    level_of_text,
    parse_json_object,
)
from log_capturer.record import Chunk

__all__ = ["Analyzer", "detect_level"]


class Analyzer:
    """Fills ``chunk.levels`` and ``chunk.keys`` for every line of a chunk.

    ``keys[i]`` is the value of ``key_field`` found in line ``i`` (a JSON member
    or a logfmt pair), or None. When the origin carries ``key_field`` as a
    label, the key is the same for the whole chunk and ``keys`` stays None.
    """

    def __init__(self, key_field: str | None) -> None:
        self.key_field = key_field or None
        self._logfmt_key = (
            re.compile(rf'(?:^|\s){re.escape(key_field)}=(?:"([^"]*)"|(\S+))') if key_field else None
        )

    def analyze(self, chunk: Chunk) -> None:
        kf = self.key_field
        want_key = kf is not None and kf not in chunk.origin.labels
        levels: list[str] = []
        add_level = levels.append
        keys: list[str | None] | None = [] if want_key else None
        for line in chunk.lines:
            if line[:1] == "{":
                obj = parse_json_object(line)
                if obj is not None:
                    add_level(level_of_mapping(obj))
                    if keys is not None:
                        v = obj.get(kf)  # type: ignore[arg-type]
                        keys.append(None if v is None or isinstance(v, dict | list) else str(v))
                    continue
            add_level(level_of_text(line))
            if keys is not None:
                keys.append(self._logfmt_value(line))
        chunk.levels = levels
        chunk.keys = keys

    def _logfmt_value(self, line: str) -> str | None:
        if self._logfmt_key is None or "=" not in line:
            return None
        m = self._logfmt_key.search(line)
        if m is None:
            return None
        return m.group(1) if m.group(1) is not None else m.group(2)
