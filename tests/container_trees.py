"""Build Docker and Kubernetes log trees on disk, laid out as dockerd and the kubelet write them."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson


def rfc3339(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


@dataclass
class DockerContainer:
    root: Path
    id: str
    name: str
    image: str = "example/app:1.0"
    labels: dict[str, str] = field(default_factory=dict)
    running: bool = True
    driver: str = "json-file"

    @property
    def dir(self) -> Path:
        return self.root / self.id

    @property
    def log(self) -> Path:
        return self.dir / f"{self.id}-json.log"

    def create(self) -> DockerContainer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        (self.dir / "hostconfig.json").write_bytes(
            orjson.dumps({"LogConfig": {"Type": self.driver, "Config": {}}, "NetworkMode": "bridge"})
        )
        if self.driver == "json-file":
            self.log.touch()
        return self

    def write_config(self) -> None:
        config = {
            "ID": self.id,
            "Created": "2026-01-01T00:00:00.000000000Z",
            "Path": "/app",
            "Args": [],
            "Config": {"Hostname": self.id[:12], "Image": self.image, "Labels": self.labels},
            "State": {"Running": self.running, "Paused": False, "Pid": 4242 if self.running else 0},
            "Image": "sha256:" + "0" * 64,
            "Name": "/" + self.name,
            "LogPath": str(self.log) if self.driver == "json-file" else "",
            "Driver": "overlay2",
        }
        tmp = self.dir / ".config.v2.json.tmp"
        tmp.write_bytes(orjson.dumps(config))
        os.replace(tmp, self.dir / "config.v2.json")  # dockerd writes it atomically too

    def write(self, lines: list[str], stream: str = "stdout") -> None:
        """Append lines as dockerd's json-file driver does (16 KiB parts for long lines)."""
        out = bytearray()
        for line in lines:
            parts = [line[i : i + 16384] for i in range(0, len(line), 16384)] or [""]
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                out += orjson.dumps(
                    {"log": part + ("\n" if last else ""), "stream": stream, "time": rfc3339()}
                )
                out += b"\n"
        with self.log.open("ab") as f:
            f.write(out)

    def rotate(self) -> None:
        """json-file max-size rotation: <id>-json.log -> .1 (-> .2 ...), new empty file."""
        for n in range(8, 0, -1):
            older = self.log.with_name(f"{self.log.name}.{n}")
            if older.exists():
                older.rename(self.log.with_name(f"{self.log.name}.{n + 1}"))
        self.log.rename(self.log.with_name(self.log.name + ".1"))
        self.log.touch()

    def stop(self) -> None:
        self.running = False
        self.write_config()

    def remove(self) -> None:
        shutil.rmtree(self.dir)


@dataclass
class PodContainer:
    root: Path
    namespace: str
    pod: str
    uid: str
    container: str
    restart: int = 0

    @property
    def dir(self) -> Path:
        return self.root / f"{self.namespace}_{self.pod}_{self.uid}" / self.container

    @property
    def log(self) -> Path:
        return self.dir / f"{self.restart}.log"

    @property
    def source_id(self) -> str:
        return f"{self.namespace}_{self.pod}_{self.uid}/{self.container}"

    def create(self) -> PodContainer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        return self

    def write(self, lines: list[str], stream: str = "stdout", split_at: int = 0) -> None:
        """Append CRI lines; with ``split_at``, longer lines are written as P parts then F."""
        out = []
        for line in lines:
            step = split_at or max(1, len(line))
            parts = [line[i : i + step] for i in range(0, len(line), step)] or [""]
            for i, part in enumerate(parts):
                tag = "F" if i == len(parts) - 1 else "P"
                out.append(f"{rfc3339()} {stream} {tag} {part}\n")
        with self.log.open("a") as f:
            f.write("".join(out))

    def write_raw(self, text: str) -> None:
        with self.log.open("a") as f:
            f.write(text)

    def rotate(self) -> None:
        """kubelet rotation: <n>.log -> <n>.log.<timestamp>, new empty <n>.log."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"{time.time_ns() % 1000:03d}"
        self.log.rename(self.log.with_name(f"{self.log.name}.{stamp}"))
        self.log.touch()

    def restart_container(self) -> None:
        self.restart += 1
        self.log.touch()

    def remove_pod(self) -> None:
        shutil.rmtree(self.dir.parent)
