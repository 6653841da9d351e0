/*
 * _rdk: the Kafka sink's chunk producer, in C on librdkafka.
 *
 * confluent-kafka builds a Python object and takes the GIL for every delivery
 * report; at the agent's rates that is about half of its CPU (BENCHMARKS.md,
 * "Delivery reports"). This module keeps one delivery report per record (the
 * checkpoint rule needs every record's outcome) but counts them in C: a chunk
 * of records shares one C state, each report decrements it, a failed record is
 * marked with its error, and Python hears about a chunk once, when all of
 * its records are settled.
 *
 * librdkafka itself is the copy confluent-kafka ships (or the system's): it is
 * opened with dlopen() by path and its functions are looked up by name, so no
 * librdkafka headers or link-time library are needed. The declarations below
 * are librdkafka's stable public ABI (rdkafka.h).
 *
 * A failed record is never copied: each record has a slot in its chunk's state (allocated with
 * the chunk, before any record is handed over) where its delivery report writes the error and
 * the partition, so recording a failure allocates nothing and cannot be lost to an exhausted heap.
 * The chunk keeps the caller's lists of topics, values and keys, and poll() gives each failed
 * record back as the very objects it was produced from.
 *
 * Threads: produce_chunk() runs in the dispatcher threads (the GIL is released
 * while librdkafka enqueues the records: it copies their keys and points into
 * their values, which the chunk keeps until it is settled); poll()/flush() run
 * in the sink's poll thread, where librdkafka calls the delivery, error,
 * statistics and log callbacks (logs are routed to the main queue: no callback
 * runs on a librdkafka thread).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- librdkafka's public ABI ------------------------------------------------------------- */
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef int rd_kafka_resp_err_t;

/* rd_kafka_produceva()'s arguments (a record with headers). */
typedef enum {
    RD_KAFKA_VTYPE_END,
    RD_KAFKA_VTYPE_TOPIC,
    RD_KAFKA_VTYPE_RKT,
    RD_KAFKA_VTYPE_PARTITION,
    RD_KAFKA_VTYPE_VALUE,
    RD_KAFKA_VTYPE_KEY,
    RD_KAFKA_VTYPE_OPAQUE,
    RD_KAFKA_VTYPE_MSGFLAGS,
    RD_KAFKA_VTYPE_TIMESTAMP,
    RD_KAFKA_VTYPE_HEADER,
    RD_KAFKA_VTYPE_HEADERS,
} rd_kafka_vtype_t;

typedef struct rd_kafka_vu_s {
    rd_kafka_vtype_t vtype;
    union {
        const char *cstr;
        rd_kafka_topic_t *rkt;
        int i;
        int32_t i32;
        int64_t i64;
        struct {
            void *ptr;
            size_t size;
        } mem;
        struct {
            const char *name;
            const void *val;
            ssize_t size;
        } header;
        void *ptr;
        char _pad[64];
    } u;
} rd_kafka_vu_t;

typedef struct rd_kafka_message_s {
    rd_kafka_resp_err_t err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

#define RD_KAFKA_PRODUCER 0
#define RD_KAFKA_CONF_OK 0
#define RD_KAFKA_MSG_F_COPY 0x2
#define RD_KAFKA_MSG_F_PARTITION 0x8
#define RD_KAFKA_PARTITION_UA (-1)
#define RD_KAFKA_PURGE_F_QUEUE 0x1
#define RD_KAFKA_PURGE_F_INFLIGHT 0x2
#define RD_KAFKA_PURGE_F_NON_BLOCKING 0x4
#define ERR__QUEUE_FULL (-184)
#define ERR__FATAL (-150)

typedef void (*dr_msg_cb_t)(rd_kafka_t *, const rd_kafka_message_t *, void *);
typedef void (*error_cb_t)(rd_kafka_t *, int, const char *, void *);
typedef int (*stats_cb_t)(rd_kafka_t *, char *, size_t, void *);
typedef void (*log_cb_t)(const rd_kafka_t *, int, const char *, const char *);

static struct {
    void *handle;
    const char *(*version_str)(void);
    rd_kafka_conf_t *(*conf_new)(void);
    int (*conf_set)(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
    void (*conf_destroy)(rd_kafka_conf_t *);
    void (*conf_set_dr_msg_cb)(rd_kafka_conf_t *, dr_msg_cb_t);
    void (*conf_set_error_cb)(rd_kafka_conf_t *, error_cb_t);
    void (*conf_set_stats_cb)(rd_kafka_conf_t *, stats_cb_t);
    void (*conf_set_log_cb)(rd_kafka_conf_t *, log_cb_t);
    void (*conf_set_opaque)(rd_kafka_conf_t *, void *);
    rd_kafka_t *(*new_)(int, rd_kafka_conf_t *, char *, size_t);
    void (*destroy)(rd_kafka_t *);
    void *(*opaque)(const rd_kafka_t *);
    const char *(*name)(const rd_kafka_t *);
    rd_kafka_resp_err_t (*set_log_queue)(rd_kafka_t *, rd_kafka_queue_t *);
    rd_kafka_topic_t *(*topic_new)(rd_kafka_t *, const char *, rd_kafka_topic_conf_t *);
    void (*topic_destroy)(rd_kafka_topic_t *);
    const char *(*topic_name)(const rd_kafka_topic_t *);
    int (*produce_batch)(rd_kafka_topic_t *, int32_t, int, rd_kafka_message_t *, int);
    rd_kafka_error_t *(*produceva)(rd_kafka_t *, const rd_kafka_vu_t *, size_t);
    rd_kafka_resp_err_t (*last_error)(void);
    int (*poll)(rd_kafka_t *, int);
    rd_kafka_resp_err_t (*flush)(rd_kafka_t *, int);
    rd_kafka_queue_t *(*queue_get_main)(rd_kafka_t *);
    void (*queue_yield)(rd_kafka_queue_t *);
    void (*queue_destroy)(rd_kafka_queue_t *);
    rd_kafka_resp_err_t (*purge)(rd_kafka_t *, int);
    int (*outq_len)(rd_kafka_t *);
    rd_kafka_resp_err_t (*fatal_error)(rd_kafka_t *, char *, size_t);
    const char *(*err2str)(rd_kafka_resp_err_t);
    /* transactions (sinks.kafka.delivery: exactly_once) */
    rd_kafka_error_t *(*init_transactions)(rd_kafka_t *, int);
    rd_kafka_error_t *(*begin_transaction)(rd_kafka_t *);
    rd_kafka_error_t *(*commit_transaction)(rd_kafka_t *, int);
    rd_kafka_error_t *(*abort_transaction)(rd_kafka_t *, int);
    rd_kafka_resp_err_t (*error_code)(const rd_kafka_error_t *);
    const char *(*error_string)(const rd_kafka_error_t *);
    int (*error_is_fatal)(const rd_kafka_error_t *);
    int (*error_is_retriable)(const rd_kafka_error_t *);
    int (*error_txn_requires_abort)(const rd_kafka_error_t *);
    void (*error_destroy)(rd_kafka_error_t *);
} rdk;

/* ---- per-chunk state ----------------------------------------------------------------------- */
struct chunk_s;

/* One record of a chunk: librdkafka's per-message opaque points here. */
typedef struct {
    struct chunk_s *chunk;
    int32_t err;       /* 0, or the error of its delivery report */
    int32_t partition; /* the partition of the failed attempt */
} slot_t;

typedef struct chunk_s {
    PyObject *token;  /* owned; given back to Python when the chunk is settled */
    PyObject *values; /* owned: a tuple of the records' bytes, which librdkafka points into */
    PyObject *topics; /* owned: the caller's list of topic names (read for failed records) */
    PyObject *keys;   /* owned: the caller's list of keys, or NULL */
    PyObject *headers; /* owned: the caller's list of each record's headers, or NULL */
    long remaining;   /* records not yet reported, plus one held by the sender (atomic) */
    long produced;    /* records handed to librdkafka (or failed at once) */
    long failed;      /* slots with an error (atomic) */
    struct chunk_s *next;
    Py_ssize_t n;
    slot_t slots[]; /* one per record, in the order of the caller's lists */
} chunk_t;

typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
    rd_kafka_queue_t *main_q; /* the queue rd_kafka_poll() serves (wake() ends its wait) */
    PyObject *topic_index; /* dict: name -> int index into rkts */
    rd_kafka_topic_t **rkts;
    Py_ssize_t nrkts;
    Py_ssize_t cap;
    pthread_mutex_t lock;
    pthread_cond_t space;
    chunk_t *done_head;
    chunk_t *done_tail;
    PyObject *error_cb;
    PyObject *stats_cb;
    PyObject *log_cb;
    int aborted;
    long live;  /* chunks not yet given back */
    long records; /* records librdkafka holds: handed over, no delivery report yet (atomic) */
    long users; /* produce_chunk calls inside librdkafka (close waits for them) */
    long deferred; /* settled chunks kept for a later poll() because no memory was left */
} Producer;

static void push_done(Producer *self, chunk_t *c) {
    pthread_mutex_lock(&self->lock);
    c->next = NULL;
    if (self->done_tail)
        self->done_tail->next = c;
    else
        self->done_head = c;
    self->done_tail = c;
    pthread_mutex_unlock(&self->lock);
}

static void settle(Producer *self, chunk_t *c, long n) {
    if (__atomic_sub_fetch(&c->remaining, n, __ATOMIC_ACQ_REL) == 0)
        push_done(self, c);
}

/* The record of ``s`` failed with ``err``: kept in its slot (no allocation). */
static void add_fail(slot_t *s, int err, int32_t partition) {
    s->err = err;
    s->partition = partition;
    __atomic_add_fetch(&s->chunk->failed, 1, __ATOMIC_RELAXED);
}

static void free_chunk(chunk_t *c) {
    if (!c)
        return;
    Py_XDECREF(c->token);
    Py_XDECREF(c->values);
    Py_XDECREF(c->topics);
    Py_XDECREF(c->keys);
    Py_XDECREF(c->headers);
    free(c);
}

/* ---- librdkafka callbacks (the poll thread, inside rd_kafka_poll, GIL released) ------------ */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    Producer *self = opaque;
    slot_t *s = m->_private;
    (void)rk;
    __atomic_sub_fetch(&self->records, 1, __ATOMIC_RELAXED);
    if (!s)
        return;
    if (m->err)
        add_fail(s, m->err, m->partition);
    settle(self, s->chunk, 1);
}

