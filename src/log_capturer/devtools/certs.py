"""A throw-away certificate authority for the local TLS listeners.

Writes, in one directory: ``ca.pem`` (what clients trust), the broker's PKCS#12
keystores (one valid for 127.0.0.1/localhost, one for a host name that does not
match, to prove host verification), the broker truststore, the same
127.0.0.1/localhost certificate and key in PEM (``server.pem``, ``server.key``:
for listeners that take PEM, such as the agent's TLS syslog), and a client
certificate and key in PEM for mutual TLS.

It needs ``cryptography``, from the ``devtools`` extra (the agent itself does not): imported
when certificates are made, and :class:`MissingExtra` names the extra when it is absent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

STORE_PASSWORD = "local-kafka-store"
INSTALL_HINT = "pip install 'log-capturer[devtools]'"


class MissingExtra(RuntimeError):
    """A developer tool needs a package of an optional extra that is not installed."""


def require() -> None:
    """Raise :class:`MissingExtra` unless ``cryptography`` (the ``devtools`` extra) is installed."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise MissingExtra(
            f"local TLS certificates need the 'cryptography' package of the devtools extra: {INSTALL_HINT}"
        ) from None


@dataclass(frozen=True)
class TlsMaterial:
    directory: Path
    ca_file: Path
    broker_keystore: Path
    badhost_keystore: Path
    truststore: Path
    client_cert: Path
    client_key: Path
    server_cert: Path
    server_key: Path
    password: str = STORE_PASSWORD

    @classmethod
    def at(cls, directory: Path) -> TlsMaterial:
        return cls(
            directory=directory,
            ca_file=directory / "ca.pem",
            broker_keystore=directory / "broker.p12",
            badhost_keystore=directory / "broker-wrong-host.p12",
            truststore=directory / "truststore.p12",
            client_cert=directory / "client.pem",
            client_key=directory / "client.key",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
        )


def _name(cn: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def generate(directory: Path) -> TlsMaterial:
    """Create the CA, broker and client material (idempotent: reuses what exists).
    :class:`MissingExtra` without the devtools extra."""
    m = TlsMaterial.at(directory)
    if all(
        p.exists()
        for p in (
            m.ca_file,
            m.broker_keystore,
            m.badhost_keystore,
            m.truststore,
            m.client_cert,
            m.client_key,
            m.server_cert,
            m.server_key,
        )
    ):
        return m
    require()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("log-capturer local CA", ca_key, "log-capturer local CA", ca_key, ca=True)
    m.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    pw = STORE_PASSWORD.encode()
    enc = serialization.BestAvailableEncryption(pw)
    server = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    good_key = ec.generate_private_key(ec.SECP256R1())
    good = _cert(
        "localhost",
        good_key,
        "log-capturer local CA",
        ca_key,
        usage=server,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    m.broker_keystore.write_bytes(pkcs12.serialize_key_and_certificates(b"broker", good_key, good, [ca], enc))
    _write_pem(m.server_cert, m.server_key, good, good_key)
    bad_key = ec.generate_private_key(ec.SECP256R1())
    bad = _cert(
        "wrong-host.invalid",
        bad_key,
        "log-capturer local CA",
        ca_key,
        usage=server,
        sans=[x509.DNSName("wrong-host.invalid")],
    )
    m.badhost_keystore.write_bytes(pkcs12.serialize_key_and_certificates(b"broker", bad_key, bad, [ca], enc))
    m.truststore.write_bytes(pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(ca, b"ca")], enc))

    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(
        "log-capturer-client",
        client_key,
        "log-capturer local CA",
        ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    _write_pem(m.client_cert, m.client_key, client, client_key)
    return m


def _write_pem(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    from cryptography.hazmat.primitives import serialization

    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
