"""Processing pipelines: named lists of steps applied, a chunk at a time, to a source's lines.

See :mod:`log_capturer.processing.pipelines.spec` for the file format and
:mod:`~log_capturer.processing.pipelines.steps` for what each step does.
"""

from log_capturer.processing.pipelines.pipeline import (
    Pipeline,
    PipelineError,
    load_pipelines,
    parse_pipelines,
)
from log_capturer.processing.pipelines.redact import BUILTINS

__all__ = ["BUILTINS", "Pipeline", "PipelineError", "load_pipelines", "parse_pipelines"]
