"""The Kafka sink's chunk producer alone, keyed as the bench's max: CPU per record and poll rounds.

Usage: python raw-producer-micro.py BOOTSTRAP [RECORDS] [LINGER_MS] [counts]. With ``counts`` the
topics' partition counts go to produce_chunk, which then partitions the keyed records itself. Run it with the tree to
measure first on PYTHONPATH (its ``_rdk`` built in it). Two producing threads hand chunks of 500
records (150 bytes, 16 tenant keys, level-routed to four topics of 15 partitions) to one
ChunkProducer with the bench's producer settings (acks all + idempotence, zstd level 1,
batch.num.messages 10000); one poll thread loops poll(0.005) as the sink's poll thread does and
counts its rounds. Prints one JSON line: records/s, process CPU us per record, poll rounds per
second, rounds per settled chunk.
"""

import json
import random
import resource
import sys
import threading
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from log_capturer.sinks.kafka.native import ChunkProducer

bootstrap = sys.argv[1]
total = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
linger = sys.argv[3] if len(sys.argv) > 3 else "20"
CHUNK = 500
run = uuid.uuid4().hex[:6]
topics = [f"micro-{run}-{lvl}" for lvl in ("info", "warn", "error", "debug")]
admin = AdminClient({"bootstrap.servers": bootstrap})
counts = {t: 15 for t in topics} if sys.argv[4:] == ["counts"] else None
for f in admin.create_topics([NewTopic(t, 15, 1) for t in topics]).values():
    f.result(30)

rng = random.Random(1)
tenants = [f"tenant-{i:02d}" for i in range(16)]
weights = [70, 15, 10, 5]
pool = []
for i in range(20_000):
    ten = rng.choice(tenants)
    line = f'{{"time":"2026-12-06T20:00:00.000000Z","level":"info","seq":{i},"tenant_id":"{ten}","msg":"'
    line = (line + "x" * 150)[:149] + '"'
    pool.append((rng.choices(topics, weights)[0], line.encode(), ten))
chunks = []
for c in range(len(pool) // CHUNK):
    part = pool[c * CHUNK : (c + 1) * CHUNK]
    chunks.append(([p[0] for p in part], [p[1] for p in part], [p[2] for p in part]))

conf = {
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": "true",
    "compression.type": "zstd",
    "compression.level": "1",
    "batch.num.messages": "10000",
    "linger.ms": linger,
    "queue.buffering.max.messages": "100000",
    "partitioner": "murmur2_random",
}
prod = ChunkProducer(conf)
settled_chunks = 0
rounds = 0
stop = threading.Event()


def poller() -> None:
    global settled_chunks, rounds
    while not stop.is_set():
        _, settled = prod.poll(0.005)
        rounds += 1
        settled_chunks += len(settled)


n_chunks = total // CHUNK
per_thread = n_chunks // 2


def sender(k: int) -> None:
    for j in range(per_thread):
        t, v, key = chunks[(k * 7 + j) % len(chunks)]
        if counts is None:
            prod.produce_chunk(j, t, v, key)
        else:
            prod.produce_chunk(j, t, v, key, None, None, counts)


# warm-up: metadata
prod.produce_chunk(-1, *chunks[0])
while settled_chunks < 1:
    _, s = prod.poll(0.1)
    settled_chunks += len(s)
settled_chunks = 0
pt = threading.Thread(target=poller)
pt.start()
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.monotonic()
senders = [threading.Thread(target=sender, args=(k,)) for k in range(2)]
for s in senders:
    s.start()
for s in senders:
    s.join()
while settled_chunks < 2 * per_thread and time.monotonic() - t0 < 300:
    time.sleep(0.01)
wall = time.monotonic() - t0
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
stop.set()
pt.join()
records = 2 * per_thread * CHUNK
cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
prod.close()
admin.delete_topics(topics)
print(
    json.dumps(
        {
            "records": records,
            "settled_chunks": settled_chunks,
            "records_per_s": round(records / wall),
            "cpu_us_per_record": round(cpu / records * 1e6, 3),
            "poll_rounds_per_s": round(rounds / wall),
            "rounds_per_chunk": round(rounds / max(settled_chunks, 1), 2),
            "linger_ms": linger,
            "partitioned_in_c": counts is not None,
        }
    )
)