static void call_python(PyObject *cb, PyObject *args) {
    if (!args) {
        PyErr_WriteUnraisable(cb);
        return;
    }
    PyObject *r = PyObject_CallObject(cb, args);
    Py_DECREF(args);
    if (!r)
        PyErr_WriteUnraisable(cb);
    Py_XDECREF(r);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    Producer *self = opaque;
    char buf[512];
    int fatal = 0;
    if (!self->error_cb)
        return;
    if (err == ERR__FATAL) {
        err = rdk.fatal_error(rk, buf, sizeof buf);
        reason = buf;
        fatal = 1;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    call_python(self->error_cb, Py_BuildValue("(isi)", err, reason ? reason : "", fatal));
    PyGILState_Release(g);
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    Producer *self = opaque;
    (void)rk;
    if (!self->stats_cb)
        return 0;
    PyGILState_STATE g = PyGILState_Ensure();
    call_python(self->stats_cb, Py_BuildValue("(s#)", json, (Py_ssize_t)len));
    PyGILState_Release(g);
    return 0; /* librdkafka frees json */
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    Producer *self = rdk.opaque(rk);
    if (!self || !self->log_cb)
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    call_python(self->log_cb, Py_BuildValue("(iss)", level, fac ? fac : "", buf ? buf : ""));
    PyGILState_Release(g);
}

/* ---- module: load(path) ----------------------------------------------------------------------- */
#define SYM(field, name)                                                                           \
    do {                                                                                           \
        *(void **)(&rdk.field) = dlsym(h, name);                                                   \
        if (!rdk.field) {                                                                          \
            PyErr_Format(PyExc_ImportError, "%s has no symbol %s", path, name);                   \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

static PyObject *mod_load(PyObject *m, PyObject *args) {
    const char *path;
    (void)m;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    if (rdk.handle)
        return PyUnicode_FromString(rdk.version_str());
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        PyErr_Format(PyExc_ImportError, "cannot open librdkafka %s: %s", path, dlerror());
        return NULL;
    }
    SYM(version_str, "rd_kafka_version_str");
    SYM(conf_new, "rd_kafka_conf_new");
    SYM(conf_set, "rd_kafka_conf_set");
    SYM(conf_destroy, "rd_kafka_conf_destroy");
    SYM(conf_set_dr_msg_cb, "rd_kafka_conf_set_dr_msg_cb");
    SYM(conf_set_error_cb, "rd_kafka_conf_set_error_cb");
    SYM(conf_set_stats_cb, "rd_kafka_conf_set_stats_cb");
    SYM(conf_set_log_cb, "rd_kafka_conf_set_log_cb");
    SYM(conf_set_opaque, "rd_kafka_conf_set_opaque");
    SYM(new_, "rd_kafka_new");
    SYM(destroy, "rd_kafka_destroy");
    SYM(opaque, "rd_kafka_opaque");
    SYM(name, "rd_kafka_name");
    SYM(set_log_queue, "rd_kafka_set_log_queue");
    SYM(topic_new, "rd_kafka_topic_new");
    SYM(topic_destroy, "rd_kafka_topic_destroy");
    SYM(topic_name, "rd_kafka_topic_name");
    SYM(produce_batch, "rd_kafka_produce_batch");
    SYM(produceva, "rd_kafka_produceva");
    SYM(last_error, "rd_kafka_last_error");
    SYM(poll, "rd_kafka_poll");
    SYM(flush, "rd_kafka_flush");
    SYM(queue_get_main, "rd_kafka_queue_get_main");
    SYM(queue_yield, "rd_kafka_queue_yield");
    SYM(queue_destroy, "rd_kafka_queue_destroy");
    SYM(purge, "rd_kafka_purge");
    SYM(outq_len, "rd_kafka_outq_len");
    SYM(fatal_error, "rd_kafka_fatal_error");
    SYM(err2str, "rd_kafka_err2str");
    SYM(init_transactions, "rd_kafka_init_transactions");
    SYM(begin_transaction, "rd_kafka_begin_transaction");
    SYM(commit_transaction, "rd_kafka_commit_transaction");
    SYM(abort_transaction, "rd_kafka_abort_transaction");
    SYM(error_code, "rd_kafka_error_code");
    SYM(error_string, "rd_kafka_error_string");
    SYM(error_is_fatal, "rd_kafka_error_is_fatal");
    SYM(error_is_retriable, "rd_kafka_error_is_retriable");
    SYM(error_txn_requires_abort, "rd_kafka_error_txn_requires_abort");
    SYM(error_destroy, "rd_kafka_error_destroy");
    rdk.handle = h;
    return PyUnicode_FromString(rdk.version_str());
}

/* ---- Producer ----------------------------------------------------------------------------------- */
static int Producer_init(Producer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"conf", "error_cb", "stats_cb", "log_cb", NULL};
    PyObject *conf, *error_cb = Py_None, *stats_cb = Py_None, *log_cb = Py_None;
    char errstr[512];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|OOO", kwlist, &PyDict_Type, &conf, &error_cb,
                                     &stats_cb, &log_cb))
        return -1;
    if (!rdk.handle) {
        PyErr_SetString(PyExc_RuntimeError, "_rdk.load(path) first");
        return -1;
    }
    if (self->rk) {
        PyErr_SetString(PyExc_RuntimeError, "Producer already initialized");
        return -1;
    }
    rd_kafka_conf_t *c = rdk.conf_new();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(conf, &pos, &k, &v)) {
        const char *ks = PyUnicode_AsUTF8(k);
        const char *vs = ks ? PyUnicode_AsUTF8(v) : NULL;
        if (!vs) {
            rdk.conf_destroy(c);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "conf keys and values must be str");
            return -1;
        }
        if (rdk.conf_set(c, ks, vs, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            rdk.conf_destroy(c);
            PyErr_Format(PyExc_ValueError, "%s", errstr);
            return -1;
        }
    }
    if (log_cb != Py_None &&
        rdk.conf_set(c, "log.queue", "true", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        rdk.conf_destroy(c);
        PyErr_Format(PyExc_ValueError, "%s", errstr);
        return -1;
    }
    rdk.conf_set_dr_msg_cb(c, on_delivery);
    rdk.conf_set_error_cb(c, on_error);
    rdk.conf_set_stats_cb(c, on_stats);
    if (log_cb != Py_None)
        rdk.conf_set_log_cb(c, on_log);
    rdk.conf_set_opaque(c, self);
    self->error_cb = error_cb == Py_None ? NULL : Py_NewRef(error_cb);
    self->stats_cb = stats_cb == Py_None ? NULL : Py_NewRef(stats_cb);
    self->log_cb = log_cb == Py_None ? NULL : Py_NewRef(log_cb);
    self->topic_index = PyDict_New();
    if (!self->topic_index) {
        rdk.conf_destroy(c);
        return -1;
    }
    rd_kafka_t *rk = rdk.new_(RD_KAFKA_PRODUCER, c, errstr, sizeof errstr);
    if (!rk) {
        rdk.conf_destroy(c);
        PyErr_Format(PyExc_ValueError, "%s", errstr);
        return -1;
    }
    if (log_cb != Py_None)
        rdk.set_log_queue(rk, NULL); /* log lines are served by poll(), on the poll thread */
    self->main_q = rdk.queue_get_main(rk);
    self->rk = rk;
    return 0;
}

