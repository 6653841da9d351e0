"""Syslog over UDP and TCP: RFC 3164 and RFC 5424 messages, octet-counted or newline-framed."""

from log_capturer.sources.syslog.parse import Parsed, parse
from log_capturer.sources.syslog.source import SyslogSource

__all__ = ["Parsed", "SyslogSource", "parse"]
