"""The ``syslog`` section: the syslog source (UDP and TCP listeners)."""

from __future__ import annotations

from pydantic import Field, model_validator

from log_capturer.config.base import Duration, Port, Strict
from log_capturer.sources.listener_config import ListenerTLSConfig


class SyslogUDPConfig(Strict):
    enabled: bool = Field(True, description="Listen for syslog datagrams (RFC 5426: one message each).")
    host: str = Field("0.0.0.0", description="Address the UDP listener binds to.")
    port: Port = Field(5140, description="UDP port (514 needs root or CAP_NET_BIND_SERVICE).")
    receive_buffer_bytes: int = Field(
        4 << 20,
        ge=0,
        description="Socket receive buffer (SO_RCVBUF): UDP has no backpressure, so bursts the agent "
        "cannot read at once wait here or are dropped by the kernel (counted in "
        "source_lines_dropped_total{reason='udp_receive_buffer_full'}). Linux caps it at "
        "net.core.rmem_max. 0 = system default.",
    )


class SyslogTLSConfig(ListenerTLSConfig):
    enabled: bool = Field(
        False,
        description="Syslog over TLS (RFC 5425): the TCP listener speaks TLS only, 1.2 or newer (6514 is "
        "the usual port); frames as over plain TCP. Its records have source_id tls://SENDER-IP. "
        "A failed handshake is counted in errors_total{component='syslog_source',error_type='tls_handshake'} "
        "and logged (at most once per 10 s).",
    )


class SyslogTCPConfig(Strict):
    enabled: bool = Field(
        True,
        description="Listen for syslog over TCP. Each frame is octet-counted (RFC 6587 '<len> <msg>') or "
        "ends with a newline; both are accepted on the same connection.",
    )
    host: str = Field("0.0.0.0", description="Address the TCP listener binds to.")
    port: Port = Field(5140, description="TCP port.")
    max_connections: int = Field(
        1000, ge=1, description="Most simultaneous connections; further ones are closed at once."
    )
    tls: SyslogTLSConfig = Field(default_factory=SyslogTLSConfig)


class SyslogConfig(Strict):
    enabled: bool = Field(
        False,
        description="Receive syslog messages (RFC 3164 and RFC 5424, detected per message). The "
        "severity sets the level (0-1 fatal, 2 critical, 3 error, 4 warn, 5-6 info, 7 debug); "
        "facility, severity, hostname, appname, procid, msgid, structured_data and source_ip go "
        "into fields; the message's own time is the record timestamp.",
    )
    udp: SyslogUDPConfig = Field(default_factory=SyslogUDPConfig)
    tcp: SyslogTCPConfig = Field(default_factory=SyslogTCPConfig)
    max_message_bytes: int = Field(
        65536,
        ge=256,
        le=16 << 20,
        description="Longest message kept whole; longer ones are truncated and marked 'truncated: true'.",
    )
    batch_lines: int = Field(
        1000, ge=1, description="Most messages per chunk handed to the dispatcher (one per sender)."
    )
    batch_wait: Duration = Field(
        0.01, description="Longest a received message waits for more before its chunk is handed on."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Static labels of syslog records.")
    pipeline: str = Field("", description="Processing pipeline for syslog messages.")

    @model_validator(mode="after")
    def _check(self) -> SyslogConfig:
        if self.enabled and not (self.udp.enabled or self.tcp.enabled):
            raise ValueError("syslog is enabled but neither udp nor tcp is; enable one of them")
        if self.batch_wait > 10:
            raise ValueError("batch_wait can be at most 10s")
        return self
