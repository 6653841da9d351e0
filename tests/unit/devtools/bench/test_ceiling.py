"""The ceiling's CPU accounting (``children_cpu``): what kcat's CPU per line is measured with."""

from __future__ import annotations

import subprocess
import sys

from log_capturer.devtools.bench.ceiling import children_cpu


def test_the_cpu_of_a_finished_child_is_counted() -> None:
    before = children_cpu()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    assert children_cpu() - before >= 0.15
