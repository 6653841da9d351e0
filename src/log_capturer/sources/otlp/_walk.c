/*
 * OTLP log requests walked in C: the protobuf wire format of an ExportLogsServiceRequest read
 * without protobuf's objects, its LogRecords made into the columns of a chunk in one call.
 *
 * What it gives is what decode.Decoder._protobuf's Python walk gives (tests/unit/sources/otlp/
 * test_walk.py compares both on random and edge-case requests). Anything it does not handle
 * exactly as protobuf would (a truncated or malformed message, a group, a known field with
 * another wire type, text that is not UTF-8, a message field given twice, which protobuf
 * merges, nesting deeper than MAX_DEPTH) makes it return None: the caller then takes the
 * Python walk for the whole request, which decides (and answers 400 where protobuf refuses).
 *
 *   scopes(body) -> [(resource_index, resource_bytes, scope_bytes, start, end), ...] | None
 *       one entry per ScopeLogs, in order; start/end: where its fields are in body.
 *   records(body, start, end, common, n, level_of, dumps, common_json=None)
 *       -> (lines, fields, levels, stamps, rejected, count) | None
 *       the LogRecords of the ScopeLogs at body[start:end]; ``common`` is copied into each
 *       record's fields first; ``n`` is the number of the request's records before them;
 *       rejected: (n, reason, text, record_start, record_end) of the records not shipped.
 *       With common_json (dumps(common), bytes), each record's fields are written as JSON
 *       straight from the wire: the bytes dumps(fields) gives, common_json's members first
 *       (serialised once per scope, not once per record), no dict made. A record whose fields
 *       JSON cannot carry exactly as the dict (an attribute map with a key given twice, where
 *       the dict keeps the first place and the last value; a double that is not finite, which
 *       JSON writes as null) gets its dict, as without common_json. None: no fields.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

/* The walk met something the Python walk must decide: return None. */
#define FALLBACK 1
/* A Python error is set. */
#define ERROR 2
/* The record's fields are made as a dict (json_* only): see records(). */
#define AS_DICT 3

static PyObject *K_TRACE_ID, *K_SPAN_ID, *K_TRACE_FLAGS, *K_SEVERITY_TEXT, *K_SEVERITY_NUMBER,
    *K_EVENT_NAME, *K_ATTRIBUTES, *S_EMPTY_BODY, *S_INVALID_TRACE_ID, *LEVELS[25];

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

static int varint(rd_t *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* One field: its number, wire type, value (VARINT, I64, I32) or bytes (LEN; NULL and 0 otherwise). */
typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;
    const uint8_t *d;
    Py_ssize_t len;
} field_t;

/* The next field. -1: malformed or a group. */
static int next_field(rd_t *r, field_t *f) {
    uint64_t key;
    f->v = 0;
    f->d = NULL;
    f->len = 0;
    if (varint(r, &key) < 0)
        return -1;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    if (f->num == 0 || (key >> 3) > 0x1FFFFFFF)
        return -1;
    switch (f->wt) {
    case 0:
        return varint(r, &f->v);
    case 1:
        if (r->end - r->p < 8)
            return -1;
        memcpy(&f->v, r->p, 8); /* little-endian hosts (x86-64, arm64) */
        r->p += 8;
        return 0;
    case 5: {
        uint32_t v32;
        if (r->end - r->p < 4)
            return -1;
        memcpy(&v32, r->p, 4);
        r->p += 4;
        f->v = v32;
        return 0;
    }
    case 2: {
        uint64_t n;
        if (varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p))
            return -1;
        f->d = r->p;
        f->len = (Py_ssize_t)n;
        r->p += n;
        return 0;
    }
    default:
        return -1; /* groups (3, 4) and the reserved types */
    }
}

/* The next field numbered num, which must be a message or a string (LEN); the others are passed
 * over. 1: found, in *f; 0: the end; -1: malformed, or num with another wire type (FALLBACK). */
static int next_len(rd_t *r, uint32_t num, field_t *f) {
    while (r->p < r->end) {
        if (next_field(r, f) < 0)
            return -1;
        if (f->num == num)
            return f->wt == 2 ? 1 : -1;
    }
    return 0;
}

/* Appends a new reference (NULL: a Python error is set) to a list and drops it. */
static int append_new(PyObject *list, PyObject *o) {
    if (o == NULL)
        return -1;
    int rc = PyList_Append(list, o);
    Py_DECREF(o);
    return rc;
}

static PyObject *utf8(const uint8_t *s, Py_ssize_t n, int *why) {
    PyObject *o = PyUnicode_DecodeUTF8((const char *)s, n, "strict");
    if (o == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            *why = FALLBACK;
        } else {
            *why = ERROR;
        }
    }
    return o;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The base64 of s[0..n) (with padding) into d, which has room for ((n + 2) / 3) * 4 bytes. */
