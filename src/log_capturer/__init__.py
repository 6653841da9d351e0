"""SSW Logs Capture: tail logs and ship every line to Apache Kafka without losing one."""

from importlib.metadata import version

#: The installed package's version. Its one source is ``project.version`` in pyproject.toml, read
#: from the package metadata, so /health, the supervisor, the logs and ``log-capturer version``
#: can never disagree with what pip installed.
__version__ = version("log-capturer")
