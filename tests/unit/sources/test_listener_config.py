"""The TLS section the TCP listeners share (``forward.tls``, ``syslog.tcp.tls``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from log_capturer.sources.forward.config import ForwardTLSConfig
from log_capturer.sources.listener_config import ListenerTLSConfig
from log_capturer.sources.syslog.config import SyslogTLSConfig


@pytest.mark.parametrize("model", [ListenerTLSConfig, ForwardTLSConfig, SyslogTLSConfig])
def test_enabled_tls_needs_a_certificate_and_its_key(model: type[ListenerTLSConfig]) -> None:
    with pytest.raises(ValidationError, match="cert_file or key_file is empty; set both"):
        model(enabled=True, cert_file="/c.pem")
    assert model(enabled=True, cert_file="/c.pem", key_file="/k.pem").ca_file == ""
    assert not model().enabled


def test_each_listener_keeps_its_own_description_and_the_shared_key_order() -> None:
    for model in (ForwardTLSConfig, SyslogTLSConfig):
        assert list(model.model_fields) == ["enabled", "cert_file", "key_file", "ca_file"]
    forward = ForwardTLSConfig.model_fields["enabled"].description or ""
    syslog = SyslogTLSConfig.model_fields["enabled"].description or ""
    assert "forward_source" in forward and "RFC 5425" in syslog
