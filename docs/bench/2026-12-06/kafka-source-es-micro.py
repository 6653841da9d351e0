"""Micro-bench of the kafka -> ES path stages, per record (us). Run from a checkout: PYTHONPATH=. .venv/bin/python micro.py [repeats]."""
import gzip, time, sys
from confluent_kafka import Message
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.devtools.bench.kafka_consumer import LEVELS
from log_capturer.devtools.bench.loki import _line
from log_capturer.observability.metrics import Metrics
from log_capturer.sources.kafka.columns import agent_chunks, kafka_meta
from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.kafka.source import KafkaSource
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.elasticsearch import bulk
from log_capturer.processing import Analyzer
from tests.unit.sources.harness import MemorySink, make_dispatcher

N = 1000
TP = ("bench", 0)
origin = Origin("file", "/var/log/bench.log", {"app": "bench"})
c = Chunk(origin, [_line(i, 150) for i in range(N)])
c.levels = [LEVELS[i % 6] for i in range(N)]
values = encode_chunk(c, None)
msgs = [Message(topic=TP[0], partition=TP[1], offset=1000 + 2 * i, key=None, value=v, timestamp=(1, 1_700_000_000_000 + i)) for i, v in enumerate(values)]
src = KafkaSource(KafkaSourceConfig(enabled=True), make_dispatcher(MemorySink(), Metrics()), Metrics())
cfg = src.config
an = Analyzer(None)
es = ElasticsearchSinkConfig(enabled=True, endpoints=["http://127.0.0.1:9"], index="bench", compression_level=1)
docs = bulk.Documents(es)
R = int(sys.argv[1]) if len(sys.argv) > 1 else 200

def t(name, f):
    f()
    t0 = time.perf_counter()
    for _ in range(R):
        f()
    us = (time.perf_counter() - t0) / R / N * 1e6
    print(f"{name:28s} {us:6.3f} us/record")

def chunks():
    return agent_chunks(src.records, src._origin(TP), cfg.metadata_field, TP, msgs, cfg.format)
ch = chunks()[0]
an.analyze(ch)
d = docs.docs(ch)
body = d.body(0, N, "create", "", "")
t("kafka_meta", lambda: kafka_meta(TP, msgs))
t("agent_chunks", chunks)
def ana():
    x = chunks()[0]; an.analyze(x)
t("agent_chunks+analyze", ana)
t("encode values", lambda: docs.values(ch))
t("doc_ids", lambda: bulk.doc_ids(ch))
t("Documents.docs", lambda: docs.docs(ch))
t("Docs.body", lambda: d.body(0, N, "create", "", ""))
t("gzip 1", lambda: gzip.compress(body, 1))
print(body[:600].decode())
