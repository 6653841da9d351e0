"""The standard input source (``stdin``, and ``log-capturer run --stdin``): ``config`` and ``source``."""
