"""Configuration that the TCP listeners share: their TLS section (``forward.tls``, ``syslog.tcp.tls``)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from log_capturer.config.base import Strict


class ListenerTLSConfig(Strict):
    """A listener's TLS files; each listener's section describes ``enabled`` in its own words."""

    enabled: bool = Field(False, description="The listener speaks TLS only (1.2 or newer).")
    cert_file: str = Field("", description="The listener's certificate (PEM; its chain may follow it).")
    key_file: str = Field("", description="The private key of cert_file (PEM, unencrypted).")
    ca_file: str = Field(
        "",
        description="PEM file of the CA(s) that sign client certificates: when set, clients must "
        "present one (mutual TLS); '' accepts any client.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.enabled and not (self.cert_file and self.key_file):
            raise ValueError("tls is enabled but cert_file or key_file is empty; set both (PEM files)")
        return self