static PyObject *Producer_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    (void)args;
    (void)kw;
    Producer *self = (Producer *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->space, NULL);
    return (PyObject *)self;
}

static int closed(Producer *self) {
    if (!self->rk) {
        PyErr_SetString(PyExc_RuntimeError, "the producer is closed");
        return 1;
    }
    return 0;
}

/* rd_kafka_topic_t of a topic name (GIL held). */
static rd_kafka_topic_t *topic_of(Producer *self, PyObject *name) {
    PyObject *idx = PyDict_GetItemWithError(self->topic_index, name);
    if (idx)
        return self->rkts[PyLong_AsSsize_t(idx)];
    if (PyErr_Occurred())
        return NULL;
    const char *s = PyUnicode_AsUTF8(name);
    if (!s)
        return NULL;
    if (self->nrkts == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 8;
        rd_kafka_topic_t **n = realloc(self->rkts, cap * sizeof *n);
        if (!n) {
            PyErr_NoMemory();
            return NULL;
        }
        self->rkts = n;
        self->cap = cap;
    }
    rd_kafka_topic_t *rkt = rdk.topic_new(self->rk, s, NULL);
    if (!rkt) {
        PyErr_Format(PyExc_ValueError, "topic %s: %s", s, rdk.err2str(rdk.last_error()));
        return NULL;
    }
    PyObject *i = PyLong_FromSsize_t(self->nrkts);
    if (!i || PyDict_SetItem(self->topic_index, name, i) < 0) {
        Py_XDECREF(i);
        rdk.topic_destroy(rkt);
        return NULL;
    }
    Py_DECREF(i);
    self->rkts[self->nrkts++] = rkt;
    return rkt;
}

/* Records of one librdkafka produce_batch() call: the batch holds the topic's lock while it
 * enqueues them, so a bounded batch keeps the broker thread from waiting long on it. */
#define BATCH_MAX 1024

/* Wait (at most 100 ms) for delivery reports to make room in librdkafka's queue (poll()
 * signals). Returns 1 if the producer is closing. GIL released. */
