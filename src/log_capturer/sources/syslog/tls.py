"""TLS for the syslog TCP listener (RFC 5425, ``syslog.tcp.tls``).

The listener presents ``cert_file`` (with ``key_file``) and, when ``ca_file``
is set, requires a client certificate signed by it (mutual TLS). TLS 1.2 is the
oldest version accepted, as RFC 5425 and RFC 9662 ask. The files are checked
by ``log-capturer validate`` (:func:`tls_problems`) and again when the listener
starts (:func:`server_context`), with the key to fix named in the message.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from log_capturer.sources.syslog.config import SyslogConfig

_PREFIX = "syslog.tcp.tls"


class TLSSetupError(ValueError):
    """The listener's TLS files cannot be used; the message names the key and the fix."""


class TLSFiles(Protocol):
    """A listener's TLS section (``syslog.tcp.tls``, ``forward.tls``)."""

    cert_file: str
    key_file: str
    ca_file: str


def server_context(cfg: TLSFiles, prefix: str = _PREFIX) -> ssl.SSLContext:
    """The listener's TLS context, or :class:`TLSSetupError` (naming the keys under ``prefix``)."""
    example = prefix.partition(".")[0]
    for key in ("cert_file", "key_file", "ca_file"):
        path: str = getattr(cfg, key)
        if not path:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            name = key.removesuffix("_file")
            raise TLSSetupError(
                f"{prefix}.{key}: {path} cannot be read ({exc.strerror or exc}); give a PEM file the "
                f"agent can read, such as `{key}: /etc/log-capturer/tls/{example}-{name}.pem`"
            ) from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TLSSetupError(
            f"{prefix}: cannot use cert_file {cfg.cert_file} with key_file {cfg.key_file} "
            f"({_why(exc)}); give the listener's PEM certificate (its chain may follow it) and its "
            "unencrypted PEM private key"
        ) from None
    if cfg.ca_file:
        try:
            ctx.load_verify_locations(cfg.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TLSSetupError(
                f"{prefix}.ca_file: {cfg.ca_file} holds no usable CA certificate ({_why(exc)}); give "
                "the PEM certificate(s) of the CA that signs client certificates, or '' to accept any client"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _why(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.library or 'SSL'}: {exc.reason}"
    return exc.strerror or str(exc)


def tls_problems(cfg: SyslogConfig) -> list[str]:
    """Why the TLS listener of ``cfg`` could not start, for ``log-capturer validate`` ([] if it can)."""
    if not (cfg.enabled and cfg.tcp.enabled and cfg.tcp.tls.enabled):
        return []
    try:
        server_context(cfg.tcp.tls)
    except TLSSetupError as exc:
        return [str(exc)]
    return []
