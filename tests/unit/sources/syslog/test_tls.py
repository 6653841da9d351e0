"""The TLS syslog listener's files: usable ones make a server context, others a named error."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from log_capturer.devtools.certs import TlsMaterial, generate
from log_capturer.sources.syslog.config import SyslogConfig, SyslogTLSConfig
from log_capturer.sources.syslog.tls import TLSSetupError, server_context, tls_problems


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return generate(tmp_path_factory.mktemp("certs"))


def test_the_listener_presents_its_certificate_and_may_require_clients_to(certs: TlsMaterial) -> None:
    ctx = server_context(
        SyslogTLSConfig(enabled=True, cert_file=str(certs.server_cert), key_file=str(certs.server_key))
    )
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    mutual = server_context(
        SyslogTLSConfig(
            enabled=True,
            cert_file=str(certs.server_cert),
            key_file=str(certs.server_key),
            ca_file=str(certs.ca_file),
        )
    )
    assert mutual.verify_mode == ssl.CERT_REQUIRED


def test_tls_needs_a_certificate_and_a_key() -> None:
    with pytest.raises(ValueError, match="cert_file or key_file is empty"):
        SyslogTLSConfig(enabled=True, cert_file="/x.pem")


def test_unusable_files_are_named_with_the_key_to_fix(certs: TlsMaterial, tmp_path: Path) -> None:
    good = {"enabled": True, "cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
    missing = str(tmp_path / "absent.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        ({**good, "cert_file": missing}, f"syslog.tcp.tls.cert_file: {missing} cannot be read"),
        ({**good, "key_file": missing}, f"syslog.tcp.tls.key_file: {missing} cannot be read"),
        ({**good, "key_file": str(certs.client_key)}, "cannot use cert_file"),  # not the cert's key
        ({**good, "cert_file": str(junk)}, "cannot use cert_file"),
        ({**good, "ca_file": str(junk)}, f"syslog.tcp.tls.ca_file: {junk} holds no usable CA certificate"),
    ]
    for tls, text in cases:
        with pytest.raises(TLSSetupError) as exc:
            server_context(SyslogTLSConfig(**tls))
        assert text in str(exc.value), str(exc.value)
        problems = tls_problems(SyslogConfig(enabled=True, tcp={"tls": tls}))
        assert len(problems) == 1 and text in problems[0]


def test_validate_checks_the_files_only_when_tls_listens(tmp_path: Path) -> None:
    tls = {"enabled": True, "cert_file": str(tmp_path / "a.pem"), "key_file": str(tmp_path / "a.key")}
    assert tls_problems(SyslogConfig(enabled=False, tcp={"tls": tls})) == []
    assert tls_problems(SyslogConfig(enabled=True, tcp={"enabled": False, "tls": tls})) == []
    assert len(tls_problems(SyslogConfig(enabled=True, tcp={"tls": tls}))) == 1
