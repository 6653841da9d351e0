"""Local images for the private Docker Engine: no registry is needed.

- :func:`busybox_image`: Debian's ``busybox-static`` binary and its applet
  links in a tar, ``docker import``-ed (a 2 MB image, made in a fraction of a second).
- :func:`debian_python_base`: a ``debootstrap --variant=minbase`` bookworm root
  with ``python3`` and ``python3-venv``, from the Debian mirror the machine's
  apt sources name. It takes about a minute, so its tarball is cached under
  ``<cache>/images/`` and later sessions only import it.
- :func:`agent_image`: the project's ``Dockerfile`` built with that base
  (``--build-arg BASE_IMAGE``) and wheels made on the host (``pip wheel``),
  installed in the image with ``--no-index``.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from log_capturer.devtools.docker_local import INSTALL_HINT, LocalDocker, LocalDockerError
from log_capturer.devtools.kafka_local import cache_home

BUSYBOX_IMAGE = "local/busybox:1"
BASE_IMAGE = "local/debian-python:bookworm"
AGENT_IMAGE = "local/ssw-logs-capture:test"
#: Applets linked in the busybox image (what test containers run).
BUSYBOX_APPLETS = ("sh", "echo", "cat", "seq", "sleep", "yes", "head", "printf", "dd", "tr", "true", "ls")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv")


def images_cache() -> Path:
    return cache_home() / "images"


def _has_image(docker: LocalDocker, ref: str) -> bool:
    return docker.docker("image", "inspect", ref, check=False).returncode == 0


def busybox_image(docker: LocalDocker, ref: str = BUSYBOX_IMAGE) -> str:
    """Import a busybox image made from the host's ``/bin/busybox`` (busybox-static)."""
    if _has_image(docker, ref):
        return ref
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise LocalDockerError(f"busybox is not installed; {INSTALL_HINT} (package busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    docker.docker("import", "-c", "ENV PATH=/bin", "-", ref, input=buf.getvalue())
    return ref


def apt_mirror() -> str:
    """The Debian mirror the machine's apt sources name (deb822 ``URIs:`` or ``deb URL``)."""
    sources = [*sorted(Path("/etc/apt/sources.list.d").glob("*")), Path("/etc/apt/sources.list")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            url = m.group(1).rstrip("/")
            if url.endswith("/debian"):
                return url
    return DEFAULT_MIRROR


def base_tarball(log: Callable[[str], None] = print, mirror: str | None = None) -> Path:
    """The cached debootstrap root (``.tar``) of the base image, made once."""
    target = images_cache() / "debian-python-bookworm.tar"
    if target.exists():
        return target
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.path.exists(debootstrap):
        raise LocalDockerError(f"debootstrap is not installed; {INSTALL_HINT} (package debootstrap)")
    target.parent.mkdir(parents=True, exist_ok=True)
    url = mirror or apt_mirror()
    log(f"building the Debian bookworm + Python base image with debootstrap from {url} (once)")
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=target.parent) as tmp:
        root = Path(tmp) / "root"
        proc = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(root),
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LocalDockerError(f"debootstrap failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / leftover).glob("*"):
                if f.is_file():
                    f.unlink()
        partial = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.replace(target)
    return target


def debian_python_base(docker: LocalDocker, ref: str = BASE_IMAGE, log: Callable[[str], None] = print) -> str:
    """Import the cached debootstrap root as ``ref`` (making the tarball first if needed)."""
    if _has_image(docker, ref):
        return ref
    tarball = base_tarball(log)
    with tarball.open("rb") as f:
        docker.docker("import", "-", ref, input=f.read(), timeout=600)
    return ref


def pip_wheel(repo: Path, into: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` ``repo`` into ``into``, one build of ``repo`` at a time.

    setuptools builds in the source tree (``build/``, ``src/*.egg-info``): two builds of the same
    tree at once trip over each other's files (``File exists: build/bdist.../...dist-info``), so
    builds from any process take a lock file in ``build/`` first.
    """
    into.mkdir(parents=True, exist_ok=True)
    (repo / "build").mkdir(exist_ok=True)
    with (repo / "build" / ".pip-wheel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", *options, "--wheel-dir", str(into), str(repo)],
            capture_output=True,
            text=True,
            check=False,
        )


def build_wheels(repo: Path, into: Path) -> Path:
    """``pip wheel`` the project and its dependencies into ``into`` (what ``make wheels`` does)."""
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob("log_capturer-*.whl"):
        old.unlink()  # the image installs exactly one wheel of the agent
    proc = pip_wheel(repo, into)
    if proc.returncode != 0:
        raise LocalDockerError(f"pip wheel failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return into


def agent_image(
    docker: LocalDocker,
    repo: Path,
    base: str,
    wheels: Path,
    ref: str = AGENT_IMAGE,
) -> str:
    """Build the project's Dockerfile with ``BASE_IMAGE=base`` and the wheels in ``wheels``
    (a directory inside ``repo``, the build context)."""
    rel = wheels.resolve().relative_to(repo.resolve())
    docker.docker(
        "build",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"WHEELS={rel}",
        "-t",
        ref,
        "-f",
        str(repo / "Dockerfile"),
        str(repo),
        timeout=900,
    )
    return ref