static int wait_space(Producer *self) {
    pthread_mutex_lock(&self->lock);
    if (__atomic_load_n(&self->aborted, __ATOMIC_ACQUIRE)) {
        pthread_mutex_unlock(&self->lock);
        return 1;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&self->space, &self->lock, &until);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

/* Kafka's murmur2 (the Java client's Utils.murmur2, librdkafka's rd_murmur2): the hash of the
 * murmur2_random partitioner, which the sink's ``hash`` strategy configures. */
static uint32_t murmur2(const unsigned char *d, size_t len) {
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++, d += 4) {
        uint32_t k = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)d[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)d[1] << 8;
        /* fall through */
    case 1:
        h ^= d[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* Sort msgs[0..n) by partition (-1, the partitioner's, first), keeping their order within each
 * partition (so each key's order): a counting sort through ``tmp``, with ``bucket`` of cnt + 1.
 * GIL released. */
static void by_partition(rd_kafka_message_t *msgs, Py_ssize_t n, int32_t cnt, rd_kafka_message_t *tmp,
                         Py_ssize_t *bucket) {
    memset(bucket, 0, ((size_t)cnt + 1) * sizeof *bucket);
    for (Py_ssize_t i = 0; i < n; i++)
        bucket[msgs[i].partition + 1]++;
    Py_ssize_t at = 0;
    for (int32_t p = 0; p <= cnt; p++) {
        Py_ssize_t k = bucket[p];
        bucket[p] = at;
        at += k;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        tmp[bucket[msgs[i].partition + 1]++] = msgs[i];
    memcpy(msgs, tmp, (size_t)n * sizeof *msgs);
}

/* Hand msgs[0..n) (one topic) to librdkafka, waiting while its queue is full. A record it
 * refuses for another reason counts as a failed delivery. Returns the number handed over
 * (n unless the producer is closing). GIL released. */
static Py_ssize_t produce_topic(Producer *self, chunk_t *c, rd_kafka_topic_t *rkt, int32_t partition,
                                rd_kafka_message_t *msgs, Py_ssize_t n) {
    Py_ssize_t handed = 0;
    for (Py_ssize_t j = 0; j < n; j += BATCH_MAX) {
        Py_ssize_t lo = j, hi = j + BATCH_MAX < n ? j + BATCH_MAX : n;
        while (lo < hi) {
            for (Py_ssize_t k = lo; k < hi; k++)
                msgs[k].err = 0;
            /* One clock reading and one topic lock for the batch. ``partition`` UA: each
             * record's partition is its own (-1: the partitioner's, on its key), each record
             * enqueued under its partition's lock; else every record goes to ``partition``,
             * enqueued at once under one lock. */
            if (partition == RD_KAFKA_PARTITION_UA)
                rdk.produce_batch(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_PARTITION, &msgs[lo],
                                  (int)(hi - lo));
            else
                rdk.produce_batch(rkt, partition, 0, &msgs[lo], (int)(hi - lo));
            /* Records refused for a full queue (all those after the first, in librdkafka) move
             * to the front of the window, in order, to be handed over again. */
            Py_ssize_t w = lo, taken = 0;
            for (Py_ssize_t k = lo; k < hi; k++) {
                rd_kafka_message_t *m = &msgs[k];
                if (!m->err) {
                    taken++;
                    handed++;
                    continue;
                }
                if (m->err == ERR__QUEUE_FULL) {
                    if (w != k)
                        msgs[w] = *m;
                    w++;
                    continue;
                }
                add_fail(m->_private, m->err, m->partition);
                settle(self, c, 1);
                handed++;
            }
            /* Counted once taken (a report may already have come: the count can dip below). */
            __atomic_add_fetch(&self->records, (long)taken, __ATOMIC_RELAXED);
            hi = w;
            if (lo < hi && wait_space(self))
                return handed;
        }
    }
    return handed;
}

/* One header of a record (librdkafka copies its name, NUL-terminated, and its value). */
typedef struct {
    const char *name;
    const void *val;
    Py_ssize_t size;
} hdr_t;

/* A chunk's distinct header lists (a few: one per level), each read once: entries
 * [start, start + n) of ``hv``. GIL held. */
typedef struct {
    hdr_t *hv;
    Py_ssize_t nhv, cap;
    PyObject **obj; /* each set's list, the caller's (borrowed: the chunk holds the headers list) */
    Py_ssize_t *start, *n;
    Py_ssize_t nsets, maxn;
} hdr_sets_t;

static void hdr_sets_free(hdr_sets_t *h) {
    PyMem_RawFree(h->hv);
    PyMem_RawFree(h->obj);
    PyMem_RawFree(h->start);
    PyMem_RawFree(h->n);
}

/* The set of the header list ``h`` ((name, value) pairs: name str, value bytes, str or None),
 * added if it is new; -1 with an exception set if ``h`` is not such a list. */
static Py_ssize_t hdr_set_of(hdr_sets_t *hs, PyObject *h, Py_ssize_t last) {
    if (last >= 0 && hs->obj[last] == h)
        return last;
    /* The same list object again (the usual: one per level); a list seen long ago is read again. */
    for (Py_ssize_t s = hs->nsets - 1; s >= 0 && s >= hs->nsets - 16; s--)
        if (hs->obj[s] == h)
            return s;
    if (!PyList_Check(h) && !PyTuple_Check(h)) {
        PyErr_SetString(PyExc_TypeError, "headers must be lists of (name, value) pairs, or None");
        return -1;
    }
    Py_ssize_t cnt = PySequence_Fast_GET_SIZE(h);
    PyObject **items = PySequence_Fast_ITEMS(h);
    if (hs->nhv + cnt > hs->cap) {
        Py_ssize_t cap = (hs->nhv + cnt) * 2 + 8;
        hdr_t *n = PyMem_RawRealloc(hs->hv, (size_t)cap * sizeof *n);
        if (!n) {
            PyErr_NoMemory();
            return -1;
        }
        hs->hv = n;
        hs->cap = cap;
    }
    Py_ssize_t start = hs->nhv;
    for (Py_ssize_t j = 0; j < cnt; j++) {
        PyObject *pair = items[j];
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError, "a header must be a (str, bytes | str | None) pair");
            return -1;
        }
        hdr_t *e = &hs->hv[start + j];
        e->name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 0));
        if (!e->name)
            return -1;
        PyObject *v = PyTuple_GET_ITEM(pair, 1);
        if (PyBytes_Check(v)) {
            e->val = PyBytes_AS_STRING(v);
            e->size = PyBytes_GET_SIZE(v);
        } else if (PyUnicode_Check(v)) {
            e->val = PyUnicode_AsUTF8AndSize(v, &e->size);
            if (!e->val)
                return -1;
        } else if (v == Py_None) {
            e->val = NULL;
            e->size = 0;
        } else {
            PyErr_SetString(PyExc_TypeError, "a header's value must be bytes, str or None");
            return -1;
        }
    }
    Py_ssize_t s = hs->nsets++;
    hs->obj[s] = h;
    hs->start[s] = start;
    hs->n[s] = cnt;
    hs->nhv = start + cnt;
    if (cnt > hs->maxn)
        hs->maxn = cnt;
    return s;
}

/* Hand msgs[0..n) (in chunk order, any topics) to librdkafka one by one with their headers
 * (rd_kafka_produceva: librdkafka's batch call takes no headers), waiting while its queue is
 * full. hsel[i]: the header set of record i, -1 for none. ``vu``: room for 6 + hs->maxn
 * arguments. As produce_topic otherwise. GIL released. */
static Py_ssize_t produce_each(Producer *self, chunk_t *c, rd_kafka_message_t *msgs, Py_ssize_t n,
                               const Py_ssize_t *hsel, const hdr_sets_t *hs, rd_kafka_vu_t *vu) {
    Py_ssize_t handed = 0;
    long taken = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = &msgs[i];
        size_t k = 0;
        vu[k].vtype = RD_KAFKA_VTYPE_RKT;
        vu[k++].u.rkt = m->rkt;
        vu[k].vtype = RD_KAFKA_VTYPE_PARTITION;
        vu[k++].u.i32 = m->partition;
        vu[k].vtype = RD_KAFKA_VTYPE_VALUE;
        vu[k].u.mem.ptr = m->payload;
        vu[k++].u.mem.size = m->len;
        if (m->key) {
            vu[k].vtype = RD_KAFKA_VTYPE_KEY;
            vu[k].u.mem.ptr = m->key;
            vu[k++].u.mem.size = m->key_len;
        }
        vu[k].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vu[k++].u.ptr = m->_private;
        if (hsel[i] >= 0) {
            const hdr_t *h = &hs->hv[hs->start[hsel[i]]];
            for (Py_ssize_t j = 0; j < hs->n[hsel[i]]; j++) {
                vu[k].vtype = RD_KAFKA_VTYPE_HEADER;
                vu[k].u.header.name = h[j].name;
                vu[k].u.header.val = h[j].val;
                vu[k++].u.header.size = (ssize_t)h[j].size;
            }
        }
        for (;;) {
            rd_kafka_error_t *e = rdk.produceva(self->rk, vu, k);
            if (!e) {
                taken++;
                handed++;
                break;
            }
            rd_kafka_resp_err_t err = rdk.error_code(e);
            rdk.error_destroy(e);
            if (err == ERR__QUEUE_FULL) {
                __atomic_add_fetch(&self->records, taken, __ATOMIC_RELAXED);
                taken = 0;
                if (wait_space(self))
                    return handed;
                continue;
            }
            add_fail(m->_private, err, m->partition);
            settle(self, c, 1);
            handed++;
            break;
        }
        if (taken >= 256) {
            __atomic_add_fetch(&self->records, taken, __ATOMIC_RELAXED);
            taken = 0;
        }
    }
    __atomic_add_fetch(&self->records, taken, __ATOMIC_RELAXED);
    return handed;
}