static void b64_into(char *d, const uint8_t *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *d++ = B64[v >> 18];
        *d++ = B64[(v >> 12) & 63];
        *d++ = B64[(v >> 6) & 63];
        *d++ = B64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        *d++ = B64[v >> 18];
        *d++ = B64[(v >> 12) & 63];
        *d++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        *d++ = '=';
    }
}

static PyObject *base64(const uint8_t *s, Py_ssize_t n) {
    PyObject *o = PyUnicode_New(((n + 2) / 3) * 4, 127);
    if (o != NULL)
        b64_into((char *)PyUnicode_1BYTE_DATA(o), s, n);
    return o;
}

static PyObject *any_value(const uint8_t *s, Py_ssize_t n, int depth, int *why, int *present);

/* The value field an AnyValue sets: *kind its number (0: none; 1 string, 2 bool, 3 int, 4 double,
 * 5 array, 6 kvlist, 7 bytes), *scalar for 2-4, data/data_len for the others. -1 (*why FALLBACK)
 * for what protobuf reads otherwise: a field of another wire type, or more than one value field
 * (protobuf's oneof and merge rules decide). */
static int av_parts(const uint8_t *s, Py_ssize_t n, uint32_t *kind, uint64_t *scalar, const uint8_t **data,
                    Py_ssize_t *data_len, int *why) {
    static const int WIRE[8] = {-1, 2, 0, 0, 1, 2, 2, 2};
    rd_t r = {s, s + n};
    int seen = 0;
    field_t f;
    *kind = 0;
    *scalar = 0;
    *data = NULL;
    *data_len = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f) < 0)
            return *why = FALLBACK, -1;
        if (f.num < 1 || f.num > 7)
            continue;
        if (f.wt != WIRE[f.num])
            return *why = FALLBACK, -1;
        seen++;
        *kind = f.num;
        *scalar = f.v;
        *data = f.d;
        *data_len = f.len;
    }
    if (seen > 1)
        return *why = FALLBACK, -1;
    return 0;
}

/* The parts of a KeyValue {string key = 1; AnyValue value = 2}: its key (empty when absent) and
 * its value's bytes (NULL when absent). -1 (*why FALLBACK) for what protobuf reads otherwise: a
 * field of another wire type, or a value given twice (protobuf merges the two). */
static int kv_parts(const uint8_t *s, Py_ssize_t n, const uint8_t **key, Py_ssize_t *key_len, const uint8_t **val,
                    Py_ssize_t *val_len, int *why) {
    rd_t r = {s, s + n};
    int vals = 0;
    field_t f;
    *key = (const uint8_t *)"";
    *key_len = 0;
    *val = NULL;
    *val_len = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f) < 0)
            return *why = FALLBACK, -1;
        if (f.num == 1 || f.num == 2) {
            if (f.wt != 2)
                return *why = FALLBACK, -1;
            if (f.num == 1) {
                *key = f.d;
                *key_len = f.len;
            } else {
                *val = f.d;
                *val_len = f.len;
                vals++;
            }
        }
    }
    if (vals > 1)
        return *why = FALLBACK, -1;
    return 0;
}

/* KeyValue {string key = 1; AnyValue value = 2} into dict[key] = value (the last key wins). */
static int key_value(PyObject *dict, const uint8_t *s, Py_ssize_t n, int depth, int *why) {
    const uint8_t *key, *val;
    Py_ssize_t key_len, val_len;
    if (kv_parts(s, n, &key, &key_len, &val, &val_len, why) < 0)
        return -1;
    PyObject *k = utf8(key, key_len, why);
    if (k == NULL)
        return -1;
    PyObject *value;
    if (val == NULL) {
        value = Py_NewRef(Py_None);
    } else {
        int present;
        value = any_value(val, val_len, depth + 1, why, &present);
        if (value == NULL) {
            Py_DECREF(k);
            return -1;
        }
    }
    int rc = PyDict_SetItem(dict, k, value);
    Py_DECREF(k);
    Py_DECREF(value);
    if (rc < 0)
        return *why = ERROR, -1;
    return 0;
}

/* A repeated message of KeyValue/AnyValue (KeyValueList, ArrayValue: field 1) into a dict or list. */
static PyObject *values_of(const uint8_t *s, Py_ssize_t n, int depth, int as_dict, int *why) {
    if (depth > MAX_DEPTH)
        return *why = FALLBACK, NULL;
    PyObject *out = as_dict ? PyDict_New() : PyList_New(0);
    if (out == NULL)
        return *why = ERROR, NULL;
    rd_t r = {s, s + n};
    field_t f;
    int found;
    while ((found = next_len(&r, 1, &f)) > 0) {
        if (as_dict) {
            if (key_value(out, f.d, f.len, depth, why) < 0)
                goto fail;
        } else {
            int present;
            PyObject *item = any_value(f.d, f.len, depth + 1, why, &present);
            if (item == NULL)
                goto fail;
            if (append_new(out, item) < 0) {
                *why = ERROR;
                goto fail;
            }
        }
    }
    if (found == 0)
        return out;
    *why = FALLBACK;
fail:
    Py_DECREF(out);
    return NULL;
}

