"""The compiled modules of the hot path; everything else is in pyproject.toml.

- log_capturer.sinks.kafka.native._rdk: the Kafka sink's chunk producer (delivery reports counted in C);
  it needs no librdkafka headers: it opens the librdkafka that confluent-kafka ships at run time.
- log_capturer._speedups: level/key scanning of JSON lines and record encoding, a chunk at a time.
- log_capturer.sources.otlp._walk: OTLP log requests' protobuf walked into a chunk's columns.

Both need a C compiler and Python's headers (scripts/system-deps.sh installs gcc if missing).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "log_capturer.sinks.kafka.native._rdk",
            ["src/log_capturer/sinks/kafka/native/_rdk.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            libraries=["dl", "pthread"],
        ),
        Extension(
            "log_capturer._speedups",
            ["src/log_capturer/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        Extension(
            "log_capturer.sources.otlp._walk",
            ["src/log_capturer/sources/otlp/_walk.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
    ]
)
