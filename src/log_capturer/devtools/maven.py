"""Runtime jars of a Java server, resolved once from Maven Central into the user cache.

A manager (Kafka, OpenSearch) gives a ``pom.xml`` whose dependencies are the server; Maven's
``dependency:copy-dependencies`` copies them with their runtime dependencies into a staging
folder next to the target, which is renamed into place only when the expected jar is there,
and then marked complete: an interrupted fetch leaves nothing that looks usable.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

#: The file in a complete jar folder (it holds the stamp, e.g. the version).
MARKER = ".complete"


def ensure_jars(
    libs: Path,
    pom_text: str,
    *,
    expect: str,
    what: str,
    stamp: str,
    error: Callable[[str], Exception],
    log: Callable[[str], None] = print,
) -> Path:
    """Return ``libs`` holding the runtime jars of ``pom_text``, fetched once with Maven.

    ``expect`` is a glob a fetched jar must match (the server's own jar), ``what`` names the
    server in messages, ``stamp`` is written to the completion marker, ``error`` builds the
    exception raised (with Maven's output) when Maven is missing or fails.
    """
    marker = libs / MARKER
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error("Maven ('mvn') is not on PATH; install it (apt-get install maven)")
    log(f"fetching {what} jars from Maven Central into {libs} (once)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    try:
        pom = staging / "pom.xml"
        pom.write_text(pom_text)
        out = staging / "jars"
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={out}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not any(out.glob(expect)):
            raise error(f"Maven could not fetch {what}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        if libs.exists():
            shutil.rmtree(libs)
        out.rename(libs)
        marker.write_text(stamp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return libs