/* An AnyValue as decode.any_value gives it; *present: which of its value fields is set (0: none,
 * 1: string_value, the text itself). More than one value field: FALLBACK (protobuf's oneof and
 * merge rules decide). */
static PyObject *any_value(const uint8_t *s, Py_ssize_t n, int depth, int *why, int *present) {
    if (depth > MAX_DEPTH)
        return *why = FALLBACK, NULL;
    uint32_t kind;
    uint64_t scalar;
    const uint8_t *data;
    Py_ssize_t data_len;
    if (av_parts(s, n, &kind, &scalar, &data, &data_len, why) < 0)
        return NULL;
    *present = (int)kind;
    PyObject *o = NULL;
    switch (kind) {
    case 0:
        return Py_NewRef(Py_None);
    case 1:
        return utf8(data, data_len, why);
    case 2:
        return PyBool_FromLong(scalar != 0);
    case 3:
        o = PyLong_FromLongLong((long long)(int64_t)scalar);
        break;
    case 4: {
        double x;
        memcpy(&x, &scalar, 8);
        o = PyFloat_FromDouble(x);
        break;
    }
    case 5:
        return values_of(data, data_len, depth, 0, why);
    case 6:
        return values_of(data, data_len, depth, 1, why);
    case 7:
        o = base64(data, data_len);
        break;
    }
    if (o == NULL)
        *why = ERROR;
    return o;
}

/* Whether every code point of a non-empty str is whitespace (str.isspace). */
static int is_space(PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n == 0)
        return 0;
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            return 0;
    return 1;
}

static PyObject *hex_of(const uint8_t *s, Py_ssize_t n) {
    static const char H[] = "0123456789abcdef";
    PyObject *o = PyUnicode_New(2 * n, 127);
    if (o == NULL)
        return NULL;
    char *d = (char *)PyUnicode_1BYTE_DATA(o);
    for (Py_ssize_t i = 0; i < n; i++) {
        d[2 * i] = H[s[i] >> 4];
        d[2 * i + 1] = H[s[i] & 15];
    }
    return o;
}

static int all_zero(const uint8_t *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i])
            return 0;
    return 1;
}

/* ---- scopes(body) --------------------------------------------------------------------------- */

/* A string field (schema_url) must be UTF-8, as protobuf checks. */
static int check_utf8(const uint8_t *s, Py_ssize_t n, int *why) {
    PyObject *o = utf8(s, n, why);
    if (o == NULL)
        return -1;
    Py_DECREF(o);
    return 0;
}

/* The first field of a ResourceLogs (resource) or a ScopeLogs (scope), a message given at most
 * once (protobuf merges two: FALLBACK); empty when absent. Fields 1 to 3 must be LEN; the third,
 * schema_url, UTF-8. */
static int first_of(const uint8_t *s, Py_ssize_t n, const uint8_t **one, Py_ssize_t *one_len, int *why) {
    rd_t r = {s, s + n};
    int ones = 0;
    field_t f;
    *one = (const uint8_t *)"";
    *one_len = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f) < 0)
            return *why = FALLBACK, -1;
        if (f.num >= 1 && f.num <= 3 && f.wt != 2)
            return *why = FALLBACK, -1;
        if (f.num == 1) {
            *one = f.d;
            *one_len = f.len;
            ones++;
        } else if (f.num == 3 && check_utf8(f.d, f.len, why) < 0) {
            return -1;
        }
    }
    return ones > 1 ? (*why = FALLBACK, -1) : 0;
}

static int scope_logs(PyObject *out, Py_ssize_t ri, PyObject *resource, const uint8_t *base, const uint8_t *s,
                      Py_ssize_t n, int *why) {
    const uint8_t *scope;
    Py_ssize_t scope_len;
    if (first_of(s, n, &scope, &scope_len, why) < 0)
        return -1;
    PyObject *entry = Py_BuildValue("(nOy#nn)", ri, resource, (const char *)scope, scope_len,
                                    (Py_ssize_t)(s - base), (Py_ssize_t)(s + n - base));
    return append_new(out, entry) < 0 ? (*why = ERROR, -1) : 0;
}