/*
 * produce_chunk(token, topics, values, keys=None, partitions=None, headers=None,
 *               partition_counts=None) -> int
 *
 * Hands every record to librdkafka, waiting while its queue is full. librdkafka points into the
 * values' bytes (no copy): the chunk holds a reference to them until it is settled. Returns the
 * number handed over: len(values), or fewer if close() was called meanwhile (the rest were not
 * produced, and the chunk is then never settled). A record librdkafka refuses at once counts as
 * a failed delivery. When every record is settled, poll() gives back
 * (token, produced, failures).
 *
 * Records go to librdkafka grouped by topic, in their order within each topic (so in order for
 * each topic and key), through rd_kafka_produce_batch: one clock reading and one topic lock per
 * batch instead of per record.
 *
 * partition_counts: a dict of topic -> partitions, or None. With keys (and no partitions, no
 * headers), the keyed records of a topic it names are partitioned here with the hash of the
 * murmur2_random partitioner (Kafka's murmur2 of the key, positive, modulo the count: the
 * partition librdkafka would choose), then handed over grouped by partition, in their order
 * within it: librdkafka enqueues each group under one partition lock, where its partitioner takes
 * that lock, and the partition's reference, once per record. Records without a key, and the
 * topics it does not name, go to librdkafka's partitioner as before.
 *
 * headers: a list with each record's headers (a list of (name, value) pairs, or None), the same
 * list object for records that share them (the sink's one per level). Each distinct list is read
 * once per chunk; the records then go in chunk order through rd_kafka_produceva, one call per
 * record with its headers as arguments (librdkafka copies them), still without a Python object
 * per record. As for keys, the caller leaves the header lists unchanged during the call.
 */
