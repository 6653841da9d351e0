"""The local certificate authority (devtools extra): certificates made, and without
``cryptography`` an error that names the extra, shown by the CLI without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from log_capturer.devtools import certs

#: Runs the CLI in a fresh interpreter where ``cryptography`` cannot be imported.
WITHOUT_CRYPTOGRAPHY = (
    "import sys; sys.modules['cryptography'] = None; "
    "from log_capturer.cli import main; sys.argv = ['log-capturer', *sys.argv[1:]]; main()"
)


def test_generate_writes_the_ca_broker_and_client_material(tmp_path: Path) -> None:
    m = certs.generate(tmp_path / "tls")
    for p in (m.ca_file, m.broker_keystore, m.badhost_keystore, m.truststore, m.client_cert, m.server_cert):
        assert p.stat().st_size > 0, p
    assert m.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert m.client_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert m.client_key.stat().st_mode & 0o077 == 0


def test_without_cryptography_generate_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)  # what `import` sees when it is absent
    with pytest.raises(certs.MissingExtra, match=r"pip install 'log-capturer\[devtools\]'"):
        certs.generate(tmp_path / "tls")
    assert not (tmp_path / "tls").exists()


def test_kafka_up_tls_without_cryptography_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_CRYPTOGRAPHY,
            "kafka",
            "up",
            "--tls",
            "--workdir",
            str(tmp_path / "k"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'log-capturer[devtools]'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "k").exists()  # refused before anything was fetched or written
