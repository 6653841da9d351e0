"""The ``stdin`` section: the standard input source."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from log_capturer.config.base import Strict


class StdinConfig(Strict):
    enabled: bool = Field(
        False,
        description="Read lines from standard input (as `log-capturer run --stdin` does); at end of "
        "input the agent drains and exits.",
    )
    source_id: str = Field("stdin", min_length=1, description="source_id of the records.")
    labels: dict[str, str] = Field(default_factory=dict, description="Static labels of stdin records.")
    pipeline: str = Field("", description="Processing pipeline for stdin lines.")
    max_line_bytes: int = Field(
        1 << 20, ge=256, description="Longest line kept whole; longer ones are truncated and marked."
    )

    def check_with(self, config: Any) -> None:
        """Standard input is one stream, read by one process."""
        if self.enabled and config.app.workers > 1:
            raise ValueError(
                "stdin.enabled needs app.workers: 1 (standard input is one stream, read by one "
                "process); set app.workers: 1 or turn stdin off"
            )