static PyObject *Producer_produce_chunk(Producer *self, PyObject *args) {
    PyObject *token, *topics, *values, *keys = Py_None, *parts = Py_None, *hdrs = Py_None;
    PyObject *counts = Py_None;
    if (!PyArg_ParseTuple(args, "OO!O!|OOOO", &token, &PyList_Type, &topics, &PyList_Type, &values,
                          &keys, &parts, &hdrs, &counts))
        return NULL;
    if (counts != Py_None && !PyDict_Check(counts)) {
        PyErr_SetString(PyExc_TypeError, "partition_counts must be a dict or None");
        return NULL;
    }
    /* Partition the keyed records here (the hash strategy's murmur2) when the caller knows the
     * topics' partition counts and chose no partitions or headers itself. */
    int hash_here = counts != Py_None && keys != Py_None && parts == Py_None && hdrs == Py_None;
    if (closed(self))
        return NULL;
    if (__atomic_load_n(&self->aborted, __ATOMIC_ACQUIRE)) {
        PyErr_SetString(PyExc_RuntimeError, "the producer is closing");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (PyList_GET_SIZE(topics) != n || (keys != Py_None && (!PyList_Check(keys) || PyList_GET_SIZE(keys) != n)) ||
        (parts != Py_None && (!PyList_Check(parts) || PyList_GET_SIZE(parts) != n)) ||
        (hdrs != Py_None && (!PyList_Check(hdrs) || PyList_GET_SIZE(hdrs) != n))) {
        PyErr_SetString(PyExc_ValueError,
                        "topics, values, keys, partitions and headers must be lists of one length");
        return NULL;
    }
    PyObject *result = NULL;
    chunk_t *c = NULL;
    Py_ssize_t cap = n ? n : 1;
    /* recs: the records in chunk order; msgs: the same grouped by topic (when there are several);
     * slot: each record's topic, as an index into the chunk's distinct topics. */
    rd_kafka_message_t *recs = PyMem_RawCalloc((size_t)cap, sizeof *recs);
    rd_kafka_message_t *msgs = NULL;
    Py_ssize_t *slot = PyMem_RawMalloc((size_t)cap * sizeof *slot);
    /* Per distinct topic: its name (the list's object), handle, record count, then start. */
    PyObject **slot_name = PyMem_RawMalloc((size_t)cap * sizeof *slot_name);
    rd_kafka_topic_t **slot_rkt = PyMem_RawMalloc((size_t)cap * sizeof *slot_rkt);
    Py_ssize_t *slot_n = PyMem_RawCalloc((size_t)cap, sizeof *slot_n);
    /* Per distinct topic: its partition count when the records are partitioned here, else 0. */
    int32_t *slot_cnt = PyMem_RawCalloc((size_t)cap, sizeof *slot_cnt);
    Py_ssize_t nslots = 0;
    /* Partitioned here: a topic's records sorted by partition (a scratch copy, the buckets). */
    rd_kafka_message_t *sorted = NULL;
    Py_ssize_t *bucket = NULL;
    int32_t maxcnt = 0;
    /* With headers: each record's header set (hsel), the sets, produceva's arguments. */
    hdr_sets_t hs = {0};
    Py_ssize_t *hsel = NULL, hcur = -1;
    rd_kafka_vu_t *vu = NULL;
    if (!recs || !slot || !slot_name || !slot_rkt || !slot_n || !slot_cnt) {
        PyErr_NoMemory();
        goto free;
    }
    if (hdrs != Py_None) {
        hsel = PyMem_RawMalloc((size_t)cap * sizeof *hsel);
        hs.obj = PyMem_RawMalloc((size_t)cap * sizeof *hs.obj);
        hs.start = PyMem_RawMalloc((size_t)cap * sizeof *hs.start);
        hs.n = PyMem_RawMalloc((size_t)cap * sizeof *hs.n);
        if (!hsel || !hs.obj || !hs.start || !hs.n) {
            PyErr_NoMemory();
            goto free;
        }
    }
    /* Counted from here (GIL held, right after the checks): close() waits for it. */
    __atomic_add_fetch(&self->users, 1, __ATOMIC_ACQ_REL);
    Py_ssize_t cur = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *r = &recs[i];
        PyObject *t = PyList_GET_ITEM(topics, i);
        if (cur < 0 || t != slot_name[cur]) {
            Py_ssize_t s = 0;
            while (s < nslots && slot_name[s] != t)
                s++;
            if (s == nslots) {
                rd_kafka_topic_t *rkt = topic_of(self, t);
                if (!rkt)
                    goto fail;
                /* Another str object with the same name: one slot per handle. */
                s = 0;
                while (s < nslots && slot_rkt[s] != rkt)
                    s++;
                if (s == nslots) {
                    slot_rkt[s] = rkt;
                    nslots++;
                    if (hash_here) {
                        PyObject *cnt = PyDict_GetItemWithError(counts, t);
                        if (!cnt && PyErr_Occurred())
                            goto fail;
                        long v = cnt && PyLong_Check(cnt) ? PyLong_AsLong(cnt) : 0;
                        if (v == -1 && PyErr_Occurred())
                            goto fail;
                        slot_cnt[s] = v > 0 && v <= INT32_MAX ? (int32_t)v : 0;
                        if (slot_cnt[s] > maxcnt)
                            maxcnt = slot_cnt[s];
                    }
                }
                slot_name[s] = t;
            }
            cur = s;
        }
        slot[i] = cur;
        slot_n[cur]++;
        r->rkt = slot_rkt[cur];
        PyObject *v = PyList_GET_ITEM(values, i);
        if (PyBytes_Check(v)) {
            r->payload = PyBytes_AS_STRING(v);
            r->len = (size_t)PyBytes_GET_SIZE(v);
        } else if (PyUnicode_Check(v) && PyUnicode_IS_COMPACT_ASCII(v)) {
            /* An ASCII str is its own UTF-8 bytes (codec raw: the lines as read, no copy). */
            r->payload = PyUnicode_DATA(v);
            r->len = (size_t)PyUnicode_GET_LENGTH(v);
        } else {
            PyErr_SetString(PyExc_TypeError, "values must be bytes or ASCII str");
            goto fail;
        }
        if (keys != Py_None) {
            PyObject *k = PyList_GET_ITEM(keys, i);
            if (PyUnicode_Check(k)) {
                Py_ssize_t kl;
                r->key = (void *)PyUnicode_AsUTF8AndSize(k, &kl);
                if (!r->key)
                    goto fail;
                r->key_len = (size_t)kl;
            } else if (PyBytes_Check(k)) {
                r->key = PyBytes_AS_STRING(k);
                r->key_len = (size_t)PyBytes_GET_SIZE(k);
            } else if (k != Py_None) {
                PyErr_SetString(PyExc_TypeError, "keys must be str, bytes or None");
                goto fail;
            }
        }
        r->partition = RD_KAFKA_PARTITION_UA;
        if (r->key && slot_cnt[cur] > 0)
            r->partition = (int32_t)((murmur2(r->key, r->key_len) & 0x7fffffff) % (uint32_t)slot_cnt[cur]);
        if (parts != Py_None) {
            long p = PyLong_AsLong(PyList_GET_ITEM(parts, i));
            if (p == -1 && PyErr_Occurred())
                goto fail;
            r->partition = (int32_t)p;
        }
        if (hsel) {
            PyObject *h = PyList_GET_ITEM(hdrs, i);
            if (h == Py_None)
                hsel[i] = -1;
            else if ((hsel[i] = hcur = hdr_set_of(&hs, h, hcur)) < 0)
                goto fail;
        }
    }
    if (maxcnt > 0) {
        sorted = PyMem_RawMalloc((size_t)cap * sizeof *sorted);
        bucket = PyMem_RawMalloc(((size_t)maxcnt + 1) * sizeof *bucket);
        if (!sorted || !bucket) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    if (hsel) {
        vu = PyMem_RawMalloc((size_t)(6 + hs.maxn) * sizeof *vu);
        if (!vu) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    /* The chunk's state, with a slot per record, before any record is handed over. */
    c = calloc(1, sizeof(chunk_t) + (size_t)n * sizeof(slot_t));
    if (!c) {
        PyErr_NoMemory();
        goto fail;
    }
    /* librdkafka does not copy the values (keys it does): the chunk holds them until settled. */
    c->values = PyList_AsTuple(values);
    if (!c->values)
        goto fail;
    c->topics = Py_NewRef(topics);
    c->keys = keys != Py_None ? Py_NewRef(keys) : NULL;
    c->headers = hdrs != Py_None ? Py_NewRef(hdrs) : NULL;
    c->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        c->slots[i].chunk = c;
        recs[i]._private = &c->slots[i];
    }
    if (hsel) {
        /* Record by record, in chunk order. */
        msgs = recs;
        recs = NULL;
    } else if (nslots > 1) {
        msgs = PyMem_RawMalloc((size_t)cap * sizeof *msgs);
        if (!msgs) {
            PyErr_NoMemory();
            goto fail;
        }
        /* Stable grouping: slot_n becomes each topic's next position. */
        Py_ssize_t at = 0;
        for (Py_ssize_t s = 0; s < nslots; s++) {
            Py_ssize_t cnt = slot_n[s];
            slot_n[s] = at;
            at += cnt;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            msgs[slot_n[slot[i]]++] = recs[i];
        /* slot_n[s] is now the end of topic s. */
    } else {
        msgs = recs;
        recs = NULL;
        slot_n[0] = n;
    }
    c->token = Py_NewRef(token);
    c->remaining = (long)n + 1;
    __atomic_add_fetch(&self->live, 1, __ATOMIC_RELAXED);
    Py_ssize_t handed = 0;
    /* The keys (str or bytes, the caller's) stay alive during the call and librdkafka copies
     * them; the values stay alive in c->values until the chunk is settled. */
    Py_BEGIN_ALLOW_THREADS;
    if (hsel) {
        handed = produce_each(self, c, msgs, n, hsel, &hs, vu);
    } else {
        Py_ssize_t start = 0;
        for (Py_ssize_t s = 0; s < nslots; s++) {
            Py_ssize_t end = slot_n[s];
            int32_t pc = slot_cnt[s];
            if (pc > 0)
                by_partition(&msgs[start], end - start, pc, sorted, bucket);
            /* Runs of one partition (partitioned here), else the topic's records at once. */
            int closing = 0;
            for (Py_ssize_t a = start, b; a < end && !closing; a = b) {
                int32_t part = RD_KAFKA_PARTITION_UA;
                b = end;
                if (pc > 0) {
                    part = msgs[a].partition;
                    for (b = a + 1; b < end && msgs[b].partition == part;)
                        b++;
                }
                Py_ssize_t h = produce_topic(self, c, slot_rkt[s], part, &msgs[a], b - a);
                handed += h;
                closing = h < b - a;
            }
            if (closing)
                break;
            start = end;
        }
    }
    c->produced = (long)handed;
    /* The sender's own count, and one for each record not produced (closing). */
    settle(self, c, 1 + (long)(n - handed));
    __atomic_sub_fetch(&self->users, 1, __ATOMIC_ACQ_REL);
    Py_END_ALLOW_THREADS;
    result = PyLong_FromSsize_t(handed);
    goto free;
fail:
    __atomic_sub_fetch(&self->users, 1, __ATOMIC_ACQ_REL);
    free_chunk(c);
free:
    PyMem_RawFree(recs);
    PyMem_RawFree(msgs);
    PyMem_RawFree(slot);
    PyMem_RawFree(slot_name);
    PyMem_RawFree(slot_rkt);
    PyMem_RawFree(slot_n);
    PyMem_RawFree(slot_cnt);
    PyMem_RawFree(sorted);
    PyMem_RawFree(bucket);
    PyMem_RawFree(hsel);
    PyMem_RawFree(vu);
    hdr_sets_free(&hs);
    return result;
}

/* Test switch (_rdk._fail_next_results(n)): the next n settled chunks with failed records cannot
 * be turned into Python objects, as if the heap were exhausted. */
static long fail_next_results;

/* Item ``i`` of ``list``, or None if the caller changed the list meanwhile (borrowed). */
static PyObject *item_or_none(PyObject *list, Py_ssize_t i) {
    if (list && PyList_Check(list) && i < PyList_GET_SIZE(list))
        return PyList_GET_ITEM(list, i);
    return Py_None;
}

/* (token, produced, [(err, topic, value, key, partition, headers)]) of a settled chunk; NULL with an
 * exception set if it cannot be built now. */
static PyObject *chunk_result(chunk_t *c) {
    if (__atomic_load_n(&c->failed, __ATOMIC_RELAXED) && fail_next_results > 0) {
        fail_next_results--;
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *fails = PyList_New(0);
    if (!fails)
        return NULL;
    if (__atomic_load_n(&c->failed, __ATOMIC_RELAXED)) {
        for (Py_ssize_t i = 0; i < c->n; i++) {
            slot_t *s = &c->slots[i];
            if (!s->err)
                continue;
            /* A value given as an ASCII str comes back as its bytes, as every other value. */
            PyObject *v = PyTuple_GET_ITEM(c->values, i);
            v = PyUnicode_Check(v) ? PyUnicode_AsUTF8String(v) : Py_NewRef(v);
            if (!v) {
                Py_DECREF(fails);
                return NULL;
            }
            PyObject *t = Py_BuildValue("(iOOOiO)", (int)s->err, item_or_none(c->topics, i), v,
                                        item_or_none(c->keys, i), (int)s->partition, item_or_none(c->headers, i));
            Py_DECREF(v);
            if (!t || PyList_Append(fails, t) < 0) {
                Py_XDECREF(t);
                Py_DECREF(fails);
                return NULL;
            }
            Py_DECREF(t);
        }
    }
    return Py_BuildValue("(OlN)", c->token, c->produced, fails);
}

/* Put the settled chunks from ``c`` on (a list linked by ``next``) back at the head of the queue. */
static void requeue_done(Producer *self, chunk_t *c) {
    chunk_t *last = c;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&self->lock);
    last->next = self->done_head;
    self->done_head = c;
    if (!self->done_tail)
        self->done_tail = last;
    pthread_mutex_unlock(&self->lock);
}

/* Give back the settled chunks: [(token, produced, [(err, topic, value, key, partition, headers)])]. A
 * chunk whose result cannot be built now (no memory) stays queued, with the chunks after it, for
 * the next call: a settled chunk, and above all a failed record, is never dropped. */
static PyObject *take_done(Producer *self) {
    pthread_mutex_lock(&self->lock);
    chunk_t *c = self->done_head;
    self->done_head = self->done_tail = NULL;
    pthread_mutex_unlock(&self->lock);
    PyObject *out = PyList_New(0);
    if (!out) {
        if (c)
            requeue_done(self, c);
        return NULL;
    }
    while (c) {
        PyObject *r = chunk_result(c);
        if (!r || PyList_Append(out, r) < 0) {
            Py_XDECREF(r);
            PyErr_Clear();
            self->deferred++;
            requeue_done(self, c);
            break;
        }
        Py_DECREF(r);
        chunk_t *next = c->next;
        free_chunk(c);
        __atomic_sub_fetch(&self->live, 1, __ATOMIC_RELAXED);
        c = next;
    }
    return out;
}

/* Drop the settled chunks (close: what the producer held was not acknowledged). */
static void drop_done(Producer *self) {
    pthread_mutex_lock(&self->lock);
    chunk_t *c = self->done_head;
    self->done_head = self->done_tail = NULL;
    pthread_mutex_unlock(&self->lock);
    while (c) {
        chunk_t *next = c->next;
        free_chunk(c);
        __atomic_sub_fetch(&self->live, 1, __ATOMIC_RELAXED);
        c = next;
    }
}

static void wake_senders(Producer *self) {
    pthread_mutex_lock(&self->lock);
    pthread_cond_broadcast(&self->space);
    pthread_mutex_unlock(&self->lock);
}

/* poll(timeout) -> (events served, settled chunks) */
static PyObject *Producer_poll(Producer *self, PyObject *args) {
    double timeout;
    if (!PyArg_ParseTuple(args, "d", &timeout))
        return NULL;
    if (closed(self))
        return NULL;
    int served;
    Py_BEGIN_ALLOW_THREADS;
    served = rdk.poll(self->rk, (int)(timeout * 1000));
    if (served > 0)
        wake_senders(self);
    Py_END_ALLOW_THREADS;
    return Py_BuildValue("(iN)", served, take_done(self));
}

/* flush(timeout) -> (records still held, settled chunks); serves callbacks like poll() and makes
 * librdkafka send what lingers. */
static PyObject *Producer_flush(Producer *self, PyObject *args) {
    double timeout;
    if (!PyArg_ParseTuple(args, "d", &timeout))
        return NULL;
    if (closed(self))
        return NULL;
    int left;
    Py_BEGIN_ALLOW_THREADS;
    rdk.flush(self->rk, (int)(timeout * 1000));
    wake_senders(self);
    left = rdk.outq_len(self->rk);
    Py_END_ALLOW_THREADS;
    return Py_BuildValue("(iN)", left, take_done(self));
}

/* wake(): end the poll thread's current poll()/flush() wait now (rd_kafka_queue_yield on the
 * main queue, the one rd_kafka_poll() serves), so it decides
 * at once whether to send what lingers; a poll() that starts later returns at once. Any thread;
 * the GIL is held, so close() cannot destroy the handle meanwhile. */
static PyObject *Producer_wake(Producer *self, PyObject *unused) {
    (void)unused;
    if (closed(self))
        return NULL;
    if (self->main_q)
        rdk.queue_yield(self->main_q);
    Py_RETURN_NONE;
}

static PyObject *Producer_purge(Producer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"in_queue", "in_flight", "blocking", NULL};
    int q = 1, f = 1, b = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ppp", kwlist, &q, &f, &b))
        return NULL;
    if (closed(self))
        return NULL;
    int flags = (q ? RD_KAFKA_PURGE_F_QUEUE : 0) | (f ? RD_KAFKA_PURGE_F_INFLIGHT : 0) |
                (b ? 0 : RD_KAFKA_PURGE_F_NON_BLOCKING);
    rd_kafka_resp_err_t err;
    Py_BEGIN_ALLOW_THREADS;
    err = rdk.purge(self->rk, flags);
    Py_END_ALLOW_THREADS;
    if (err) {
        PyErr_Format(PyExc_RuntimeError, "purge: %s", rdk.err2str(err));
        return NULL;
    }
    Py_RETURN_NONE;
}

/* transaction(op, timeout) -> None, or (code, reason, fatal, retriable, requires_abort).
 * op: 0 init_transactions, 1 begin, 2 commit, 3 abort; on the poll thread (or the stopping one),
 * GIL released. librdkafka serves delivery reports inside commit (counted in C, as in poll). */
static PyObject *Producer_transaction(Producer *self, PyObject *args) {
    int op;
    double timeout;
    if (!PyArg_ParseTuple(args, "id", &op, &timeout))
        return NULL;
    if (op < 0 || op > 3) {
        PyErr_SetString(PyExc_ValueError, "op: 0 init, 1 begin, 2 commit, 3 abort");
        return NULL;
    }
    if (closed(self))
        return NULL;
    int ms = (int)(timeout * 1000);
    rd_kafka_error_t *e;
    Py_BEGIN_ALLOW_THREADS;
    switch (op) {
    case 0:
        e = rdk.init_transactions(self->rk, ms);
        break;
    case 1:
        e = rdk.begin_transaction(self->rk);
        break;
    case 2:
        e = rdk.commit_transaction(self->rk, ms);
        break;
    default:
        e = rdk.abort_transaction(self->rk, ms);
        break;
    }
    wake_senders(self);
    Py_END_ALLOW_THREADS;
    if (!e)
        Py_RETURN_NONE;
    PyObject *r = Py_BuildValue("(isNNN)", (int)rdk.error_code(e), rdk.error_string(e),
                                PyBool_FromLong(rdk.error_is_fatal(e)),
                                PyBool_FromLong(rdk.error_is_retriable(e)),
                                PyBool_FromLong(rdk.error_txn_requires_abort(e)));
    rdk.error_destroy(e);
    return r;
}

static void do_close(Producer *self) {
    __atomic_store_n(&self->aborted, 1, __ATOMIC_RELEASE);
    wake_senders(self);
    if (!self->rk)
        return;
    rd_kafka_t *rk = self->rk;
    rd_kafka_queue_t *main_q = self->main_q;
    self->rk = NULL;
    self->main_q = NULL;
    Py_ssize_t n = self->nrkts;
    rd_kafka_topic_t **rkts = self->rkts;
    Py_BEGIN_ALLOW_THREADS;
    /* A sender still inside produce_chunk leaves it soon: a full queue no longer makes it wait. */
    while (__atomic_load_n(&self->users, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ms = {0, 1000 * 1000};
        wake_senders(self);
        nanosleep(&ms, NULL);
    }
    rdk.purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
    for (Py_ssize_t i = 0; i < n; i++)
        rdk.topic_destroy(rkts[i]);
    if (main_q)
        rdk.queue_destroy(main_q);
    rdk.destroy(rk);
    Py_END_ALLOW_THREADS;
    free(rkts);
    self->rkts = NULL;
    self->nrkts = self->cap = 0;
}

/* close(): purge what is held (it is not acknowledged, so not checkpointed) and end librdkafka's
 * threads now. Chunks settled by the purge are dropped with it. */
static PyObject *Producer_close(Producer *self, PyObject *unused) {
    (void)unused;
    do_close(self);
    drop_done(self);
    Py_RETURN_NONE;
}

static Py_ssize_t Producer_len(Producer *self) {
    return self->rk ? rdk.outq_len(self->rk) : 0;
}

static PyObject *Producer_get_live(Producer *self, void *unused) {
    (void)unused;
    return PyLong_FromLong(__atomic_load_n(&self->live, __ATOMIC_RELAXED));
}

static void Producer_dealloc(Producer *self) {
    /* Also runs when __init__ failed: keep its exception. */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    do_close(self);
    drop_done(self);
    PyErr_Restore(et, ev, tb);
    Py_CLEAR(self->topic_index);
    Py_CLEAR(self->error_cb);
    Py_CLEAR(self->stats_cb);
    Py_CLEAR(self->log_cb);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->space);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Producer_methods[] = {
    {"produce_chunk", (PyCFunction)Producer_produce_chunk, METH_VARARGS,
     "produce_chunk(token, topics, values, keys=None, partitions=None, headers=None, partition_counts=None) "
     "-> records handed over"},
    {"poll", (PyCFunction)Producer_poll, METH_VARARGS, "poll(timeout) -> (events, settled chunks)"},
    {"flush", (PyCFunction)Producer_flush, METH_VARARGS, "flush(timeout) -> (held, settled chunks)"},
    {"wake", (PyCFunction)Producer_wake, METH_NOARGS, "wake(): end the current poll()/flush() wait now"},
    {"purge", (PyCFunction)(void (*)(void))Producer_purge, METH_VARARGS | METH_KEYWORDS,
     "purge(in_queue=True, in_flight=True, blocking=True)"},
    {"close", (PyCFunction)Producer_close, METH_NOARGS, "purge and destroy the librdkafka handle"},
    {"transaction", (PyCFunction)Producer_transaction, METH_VARARGS,
     "transaction(op, timeout) -> None or (code, reason, fatal, retriable, requires_abort)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Producer_get_records(Producer *self, void *unused) {
    (void)unused;
    long n = __atomic_load_n(&self->records, __ATOMIC_RELAXED);
    return PyLong_FromLong(n > 0 ? n : 0);
}

static PyObject *Producer_get_deferred(Producer *self, void *unused) {
    (void)unused;
    return PyLong_FromLong(self->deferred);
}

static PyGetSetDef Producer_getset[] = {
    {"deferred", (getter)Producer_get_deferred, NULL,
     "times settled chunks were kept for a later poll() because no memory was left", NULL},
    {"live_chunks", (getter)Producer_get_live, NULL, "chunks produced and not yet given back", NULL},
    {"records", (getter)Producer_get_records, NULL,
     "records librdkafka holds (queued or in flight): handed over, not yet reported", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Producer_seq = {.sq_length = (lenfunc)Producer_len};

static PyTypeObject ProducerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "log_capturer.sinks.kafka.native._rdk.Producer",
    .tp_basicsize = sizeof(Producer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A librdkafka producer that reports deliveries per chunk of records.",
    .tp_new = Producer_new,
    .tp_init = (initproc)Producer_init,
    .tp_dealloc = (destructor)Producer_dealloc,
    .tp_methods = Producer_methods,
    .tp_getset = Producer_getset,
    .tp_as_sequence = &Producer_seq,
};

static PyObject *mod_fail_next_results(PyObject *m, PyObject *args) {
    long n;
    (void)m;
    if (!PyArg_ParseTuple(args, "l", &n))
        return NULL;
    fail_next_results = n;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"load", mod_load, METH_VARARGS, "load(path) -> librdkafka version: open librdkafka"},
    {"_fail_next_results", mod_fail_next_results, METH_VARARGS,
     "tests only: the next n settled chunks with failed records find no memory for their results"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_rdk", "Chunk producer on librdkafka (see _rdk.c).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rdk(void) {
    if (PyType_Ready(&ProducerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Producer", (PyObject *)&ProducerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
