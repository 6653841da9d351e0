"""TLS to a sink's server: the ``tls`` block every sink shares (Kafka's keys), the check of its
files (``log-capturer validate`` and the sink's start) and the client context of the HTTP sinks."""

from __future__ import annotations

import os
import ssl

from pydantic import Field, model_validator

from log_capturer.config.base import Strict
from log_capturer.sinks.base import SinkStartError


class TLSConfig(Strict):
    enabled: bool = Field(False, description="Connect with TLS.")
    verify_certificate: bool = Field(True, description="Verify the broker certificate and host name.")
    ca_file: str = Field("", description="PEM file of the CA that signed the broker certificate.")
    cert_file: str = Field("", description="Client certificate (PEM) for mutual TLS.")
    key_file: str = Field("", description="Client private key (PEM) for mutual TLS.")

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together for mutual TLS; set both or neither")
        return self


def file_problems(section: str, tls: TLSConfig) -> list[str]:
    """The files of the ``tls`` block at ``section`` (``sinks.kafka.tls``) the agent cannot read,
    one message each, naming the key and the fix. A TLS library would otherwise fail later, on the
    first connection, with a less clear error."""
    problems = []
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if not path:
            continue
        if not os.path.exists(path):
            reason = "does not exist"
        elif os.path.isdir(path):
            reason = "is a directory"
        elif not os.access(path, os.R_OK):
            reason = "is not readable"
        else:
            continue
        problems.append(
            f"{section}.{key}: {path} {reason}; give a PEM file the agent can read, "
            f"such as `{key}: /etc/log-capturer/tls/{key.removesuffix('_file')}.pem`"
        )
    return problems


def client_context(section: str, tls: TLSConfig) -> ssl.SSLContext:
    """The context of an HTTP sink's https:// connections: the CA (else the system's), whether to
    verify, and the client certificate of mutual TLS. Raises :class:`SinkStartError` naming the
    keys when a file is missing or does not load."""
    problems = file_problems(section, tls)
    if problems:
        raise SinkStartError("; ".join(problems))
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file or None)
        if not tls.verify_certificate:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SinkStartError(
            f"{section}: cannot load the certificates ({exc}); check ca_file, cert_file and key_file"
        ) from None
    return ctx