static int resource_logs(PyObject *out, Py_ssize_t ri, const uint8_t *base, const uint8_t *s, Py_ssize_t n,
                         int *why) {
    /* First the resource (it may come after the scopes), then the scopes. */
    const uint8_t *res;
    Py_ssize_t res_len;
    if (first_of(s, n, &res, &res_len, why) < 0)
        return -1;
    PyObject *resource = PyBytes_FromStringAndSize((const char *)res, res_len);
    if (resource == NULL)
        return *why = ERROR, -1;
    rd_t r = {s, s + n};
    field_t f;
    while (next_len(&r, 2, &f) > 0) { /* read once above: well-formed */
        if (scope_logs(out, ri, resource, base, f.d, f.len, why) < 0) {
            Py_DECREF(resource);
            return -1;
        }
    }
    Py_DECREF(resource);
    return 0;
}

static PyObject *scopes(PyObject *m, PyObject *arg) {
    (void)m;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *base = view.buf;
    rd_t r = {base, base + view.len};
    PyObject *out = PyList_New(0);
    int why = 0;
    Py_ssize_t ri = 0;
    field_t f;
    int found;
    if (out == NULL)
        goto error;
    while ((found = next_len(&r, 1, &f)) > 0)
        if (resource_logs(out, ri++, base, f.d, f.len, &why) < 0)
            goto error;
    if (found < 0) {
        why = FALLBACK;
        goto error;
    }
    PyBuffer_Release(&view);
    return out;
error:
    PyBuffer_Release(&view);
    Py_XDECREF(out);
    if (why == FALLBACK) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return NULL;
}

/* ---- fields as JSON, straight from the wire (records with common_json) ---------------------- */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} jbuf_t;

