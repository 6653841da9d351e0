"""The OTLP input's per-request work after HTTP, as the agent runs it: a protobuf
ExportLogsServiceRequest of 1,000 LogRecords (a text body, time, severity, trace and span ids,
one attribute) decoded into chunks (``Decoder.decode``), then analysed (level from the severity,
the key from the line, as the bench's ``key_field: tenant_id``) and encoded for Kafka; 50 rounds.
Prints CPU (process_time) us per record of each stage."""

import gc
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from log_capturer.processing import Analyzer
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sources.otlp.config import OtlpConfig
from log_capturer.sources.otlp.decode import PROTOBUF, Decoder

N = 1000
recs = [
    LogRecord(
        time_unix_nano=1_764_057_600_123_456_789 + i,
        severity_number=9,  # type: ignore[arg-type]
        severity_text="INFO",
        body=AnyValue(
            string_value='{"time":"2026-11-25T07:00:00Z","level":"info","seq":%d,"tenant_id":"t%d","msg":"%s"}'
            % (i, i % 16, "x" * 80)
        ),
        attributes=[KeyValue(key="tenant_id", value=AnyValue(string_value=f"t{i % 16}"))],
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
    )
    for i in range(N)
]
rl = ResourceLogs(scope_logs=[ScopeLogs(log_records=recs)])
rl.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="checkout")))
body = ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()
decoder = Decoder(OtlpConfig.model_validate({"enabled": True}))
analyzer = Analyzer("tenant_id")
gc.collect()
gc.freeze()
R = 50
T = [0.0, 0.0]
pt = time.process_time
for _ in range(R):
    t0 = pt()
    chunks, rejected = decoder.decode(body, PROTOBUF)
    t1 = pt()
    for c in chunks:
        analyzer.analyze(c)
        encode_chunk(c, "tenant_id")
    t2 = pt()
    T[0] += t1 - t0
    T[1] += t2 - t1
us = [x * 1e6 / (R * N) for x in T]
print(f"otlp: us/record decode {us[0]:.2f} analyze+encode {us[1]:.2f} total {sum(us):.2f}")
