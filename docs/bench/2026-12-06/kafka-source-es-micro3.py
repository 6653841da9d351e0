"""Each stage of the Kafka -> _bulk path, the old and new way in one process (PYTHONPATH=. .venv/bin/python micro3.py)."""
import time, copy
exec(open(__file__.replace('micro3.py', 'micro.py')).read().split("R = int")[0])
from log_capturer.sinks.elasticsearch import bulk
from log_capturer.sources.kafka.columns import kafka_columns
R=300
ch = agent_chunks(src.records, src._origin(TP), cfg.metadata_field, TP, msgs, cfg.format)[0]
an.analyze(ch)
mat = copy.copy(ch); mat.meta
def t(f):
    f(); t0=time.perf_counter()
    for _ in range(R): f()
    return (time.perf_counter()-t0)/R/N*1e6
import hashlib, base64
def py_ids():
    at=b"kafka\0bench:0\0"
    return [base64.urlsafe_b64encode(hashlib.blake2b(at+o.to_bytes(8,"little"),digest_size=15).digest()).rstrip(b"=").decode() for o in ch.offsets]
res={}
for _ in range(3):
    for name,f in [("ids python",py_ids),("ids C",lambda: bulk.doc_ids(ch)),("meta dicts",lambda: kafka_meta(TP,msgs)),("meta columns",lambda: kafka_columns(msgs)),("encode dicts",lambda: encode_chunk(mat,None)),("encode columns",lambda: encode_chunk(ch,None))]:
        res.setdefault(name,[]).append(t(f))
for k,v in res.items(): print(f"{k:16s} min {min(v):.3f} us/record  {['%.3f'%x for x in v]}")