static int jb_reserve(jbuf_t *b, Py_ssize_t extra) {
    if (b->cap - b->len >= extra)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int jb_put(jbuf_t *b, const void *s, Py_ssize_t n) {
    if (jb_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

#define JB_LIT(b, lit) jb_put((b), (lit), (Py_ssize_t)sizeof(lit) - 1)

/* Whether s[0..n) is UTF-8 as Python's strict decoder takes it (no overlong forms, no
 * surrogates, nothing past U+10FFFF, no sequence cut short). */
static int utf8_ok(const uint8_t *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (n - i < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))
                return 0; /* overlong; a surrogate */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (n - i < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
                return 0; /* overlong; past U+10FFFF */
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* JSON text of UTF-8 s[0..n) (valid: checked before) as orjson writes it: '"' and '\\' and the
 * control characters escaped (\b \t \n \f \r, else \u00XX), nothing else. */
static int jb_str(jbuf_t *b, const uint8_t *s, Py_ssize_t n) {
    static const char HEX[] = "0123456789abcdef";
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || jb_reserve(b, 6 * n + 2) < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\r':
            *o++ = 'r';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = HEX[c >> 4];
            *o++ = HEX[c & 15];
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 0;
}

/* A text field: valid UTF-8 (else FALLBACK, as utf8() decides), as JSON. */
static int jb_text(jbuf_t *b, const uint8_t *s, Py_ssize_t n, int *why) {
    if (!utf8_ok(s, n))
        return *why = FALLBACK, -1;
    return jb_str(b, s, n) < 0 ? (*why = ERROR, -1) : 0;
}

static int jb_int(jbuf_t *b, long long v) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%lld", v);
    return jb_put(b, tmp, k);
}

static int json_any(jbuf_t *b, const uint8_t *s, Py_ssize_t n, int depth, PyObject *dumps, int *why);

/* Most members of one JSON object json_kvs checks for a key given twice; a larger map: AS_DICT. */
#define KV_MAX 64

/* The KeyValues (fields numbered num of s[0..n)) as one JSON object, as the dict key_value()
 * fills would be written: AS_DICT when a key is given twice (the dict keeps its first place
 * and its last value). */
static int json_kvs(jbuf_t *b, const uint8_t *s, Py_ssize_t n, uint32_t num, int depth, PyObject *dumps, int *why) {
    if (depth > MAX_DEPTH)
        return *why = FALLBACK, -1;
    const uint8_t *keys[KV_MAX];
    Py_ssize_t key_lens[KV_MAX];
    int count = 0;
    rd_t r = {s, s + n};
    field_t f;
    int found;
    if (jb_put(b, "{", 1) < 0)
        return *why = ERROR, -1;
    while ((found = next_len(&r, num, &f)) > 0) {
        /* One KeyValue {string key = 1; AnyValue value = 2}. */
        const uint8_t *key, *val;
        Py_ssize_t key_len, val_len;
        if (kv_parts(f.d, f.len, &key, &key_len, &val, &val_len, why) < 0)
            return -1;
        if (!utf8_ok(key, key_len))
            return *why = FALLBACK, -1;
        if (count == KV_MAX)
            return *why = AS_DICT, -1;
        for (int i = 0; i < count; i++)
            if (key_lens[i] == key_len && memcmp(keys[i], key, (size_t)key_len) == 0)
                return *why = AS_DICT, -1;
        keys[count] = key;
        key_lens[count] = key_len;
        if ((count++ && jb_put(b, ",", 1) < 0) || jb_str(b, key, key_len) < 0 || jb_put(b, ":", 1) < 0)
            return *why = ERROR, -1;
        if (val == NULL) {
            if (JB_LIT(b, "null") < 0)
                return *why = ERROR, -1;
        } else if (json_any(b, val, val_len, depth + 1, dumps, why) < 0) {
            return -1;
        }
    }
    if (found < 0)
        return *why = FALLBACK, -1;
    return jb_put(b, "}", 1) < 0 ? (*why = ERROR, -1) : 0;
}

/* An AnyValue as JSON: what dumps(any_value(...)) writes. */
static int json_any(jbuf_t *b, const uint8_t *s, Py_ssize_t n, int depth, PyObject *dumps, int *why) {
    if (depth > MAX_DEPTH)
        return *why = FALLBACK, -1;
    uint32_t kind;
    uint64_t scalar;
    const uint8_t *data;
    Py_ssize_t data_len;
    if (av_parts(s, n, &kind, &scalar, &data, &data_len, why) < 0)
        return -1;
    int rc = 0;
    switch (kind) {
    case 0:
        rc = JB_LIT(b, "null");
        break;
    case 1:
        return jb_text(b, data, data_len, why);
    case 2:
        rc = scalar ? JB_LIT(b, "true") : JB_LIT(b, "false");
        break;
    case 3:
        rc = jb_int(b, (long long)(int64_t)scalar);
        break;
    case 4: {
        double x;
        memcpy(&x, &scalar, 8);
        if (!isfinite(x))
            return *why = AS_DICT, -1; /* JSON's null would not be the dict's NaN or infinity */
        PyObject *num = PyFloat_FromDouble(x);
        PyObject *js = num ? PyObject_CallOneArg(dumps, num) : NULL;
        Py_XDECREF(num);
        if (js == NULL)
            return *why = ERROR, -1;
        if (!PyBytes_Check(js)) {
            Py_DECREF(js);
            PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
            return *why = ERROR, -1;
        }
        rc = jb_put(b, PyBytes_AS_STRING(js), PyBytes_GET_SIZE(js));
        Py_DECREF(js);
        break;
    }
    case 5: {
        rd_t a = {data, data + data_len};
        field_t f;
        int found, items = 0;
        if (jb_put(b, "[", 1) < 0)
            return *why = ERROR, -1;
        while ((found = next_len(&a, 1, &f)) > 0) {
            if (items++ && jb_put(b, ",", 1) < 0)
                return *why = ERROR, -1;
            if (json_any(b, f.d, f.len, depth + 1, dumps, why) < 0)
                return -1;
        }
        if (found < 0)
            return *why = FALLBACK, -1;
        rc = jb_put(b, "]", 1);
        break;
    }
    case 6:
        return json_kvs(b, data, data_len, 1, depth, dumps, why);
    case 7: {
        Py_ssize_t out_len = ((data_len + 2) / 3) * 4;
        if (jb_reserve(b, out_len + 2) < 0)
            return *why = ERROR, -1;
        char *o = b->p + b->len;
        o[0] = '"';
        b64_into(o + 1, data, data_len);
        o[out_len + 1] = '"';
        b->len += out_len + 2;
        break;
    }
    }
    return rc < 0 ? (*why = ERROR, -1) : 0;
}

/* What records() writes each record's fields into, with common_json: the members of
 * common_json (without its braces) first. */
typedef struct {
    jbuf_t b;
    const char *common;
    Py_ssize_t common_len;
} enc_t;

static int jb_hex(jbuf_t *b, const uint8_t *s, Py_ssize_t n) {
    static const char H[] = "0123456789abcdef";
    if (jb_reserve(b, 2 * n + 2) < 0)
        return -1;
    char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        *o++ = H[s[i] >> 4];
        *o++ = H[s[i] & 15];
    }
    *o++ = '"';
    b->len = o - b->p;
    return 0;
}

typedef struct rec_s rec_t;
static int fields_json(enc_t *e, const rec_t *rec, const uint8_t *s, Py_ssize_t n, PyObject *dumps, int *why);

/* ---- records(body, start, end, common, n, level_of, dumps, common_json) --------------------- */

struct rec_s {
    uint64_t time, observed, flags;
    int32_t number;
    const uint8_t *text, *body, *trace, *span, *event;
    Py_ssize_t text_len, body_len, trace_len, span_len, event_len;
    int bodies;
    const uint8_t *attrs_first;
    int has_attrs;
};

static int read_record(rec_t *rec, const uint8_t *s, Py_ssize_t n) {
    memset(rec, 0, sizeof(*rec));
    rd_t r = {s, s + n};
    static const int WIRE[13] = {-1, 1, 0, 2, -1, 2, 2, 0, 5, 2, 2, 1, 2};
    field_t f;
    while (r.p < r.end) {
        if (next_field(&r, &f) < 0)
            return -1;
        if (f.num > 12 || f.num == 4)
            continue;
        if (f.wt != WIRE[f.num])
            return -1;
        switch (f.num) {
        case 1:
            rec->time = f.v;
            break;
        case 2:
            rec->number = (int32_t)f.v;
            break;
        case 3:
            rec->text = f.d;
            rec->text_len = f.len;
            break;
        case 5:
            rec->body = f.d;
            rec->body_len = f.len;
            rec->bodies++;
            break;
        case 6:
            rec->has_attrs = 1;
            break;
        case 7:
            break;
        case 8:
            rec->flags = f.v;
            break;
        case 9:
            rec->trace = f.d;
            rec->trace_len = f.len;
            break;
        case 10:
            rec->span = f.d;
            rec->span_len = f.len;
            break;
        case 11:
            rec->observed = f.v;
            break;
        case 12:
            rec->event = f.d;
            rec->event_len = f.len;
            break;
        }
    }
    return rec->bodies > 1 ? -1 : 0;
}

/* The record's fields as JSON in e->b: the members one_record's dict would have, in its order.
 * -1 with *why (AS_DICT: make the dict). */
static int fields_json(enc_t *e, const rec_t *rec, const uint8_t *s, Py_ssize_t n, PyObject *dumps, int *why) {
    jbuf_t *b = &e->b;
    int members = e->common_len > 0;
    b->len = 0;
    if (jb_put(b, "{", 1) < 0 || jb_put(b, e->common, e->common_len) < 0)
        goto error;
#define NEXT_MEMBER(lit) ((members++ && jb_put(b, ",", 1) < 0) || JB_LIT(b, lit) < 0)
    if (rec->trace_len && !all_zero(rec->trace, 16))
        if (NEXT_MEMBER("\"trace_id\":") || jb_hex(b, rec->trace, 16) < 0)
            goto error;
    if (rec->span_len && !all_zero(rec->span, 8))
        if (NEXT_MEMBER("\"span_id\":") || jb_hex(b, rec->span, 8) < 0)
            goto error;
    if (rec->flags & 0xFF)
        if (NEXT_MEMBER("\"trace_flags\":") || jb_int(b, (long long)(rec->flags & 0xFF)) < 0)
            goto error;
    if (rec->text_len) {
        if (NEXT_MEMBER("\"severity_text\":"))
            goto error;
        if (jb_text(b, rec->text, rec->text_len, why) < 0)
            return -1;
    }
    if (rec->number)
        if (NEXT_MEMBER("\"severity_number\":") || jb_int(b, rec->number) < 0)
            goto error;
    if (rec->event_len) {
        if (NEXT_MEMBER("\"event_name\":"))
            goto error;
        if (jb_text(b, rec->event, rec->event_len, why) < 0)
            return -1;
    }
    if (rec->has_attrs) {
        if (NEXT_MEMBER("\"attributes\":"))
            goto error;
        if (json_kvs(b, s, n, 6, 0, dumps, why) < 0)
            return -1;
    }
#undef NEXT_MEMBER
    if (jb_put(b, "}", 1) < 0)
        goto error;
    return 0;
error:
    *why = ERROR;
    return -1;
}

/* The record's attributes (every field 6) as a dict. */
static PyObject *record_attributes(const uint8_t *s, Py_ssize_t n, int *why) {
    PyObject *out = PyDict_New();
    if (out == NULL)
        return *why = ERROR, NULL;
    rd_t r = {s, s + n};
    field_t f;
    while (next_len(&r, 6, &f) > 0) { /* read before: well-formed */
        if (key_value(out, f.d, f.len, 0, why) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static int set_item(PyObject *d, PyObject *k, PyObject *v) {
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return rc;
}

/* Adds one record to the columns, or to rejected. 0, or -1 with *why. */
static int one_record(PyObject *cols[5], const uint8_t *base, const uint8_t *s, Py_ssize_t n, Py_ssize_t number,
                      PyObject *common, PyObject *level_of, PyObject *dumps, enc_t *enc, int *why) {
    rec_t rec;
    if (read_record(&rec, s, n) < 0)
        return *why = FALLBACK, -1;
    PyObject *message = NULL, *fields = NULL, *level = NULL, *stamp = NULL, *text = NULL;
    const char *reason_text = NULL;
    PyObject *reason = NULL;
    char buf[160];
    /* The body: its text, or any other value as JSON. */
    if (rec.body == NULL) {
        message = PyUnicode_New(0, 127);
    } else {
        int present;
        PyObject *value = any_value(rec.body, rec.body_len, 1, why, &present);
        if (value == NULL)
            return -1;
        if (present <= 1) { /* its text, or none */
            message = present ? value : (Py_DECREF(value), PyUnicode_New(0, 127));
        } else {
            PyObject *js = PyObject_CallOneArg(dumps, value);
            Py_DECREF(value);
            if (js == NULL)
                return *why = ERROR, -1;
            if (!PyBytes_Check(js)) {
                Py_DECREF(js);
                PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
                return *why = ERROR, -1;
            }
            message = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(js), PyBytes_GET_SIZE(js), "strict");
            Py_DECREF(js);
        }
    }
    if (message == NULL)
        return *why = ERROR, -1;
    if (PyUnicode_GET_LENGTH(message) == 0 || is_space(message)) {
        reason = S_EMPTY_BODY;
        snprintf(buf, sizeof buf, "record %zd: no body (nothing to ship as message)", number);
        reason_text = buf;
    } else if (rec.trace_len && rec.trace_len != 16) {
        reason = S_INVALID_TRACE_ID;
        snprintf(buf, sizeof buf, "record %zd: trace_id has %zd bytes, not 16", number, rec.trace_len);
        reason_text = buf;
    } else if (rec.span_len && rec.span_len != 8) {
        reason = S_INVALID_TRACE_ID;
        snprintf(buf, sizeof buf, "record %zd: span_id has %zd bytes, not 8", number, rec.span_len);
        reason_text = buf;
    }
    if (reason != NULL) {
        Py_DECREF(message);
        PyObject *bad = Py_BuildValue("(nOsnn)", number, reason, reason_text, (Py_ssize_t)(s - base),
                                      (Py_ssize_t)(s + n - base));
        return append_new(cols[4], bad) < 0 ? (*why = ERROR, -1) : 0;
    }
    if (enc != NULL) {
        /* The fields as JSON (no dict): None when there are none. */
        if (fields_json(enc, &rec, s, n, dumps, why) == 0) {
            fields = enc->b.len == 2 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize(enc->b.p, enc->b.len);
            if (fields == NULL)
                goto error;
            if (rec.text_len && !(rec.number > 0 && rec.number < 25)) { /* level_of needs it */
                text = utf8(rec.text, rec.text_len, why);
                if (text == NULL)
                    goto fail;
            }
            goto columns;
        }
        if (*why != AS_DICT)
            goto fail;
        *why = 0;
    }
    fields = PyDict_Copy(common);
    if (fields == NULL)
        goto error;
    if (rec.trace_len && !all_zero(rec.trace, 16) && set_item(fields, K_TRACE_ID, hex_of(rec.trace, 16)) < 0)
        goto error;
    if (rec.span_len && !all_zero(rec.span, 8) && set_item(fields, K_SPAN_ID, hex_of(rec.span, 8)) < 0)
        goto error;
    if ((rec.flags & 0xFF) && set_item(fields, K_TRACE_FLAGS, PyLong_FromUnsignedLong(rec.flags & 0xFF)) < 0)
        goto error;
    if (rec.text_len) {
        text = utf8(rec.text, rec.text_len, why);
        if (text == NULL)
            goto fail;
        if (PyDict_SetItem(fields, K_SEVERITY_TEXT, text) < 0)
            goto error;
    }
    if (rec.number && set_item(fields, K_SEVERITY_NUMBER, PyLong_FromLong(rec.number)) < 0)
        goto error;
    if (rec.event_len) {
        PyObject *event = utf8(rec.event, rec.event_len, why);
        if (event == NULL)
            goto fail;
        if (set_item(fields, K_EVENT_NAME, event) < 0)
            goto error;
    }
    if (rec.has_attrs) {
        PyObject *attrs = record_attributes(s, n, why);
        if (attrs == NULL)
            goto fail;
        if (set_item(fields, K_ATTRIBUTES, attrs) < 0)
            goto error;
    }
columns:
    if (rec.number > 0 && rec.number < 25) {
        level = Py_NewRef(LEVELS[rec.number]);
    } else if (text != NULL) {
        level = PyObject_CallFunction(level_of, "iO", (int)rec.number, text);
        if (level == NULL)
            goto error;
    } else {
        level = Py_NewRef(Py_None);
    }
    if (rec.time || rec.observed)
        stamp = PyLong_FromUnsignedLongLong(rec.time ? rec.time : rec.observed);
    else
        stamp = Py_NewRef(Py_None);
    if (stamp == NULL)
        goto error;
    if (PyList_Append(cols[0], message) < 0 ||
        PyList_Append(cols[1], PyDict_Check(fields) && !PyDict_GET_SIZE(fields) ? Py_None : fields) < 0 ||
        PyList_Append(cols[2], level) < 0 || PyList_Append(cols[3], stamp) < 0)
        goto error;
    Py_DECREF(message);
    Py_DECREF(fields);
    Py_DECREF(level);
    Py_DECREF(stamp);
    Py_XDECREF(text);
    return 0;
error:
    *why = ERROR;
fail:
    Py_XDECREF(message);
    Py_XDECREF(fields);
    Py_XDECREF(level);
    Py_XDECREF(stamp);
    Py_XDECREF(text);
    return -1;
}

static PyObject *records(PyObject *m, PyObject *args) {
    (void)m;
    Py_buffer view;
    Py_ssize_t start, end, n0;
    PyObject *common, *level_of, *dumps, *common_json = Py_None;
    if (!PyArg_ParseTuple(args, "y*nnO!nOO|O", &view, &start, &end, &PyDict_Type, &common, &n0, &level_of, &dumps,
                          &common_json))
        return NULL;
    PyObject *cols[5] = {NULL};
    PyObject *out = NULL;
    int why = 0;
    Py_ssize_t count = 0;
    enc_t enc_buf = {{NULL, 0, 0}, NULL, 0}, *enc = NULL;
    if (start < 0 || end < start || end > view.len) {
        PyErr_SetString(PyExc_ValueError, "start and end must be within body");
        goto done;
    }
    if (common_json != Py_None) {
        const char *cj = PyBytes_Check(common_json) ? PyBytes_AS_STRING(common_json) : NULL;
        Py_ssize_t cn = cj ? PyBytes_GET_SIZE(common_json) : 0;
        if (cj == NULL || cn < 2 || cj[0] != '{' || cj[cn - 1] != '}') {
            PyErr_SetString(PyExc_TypeError, "common_json must be None or a JSON object as bytes");
            goto done;
        }
        enc_buf.common = cj + 1;
        enc_buf.common_len = cn - 2;
        enc = &enc_buf;
    }
    for (int i = 0; i < 5; i++)
        if ((cols[i] = PyList_New(0)) == NULL)
            goto done;
    const uint8_t *base = view.buf;
    rd_t r = {base + start, base + end};
    field_t f;
    int found;
    while ((found = next_len(&r, 2, &f)) > 0) { /* the scope and schema_url: read by scopes() */
        count++;
        if (one_record(cols, base, f.d, f.len, n0 + count, common, level_of, dumps, enc, &why) < 0)
            goto done;
    }
    if (found < 0) {
        why = FALLBACK;
        goto done;
    }
    out = Py_BuildValue("(OOOOOn)", cols[0], cols[1], cols[2], cols[3], cols[4], count);
done:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(cols[i]);
    PyMem_Free(enc_buf.b.p);
    PyBuffer_Release(&view);
    if (out == NULL && why == FALLBACK) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"scopes", scopes, METH_O, "scopes(body) -> [(resource_index, resource, scope, start, end)] | None"},
    {"records", records, METH_VARARGS,
     "records(body, start, end, common, n, level_of, dumps, common_json=None) -> (lines, fields, levels, stamps, "
     "rejected, count) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_walk", "OTLP log requests walked in C (see _walk.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__walk(void) {
    static const char *const NAMES[7] = {"trace_id",        "span_id",    "trace_flags", "severity_text",
                                         "severity_number", "event_name", "attributes"};
    PyObject **keys[7] = {&K_TRACE_ID,        &K_SPAN_ID,    &K_TRACE_FLAGS, &K_SEVERITY_TEXT,
                          &K_SEVERITY_NUMBER, &K_EVENT_NAME, &K_ATTRIBUTES};
    for (int i = 0; i < 7; i++)
        if ((*keys[i] = PyUnicode_InternFromString(NAMES[i])) == NULL)
            return NULL;
    if ((S_EMPTY_BODY = PyUnicode_InternFromString("empty_body")) == NULL ||
        (S_INVALID_TRACE_ID = PyUnicode_InternFromString("invalid_trace_id")) == NULL)
        return NULL;
    static const char *const LEVEL_NAMES[6] = {"trace", "debug", "info", "warn", "error", "fatal"};
    LEVELS[0] = Py_None;
    for (int i = 1; i < 25; i++)
        if ((LEVELS[i] = PyUnicode_InternFromString(LEVEL_NAMES[(i - 1) / 4])) == NULL)
            return NULL;
    return PyModule_Create(&moduledef);
}
