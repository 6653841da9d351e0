"""Syslog over UDP and TCP: RFC 3164 and RFC 5424 messages, octet-counted or newline-framed.

``config`` (the ``syslog`` section), ``framing`` and ``parse`` (the protocol), ``source`` (the
listeners and the hand-over to the dispatcher)."""
