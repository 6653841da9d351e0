/*
 * _speedups: the per-line work of the hot path, a chunk at a time, in C.
 *
 * json_levels(lines, key_field, canonical, numeric) scans JSON lines for the level and the
 * partition key without building a dict per line; encode(...) builds the Kafka records. Both
 * give the same results as the Python code they stand in for (processing.Analyzer.analyze and
 * sinks.kafka.encode.encode_chunk), and leave to it every line they are not sure about:
 * non-ASCII lines, escapes where they matter, deep nesting, long numbers, anything that is not a
 * valid JSON object (tests/unit/test_speedups.py compares the two on many lines). An invalid
 * byte decoded as \xNN (backslashreplace) counts as an escape: in another member the line
 * stays here, in a member name, the level or the key it goes to Python (levels.loads_tolerant).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>

/* ---- eight bytes at a time ----------------------------------------------------------------- */
/* Strings are scanned a word at a time for the bytes that need a closer look: '"', '\\' and
 * control characters. zero_bytes() is exact (0x80 in each byte of x that is zero, nothing else),
 * so the lowest set bit is the first such byte on a little-endian machine. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
#define SWAR 1
#define ONES 0x0101010101010101ULL
#define LOWS 0x7F7F7F7F7F7F7F7FULL
static inline uint64_t load8(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t zero_bytes(uint64_t x) {
    uint64_t y = (x & LOWS) + LOWS;
    return ~(y | x | LOWS);
}
/* '"' or '\\' */
static inline uint64_t quote_or_backslash(uint64_t x) {
    return zero_bytes(x ^ (ONES * '"')) | zero_bytes(x ^ (ONES * '\\'));
}
/* bytes below 0x20 */
static inline uint64_t control(uint64_t x) { return zero_bytes(x & (ONES * 0xE0)); }
/* How many bytes a zero_bytes() mask marks (one multiply: no popcnt instruction needed). */
static inline int marked(uint64_t m) { return (int)(((m >> 7) * ONES) >> 56); }
#else
#define SWAR 0
#endif

/* ---- a strict JSON scanner over ASCII ------------------------------------------------------ */
enum { OK = 0, INVALID = 1, UNSURE = 2 };
/* V_OTHER: a float; V_ESCAPED: a string with escapes */
enum { V_NONE = 0, V_STR, V_INT, V_NULL, V_BOOL_T, V_BOOL_F, V_CONTAINER, V_OTHER, V_ESCAPED };
#define MAX_DEPTH 64
#define NKEYS 6
/* processing.levels.JSON_KEYS, in priority order */
static const char *const JSON_KEYS[NKEYS] = {"level", "severity", "lvl", "log.level", "loglevel", "levelname"};
static const Py_ssize_t JSON_KEY_LENS[NKEYS] = {5, 8, 3, 9, 8, 9};

/* Extra output bytes of each byte in a JSON string: 1 for \" \\ \n \r \t \b \f, 5 for \u00XX. */
static unsigned char EXTRA[256];

typedef struct {
    const char *p;
    const char *end;
} cur_t;

typedef struct {
    int type;
    const char *s; /* V_STR: the characters (no escapes), V_INT: the digits */
    Py_ssize_t n;
} val_t;

static inline void ws(cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* At the opening quote. *escaped: the string has a backslash escape. */
static int string(cur_t *c, const char **s, Py_ssize_t *n, int *escaped) {
    const char *p = ++c->p;
    *escaped = 0;
    while (p < c->end) {
        /* Skip the plain characters: eight at a time while no '"', '\\' or control byte is
         * among them (the bytes EXTRA marks), then one by one. */
#if SWAR
        while (c->end - p >= 8) {
            uint64_t w = load8((const unsigned char *)p);
            uint64_t hit = quote_or_backslash(w) | control(w);
            if (hit) {
                p += __builtin_ctzll(hit) >> 3;
                break;
            }
            p += 8;
        }
#endif
        while (p < c->end && !EXTRA[(unsigned char)*p])
            p++;
        if (p >= c->end)
            break;
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *s = c->p;
            *n = p - c->p;
            c->p = p + 1;
            return OK;
        }
        if (ch < 0x20)
            return INVALID;
        if (ch == '\\') {
            *escaped = 1;
            if (++p >= c->end)
                return INVALID;
            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p++;
                continue;
            case 'u': {
                if (c->end - p < 5)
                    return INVALID;
                int v = 0;
                for (int i = 1; i <= 4; i++) {
                    int h = hexval(p[i]);
                    if (h < 0)
                        return INVALID;
                    v = v * 16 + h;
                }
                if (v >= 0xD800 && v <= 0xDFFF)
                    return UNSURE; /* surrogates: leave to orjson */
                p += 5;
                continue;
            }
            case 'x':
                /* An invalid byte as backslashreplace decodes it (\x80-\xff, lower case): the
                 * Python code reads it as its four characters (levels.loads_tolerant). */
                if (c->end - p >= 3 && ((p[1] >= '8' && p[1] <= '9') || (p[1] >= 'a' && p[1] <= 'f')) &&
                    ((p[2] >= '0' && p[2] <= '9') || (p[2] >= 'a' && p[2] <= 'f'))) {
                    p += 3;
                    continue;
                }
                return INVALID;
            default:
                return INVALID;
            }
        }
        p++;
    }
    return INVALID;
}

static int number(cur_t *c, val_t *v) {
    const char *start = c->p, *p = c->p;
    int is_int = 1;
    if (p < c->end && *p == '-')
        p++;
    if (p >= c->end)
        return INVALID;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    else
        return INVALID;
    if (p < c->end && *p == '.') {
        is_int = 0;
        p++;
        if (p >= c->end || *p < '0' || *p > '9')
            return INVALID;
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        if (p < c->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= c->end || *p < '0' || *p > '9')
            return INVALID;
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p - start > 18)
        return UNSURE; /* big numbers: leave to orjson */
    c->p = p;
    v->type = is_int ? V_INT : V_OTHER;
    v->s = start;
    v->n = p - start;
    return OK;
}

static int value(cur_t *c, val_t *v, int depth);

static int container(cur_t *c, int depth, char close, int is_object) {
    if (depth > MAX_DEPTH)
        return UNSURE;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return OK;
    }
    for (;;) {
        int r;
        val_t v;
        if (is_object) {
            const char *s;
            Py_ssize_t n;
            int esc;
            if (c->p >= c->end || *c->p != '"')
                return INVALID;
            if ((r = string(c, &s, &n, &esc)) != OK)
                return r;
            ws(c);
            if (c->p >= c->end || *c->p != ':')
                return INVALID;
            c->p++;
            ws(c);
        }
        if ((r = value(c, &v, depth + 1)) != OK)
            return r;
        ws(c);
        if (c->p >= c->end)
            return INVALID;
        if (*c->p == ',') {
            c->p++;
            ws(c);
            continue;
        }
        if (*c->p == close) {
            c->p++;
            return OK;
        }
        return INVALID;
    }
}

static int literal(cur_t *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return INVALID;
    c->p += n;
    return OK;
}

static int value(cur_t *c, val_t *v, int depth) {
    if (c->p >= c->end)
        return INVALID;
    v->type = V_OTHER;
    switch (*c->p) {
    case '"': {
        int esc, r = string(c, &v->s, &v->n, &esc);
        if (r != OK)
            return r;
        v->type = esc ? V_ESCAPED : V_STR;
        return OK;
    }
    case '{':
        v->type = V_CONTAINER;
        return container(c, depth, '}', 1);
    case '[':
        v->type = V_CONTAINER;
        return container(c, depth, ']', 0);
    case 't':
        v->type = V_BOOL_T;
        return literal(c, "true", 4);
    case 'f':
        v->type = V_BOOL_F;
        return literal(c, "false", 5);
    case 'n':
        v->type = V_NULL;
        return literal(c, "null", 4);
    default:
        return number(c, v);
    }
}

/*
 * The top-level object: the last value of each of JSON_KEYS and of key_field.
 * OK with levels[]/key filled, INVALID (not a JSON object), UNSURE (let orjson decide).
 */
static int scan_object(const char *s, Py_ssize_t n, const char *kf, Py_ssize_t kfn, val_t *levels, val_t *key) {
    cur_t c = {s, s + n};
    for (int i = 0; i < NKEYS; i++)
        levels[i].type = V_NONE;
    key->type = V_NONE;
    if (c.p >= c.end || *c.p != '{')
        return INVALID;
    c.p++;
    ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            const char *ks;
            Py_ssize_t kn;
            int esc, r;
            val_t v;
            if (c.p >= c.end || *c.p != '"')
                return INVALID;
            if ((r = string(&c, &ks, &kn, &esc)) != OK)
                return r;
            ws(&c);
            if (c.p >= c.end || *c.p != ':')
                return INVALID;
            c.p++;
            ws(&c);
            if ((r = value(&c, &v, 1)) != OK)
                return r;
            if (esc)
                return UNSURE; /* an escaped member name could be one of ours */
            /* Every level name starts with 'l' or 's'; the first and last characters are
             * compared before the call to memcmp (most names differ there). */
            if (kn && (*ks == 'l' || *ks == 's'))
                for (int i = 0; i < NKEYS; i++)
                    if (kn == JSON_KEY_LENS[i] && *ks == JSON_KEYS[i][0] && ks[kn - 1] == JSON_KEYS[i][kn - 1] &&
                        memcmp(ks, JSON_KEYS[i], kn) == 0)
                        levels[i] = v;
            if (kf && kn == kfn && (kn == 0 || (*ks == *kf && ks[kn - 1] == kf[kn - 1])) && memcmp(ks, kf, kn) == 0)
                *key = v;
            ws(&c);
            if (c.p >= c.end)
                return INVALID;
            if (*c.p == ',') {
                c.p++;
                ws(&c);
                continue;
            }
            if (*c.p == '}') {
                c.p++;
                break;
            }
            return INVALID;
        }
    }
    ws(&c);
    return c.p == c.end ? OK : INVALID;
}

static int is_pyspace(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

/* level_of_value for the first of JSON_KEYS present; NULL with an exception, or a borrowed ref. */
/* The levels of the level strings met so far in one call: a chunk has few distinct ones. */
#define LEVEL_CACHE 8
typedef struct {
    int n;
    struct {
        Py_ssize_t len;
        char raw[32];
        PyObject *level; /* borrowed from canonical (or the caller's empty string) */
    } e[LEVEL_CACHE];
} level_cache_t;

static PyObject *level_from(const val_t *levels, PyObject *canonical, PyObject *numeric, PyObject *empty,
                            int *unsure, level_cache_t *cache) {
    for (int i = 0; i < NKEYS; i++) {
        const val_t *v = &levels[i];
        if (v->type == V_NONE)
            continue;
        if (v->type == V_ESCAPED) {
            *unsure = 1;
            return empty;
        }
        if (v->type == V_STR) {
            if (v->n <= 32)
                for (int j = 0; j < cache->n; j++)
                    if (cache->e[j].len == v->n && memcmp(cache->e[j].raw, v->s, v->n) == 0)
                        return cache->e[j].level;
            const char *s = v->s, *e = v->s + v->n;
            while (s < e && is_pyspace(*s))
                s++;
            while (e > s && is_pyspace(e[-1]))
                e--;
            char buf[32];
            Py_ssize_t n = e - s;
            if (n >= (Py_ssize_t)sizeof buf)
                return empty; /* longer than any level name */
            for (Py_ssize_t j = 0; j < n; j++) {
                char ch = s[j];
                buf[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
            }
            PyObject *k = PyUnicode_FromStringAndSize(buf, n);
            if (!k)
                return NULL;
            PyObject *lv = PyDict_GetItemWithError(canonical, k);
            Py_DECREF(k);
            if (!lv && PyErr_Occurred())
                return NULL;
            lv = lv ? lv : empty;
            if (v->n <= 32 && cache->n < LEVEL_CACHE) {
                cache->e[cache->n].len = v->n;
                memcpy(cache->e[cache->n].raw, v->s, v->n);
                cache->e[cache->n].level = lv;
                cache->n++;
            }
            return lv;
        }
        if (v->type == V_INT) {
            long x = strtol(v->s, NULL, 10);
            PyObject *k = PyLong_FromLong(x);
            if (!k)
                return NULL;
            PyObject *lv = PyDict_GetItemWithError(numeric, k);
            Py_DECREF(k);
            if (!lv && PyErr_Occurred())
                return NULL;
            return lv ? lv : empty;
        }
        return empty; /* bool, null, float, object, array */
    }
    return empty;
}

/* Key strings met in one call, by a hash of their bytes: a chunk has few distinct keys. */
#define KEY_CACHE 64

static inline unsigned key_slot(const char *s, Py_ssize_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return (h ^ (h >> 16)) & (KEY_CACHE - 1);
}

/*
 * json_levels(lines, key_field, canonical, numeric) -> (levels, keys)
 *
 * levels[i] is line i's level, or None when the Python code must look at the line (not a JSON
 * object, or a case it leaves to orjson). keys (None without key_field) holds the key_field
 * value of each line json_levels decided (str or None), as Analyzer.analyze would.
 */
static PyObject *json_levels(PyObject *m, PyObject *args) {
    PyObject *lines, *kfo, *canonical, *numeric;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!OO!O!", &PyList_Type, &lines, &kfo, &PyDict_Type, &canonical, &PyDict_Type,
                          &numeric))
        return NULL;
    const char *kf = NULL;
    Py_ssize_t kfn = 0;
    if (kfo != Py_None && !(kf = PyUnicode_AsUTF8AndSize(kfo, &kfn)))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    PyObject *levels = PyList_New(n), *keys = NULL, *empty = PyUnicode_FromString("");
    PyObject *cache_obj[KEY_CACHE] = {0};
    level_cache_t levels_seen;
    levels_seen.n = 0;

    if (!levels || !empty)
        goto fail;
    if (kf && !(keys = PyList_New(n)))
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        PyObject *lv = Py_None; /* borrowed */
        PyObject *key = NULL;   /* new reference */
        if (PyUnicode_Check(line) && PyUnicode_IS_COMPACT_ASCII(line)) {
            const char *s = (const char *)PyUnicode_DATA(line);
            Py_ssize_t len = PyUnicode_GET_LENGTH(line);
            val_t lvals[NKEYS], kv = {V_NONE, NULL, 0};
            /* str(number) and escaped keys: the Python code decides */
            if (len && s[0] == '{' && scan_object(s, len, kf, kfn, lvals, &kv) == OK &&
                !(kf && (kv.type == V_ESCAPED || kv.type == V_INT || kv.type == V_OTHER))) {
                int unsure = 0;
                PyObject *got = level_from(lvals, canonical, numeric, empty, &unsure, &levels_seen);
                if (!got)
                    goto fail;
                if (!unsure) {
                    lv = got;
                    if (kf && kv.type == V_STR) {
                        unsigned slot = key_slot(kv.s, kv.n);
                        PyObject *c = cache_obj[slot];
                        if (c && PyUnicode_GET_LENGTH(c) == kv.n && memcmp(PyUnicode_DATA(c), kv.s, kv.n) == 0) {
                            key = Py_NewRef(c);
                        } else {
                            key = PyUnicode_FromStringAndSize(kv.s, kv.n);
                            if (!key)
                                goto fail;
                            Py_XSETREF(cache_obj[slot], Py_NewRef(key));
                        }
                    } else if (kf && (kv.type == V_BOOL_T || kv.type == V_BOOL_F)) {
                        key = PyUnicode_FromString(kv.type == V_BOOL_T ? "True" : "False");
                        if (!key)
                            goto fail;
                    }
                    /* absent, null, object or array: None */
                }
            }
        }
        PyList_SET_ITEM(levels, i, Py_NewRef(lv));
        if (keys)
            PyList_SET_ITEM(keys, i, key ? key : Py_NewRef(Py_None));
    }
    for (int j = 0; j < KEY_CACHE; j++)
        Py_XDECREF(cache_obj[j]);
    Py_DECREF(empty);
    if (!keys)
        keys = Py_NewRef(Py_None);
    return Py_BuildValue("(NN)", levels, keys);
fail:
    for (int j = 0; j < KEY_CACHE; j++)
        Py_XDECREF(cache_obj[j]);
    Py_XDECREF(levels);
    Py_XDECREF(keys);
    Py_XDECREF(empty);
    return NULL;
}

/* ---- plain-text and logfmt lines ------------------------------------------------------------ */
/*
 * text_levels(lines, levels, keys, key_field, canonical) -> undecided
 *
 * levels.level_of_text and Analyzer._logfmt_value in C, on the lines json_levels left undecided
 * (levels[i] is None): each ASCII line that does not start with '{' gets its level (and, when
 * keys is a list, its key_field value) written in place; the others stay None for the Python
 * code, and their number is returned. ASCII only: Python's \s, \w and lower() then mean the
 * character classes below (\s: \t \n \v \f \r, 0x1c-0x1f and space).
 */
#define TL_HEAD 120 /* levels._WORD looks at the first 120 characters */
#define TL_WORD 16  /* longest level name looked up (longer words are no level) */
#define TL_SLOTS 4

static inline int tl_space(unsigned char c) { return (c >= 9 && c <= 13) || (c >= 28 && c <= 32); }
static inline int tl_alpha(unsigned char c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static inline int tl_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int tl_word(unsigned char c) { return tl_alpha(c) || tl_digit(c) || c == '_'; }
static inline unsigned char tl_lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }
static inline int tl_hex_lo(unsigned char c) { return tl_digit(c) || (c >= 'a' && c <= 'f'); }

/* The canonical dict's ASCII names, by length and first letter. */
typedef struct {
    int n[TL_WORD + 1][26];
    const char *name[TL_WORD + 1][26][TL_SLOTS];
    PyObject *level[TL_WORD + 1][26][TL_SLOTS]; /* borrowed from canonical */
    PyObject *letter[6];                        /* V D I W E F: trace .. fatal */
} tl_names_t;

static int tl_names(tl_names_t *t, PyObject *canonical) {
    static const char *const LETTER_LEVELS[6] = {"trace", "debug", "info", "warn", "error", "fatal"};
    memset(t, 0, sizeof *t);
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(canonical, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_IS_COMPACT_ASCII(k))
            continue; /* never equal to an ASCII word */
        Py_ssize_t n = PyUnicode_GET_LENGTH(k);
        const char *s = (const char *)PyUnicode_DATA(k);
        int letters = n > 0;
        for (Py_ssize_t i = 0; i < n; i++)
            letters &= s[i] >= 'a' && s[i] <= 'z';
        if (!letters)
            continue; /* never equal to a lower-cased word of letters */
        if (n > TL_WORD)
            return -1; /* a long name: let Python decide */
        int f = s[0] - 'a';
        if (t->n[n][f] == TL_SLOTS)
            return -1; /* an unusual dict: let Python decide */
        t->name[n][f][t->n[n][f]] = s;
        t->level[n][f][t->n[n][f]++] = v;
    }
    for (int i = 0; i < 6; i++) {
        PyObject *lv = PyDict_GetItemString(canonical, LETTER_LEVELS[i]);
        if (!lv)
            return -1;
        t->letter[i] = lv;
    }
    return 0;
}

/* canonical.get(word.lower()), NULL when absent; word: ASCII letters. */
static PyObject *tl_lookup(const tl_names_t *t, const unsigned char *w, Py_ssize_t n) {
    if (n < 1 || n > TL_WORD)
        return NULL;
    char low[TL_WORD];
    for (Py_ssize_t i = 0; i < n; i++)
        low[i] = (char)tl_lower(w[i]);
    int f = low[0] - 'a';
    for (int j = 0; j < t->n[n][f]; j++)
        if (memcmp(t->name[n][f][j], low, n) == 0)
            return t->level[n][f][j];
    return NULL;
}

static inline int tl_ends_with(const unsigned char *s, Py_ssize_t e, const char *name, Py_ssize_t n) {
    if (e < n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (tl_lower(s[e - n + i]) != (unsigned char)name[i])
            return 0;
    return e == n || tl_space(s[e - n - 1]);
}

/* levels.level_of_text on an ASCII line (a borrowed reference: a canonical value or empty). */
static PyObject *tl_level(const tl_names_t *t, const unsigned char *s, Py_ssize_t n, PyObject *empty) {
    /* logfmt: the first (?:^|\s)(?:level|lvl|severity)="?[A-Za-z]+ decides, found or not */
    const unsigned char *eq = memchr(s, '=', n);
    while (eq) {
        Py_ssize_t e = eq - s;
        if (tl_ends_with(s, e, "level", 5) || tl_ends_with(s, e, "lvl", 3) || tl_ends_with(s, e, "severity", 8)) {
            Py_ssize_t q = e + 1;
            if (q < n && s[q] == '"')
                q++;
            Py_ssize_t r = q;
            while (r < n && tl_alpha(s[r]))
                r++;
            if (r > q) {
                PyObject *lv = tl_lookup(t, s + q, r - q);
                return lv ? lv : empty;
            }
        }
        eq = e + 1 < n ? memchr(s + e + 1, '=', n - e - 1) : NULL;
    }
    /* the head, each invalid byte's \xNN escape (0x80-0xff, lower-case hex) as one space */
    unsigned char head[TL_HEAD];
    Py_ssize_t hn = 0, lim = n < TL_HEAD ? n : TL_HEAD;
    if (memchr(s, '\\', lim)) {
        for (Py_ssize_t i = 0; i < lim;) {
            if (s[i] == '\\' && i + 3 < lim && s[i + 1] == 'x' && ((s[i + 2] >= '8' && s[i + 2] <= '9') ||
                                                                   (s[i + 2] >= 'a' && s[i + 2] <= 'f')) &&
                tl_hex_lo(s[i + 3])) {
                head[hn++] = ' ';
                i += 4;
            } else {
                head[hn++] = s[i++];
            }
        }
    } else {
        memcpy(head, s, lim);
        hn = lim;
    }
    /* the first whole word (?<![\w.-])[a-z]+(?![\w-]) that is a level name */
    for (Py_ssize_t i = 0; i < hn;) {
        if (!tl_alpha(head[i])) {
            i++;
            continue;
        }
        Py_ssize_t j = i + 1;
        while (j < hn && tl_alpha(head[j]))
            j++;
        unsigned char before = i ? head[i - 1] : ' ', after = j < hn ? head[j] : ' ';
        if (!tl_digit(before) && before != '_' && before != '.' && before != '-' && !tl_digit(after) &&
            after != '_' && after != '-') {
            PyObject *lv = tl_lookup(t, head + i, j - i);
            if (lv)
                return lv;
        }
        i = j;
    }
    /* ^([VDIWEF])(?:\d{4}[ T]|/|\s+\d): glog and logcat prefixes */
    if (hn >= 2) {
        const char *at = memchr("VDIWEF", head[0], 6);
        if (at && head[0]) {
            int ok = head[1] == '/';
            if (!ok && hn >= 6 && tl_digit(head[1]) && tl_digit(head[2]) && tl_digit(head[3]) && tl_digit(head[4]) &&
                (head[5] == ' ' || head[5] == 'T'))
                ok = 1;
            if (!ok && tl_space(head[1])) {
                Py_ssize_t k = 1;
                while (k < hn && tl_space(head[k]))
                    k++;
                ok = k < hn && tl_digit(head[k]);
            }
            if (ok)
                return t->letter[at - "VDIWEF"];
        }
    }
    return empty;
}

/* Analyzer._logfmt_value: the first (?:^|\s)KEY=(?:"([^"]*)"|(\S+)); 0 when absent, else 1 with
 * the value's bounds. */
static int tl_key(const unsigned char *s, Py_ssize_t n, const char *kf, Py_ssize_t kfn, Py_ssize_t *vs,
                  Py_ssize_t *ve) {
    /* Each '=' (rarer than the key's first letter) ends a candidate, in the order of their starts;
     * a key with '=' in it is looked for from its first letter. */
    int by_eq = memchr(kf, '=', kfn) == NULL;
    for (Py_ssize_t p = 0; p + kfn < n;) {
        if (by_eq) {
            const unsigned char *eq = memchr(s + p + kfn, '=', n - p - kfn);
            if (!eq)
                return 0;
            p = eq - s - kfn;
        } else {
            const unsigned char *hit = memchr(s + p, (unsigned char)kf[0], n - p);
            if (!hit)
                return 0;
            p = hit - s;
            if (p + kfn >= n)
                return 0;
        }
        if (memcmp(s + p, kf, kfn) == 0 && s[p + kfn] == '=' && (p == 0 || tl_space(s[p - 1]))) {
            Py_ssize_t q = p + kfn + 1;
            if (q < n && s[q] == '"') {
                const unsigned char *close = memchr(s + q + 1, '"', n - q - 1);
                if (close) {
                    *vs = q + 1;
                    *ve = close - s;
                    return 1;
                }
            }
            Py_ssize_t r = q;
            while (r < n && !tl_space(s[r]))
                r++;
            if (r > q) {
                *vs = q;
                *ve = r;
                return 1;
            }
        }
        p++;
    }
    return 0;
}

/* 1 when ``s`` (a line starting with '{') ends inside an object, an array or a string: text that
 * is certainly not JSON (a JSON line cut at max_line_bytes), so orjson, and its retry with invalid
 * escapes repaired (levels.loads_tolerant: the repairs keep every string's bounds), refuse it.
 * 0 once the first value closes: perhaps JSON, which Python decides. */
static int json_cut(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t depth = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"') {
            /* A string: its plain characters eight at a time, then an escape or its end. */
            for (i++;; i++) {
#if SWAR
                while (i + 8 <= n && !quote_or_backslash(load8(s + i)))
                    i += 8;
#endif
                if (i >= n)
                    return 1;
                if (s[i] == '\\')
                    i++;
                else if (s[i] == '"')
                    break;
            }
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth <= 0)
                return 0;
        }
    }
    return depth > 0;
}

/* The key of a cut JSON line (processing.Analyzer._member_value): the first ``"<kf>"`` followed
 * by blanks, ':', blanks and a string (its text, in [*vs, *ve)) or a number (-?\d[\d.eE+-]*),
 * wherever it stands. 1 when found, 0 when not, -1 when the string has an escape (Python
 * unescapes it). */
static int member_key(const unsigned char *s, Py_ssize_t n, const char *kf, Py_ssize_t kfn, Py_ssize_t *vs,
                      Py_ssize_t *ve) {
    for (Py_ssize_t p = 0; p + kfn + 2 <= n;) {
        const unsigned char *hit = memchr(s + p, '"', n - p);
        if (!hit)
            return 0;
        p = hit - s;
        if (p + kfn + 2 > n)
            return 0;
        if (memcmp(s + p + 1, kf, kfn) != 0 || s[p + kfn + 1] != '"') {
            p++;
            continue;
        }
        Py_ssize_t q = p + kfn + 2;
        while (q < n && tl_space(s[q]))
            q++;
        if (q < n && s[q] == ':') {
            q++;
            while (q < n && tl_space(s[q]))
                q++;
            if (q < n && s[q] == '"') {
                int escaped = 0;
                Py_ssize_t r = q + 1;
                while (r < n && s[r] != '"') {
                    if (s[r] == '\\') {
                        if (r + 1 >= n || s[r + 1] == '\n')
                            break;
                        escaped = 1;
                        r++;
                    }
                    r++;
                }
                if (r < n && s[r] == '"') {
                    if (escaped)
                        return -1;
                    *vs = q + 1;
                    *ve = r;
                    return 1;
                }
            } else if (q < n) {
                Py_ssize_t r = q + (s[q] == '-');
                if (r < n && tl_digit(s[r])) {
                    for (r++; r < n && (tl_digit(s[r]) || s[r] == '.' || s[r] == 'e' || s[r] == 'E' ||
                                        s[r] == '+' || s[r] == '-');
                         r++)
                        ;
                    *vs = q;
                    *ve = r;
                    return 1;
                }
            }
        }
        p++;
    }
    return 0;
}

static PyObject *text_levels(PyObject *m, PyObject *args) {
    PyObject *lines, *levels, *keys, *kfo, *canonical;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!OOO!", &PyList_Type, &lines, &PyList_Type, &levels, &keys, &kfo,
                          &PyDict_Type, &canonical))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(levels) != n || (keys != Py_None && (!PyList_Check(keys) || PyList_GET_SIZE(keys) != n))) {
        PyErr_SetString(PyExc_ValueError, "text_levels: levels and keys must be lists as long as lines");
        return NULL;
    }
    const char *kf = NULL;
    Py_ssize_t kfn = 0;
    if (keys != Py_None) {
        if (kfo == Py_None) {
            PyErr_SetString(PyExc_ValueError, "text_levels: keys need a key_field");
            return NULL;
        }
        if (!(kf = PyUnicode_AsUTF8AndSize(kfo, &kfn)))
            return NULL;
    }
    /* Usually json_levels decided every line: nothing to do (an identity scan, no comparisons). */
    Py_ssize_t first = 0;
    while (first < n && PyList_GET_ITEM(levels, first) != Py_None)
        first++;
    if (first == n)
        return PyLong_FromLong(0);
    tl_names_t *t = PyMem_Malloc(sizeof *t);
    if (!t)
        return PyErr_NoMemory();
    Py_ssize_t undecided = 0;
    PyObject *empty = PyUnicode_FromString("");
    PyObject *cache[KEY_CACHE] = {0};
    if (!empty)
        goto fail;
    if (tl_names(t, canonical) < 0) {
        PyErr_Clear();
        PyMem_Free(t); /* an unusual dict: every undecided line stays with Python */
        t = NULL;
    }
    for (Py_ssize_t i = first; i < n; i++) {
        if (PyList_GET_ITEM(levels, i) != Py_None)
            continue;
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!t || !PyUnicode_Check(line) || !PyUnicode_IS_COMPACT_ASCII(line)) {
            undecided++;
            continue;
        }
        const unsigned char *s = (const unsigned char *)PyUnicode_DATA(line);
        Py_ssize_t len = PyUnicode_GET_LENGTH(line);
        int cut = 0;
        if (len && s[0] == '{') {
            if (!json_cut(s, len)) {
                undecided++; /* perhaps JSON that orjson reads: Python decides */
                continue;
            }
            cut = 1; /* not JSON: its level as text's, its key as a member's, else as logfmt's */
        }
        if (kf && kfn > 0) {
            Py_ssize_t vs = 0, ve = 0;
            PyObject *key = Py_None;
            int member = cut ? member_key(s, len, kf, kfn, &vs, &ve) : 0;
            if (member < 0) {
                undecided++; /* an escaped key: Python unescapes it */
                continue;
            }
            if ((member && ve > vs) || tl_key(s, len, kf, kfn, &vs, &ve)) {
                unsigned slot = key_slot((const char *)s + vs, ve - vs);
                PyObject *c = cache[slot];
                if (c && PyUnicode_GET_LENGTH(c) == ve - vs && memcmp(PyUnicode_DATA(c), s + vs, ve - vs) == 0) {
                    key = c;
                } else {
                    key = PyUnicode_FromStringAndSize((const char *)s + vs, ve - vs);
                    if (!key)
                        goto fail;
                    Py_XSETREF(cache[slot], key);
                }
            }
            PyList_SetItem(keys, i, Py_NewRef(key));
        } else if (kf) {
            PyList_SetItem(keys, i, Py_NewRef(Py_None)); /* "" key_field: Python never asks */
        }
        PyList_SetItem(levels, i, Py_NewRef(tl_level(t, s, len, empty)));
    }
    for (int j = 0; j < KEY_CACHE; j++)
        Py_XDECREF(cache[j]);
    Py_DECREF(empty);
    PyMem_Free(t);
    return PyLong_FromSsize_t(undecided);
fail:
    for (int j = 0; j < KEY_CACHE; j++)
        Py_XDECREF(cache[j]);
    Py_XDECREF(empty);
    PyMem_Free(t);
    return NULL;
}

/*
 * line_heads(lines, table) -> [i, ...]: the indexes of the lines whose first character may start
 * a match (multiline.MultilineRule.heads): an ASCII first character c with table[c] != 0, any
 * other first character, an empty line, anything that is not a str. The multiline joiner runs
 * its pattern on these lines only.
 */
static PyObject *line_heads(PyObject *m, PyObject *args) {
    PyObject *lines;
    const char *table;
    Py_ssize_t tn;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!y#", &PyList_Type, &lines, &table, &tn))
        return NULL;
    if (tn != 128) {
        PyErr_SetString(PyExc_ValueError, "line_heads: the table has one byte per ASCII character (128)");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (PyUnicode_Check(line) && PyUnicode_GET_LENGTH(line) > 0) {
            Py_UCS4 c = PyUnicode_READ_CHAR(line, 0);
            if (c < 128 && !table[c])
                continue;
        }
        PyObject *k = PyLong_FromSsize_t(i);
        if (!k || PyList_Append(out, k) < 0) {
            Py_XDECREF(k);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(k);
    }
    return out;
}

/* ---- records --------------------------------------------------------------------------------- */
/* The letter of a two-character escape (\" \\ \n \r \t \b \f), else 0. */
static char SHORT[256];

static void init_tables(void) {
    for (int ch = 0; ch < 0x20; ch++)
        EXTRA[ch] = 5;
    EXTRA['"'] = EXTRA['\\'] = EXTRA['\n'] = EXTRA['\r'] = EXTRA['\t'] = EXTRA['\b'] = EXTRA['\f'] = 1;
    SHORT['"'] = '"';
    SHORT['\\'] = '\\';
    SHORT['\n'] = 'n';
    SHORT['\r'] = 'r';
    SHORT['\t'] = 't';
    SHORT['\b'] = 'b';
    SHORT['\f'] = 'f';
}

#if defined(__SSE2__)
#include <emmintrin.h>
/* A bit per byte of p[0..16) that JSON escapes: '"', '\\' and the bytes below 0x20 (16 bytes a
 * step: long lines are scanned twice as fast as a word at a time). */
static inline unsigned special16(const unsigned char *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i q = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i b = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    __m128i c = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F)); /* v <= 0x1F */
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, b), c));
}
#endif

/* The set bits of a 16-bit mask, without the popcnt instruction (the module is built for any
 * x86-64: __builtin_popcount would call libgcc's __popcountdi2, 2 % of the agent's time with
 * 8 KiB lines). */
static inline unsigned pop16(unsigned x) {
    x = x - ((x >> 1) & 0x5555u);
    x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
    x = (x + (x >> 4)) & 0x0F0Fu;
    return (x + (x >> 8)) & 0x1Fu;
}

static inline Py_ssize_t escaped_len(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t out = n + 2, i = 0;
#if defined(__SSE2__)
    for (; n - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        unsigned qb = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                               _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
        unsigned c = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F)));
        out += pop16(qb);
        while (c) {
            out += EXTRA[s[i + __builtin_ctz(c)]];
            c &= c - 1;
        }
    }
#endif
#if SWAR
    for (; n - i >= 8; i += 8) {
        uint64_t x = load8(s + i);
        if (control(x)) {
            for (int j = 0; j < 8; j++)
                out += EXTRA[s[i + j]];
        } else {
            out += marked(quote_or_backslash(x));
        }
    }
#endif
    for (; i < n; i++)
        out += EXTRA[s[i]];
    return out;
}

static inline char *escape_one(char *o, unsigned char ch) {
    static const char hex[] = "0123456789abcdef";
    o[0] = '\\';
    if (SHORT[ch]) {
        o[1] = SHORT[ch];
        return o + 2;
    }
    o[1] = 'u';
    o[2] = '0';
    o[3] = '0';
    o[4] = hex[ch >> 4];
    o[5] = hex[ch & 15];
    return o + 6;
}

/* Writes JSON(s) at o, which has room for escaped_len(s, n) bytes at least; returns the end. */
static inline char *escape_into(char *o, const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    *o++ = '"';
#if defined(__SSE2__)
    /* As the words below, 16 bytes at a time. */
    while (n - i >= 16) {
        memcpy(o, s + i, 16);
        unsigned m = special16(s + i);
        if (!m) {
            o += 16;
            i += 16;
            continue;
        }
        int k = __builtin_ctz(m);
        o = escape_one(o + k, s[i + k]);
        i += k + 1;
    }
#endif
#if SWAR
    /* Each input byte gives at least one output byte, so with 8 input bytes left there is room
     * for 8 output bytes: a word is copied whole, and the bytes after a special one are
     * written again. */
    while (n - i >= 8) {
        uint64_t x = load8(s + i);
        memcpy(o, s + i, 8);
        uint64_t m = quote_or_backslash(x) | control(x);
        if (!m) {
            o += 8;
            i += 8;
            continue;
        }
        int k = __builtin_ctzll(m) >> 3;
        o = escape_one(o + k, s[i + k]);
        i += k + 1;
    }
#endif
    for (; i < n; i++) {
        unsigned char ch = s[i];
        if (EXTRA[ch])
            o = escape_one(o, ch);
        else
            *o++ = (char)ch;
    }
    *o++ = '"';
    return o;
}

/*
 * encode(head, lines, levels, tails, keys, fields, dumps) -> list[bytes]
 *
 * record i = head + JSON(lines[i]) + tails[levels[i]] + fields[keys[i]] (fields[None] when keys
 * is None). JSON strings are written as orjson writes them (non-ASCII lines go through dumps).
 */
static PyObject *encode(PyObject *m, PyObject *args) {
    PyObject *head, *lines, *levels, *tails, *keys, *fields, *dumps;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OO!O", &PyBytes_Type, &head, &PyList_Type, &lines, &PyList_Type, &levels,
                          &PyDict_Type, &tails, &keys, &PyDict_Type, &fields, &dumps))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(levels) != n || (keys != Py_None && (!PyList_Check(keys) || PyList_GET_SIZE(keys) != n))) {
        PyErr_SetString(PyExc_ValueError, "lines, levels and keys must be lists of one length");
        return NULL;
    }
    PyObject *fixed_fields = NULL;
    if (keys == Py_None) {
        fixed_fields = PyDict_GetItemWithError(fields, Py_None);
        if (!fixed_fields) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "fields[None]");
            return NULL;
        }
    }
    const char *hs = PyBytes_AS_STRING(head);
    Py_ssize_t hn = PyBytes_GET_SIZE(head);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    PyObject *last_level = NULL, *tail = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        PyObject *lvl = PyList_GET_ITEM(levels, i);
        if (lvl != last_level) {
            tail = PyDict_GetItemWithError(tails, lvl);
            if (!tail || !PyBytes_Check(tail)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "tails[level] must be bytes");
                goto fail;
            }
            last_level = lvl;
        }
        PyObject *fb = fixed_fields;
        if (!fb) {
            fb = PyDict_GetItemWithError(fields, PyList_GET_ITEM(keys, i));
            if (!fb) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "fields[key]");
                goto fail;
            }
        }
        if (!PyBytes_Check(fb)) {
            PyErr_SetString(PyExc_TypeError, "fields values must be bytes");
            goto fail;
        }
        Py_ssize_t tn = PyBytes_GET_SIZE(tail), fn = PyBytes_GET_SIZE(fb);
        PyObject *rec;
        if (PyUnicode_Check(line) && PyUnicode_IS_COMPACT_ASCII(line)) {
            const unsigned char *s = (const unsigned char *)PyUnicode_DATA(line);
            Py_ssize_t ln = PyUnicode_GET_LENGTH(line);
            Py_ssize_t en = escaped_len(s, ln);
            rec = PyBytes_FromStringAndSize(NULL, hn + en + tn + fn);
            if (!rec)
                goto fail;
            char *o = PyBytes_AS_STRING(rec);
            memcpy(o, hs, hn);
            o = escape_into(o + hn, s, ln);
            memcpy(o, PyBytes_AS_STRING(tail), tn);
            memcpy(o + tn, PyBytes_AS_STRING(fb), fn);
        } else {
            PyObject *js = PyObject_CallOneArg(dumps, line);
            if (!js)
                goto fail;
            if (!PyBytes_Check(js)) {
                Py_DECREF(js);
                PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
                goto fail;
            }
            Py_ssize_t jn = PyBytes_GET_SIZE(js);
            rec = PyBytes_FromStringAndSize(NULL, hn + jn + tn + fn);
            if (!rec) {
                Py_DECREF(js);
                goto fail;
            }
            char *o = PyBytes_AS_STRING(rec);
            memcpy(o, hs, hn);
            memcpy(o + hn, PyBytes_AS_STRING(js), jn);
            memcpy(o + hn + jn, PyBytes_AS_STRING(tail), tn);
            memcpy(o + hn + jn + tn, PyBytes_AS_STRING(fb), fn);
            Py_DECREF(js);
        }
        PyList_SET_ITEM(out, i, rec);
    }
    return out;
fail:
    Py_DECREF(out); /* unset items are NULL: list dealloc skips them */
    return NULL;
}

/* ---- records with their own times, fields and truncation ------------------------------------ */
/* Days since 1970-01-01 -> civil date (H. Hinnant's algorithm), for years 1970-9999. */
static void civil(int64_t days, int *y, int *mo, int *d) {
    days += 719468;
    int64_t era = days / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *mo = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*mo <= 2));
}

static inline void digits(char *o, int64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

#define TS_HEAD_PREFIX "{\"timestamp\":\""
#define TS_HEAD_SUFFIX "Z\",\"message\":"
#define TS_PREFIX_LEN 14 /* {"timestamp":" */
#define TS_HEAD_LEN (14 + 19 + 1 + 9 + 13)
#define MAX_SEC 253402300799LL /* 9999-12-31T23:59:59 */

/* The head of a record whose event time is ns (1970-9999, else 0 and the caller asks Python):
 * {"timestamp":"YYYY-MM-DDTHH:MM:SS.fffffffffZ","message": into o (TS_HEAD_LEN bytes). The
 * date of the last second is kept in *last_sec / date (19 bytes). */
static int ts_head(char *o, long long ns, long long *last_sec, char *date) {
    if (ns < 0)
        return 0;
    long long sec = ns / 1000000000LL, frac = ns % 1000000000LL;
    if (sec > MAX_SEC)
        return 0;
    if (sec != *last_sec) {
        int y, mo, d;
        civil(sec / 86400, &y, &mo, &d);
        long long rem = sec % 86400;
        digits(date, y, 4);
        date[4] = '-';
        digits(date + 5, mo, 2);
        date[7] = '-';
        digits(date + 8, d, 2);
        date[10] = 'T';
        digits(date + 11, rem / 3600, 2);
        date[13] = ':';
        digits(date + 14, rem / 60 % 60, 2);
        date[16] = ':';
        digits(date + 17, rem % 60, 2);
        *last_sec = sec;
    }
    memcpy(o, TS_HEAD_PREFIX, TS_PREFIX_LEN);
    memcpy(o + TS_PREFIX_LEN, date, 19);
    o[TS_PREFIX_LEN + 19] = '.';
    digits(o + TS_PREFIX_LEN + 20, frac, 9);
    memcpy(o + TS_PREFIX_LEN + 29, TS_HEAD_SUFFIX, 13);
    return 1;
}

/*
 * encode_full(head, lines, levels, tails, keys, fields, dumps, stamps, heads, meta, key_field,
 *             truncated) -> list[bytes]
 *
 * The general record (sinks.kafka.encode.encode_chunk's last loop), one pass:
 *   head_i + JSON(lines[i]) + tails[levels[i]] + fields_i + ('}' | ',"truncated":true}')
 * head_i is head when stamps is None, else the head of stamps[i] (formatted here for 1970-9999,
 * else heads[stamps[i]]); fields_i is dumps(meta[i]) (with key_field: keys[i] when keys[i] is
 * not None) when meta[i] is truthy, else fields[keys[i]] (fields[None] when keys is None).
 * meta[i] may be bytes: the fields object already encoded (the Kafka source's metadata, the
 * OTLP input's fields), which must not have key_field as a member; with key_field and keys[i]
 * not None, key_field is its last member, spliced in from fields[keys[i]] (the caller's
 * {"<key_field>":<key>} object): the bytes dumps gives for the dict with key_field added.
 * truncated is None or a set of line indexes.
 */
static PyObject *encode_full(PyObject *m, PyObject *args) {
    PyObject *head, *lines, *levels, *tails, *keys, *fields, *dumps, *stamps, *heads, *meta, *key_field, *truncated;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OO!OOOOOO", &PyBytes_Type, &head, &PyList_Type, &lines, &PyList_Type,
                          &levels, &PyDict_Type, &tails, &keys, &PyDict_Type, &fields, &dumps, &stamps, &heads,
                          &meta, &key_field, &truncated))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(levels) != n || (keys != Py_None && (!PyList_Check(keys) || PyList_GET_SIZE(keys) != n)) ||
        (stamps != Py_None && (!PyList_Check(stamps) || PyList_GET_SIZE(stamps) != n)) ||
        (meta != Py_None && (!PyList_Check(meta) || PyList_GET_SIZE(meta) != n))) {
        PyErr_SetString(PyExc_ValueError, "lines, levels, keys, stamps and meta must be lists of one length");
        return NULL;
    }
    if (truncated != Py_None && !PyAnySet_Check(truncated)) {
        PyErr_SetString(PyExc_TypeError, "truncated must be None or a set");
        return NULL;
    }
    static const char TRUNC[] = ",\"truncated\":true}";
    const Py_ssize_t trunc_n = (Py_ssize_t)sizeof(TRUNC) - 1;
    long long last_sec = -1;
    char date[19];
    char tsbuf[TS_HEAD_LEN];
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    PyObject *last_level = NULL, *tail = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        PyObject *lvl = PyList_GET_ITEM(levels, i);
        PyObject *k = keys == Py_None ? Py_None : PyList_GET_ITEM(keys, i);
        PyObject *hobj = NULL, *fobj = NULL, *js = NULL; /* owned */
        const char *hs = PyBytes_AS_STRING(head);
        Py_ssize_t hn = PyBytes_GET_SIZE(head);
        if (lvl != last_level) {
            tail = PyDict_GetItemWithError(tails, lvl);
            if (!tail || !PyBytes_Check(tail)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "tails[level] must be bytes");
                goto fail;
            }
            last_level = lvl;
        }
        if (stamps != Py_None) {
            PyObject *st = PyList_GET_ITEM(stamps, i);
            int overflow = 0;
            long long ns = PyLong_Check(st) ? PyLong_AsLongLongAndOverflow(st, &overflow) : -1;
            if (ns == -1 && PyErr_Occurred())
                goto fail;
            if (PyLong_Check(st) && !overflow && ts_head(tsbuf, ns, &last_sec, date)) {
                hs = tsbuf;
                hn = TS_HEAD_LEN;
            } else {
                hobj = PyObject_GetItem(heads, st);
                if (!hobj)
                    goto fail;
                if (!PyBytes_Check(hobj)) {
                    PyErr_SetString(PyExc_TypeError, "heads values must be bytes");
                    goto fail_item;
                }
                hs = PyBytes_AS_STRING(hobj);
                hn = PyBytes_GET_SIZE(hobj);
            }
        }
        PyObject *extra = meta == Py_None ? Py_None : PyList_GET_ITEM(meta, i);
        int has_extra = extra == Py_None ? 0 : PyObject_IsTrue(extra);
        if (has_extra < 0)
            goto fail_item;
        const char *fs, *gs = NULL;
        Py_ssize_t fn, gn = 0;
        if (has_extra && PyBytes_Check(extra)) {
            /* The fields object already encoded (the Kafka source's metadata, OTLP's fields). */
            fobj = Py_NewRef(extra);
            if (k != Py_None && key_field != Py_None) {
                /* The key as its last member: fields[k] is {"<key_field>":<key>}. */
                PyObject *kb = PyDict_GetItemWithError(fields, k);
                if (!kb) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_KeyError, "fields[key]");
                    goto fail_item;
                }
                if (!PyBytes_Check(kb) || PyBytes_GET_SIZE(kb) < 2 || PyBytes_GET_SIZE(extra) < 2) {
                    PyErr_SetString(PyExc_TypeError, "fields values and encoded meta must be JSON objects as bytes");
                    goto fail_item;
                }
                if (PyBytes_GET_SIZE(extra) == 2) { /* {} */
                    Py_SETREF(fobj, Py_NewRef(kb));
                } else {
                    gs = PyBytes_AS_STRING(kb); /* written after fobj's members, its '{' as ',' */
                    gn = PyBytes_GET_SIZE(kb);
                }
            }
        } else if (has_extra) {
            PyObject *obj;
            if (k != Py_None && key_field != Py_None) {
                obj = PyDict_Check(extra) ? PyDict_Copy(extra) : PyObject_CallOneArg((PyObject *)&PyDict_Type, extra);
                if (!obj || PyDict_SetItem(obj, key_field, k) < 0) {
                    Py_XDECREF(obj);
                    goto fail_item;
                }
            } else {
                obj = Py_NewRef(extra);
            }
            fobj = PyObject_CallOneArg(dumps, obj);
            Py_DECREF(obj);
            if (!fobj)
                goto fail_item;
        } else {
            fobj = PyDict_GetItemWithError(fields, k);
            if (!fobj) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "fields[key]");
                goto fail_item;
            }
            Py_INCREF(fobj);
        }
        if (!PyBytes_Check(fobj)) {
            PyErr_SetString(PyExc_TypeError, "fields values and dumps must give bytes");
            goto fail_item;
        }
        fs = PyBytes_AS_STRING(fobj);
        fn = PyBytes_GET_SIZE(fobj);
        if (gs != NULL)
            fn += gn - 1; /* fobj without its '}', then ',' and the key's member with its '}' */
        int cut = 0;
        if (truncated != Py_None && PySet_GET_SIZE(truncated) > 0) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (!idx)
                goto fail_item;
            cut = PySet_Contains(truncated, idx);
            Py_DECREF(idx);
            if (cut < 0)
                goto fail_item;
        }
        const char *cs = cut ? TRUNC : "}";
        Py_ssize_t cn = cut ? trunc_n : 1;
        Py_ssize_t tn = PyBytes_GET_SIZE(tail);
        PyObject *rec;
        char *o;
        if (PyUnicode_Check(line) && PyUnicode_IS_COMPACT_ASCII(line)) {
            const unsigned char *s = (const unsigned char *)PyUnicode_DATA(line);
            Py_ssize_t ln = PyUnicode_GET_LENGTH(line);
            Py_ssize_t en = escaped_len(s, ln);
            rec = PyBytes_FromStringAndSize(NULL, hn + en + tn + fn + cn);
            if (!rec)
                goto fail_item;
            o = PyBytes_AS_STRING(rec);
            memcpy(o, hs, hn);
            o = escape_into(o + hn, s, ln);
        } else {
            js = PyObject_CallOneArg(dumps, line);
            if (!js)
                goto fail_item;
            if (!PyBytes_Check(js)) {
                PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
                goto fail_item;
            }
            Py_ssize_t jn = PyBytes_GET_SIZE(js);
            rec = PyBytes_FromStringAndSize(NULL, hn + jn + tn + fn + cn);
            if (!rec)
                goto fail_item;
            o = PyBytes_AS_STRING(rec);
            memcpy(o, hs, hn);
            memcpy(o + hn, PyBytes_AS_STRING(js), jn);
            o += hn + jn;
        }
        memcpy(o, PyBytes_AS_STRING(tail), tn);
        if (gs == NULL) {
            memcpy(o + tn, fs, fn);
        } else {
            Py_ssize_t head_n = fn - gn + 1; /* fobj up to its '}' (excluded) */
            memcpy(o + tn, fs, head_n - 1);
            o[tn + head_n - 1] = ',';
            memcpy(o + tn + head_n, gs + 1, gn - 1);
        }
        memcpy(o + tn + fn, cs, cn);
        Py_XDECREF(hobj);
        Py_XDECREF(fobj);
        Py_XDECREF(js);
        PyList_SET_ITEM(out, i, rec);
        continue;
    fail_item:
        Py_XDECREF(hobj);
        Py_XDECREF(fobj);
        Py_XDECREF(js);
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- msgpack values, the common kinds only ------------------------------------------------ */
/*
 * msgpack_values(data, event_time, surrogates=True) -> (values, plain) or None
 *
 * Every msgpack value of data, one after the other, as msgpack.unpackb(raw=False,
 * strict_map_key=False, unicode_errors="surrogateescape" (or strict, surrogates=False: then text
 * that is not UTF-8 is left to msgpack), ext_hook=...) gives them, with the
 * forward protocol's EventTime (extension 0 of 8 bytes) as event_time(ns). None (the caller
 * uses msgpack itself) for anything else: another extension, a map key that is not text or an
 * integer, nesting deeper than MP_DEPTH, bytes that end inside a value or are not msgpack.
 * plain: no value JSON cannot hold as it is (binary, an integer map key, text that is not
 * valid UTF-8). Short text is shared between the values (map keys, levels, tenants).
 */
#define MP_DEPTH 64
#define MP_DECLINE ((PyObject *)1) /* not NULL: no Python error set */

typedef struct {
    const unsigned char *p, *end;
    PyObject *event_time;
    int plain;
    int surrogates; /* invalid UTF-8 as surrogateescape does, else msgpack decides (it fails) */
} mp_t;

#define MP_CACHE 512
static PyObject *MP_STRS[MP_CACHE];

static PyObject *mp_str(mp_t *c, Py_ssize_t n) {
    if (c->end - c->p < n)
        return MP_DECLINE;
    const unsigned char *s = c->p;
    c->p += n;
    if (n <= 24) {
        uint32_t h = 2166136261u;
        int ascii = 1;
        for (Py_ssize_t i = 0; i < n; i++) {
            h = (h ^ s[i]) * 16777619u;
            ascii &= s[i] < 0x80;
        }
        if (ascii) {
            unsigned slot = (h ^ (uint32_t)n) & (MP_CACHE - 1);
            PyObject *hit = MP_STRS[slot];
            if (hit && PyUnicode_GET_LENGTH(hit) == n && memcmp(PyUnicode_DATA(hit), s, (size_t)n) == 0) {
                Py_INCREF(hit);
                return hit;
            }
            PyObject *u = PyUnicode_New(n, 127);
            if (!u)
                return NULL;
            memcpy(PyUnicode_DATA(u), s, (size_t)n);
            Py_XSETREF(MP_STRS[slot], Py_NewRef(u));
            return u;
        }
    }
    PyObject *u = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (!u) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear();
        if (!c->surrogates)
            return MP_DECLINE;
        c->plain = 0;
        u = PyUnicode_DecodeUTF8((const char *)s, n, "surrogateescape");
    }
    return u;
}

static inline int mp_need(mp_t *c, Py_ssize_t n) { return c->end - c->p >= n; }
static inline uint64_t mp_be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static PyObject *mp_value(mp_t *c, int depth);

static PyObject *mp_array(mp_t *c, Py_ssize_t n, int depth) {
    if (depth >= MP_DEPTH || c->end - c->p < n) /* every element takes a byte at least */
        return MP_DECLINE;
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    PyObject_GC_UnTrack(list); /* tracked again by mp_track, once the values are all made */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = mp_value(c, depth + 1);
        if (!v || v == MP_DECLINE) {
            Py_DECREF(list);
            return v;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *mp_map(mp_t *c, Py_ssize_t n, int depth) {
    if (depth >= MP_DEPTH || c->end - c->p < 2 * n)
        return MP_DECLINE;
    PyObject *d = _PyDict_NewPresized(n);
    if (!d)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = mp_value(c, depth + 1);
        if (!k || k == MP_DECLINE) {
            Py_DECREF(d);
            return k;
        }
        if (!PyUnicode_CheckExact(k)) {
            if (!PyLong_CheckExact(k)) {
                Py_DECREF(k);
                Py_DECREF(d);
                return MP_DECLINE;
            }
            c->plain = 0;
        }
        PyObject *v = mp_value(c, depth + 1);
        if (!v || v == MP_DECLINE) {
            Py_DECREF(k);
            Py_DECREF(d);
            return v;
        }
        int rc = PyDict_SetItem(d, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    if (PyObject_GC_IsTracked(d))
        PyObject_GC_UnTrack(d);
    return d;
}

/* The containers are built untracked by the cyclic GC: a batch of thousands of records would
 * otherwise set off collections (and promotions to the older generations) while it is decoded,
 * which cost more than the decoding. They are tracked once complete, as msgpack's would be. */
static void mp_track(PyObject *v) {
    if (PyList_CheckExact(v)) {
        for (Py_ssize_t i = 0, n = PyList_GET_SIZE(v); i < n; i++)
            mp_track(PyList_GET_ITEM(v, i));
        if (!PyObject_GC_IsTracked(v))
            PyObject_GC_Track(v);
    } else if (PyDict_CheckExact(v)) {
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        int track = 0;
        while (PyDict_Next(v, &pos, &k, &x)) {
            mp_track(x);
            track |= PyList_CheckExact(x) || PyDict_CheckExact(x) || PyObject_IS_GC(x);
        }
        /* as CPython does: a dict is tracked once it holds a value that may be in a cycle */
        if (track && !PyObject_GC_IsTracked(v))
            PyObject_GC_Track(v);
    }
}

/* ---- forward: EventTime made without calling its class (issue 24) ----------------------------
 * event_time(ns) for a subclass of int that adds nothing (no __new__, __init__ or __dict__, as
 * sources.http.source.EventTime): the object int's own constructor would make for it (Python
 * 3.11's layout of int), without the call, and out of the cyclic GC. Any other class, or
 * another Python: the call. */
static PyObject *mp_event_time(PyObject *event_time, unsigned long long ns) {
    PyObject *tmp = PyLong_FromUnsignedLongLong(ns);
    if (!tmp)
        return NULL;
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    PyTypeObject *type = (PyTypeObject *)event_time;
    if (PyType_Check(event_time) && type != &PyLong_Type && PyType_IsSubtype(type, &PyLong_Type) &&
        type->tp_new == PyLong_Type.tp_new && type->tp_init == PyBaseObject_Type.tp_init &&
        type->tp_basicsize == PyLong_Type.tp_basicsize && type->tp_itemsize == PyLong_Type.tp_itemsize) {
        PyLongObject *src = (PyLongObject *)tmp;
        Py_ssize_t n = Py_SIZE(src) < 0 ? -Py_SIZE(src) : Py_SIZE(src);
        PyLongObject *o = (PyLongObject *)type->tp_alloc(type, n ? n : 1);
        if (o) {
            Py_SET_SIZE(o, Py_SIZE(src));
            for (Py_ssize_t i = 0; i < (n ? n : 1); i++)
                o->ob_digit[i] = src->ob_digit[i];
            /* A heap type's instances are tracked by the cyclic GC; an int refers to nothing,
             * so it can be in no cycle: thousands a batch would only set off collections. */
            if (PyObject_GC_IsTracked((PyObject *)o))
                PyObject_GC_UnTrack(o);
        }
        Py_DECREF(tmp);
        return (PyObject *)o;
    }
#endif
    PyObject *et = PyObject_CallOneArg(event_time, tmp);
    Py_DECREF(tmp);
    return et;
}

static PyObject *mp_value(mp_t *c, int depth) {
    if (!mp_need(c, 1))
        return MP_DECLINE;
    unsigned char b = *c->p++;
    if (b <= 0x7f)
        return PyLong_FromLong(b);
    if (b >= 0xe0)
        return PyLong_FromLong((signed char)b);
    if ((b & 0xe0) == 0xa0)
        return mp_str(c, b & 0x1f);
    if ((b & 0xf0) == 0x90)
        return mp_array(c, b & 0x0f, depth);
    if ((b & 0xf0) == 0x80)
        return mp_map(c, b & 0x0f, depth);
    static const int WIDTH[0x20] = {
        /* c0 nil */ 0, /* c1 */ -1, 0, 0, /* c4 bin8 */ 1, 2, 4, /* c7 ext8 */ 1, 2, 4,
        /* ca f32 */ 4, 8, /* cc u8 */ 1, 2, 4, 8, /* d0 i8 */ 1, 2, 4, 8,
        /* d4 fixext1 */ 0, 0, 0, 0, 0, /* d9 str8 */ 1, 2, 4, /* dc arr16 */ 2, 4, /* de map16 */ 2, 4};
    int w = WIDTH[b - 0xc0];
    if (w < 0)
        return MP_DECLINE;
    if (!mp_need(c, w))
        return MP_DECLINE;
    uint64_t v = mp_be(c->p, w);
    c->p += w;
    switch (b) {
    case 0xc0:
        Py_RETURN_NONE;
    case 0xc2:
        Py_RETURN_FALSE;
    case 0xc3:
        Py_RETURN_TRUE;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        if ((uint64_t)(c->end - c->p) < v)
            return MP_DECLINE;
        c->plain = 0;
        c->p += v;
        return PyBytes_FromStringAndSize((const char *)c->p - v, (Py_ssize_t)v);
    case 0xca: {
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        return PyFloat_FromDouble((double)f);
    }
    case 0xcb: {
        double d;
        memcpy(&d, &v, 8);
        return PyFloat_FromDouble(d);
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return PyLong_FromUnsignedLongLong(v);
    case 0xd0:
        return PyLong_FromLong((int8_t)v);
    case 0xd1:
        return PyLong_FromLong((int16_t)v);
    case 0xd2:
        return PyLong_FromLong((int32_t)v);
    case 0xd3:
        return PyLong_FromLongLong((int64_t)v);
    case 0xd7: /* fixext 8: EventTime when its type is 0 (and EventTimes are asked for) */
        if (!mp_need(c, 9) || c->p[0] != 0 || c->event_time == NULL)
            return MP_DECLINE;
        {
            uint64_t sec = mp_be(c->p + 1, 4), nsec = mp_be(c->p + 5, 4);
            c->p += 9;
            return mp_event_time(c->event_time, sec * 1000000000ULL + nsec);
        }
    case 0xd9:
    case 0xda:
    case 0xdb:
        if ((uint64_t)(c->end - c->p) < v)
            return MP_DECLINE;
        return mp_str(c, (Py_ssize_t)v);
    case 0xdc:
    case 0xdd:
        if ((uint64_t)(c->end - c->p) < v)
            return MP_DECLINE;
        return mp_array(c, (Py_ssize_t)v, depth);
    case 0xde:
    case 0xdf:
        if ((uint64_t)(c->end - c->p) < v)
            return MP_DECLINE;
        return mp_map(c, (Py_ssize_t)v, depth);
    default: /* other extensions: msgpack's own code */
        return MP_DECLINE;
    }
}

static PyObject *msgpack_values(PyObject *m, PyObject *args) {
    Py_buffer buf;
    PyObject *event_time;
    int surrogates = 1;
    (void)m;
    if (!PyArg_ParseTuple(args, "y*O|p", &buf, &event_time, &surrogates))
        return NULL;
    mp_t c = {(const unsigned char *)buf.buf, (const unsigned char *)buf.buf + buf.len, event_time, 1, surrogates};
    PyObject *out = PyList_New(0);
    if (!out)
        goto done;
    while (c.p < c.end) {
        PyObject *v = mp_value(&c, 0);
        if (!v || v == MP_DECLINE) {
            Py_CLEAR(out);
            if (v == MP_DECLINE) {
                PyBuffer_Release(&buf);
                Py_RETURN_NONE;
            }
            goto done;
        }
        mp_track(v);
        int rc = PyList_Append(out, v);
        Py_DECREF(v);
        if (rc < 0) {
            Py_CLEAR(out);
            goto done;
        }
    }
    {
        PyObject *res = Py_BuildValue("(NO)", out, c.plain ? Py_True : Py_False);
        PyBuffer_Release(&buf);
        return res;
    }
done:
    PyBuffer_Release(&buf);
    return out;
}

/* ---- forward / HTTP ingest: records grouped by their labels (issue 24) ----------------------
 *
 * label_groups(recs, max_distinct) -> [(first, [indexes])] or None
 *
 * The indexes of recs (dicts, each with a "labels" dict, or (dict, time) items: the dict is
 * the record) by labels, in the order of each set's first record: what grouping by tuple(r["labels"].items()) gives (the same members in the same
 * order and equal text), without a tuple per record. None (the caller's Python decides) when a
 * record has no "labels" dict, a label name or value is not exactly str, or there are more than
 * max_distinct sets.
 */
#define LG_SLOTS 1024

static int lg_same(PyObject *a, PyObject *b) {
    if (a == b)
        return 1;
    if (PyDict_GET_SIZE(a) != PyDict_GET_SIZE(b))
        return 0;
    Py_ssize_t i = 0, j = 0;
    PyObject *ka, *va, *kb, *vb;
    while (PyDict_Next(a, &i, &ka, &va) && PyDict_Next(b, &j, &kb, &vb)) {
        if (ka != kb && !_PyUnicode_EQ(ka, kb))
            return 0;
        if (va != vb && !_PyUnicode_EQ(va, vb))
            return 0;
    }
    return 1;
}

static PyObject *label_groups(PyObject *m, PyObject *args) {
    PyObject *recs;
    Py_ssize_t max_distinct;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &recs, &max_distinct))
        return NULL;
    if (max_distinct < 1 || max_distinct > LG_SLOTS / 2) {
        PyErr_SetString(PyExc_ValueError, "max_distinct must be 1 to 512");
        return NULL;
    }
    static PyObject *labels_key = NULL;
    if (labels_key == NULL && (labels_key = PyUnicode_InternFromString("labels")) == NULL)
        return NULL;
    Py_hash_t hashes[LG_SLOTS];
    Py_ssize_t slot_group[LG_SLOTS]; /* index in groups, -1: empty */
    for (int i = 0; i < LG_SLOTS; i++)
        slot_group[i] = -1;
    PyObject *reps[LG_SLOTS / 2];
    PyObject *groups = PyList_New(0);
    if (groups == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(recs), distinct = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *rec = PyList_GET_ITEM(recs, r);
        if (PyTuple_CheckExact(rec) && PyTuple_GET_SIZE(rec) == 2)
            rec = PyTuple_GET_ITEM(rec, 0); /* a (record, time) item */
        PyObject *labels = PyDict_CheckExact(rec) ? PyDict_GetItemWithError(rec, labels_key) : NULL;
        if (labels == NULL || !PyDict_CheckExact(labels))
            goto decline;
        Py_uhash_t h = (Py_uhash_t)PyDict_GET_SIZE(labels);
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(labels, &pos, &k, &v)) {
            if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(v))
                goto decline;
            Py_hash_t hk = PyObject_Hash(k), hv = PyObject_Hash(v);
            if (hk == -1 || hv == -1)
                goto error;
            h = (h * 1000003u) ^ (Py_uhash_t)hk;
            h = (h * 1000003u) ^ (Py_uhash_t)hv;
        }
        Py_ssize_t slot = (Py_ssize_t)(h & (LG_SLOTS - 1)), g = -1;
        while (slot_group[slot] >= 0) {
            if (hashes[slot] == (Py_hash_t)h && lg_same(reps[slot_group[slot]], labels)) {
                g = slot_group[slot];
                break;
            }
            slot = (slot + 1) & (LG_SLOTS - 1);
        }
        if (g < 0) {
            if (distinct >= max_distinct)
                goto decline;
            PyObject *idx = PyList_New(0);
            PyObject *entry = idx ? Py_BuildValue("(nN)", r, idx) : NULL;
            if (entry == NULL || PyList_Append(groups, entry) < 0) {
                Py_XDECREF(entry);
                goto error;
            }
            Py_DECREF(entry);
            g = distinct++;
            reps[g] = labels; /* borrowed: recs holds it */
            hashes[slot] = (Py_hash_t)h;
            slot_group[slot] = g;
        }
        PyObject *index = PyLong_FromSsize_t(r);
        if (index == NULL)
            goto error;
        int rc = PyList_Append(PyTuple_GET_ITEM(PyList_GET_ITEM(groups, g), 1), index);
        Py_DECREF(index);
        if (rc < 0)
            goto error;
    }
    return groups;
decline:
    if (PyErr_Occurred())
        goto error;
    Py_DECREF(groups);
    Py_RETURN_NONE;
error:
    Py_DECREF(groups);
    return NULL;
}

/*
 * uniform_columns(items, message_keys, level_keys, slow_keys, level_cache)
 *     -> (lines, levels, meta, stamps, labelled) or None
 *
 * The columns of a batch of (record, time) items when every record has the same members (the
 * level member present or not), as Records._uniform reads them: lines (the message member's
 * text), levels (level_cache[value], None without one; None for the whole list without a level
 * member), meta (the other members but labels, or None), stamps (the items' times), labelled
 * (the records have labels). None when Python must decide: another shape, a record without a
 * member the first has, two level members, a member of slow_keys, a line that is not text,
 * is empty or white space or ends with a newline, a level value not in level_cache.
 */
static int uc_in(PyObject *tuple, PyObject *k) {
    for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(tuple); i < n; i++) {
        PyObject *x = PyTuple_GET_ITEM(tuple, i);
        if (x == k || (PyUnicode_CheckExact(k) && PyUnicode_CheckExact(x) && _PyUnicode_EQ(x, k)))
            return 1;
    }
    return 0;
}

static PyObject *uniform_columns(PyObject *m, PyObject *args) {
    PyObject *items, *message_keys, *level_keys, *slow_keys, *cache;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!", &PyList_Type, &items, &PyTuple_Type, &message_keys, &PyTuple_Type,
                          &level_keys, &PyFrozenSet_Type, &slow_keys, &PyDict_Type, &cache))
        return NULL;
    static PyObject *labels_key = NULL;
    if (labels_key == NULL && (labels_key = PyUnicode_InternFromString("labels")) == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n == 0)
        Py_RETURN_NONE;
    /* The records' shape: exact tuples of (dict, time), one level member at most. */
    PyObject *level_key = NULL, *first = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 || !PyDict_CheckExact(PyTuple_GET_ITEM(item, 0)))
            Py_RETURN_NONE;
        PyObject *rec = PyTuple_GET_ITEM(item, 0), *k, *v;
        if (i == 0)
            first = rec;
        Py_ssize_t pos = 0;
        while (PyDict_Next(rec, &pos, &k, &v)) {
            if (uc_in(level_keys, k)) {
                if (level_key == NULL)
                    level_key = k;
                else if (level_key != k && !(PyUnicode_CheckExact(k) && PyUnicode_CheckExact(level_key) &&
                                             _PyUnicode_EQ(level_key, k)))
                    Py_RETURN_NONE;
            }
        }
    }
    /* The members of the first record but the level member: none slow, none another level key. */
    Py_ssize_t size = 0, pos = 0;
    PyObject *k, *v, *message_key = NULL;
    int labelled = 0, extra = 0;
    while (PyDict_Next(first, &pos, &k, &v)) {
        if (level_key != NULL && (k == level_key || PyObject_RichCompareBool(k, level_key, Py_EQ) == 1))
            continue;
        int slow = PySet_Contains(slow_keys, k);
        if (slow != 0) {
            if (slow < 0)
                PyErr_Clear();
            Py_RETURN_NONE;
        }
        size++;
    }
    for (Py_ssize_t j = 0, nk = PyTuple_GET_SIZE(message_keys); j < nk && message_key == NULL; j++) {
        PyObject *mk = PyTuple_GET_ITEM(message_keys, j);
        PyObject *got = PyDict_GetItemWithError(first, mk);
        if (got == NULL && PyErr_Occurred())
            return NULL;
        if (got != NULL && !(level_key != NULL && PyObject_RichCompareBool(mk, level_key, Py_EQ) == 1))
            message_key = mk;
    }
    if (message_key == NULL)
        Py_RETURN_NONE;
    pos = 0;
    while (PyDict_Next(first, &pos, &k, &v)) {
        if (level_key != NULL && PyObject_RichCompareBool(k, level_key, Py_EQ) == 1)
            continue;
        if (PyObject_RichCompareBool(k, labels_key, Py_EQ) == 1)
            labelled = 1;
        else if (PyObject_RichCompareBool(k, message_key, Py_EQ) != 1)
            extra++;
    }
    PyObject *extra_keys = NULL, *lines = NULL, *levels = NULL, *meta = NULL, *stamps = NULL, *out = NULL;
    if (extra) {
        if ((extra_keys = PyList_New(0)) == NULL)
            goto done;
        pos = 0;
        while (PyDict_Next(first, &pos, &k, &v)) {
            if ((level_key != NULL && PyObject_RichCompareBool(k, level_key, Py_EQ) == 1) ||
                PyObject_RichCompareBool(k, labels_key, Py_EQ) == 1 ||
                PyObject_RichCompareBool(k, message_key, Py_EQ) == 1)
                continue;
            if (PyList_Append(extra_keys, k) < 0)
                goto done;
        }
        if ((meta = PyList_New(n)) == NULL)
            goto done;
    }
    if ((lines = PyList_New(n)) == NULL || (stamps = PyList_New(n)) == NULL)
        goto done;
    if (level_key != NULL && (levels = PyList_New(n)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        PyObject *rec = PyTuple_GET_ITEM(item, 0);
        /* The same members as the first (the level member aside). */
        PyObject *level_value = level_key ? PyDict_GetItemWithError(rec, level_key) : NULL;
        if (level_value == NULL && PyErr_Occurred())
            goto done;
        if (PyDict_GET_SIZE(rec) - (level_value != NULL) != size)
            goto decline;
        if (rec != first) {
            pos = 0;
            while (PyDict_Next(rec, &pos, &k, &v)) {
                if (level_value != NULL && PyObject_RichCompareBool(k, level_key, Py_EQ) == 1)
                    continue;
                PyObject *there = PyDict_GetItemWithError(first, k);
                if (there == NULL) {
                    if (PyErr_Occurred())
                        goto done;
                    goto decline;
                }
                if (level_key != NULL && PyObject_RichCompareBool(k, level_key, Py_EQ) == 1)
                    goto decline;
            }
        }
        PyObject *line = PyDict_GetItemWithError(rec, message_key);
        if (line == NULL) {
            if (PyErr_Occurred())
                goto done;
            goto decline;
        }
        if (!PyUnicode_CheckExact(line))
            goto decline;
        Py_ssize_t len = PyUnicode_GET_LENGTH(line);
        if (len == 0 || PyUnicode_READ_CHAR(line, len - 1) == '\n')
            goto decline;
        {
            int kind = PyUnicode_KIND(line), all_space = 1;
            const void *data = PyUnicode_DATA(line);
            for (Py_ssize_t j = 0; j < len && all_space; j++)
                all_space = Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, j));
            if (all_space)
                goto decline;
        }
        PyList_SET_ITEM(lines, i, Py_NewRef(line));
        PyList_SET_ITEM(stamps, i, Py_NewRef(PyTuple_GET_ITEM(item, 1)));
        if (levels != NULL) {
            PyObject *level = Py_None;
            if (level_value != NULL) {
                level = PyDict_GetItemWithError(cache, level_value);
                if (level == NULL) {
                    PyErr_Clear(); /* unhashable: Python decides */
                    goto decline;
                }
            }
            PyList_SET_ITEM(levels, i, Py_NewRef(level));
        }
        if (meta != NULL) {
            PyObject *d = PyDict_New();
            if (d == NULL)
                goto done;
            PyList_SET_ITEM(meta, i, d);
            for (Py_ssize_t j = 0, ne = PyList_GET_SIZE(extra_keys); j < ne; j++) {
                PyObject *ek = PyList_GET_ITEM(extra_keys, j);
                PyObject *ev = PyDict_GetItemWithError(rec, ek);
                if (ev == NULL) {
                    if (PyErr_Occurred())
                        goto done;
                    goto decline;
                }
                if (PyDict_SetItem(d, ek, ev) < 0)
                    goto done;
            }
        }
    }
    out = Py_BuildValue("(OOOOO)", lines, levels ? levels : Py_None, meta ? meta : Py_None, stamps,
                        labelled ? Py_True : Py_False);
    goto done;
decline:
    out = Py_NewRef(Py_None);
done:
    Py_XDECREF(extra_keys);
    Py_XDECREF(lines);
    Py_XDECREF(levels);
    Py_XDECREF(meta);
    Py_XDECREF(stamps);
    return out;
}

/*
 * event_items(entries, event_time) -> [(record, ns)] or None
 *
 * A Forward message's entries as forward.protocol._events gives them when every one is
 * [EventTime, record] (a list or tuple of two, exactly those types): (record, int(time)).
 * None for anything else (the Python code decides, entry by entry).
 */
static PyObject *event_items(PyObject *m, PyObject *args) {
    PyObject *entries, *event_time;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &entries, &event_time))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(entries, i), *t, *rec;
        if (PyList_CheckExact(e) && PyList_GET_SIZE(e) == 2) {
            t = PyList_GET_ITEM(e, 0);
            rec = PyList_GET_ITEM(e, 1);
        } else if (PyTuple_CheckExact(e) && PyTuple_GET_SIZE(e) == 2) {
            t = PyTuple_GET_ITEM(e, 0);
            rec = PyTuple_GET_ITEM(e, 1);
        } else {
            goto decline;
        }
        if ((PyObject *)Py_TYPE(t) != event_time || !PyDict_CheckExact(rec) || !PyLong_Check(t))
            goto decline;
        PyObject *ns = PyNumber_Index(t); /* an exact int, as int() gives */
        if (ns == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(ns);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(pair, 0, Py_NewRef(rec));
        PyTuple_SET_ITEM(pair, 1, ns);
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

/* ---- forward: a message's records straight to columns (issue 24) ------------------------------
 *
 * forward_columns(message, message_keys, level_keys, slow_keys, level_cache, max_distinct)
 *     -> (tag, option, groups) or None
 *
 * message: the bytes of one forward message in Forward mode ([tag, [[EventTime, record], ...],
 * option?]) or PackedForward mode ([tag, bin: the entries one after the other, option?]).
 * The records as msgpack_values, event_items, uniform_columns and label_groups together give
 * them, without a dict (or any object) per record but its line, level and time: groups =
 * [(labels, lines, levels, stamps, meta)], one per distinct labels member (a dict of text, or
 * None: the records have none), in the order of each set's first record; levels None when none
 * of the group's records has a level member (else level_cache[value] or None each); stamps the
 * EventTimes as ns; meta None without other members (else a dict of them per record, in the
 * first record's order). option: the message's option map, or None.
 *
 * None (the caller decodes the message as before, with the same result) for anything else:
 * what uniform_columns or label_groups decline; a tag that is not non-empty text; an entry that
 * is not [EventTime, record]; no entries; a record that is not plain (a key that is not text,
 * binary, text that is not UTF-8, an extension); an option that is not a map, or has
 * "compressed" or a "fluent_signal" other than 0; bytes after the message.
 */
#define FC_KEYS 64
#define FC_LEVELS 32
#define FC_SPANS 1024

enum { FC_MSG, FC_LEVEL, FC_LABELS, FC_EXTRA };

typedef struct {
    const unsigned char *s; /* the key's UTF-8 bytes */
    Py_ssize_t n;
    int role, extra;   /* extra: its index among the other members */
    PyObject *name;    /* the key as text (owned) */
} fc_key_t;

typedef struct {
    PyObject *labels, *lines, *levels, *stamps, *meta; /* owned; labels None: no labels member */
    int leveled;                                       /* a record of the group has a level */
} fc_group_t;

/* The end of the value at c->p (0), or -1: not msgpack, deeper than MP_DEPTH, cut short. */
static int mp_skip(mp_t *c, int depth) {
    if (depth >= MP_DEPTH || !mp_need(c, 1))
        return -1;
    unsigned char b = *c->p++;
    uint64_t n = 0, items = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if ((b & 0xe0) == 0xa0) {
        n = b & 0x1f;
        goto bytes;
    }
    if ((b & 0xf0) == 0x90) {
        items = b & 0x0f;
        goto items;
    }
    if ((b & 0xf0) == 0x80) {
        items = 2 * (uint64_t)(b & 0x0f);
        goto items;
    }
    switch (b) {
    case 0xc4: case 0xd9: case 0xc5: case 0xda: case 0xc6: case 0xdb: {
        int w = (b == 0xc4 || b == 0xd9) ? 1 : (b == 0xc5 || b == 0xda) ? 2 : 4;
        if (!mp_need(c, w))
            return -1;
        n = mp_be(c->p, w);
        c->p += w;
        goto bytes;
    }
    case 0xc7: case 0xc8: case 0xc9: {
        int w = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
        if (!mp_need(c, w))
            return -1;
        n = mp_be(c->p, w) + 1; /* the type byte, then the data */
        c->p += w;
        goto bytes;
    }
    case 0xca: n = 4; goto bytes;
    case 0xcb: n = 8; goto bytes;
    case 0xcc: case 0xd0: n = 1; goto bytes;
    case 0xcd: case 0xd1: n = 2; goto bytes;
    case 0xce: case 0xd2: n = 4; goto bytes;
    case 0xcf: case 0xd3: n = 8; goto bytes;
    case 0xd4: n = 2; goto bytes;
    case 0xd5: n = 3; goto bytes;
    case 0xd6: n = 5; goto bytes;
    case 0xd7: n = 9; goto bytes;
    case 0xd8: n = 17; goto bytes;
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
        int w = (b == 0xdc || b == 0xde) ? 2 : 4;
        if (!mp_need(c, w))
            return -1;
        items = mp_be(c->p, w) * ((b == 0xde || b == 0xdf) ? 2 : 1);
        c->p += w;
        goto items;
    }
    default: /* 0xc1: never used */
        return -1;
    }
bytes:
    if ((uint64_t)(c->end - c->p) < n)
        return -1;
    c->p += n;
    return 0;
items:
    if ((uint64_t)(c->end - c->p) < items) /* every item takes a byte at least */
        return -1;
    for (uint64_t i = 0; i < items; i++)
        if (mp_skip(c, depth + 1) < 0)
            return -1;
    return 0;
}

/* A container's size at c->p: its header read (1: an array, 2: a map), or 0: not that kind. */
static int mp_container(mp_t *c, Py_ssize_t *n) {
    if (!mp_need(c, 1))
        return 0;
    unsigned char b = *c->p;
    int kind = 0, w = 0;
    if ((b & 0xf0) == 0x90 || (b & 0xf0) == 0x80) {
        *n = b & 0x0f;
        kind = (b & 0xf0) == 0x90 ? 1 : 2;
    } else if (b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf) {
        w = (b == 0xdc || b == 0xde) ? 2 : 4;
        kind = (b == 0xdc || b == 0xdd) ? 1 : 2;
    } else {
        return 0;
    }
    if (!mp_need(c, 1 + w))
        return 0;
    if (w)
        *n = (Py_ssize_t)mp_be(c->p + 1, w);
    c->p += 1 + w;
    return kind;
}

/* Text at c->p: its bytes (1), or 0: not text, or cut short. */
static int mp_text(mp_t *c, const unsigned char **s, Py_ssize_t *n) {
    if (!mp_need(c, 1))
        return 0;
    unsigned char b = *c->p;
    int w;
    if ((b & 0xe0) == 0xa0) {
        *n = b & 0x1f;
        w = 0;
    } else if (b == 0xd9 || b == 0xda || b == 0xdb) {
        w = b == 0xd9 ? 1 : b == 0xda ? 2 : 4;
        if (!mp_need(c, 1 + w))
            return 0;
        *n = (Py_ssize_t)mp_be(c->p + 1, w);
    } else {
        return 0;
    }
    if (c->end - (c->p + 1 + w) < *n)
        return 0;
    *s = c->p + 1 + w;
    c->p = *s + *n;
    return 1;
}

static inline int fc_ascii(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    uint64_t acc = 0;
#ifdef SWAR
    for (; i + 8 <= n; i += 8)
        acc |= load8(s + i);
#endif
    for (; i < n; i++)
        acc |= s[i];
    return !(acc & 0x8080808080808080ULL);
}

/* Text as msgpack_values makes it (short keys shared), or MP_DECLINE: not UTF-8 (not plain). */
static PyObject *fc_str(const unsigned char *s, Py_ssize_t n) {
    if (n <= 24) {
        mp_t sub = {s, s + n, NULL, 1, 0};
        return mp_str(&sub, n);
    }
    if (fc_ascii(s, n)) {
        PyObject *u = PyUnicode_New(n, 127);
        if (u)
            memcpy(PyUnicode_DATA(u), s, (size_t)n);
        return u;
    }
    PyObject *u = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (!u && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return MP_DECLINE;
    }
    return u;
}

/* A plain value (msgpack_values's object, nothing JSON cannot hold), or MP_DECLINE. The cursor
 * has no event_time: an extension anywhere in it (an EventTime too) is not plain. */
static PyObject *fc_value(mp_t *c) {
    c->plain = 1;
    PyObject *v = mp_value(c, 1);
    if (v == NULL || v == MP_DECLINE)
        return v;
    if (!c->plain) {
        Py_DECREF(v);
        return MP_DECLINE;
    }
    mp_track(v);
    return v;
}

static inline uint32_t fc_hash(const unsigned char *s, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h ^ (uint32_t)n;
}

typedef struct {
    /* the members of the first record (and the level member, wherever it is first seen) */
    fc_key_t keys[FC_KEYS];
    int nkeys, size, extras, level; /* size: the members but the level member; level: its key or -1 */
    /* level values seen, by their bytes */
    const unsigned char *lv_s[FC_LEVELS];
    Py_ssize_t lv_n[FC_LEVELS];
    PyObject *lv_level[FC_LEVELS]; /* borrowed from level_cache (held by it) */
    int nlv;
    /* labels seen, by their bytes: the group of each */
    const unsigned char *sp_s[FC_SPANS];
    Py_ssize_t sp_n[FC_SPANS];
    int sp_group[FC_SPANS]; /* -1: empty */
    fc_group_t *groups;
    int ngroups, max_groups;
    PyObject *message_keys, *level_keys, *slow_keys, *cache;
} fc_t;

static int fc_find(fc_t *f, const unsigned char *s, Py_ssize_t n, int hint) {
    if (hint < f->nkeys && f->keys[hint].n == n && memcmp(f->keys[hint].s, s, (size_t)n) == 0)
        return hint;
    for (int k = 0; k < f->nkeys; k++)
        if (f->keys[k].n == n && memcmp(f->keys[k].s, s, (size_t)n) == 0)
            return k;
    return -1;
}

/* A new key (1 done, 0 decline, -1 error): in the first record any member, later only a level member. */
static int fc_add_key(fc_t *f, const unsigned char *s, Py_ssize_t n, int first) {
    if (f->nkeys >= FC_KEYS)
        return 0;
    PyObject *name = fc_str(s, n);
    if (name == NULL)
        return -1;
    if (name == MP_DECLINE)
        return 0;
    int level = uc_in(f->level_keys, name);
    if (level) {
        if (f->level >= 0) { /* a second level member (another name: that is two; the same: a duplicate) */
            Py_DECREF(name);
            return 0;
        }
    } else {
        int slow = PySet_Contains(f->slow_keys, name);
        if (slow != 0 || !first) {
            Py_DECREF(name);
            if (slow < 0)
                return -1;
            return 0;
        }
    }
    fc_key_t *k = &f->keys[f->nkeys];
    k->s = s;
    k->n = n;
    k->name = name;
    k->role = level ? FC_LEVEL : FC_EXTRA;
    k->extra = -1;
    if (level)
        f->level = f->nkeys;
    f->nkeys++;
    return 1;
}

/* The roles of the first record's members: the message member (the first of message_keys it
 * has), labels, the others. 1 done, 0 decline. */
static int fc_roles(fc_t *f) {
    static PyObject *labels_key = NULL;
    if (labels_key == NULL && (labels_key = PyUnicode_InternFromString("labels")) == NULL)
        return -1;
    int message = -1;
    for (Py_ssize_t j = 0, nk = PyTuple_GET_SIZE(f->message_keys); j < nk && message < 0; j++) {
        PyObject *mk = PyTuple_GET_ITEM(f->message_keys, j);
        if (!PyUnicode_CheckExact(mk))
            continue;
        for (int k = 0; k < f->nkeys; k++)
            if (f->keys[k].role != FC_LEVEL && _PyUnicode_EQ(f->keys[k].name, mk)) {
                message = k;
                break;
            }
    }
    if (message < 0)
        return 0;
    f->size = 0;
    for (int k = 0; k < f->nkeys; k++) {
        fc_key_t *key = &f->keys[k];
        if (key->role == FC_LEVEL)
            continue;
        f->size++;
        if (k == message)
            key->role = FC_MSG;
        else if (_PyUnicode_EQ(key->name, labels_key))
            key->role = FC_LABELS;
        else
            key->extra = f->extras++;
    }
    return 1;
}

static fc_group_t *fc_new_group(fc_t *f, PyObject *labels) {
    if (f->ngroups >= f->max_groups)
        return NULL;
    fc_group_t *g = &f->groups[f->ngroups];
    memset(g, 0, sizeof(*g));
    g->labels = Py_NewRef(labels);
    g->lines = PyList_New(0);
    g->levels = PyList_New(0);
    g->stamps = PyList_New(0);
    g->meta = f->extras ? PyList_New(0) : NULL;
    f->ngroups++;
    if (!g->lines || !g->levels || !g->stamps || (f->extras && !g->meta))
        return NULL;
    return g;
}

/* The group of a labels value at c->p (its index), -2 decline, -1 error. */
static int fc_labels(fc_t *f, mp_t *c) {
    const unsigned char *s = c->p;
    if (mp_skip(c, 1) < 0)
        return -2;
    Py_ssize_t n = c->p - s;
    uint32_t slot = fc_hash(s, n) & (FC_SPANS - 1);
    for (int probes = 0; f->sp_group[slot] >= 0; probes++) {
        if (f->sp_n[slot] == n && memcmp(f->sp_s[slot], s, (size_t)n) == 0)
            return f->sp_group[slot];
        if (probes >= FC_SPANS)
            return -2;
        slot = (slot + 1) & (FC_SPANS - 1);
    }
    /* Labels not seen as these bytes: decoded, compared with the sets seen (the same text may
     * be written another way), or a new set. */
    mp_t sub = {s, s + n, NULL, 1, 0};
    PyObject *labels = fc_value(&sub);
    if (labels == NULL)
        return -1;
    if (labels == MP_DECLINE || !PyDict_CheckExact(labels))
        goto decline;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(labels, &pos, &k, &v))
        if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(v))
            goto decline;
    int g = -1;
    for (int i = 0; i < f->ngroups && g < 0; i++)
        if (f->groups[i].labels != Py_None && lg_same(f->groups[i].labels, labels))
            g = i;
    if (g < 0) {
        if (f->ngroups >= f->max_groups)
            goto decline;
        if (fc_new_group(f, labels) == NULL) {
            Py_DECREF(labels);
            return -1;
        }
        g = f->ngroups - 1;
    }
    Py_DECREF(labels);
    f->sp_s[slot] = s;
    f->sp_n[slot] = n;
    f->sp_group[slot] = g;
    return g;
decline:
    if (labels != MP_DECLINE)
        Py_DECREF(labels);
    return -2;
}

/* The level of a level value at c->p (borrowed), MP_DECLINE, or NULL: an error. */
static PyObject *fc_level(fc_t *f, mp_t *c) {
    const unsigned char *s = c->p;
    if (mp_skip(c, 1) < 0)
        return MP_DECLINE;
    Py_ssize_t n = c->p - s;
    for (int i = 0; i < f->nlv; i++)
        if (f->lv_n[i] == n && memcmp(f->lv_s[i], s, (size_t)n) == 0)
            return f->lv_level[i];
    mp_t sub = {s, s + n, NULL, 1, 0};
    PyObject *value = fc_value(&sub);
    if (value == NULL || value == MP_DECLINE)
        return value;
    PyObject *level = PyDict_GetItemWithError(f->cache, value);
    Py_DECREF(value);
    if (level == NULL) {
        PyErr_Clear(); /* not in the cache, or not hashable: Python decides */
        return MP_DECLINE;
    }
    if (f->nlv < FC_LEVELS) {
        f->lv_s[f->nlv] = s;
        f->lv_n[f->nlv] = n;
        f->lv_level[f->nlv++] = level;
    }
    return level;
}

/* A line: text, not empty, not white space only, not ending with a newline; MP_DECLINE else. */
static PyObject *fc_line(mp_t *c) {
    const unsigned char *s;
    Py_ssize_t n;
    if (!mp_text(c, &s, &n) || n == 0 || s[n - 1] == '\n')
        return MP_DECLINE;
    PyObject *line = fc_str(s, n);
    if (line == NULL || line == MP_DECLINE)
        return line;
    Py_ssize_t len = PyUnicode_GET_LENGTH(line);
    int kind = PyUnicode_KIND(line), all_space = 1;
    const void *data = PyUnicode_DATA(line);
    for (Py_ssize_t j = 0; j < len && all_space; j++)
        all_space = Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, j));
    if (all_space) {
        Py_DECREF(line);
        return MP_DECLINE;
    }
    return line;
}

typedef struct {
    const unsigned char *key, *value;
    Py_ssize_t key_n;
} fc_pair_t;

/* One [EventTime, record] entry at c->p into its group: 1 done, 0 decline, -1 error. */
static int fc_entry(fc_t *f, mp_t *c, int first) {
    Py_ssize_t n;
    if (mp_container(c, &n) != 1 || n != 2)
        return 0;
    if (!mp_need(c, 10) || c->p[0] != 0xd7 || c->p[1] != 0)
        return 0;
    uint64_t ns = mp_be(c->p + 2, 4) * 1000000000ULL + mp_be(c->p + 6, 4);
    c->p += 10;
    Py_ssize_t members;
    if (mp_container(c, &members) != 2 || members > FC_KEYS || c->end - c->p < 2 * members)
        return 0;
    fc_pair_t pairs[FC_KEYS];
    uint64_t seen = 0;
    int counted = 0;
    for (Py_ssize_t i = 0; i < members; i++) {
        const unsigned char *s;
        Py_ssize_t kn;
        if (!mp_text(c, &s, &kn))
            return 0; /* a key that is not text: not plain, or not a string key */
        int k = fc_find(f, s, kn, (int)i);
        if (k < 0) {
            int added = fc_add_key(f, s, kn, first);
            if (added <= 0)
                return added;
            k = f->nkeys - 1;
        }
        if (seen & (1ULL << k))
            return 0; /* a member given twice */
        seen |= 1ULL << k;
        pairs[k].value = c->p;
        if (f->keys[k].role != FC_LEVEL)
            counted++;
        if (mp_skip(c, 1) < 0)
            return 0;
    }
    if (first) {
        int roles = fc_roles(f);
        if (roles <= 0)
            return roles;
    }
    if (counted != f->size)
        return 0; /* a member of the first record missing */
    /* Labels first: they say the group. */
    fc_group_t *g = NULL;
    PyObject *meta = NULL, *line = NULL, *level = Py_None;
    for (int k = 0; k < f->nkeys; k++) {
        if (!(seen & (1ULL << k)) || f->keys[k].role != FC_LABELS)
            continue;
        mp_t sub = {pairs[k].value, c->end, NULL, 1, 0};
        int gi = fc_labels(f, &sub);
        if (gi < 0)
            return gi == -1 ? -1 : 0;
        g = &f->groups[gi];
    }
    if (g == NULL) { /* no labels member: one group for all (they are all without) */
        if (f->ngroups == 0 && fc_new_group(f, Py_None) == NULL)
            return -1;
        g = &f->groups[0];
        if (g->labels != Py_None)
            return 0;
    } else if (g->labels == Py_None) {
        return 0;
    }
    if (f->extras && (meta = _PyDict_NewPresized(f->extras)) == NULL)
        return -1;
    int rc = -1; /* until done: an error (0: decline) */
    for (int k = 0; k < f->nkeys; k++) {
        if (!(seen & (1ULL << k)))
            continue;
        fc_key_t *key = &f->keys[k];
        mp_t sub = {pairs[k].value, c->end, NULL, 1, 0};
        if (key->role == FC_MSG) {
            line = fc_line(&sub);
        } else if (key->role == FC_LEVEL) {
            level = fc_level(f, &sub);
            if (level == NULL || level == MP_DECLINE) {
                rc = level == NULL ? -1 : 0;
                goto out;
            }
        } else if (key->role == FC_EXTRA && meta != NULL) {
            continue; /* below, in the first record's order */
        }
        if (key->role == FC_MSG && (line == NULL || line == MP_DECLINE)) {
            rc = line == NULL ? -1 : 0;
            line = NULL;
            goto out;
        }
    }
    if (meta != NULL) { /* in the first record's order */
        for (int k = 0; k < f->nkeys; k++) {
            fc_key_t *key = &f->keys[k];
            if (key->role != FC_EXTRA)
                continue;
            mp_t sub = {pairs[k].value, c->end, NULL, 1, 0};
            PyObject *v = fc_value(&sub);
            if (v == NULL || v == MP_DECLINE) {
                rc = v == NULL ? -1 : 0;
                goto out;
            }
            int bad = PyDict_SetItem(meta, key->name, v);
            Py_DECREF(v);
            if (bad < 0)
                goto out;
        }
    }
    {
        PyObject *stamp = PyLong_FromUnsignedLongLong(ns);
        if (stamp == NULL)
            goto out;
        int bad = PyList_Append(g->lines, line) < 0 || PyList_Append(g->levels, level) < 0 ||
                  PyList_Append(g->stamps, stamp) < 0 || (meta != NULL && PyList_Append(g->meta, meta) < 0);
        Py_DECREF(stamp);
        if (bad)
            goto out;
        g->leveled |= level != Py_None;
        rc = 1;
    }
out:
    Py_XDECREF(line);
    Py_XDECREF(meta);
    return rc;
}

static PyObject *forward_columns(PyObject *m, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t max_distinct;
    fc_t *f = NULL;
    PyObject *message_keys, *level_keys, *slow_keys, *cache;
    PyObject *tag = NULL, *option = NULL, *out = NULL;
    (void)m;
    if (!PyArg_ParseTuple(args, "y*O!O!O!O!n", &buf, &PyTuple_Type, &message_keys, &PyTuple_Type, &level_keys,
                          &PyFrozenSet_Type, &slow_keys, &PyDict_Type, &cache, &max_distinct))
        return NULL;
    if (max_distinct < 1 || max_distinct > FC_SPANS / 2) {
        PyErr_SetString(PyExc_ValueError, "max_distinct must be 1 to 512");
        goto done;
    }
    mp_t c = {(const unsigned char *)buf.buf, (const unsigned char *)buf.buf + buf.len, NULL, 1, 0};
    Py_ssize_t parts, count;
    const unsigned char *s;
    Py_ssize_t n;
    if (mp_container(&c, &parts) != 1 || parts < 2 || parts > 3 || !mp_text(&c, &s, &n) || n == 0)
        goto decline;
    if ((tag = fc_str(s, n)) == NULL)
        goto done;
    if (tag == MP_DECLINE) {
        tag = NULL;
        goto decline;
    }
    /* The entries: an array of them (Forward), or binary holding them (PackedForward). */
    mp_t entries = c;
    int packed = 0;
    const unsigned char *second = c.p;
    if (mp_container(&c, &count) == 1) {
        entries = c;
        for (Py_ssize_t i = 0; i < count; i++)
            if (mp_skip(&c, 1) < 0)
                goto decline;
        entries.end = c.p;
    } else if ((c.p = second) != NULL && mp_need(&c, 1) && (*c.p == 0xc4 || *c.p == 0xc5 || *c.p == 0xc6)) {
        int w = *c.p == 0xc4 ? 1 : *c.p == 0xc5 ? 2 : 4;
        if (!mp_need(&c, 1 + w))
            goto decline;
        uint64_t size = mp_be(c.p + 1, w);
        c.p += 1 + w;
        if ((uint64_t)(c.end - c.p) < size)
            goto decline;
        entries.p = c.p;
        entries.end = c.p + size;
        c.p += size;
        packed = 1;
        count = -1;
    } else {
        goto decline;
    }
    if (parts == 3) {
        Py_ssize_t unused;
        const unsigned char *at = c.p;
        if (mp_container(&c, &unused) != 2)
            goto decline;
        c.p = at;
        if ((option = fc_value(&c)) == NULL)
            goto done;
        if (option == MP_DECLINE) {
            option = NULL;
            goto decline;
        }
        PyObject *signal = PyDict_GetItemString(option, "fluent_signal");
        if (PyDict_GetItemString(option, "compressed") != NULL ||
            (signal != NULL && signal != Py_None && !(PyLong_CheckExact(signal) && PyObject_Not(signal) == 1)))
            goto decline;
    }
    if (c.p != c.end || (!packed && count == 0) || (packed && entries.p == entries.end))
        goto decline;
    if ((f = PyMem_Calloc(1, sizeof(fc_t))) == NULL ||
        (f->groups = PyMem_Calloc((size_t)max_distinct + 1, sizeof(fc_group_t))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    f->level = -1;
    f->max_groups = (int)max_distinct;
    f->message_keys = message_keys;
    f->level_keys = level_keys;
    f->slow_keys = slow_keys;
    f->cache = cache;
    for (int i = 0; i < FC_SPANS; i++)
        f->sp_group[i] = -1;
    for (Py_ssize_t i = 0; packed ? entries.p < entries.end : i < count; i++) {
        int rc = fc_entry(f, &entries, i == 0);
        if (rc < 0)
            goto done;
        if (rc == 0)
            goto decline;
    }
    {
        PyObject *groups = PyList_New(f->ngroups);
        if (groups == NULL)
            goto done;
        for (int i = 0; i < f->ngroups; i++) {
            fc_group_t *g = &f->groups[i];
            PyObject *t = PyTuple_Pack(5, g->labels, g->lines, g->leveled ? g->levels : Py_None, g->stamps,
                                       g->meta ? g->meta : Py_None);
            if (t == NULL) {
                Py_DECREF(groups);
                goto done;
            }
            PyList_SET_ITEM(groups, i, t);
        }
        out = Py_BuildValue("(ONN)", tag, option ? option : Py_NewRef(Py_None), groups);
        option = NULL;
    }
    goto done;
decline:
    if (!PyErr_Occurred())
        out = Py_NewRef(Py_None);
done:
    if (f != NULL) {
        for (int k = 0; k < f->nkeys; k++)
            Py_XDECREF(f->keys[k].name);
        if (f->groups != NULL) {
            for (int i = 0; i < f->ngroups; i++) {
                fc_group_t *g = &f->groups[i];
                Py_XDECREF(g->labels);
                Py_XDECREF(g->lines);
                Py_XDECREF(g->levels);
                Py_XDECREF(g->stamps);
                Py_XDECREF(g->meta);
            }
            PyMem_Free(f->groups);
        }
        PyMem_Free(f);
    }
    Py_XDECREF(tag);
    Py_XDECREF(option);
    PyBuffer_Release(&buf);
    return out;
}

/* all_ascii(lines) -> True when every item is a str of ASCII characters only (each its own UTF-8
 * bytes); False at the first that is not. */
static PyObject *all_ascii(PyObject *m, PyObject *arg) {
    (void)m;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "all_ascii() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(arg, i);
        if (!PyUnicode_Check(s) || !PyUnicode_IS_COMPACT_ASCII(s))
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/*
 * lookup_each(keys, mapping) -> [mapping[k] for k in keys]
 *
 * A chunk's topic of each line's level: a few distinct keys (the same objects again), so the
 * value of the key looked up last is reused when the next key is that very object, and the dict
 * is asked only when the key changes. A missing key raises KeyError, as mapping[k] would.
 */
static PyObject *lookup_each(PyObject *m, PyObject *args) {
    PyObject *keys, *mapping;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &keys, &PyDict_Type, &mapping))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    PyObject *last_key = NULL, *last_val = NULL; /* borrowed: keys holds the key, mapping the value */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (k != last_key) {
            PyObject *v = PyDict_GetItemWithError(mapping, k);
            if (!v) {
                if (!PyErr_Occurred())
                    PyErr_SetObject(PyExc_KeyError, k);
                Py_DECREF(out);
                return NULL;
            }
            last_key = k;
            last_val = v;
        }
        PyList_SET_ITEM(out, i, Py_NewRef(last_val));
    }
    return out;
}

/* ---- per-topic tallies of a chunk's records ------------------------------------------------ */
#define TALLY_TOPICS 16
#define TALLY_BOUNDS 32

/*
 * tally(topics, values, bounds) -> ({topic: [records, bytes, le_0, ..., le_k]}, longest)
 *
 * For each topic: how many records, their total size, and how many are at most bounds[j] bytes
 * (bounds ascending: a histogram's cumulative buckets); longest: the largest record.
 */
static PyObject *tally(PyObject *m, PyObject *args) {
    PyObject *topics, *values, *bounds_o;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &topics, &PyList_Type, &values, &PyTuple_Type, &bounds_o))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values), nb = PyTuple_GET_SIZE(bounds_o);
    if (PyList_GET_SIZE(topics) != n) {
        PyErr_SetString(PyExc_ValueError, "topics and values must be lists of one length");
        return NULL;
    }
    if (nb > TALLY_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "too many bounds");
        return NULL;
    }
    double bounds[TALLY_BOUNDS];
    for (Py_ssize_t j = 0; j < nb; j++) {
        bounds[j] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds_o, j));
        if (bounds[j] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    PyObject *out = PyDict_New();
    if (!out)
        return NULL;
    /* The topics of one chunk are few: a short array, found by identity first. */
    struct {
        PyObject *topic;
        long long count, bytes, in[TALLY_BOUNDS + 1];
    } t[TALLY_TOPICS];
    int nt = 0, last = -1;
    Py_ssize_t longest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *topic = PyList_GET_ITEM(topics, i), *v = PyList_GET_ITEM(values, i);
        Py_ssize_t len;
        if (PyBytes_Check(v)) {
            len = PyBytes_GET_SIZE(v);
        } else if (PyUnicode_Check(v) && PyUnicode_IS_COMPACT_ASCII(v)) {
            len = PyUnicode_GET_LENGTH(v); /* its UTF-8 size */
        } else {
            PyErr_SetString(PyExc_TypeError, "values must be bytes or ASCII str");
            goto fail;
        }
        if (len > longest)
            longest = len;
        int k = -1;
        if (last >= 0 && t[last].topic == topic) {
            k = last;
        } else {
            for (int j = 0; j < nt && k < 0; j++)
                if (t[j].topic == topic)
                    k = j;
            for (int j = 0; j < nt && k < 0; j++) {
                int eq = PyObject_RichCompareBool(t[j].topic, topic, Py_EQ);
                if (eq < 0)
                    goto fail;
                if (eq)
                    k = j;
            }
            if (k < 0) {
                if (nt == TALLY_TOPICS) {
                    PyErr_SetString(PyExc_ValueError, "too many topics in one chunk");
                    goto fail;
                }
                k = nt++;
                memset(&t[k], 0, sizeof t[k]);
                t[k].topic = topic;
            }
            last = k;
        }
        t[k].count++;
        t[k].bytes += len;
        Py_ssize_t b = 0;
        while (b < nb && (double)len > bounds[b])
            b++;
        t[k].in[b]++;
    }
    for (int k = 0; k < nt; k++) {
        PyObject *row = PyList_New(2 + nb);
        if (!row)
            goto fail;
        PyList_SET_ITEM(row, 0, PyLong_FromLongLong(t[k].count));
        PyList_SET_ITEM(row, 1, PyLong_FromLongLong(t[k].bytes));
        long long le = 0;
        for (Py_ssize_t j = 0; j < nb; j++) {
            le += t[k].in[j];
            PyList_SET_ITEM(row, 2 + j, PyLong_FromLongLong(le));
        }
        for (Py_ssize_t j = 0; j < 2 + nb; j++)
            if (!PyList_GET_ITEM(row, j)) {
                Py_DECREF(row);
                goto fail;
            }
        int r = PyDict_SetItem(out, t[k].topic, row);
        Py_DECREF(row);
        if (r < 0)
            goto fail;
    }
    return Py_BuildValue("(Nn)", out, longest);
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- raw and logfmt records (sinks.encoding) ---------------------------------------------- */
/* The UTF-8 bytes of code point c at o; a lone surrogate (no UTF-8 form) is written as U+FFFD. */
static inline char *put_utf8(char *o, Py_UCS4 c) {
    if (c < 0x80) {
        *o++ = (char)c;
    } else if (c < 0x800) {
        *o++ = (char)(0xC0 | (c >> 6));
        *o++ = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        if (c >= 0xD800 && c <= 0xDFFF)
            c = 0xFFFD;
        *o++ = (char)(0xE0 | (c >> 12));
        *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
        *o++ = (char)(0x80 | (c & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (c >> 18));
        *o++ = (char)(0x80 | ((c >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
        *o++ = (char)(0x80 | (c & 0x3F));
    }
    return o;
}

static inline Py_ssize_t utf8_size(Py_UCS4 c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

/*
 * encode_raw(lines) -> list[bytes]
 *
 * Record i = the UTF-8 bytes of lines[i], nothing added: the line as the source read it (an
 * ASCII line is one copy of the str's own storage). A lone surrogate, which no source reading
 * bytes produces, is written as U+FFFD.
 */
/*
 * utf8_of(s, errors): a new bytes object, the UTF-8 of str s. An ASCII str is one copy of its own
 * storage. Otherwise errors == NULL writes a lone surrogate as U+FFFD (encode_raw), and any other
 * errors value is Python's own codec with that handler (str.encode("utf-8", errors)).
 */
static PyObject *utf8_of(PyObject *s, const char *errors) {
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_COMPACT_ASCII(s))
        return PyBytes_FromStringAndSize((const char *)PyUnicode_DATA(s), len);
    if (errors)
        return PyUnicode_AsEncodedString(s, "utf-8", errors);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t size = 0;
    for (Py_ssize_t j = 0; j < len; j++)
        size += utf8_size(PyUnicode_READ(kind, data, j));
    PyObject *rec = PyBytes_FromStringAndSize(NULL, size);
    if (rec) {
        char *o = PyBytes_AS_STRING(rec);
        for (Py_ssize_t j = 0; j < len; j++)
            o = put_utf8(o, PyUnicode_READ(kind, data, j));
    }
    return rec;
}

static PyObject *encode_raw(PyObject *m, PyObject *arg) {
    (void)m;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "encode_raw() takes a list of str");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(arg, i);
        if (!PyUnicode_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "encode_raw() takes a list of str");
            goto fail;
        }
        PyObject *rec = utf8_of(s, NULL);
        if (!rec)
            goto fail;
        PyList_SET_ITEM(out, i, rec);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* logfmt: a value is quoted when it is empty or holds a space, '=', '"', '\\' or a control
 * character; inside quotes '"' and '\\' are escaped, \n \r \t by their letters, other controls
 * as \u00XX; the rest is UTF-8 as it is. */
static inline int lf_special(Py_UCS4 c) { return c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7F; }
/* For ASCII bytes: 1 when the value needs quotes; the extra bytes of its escape (lf_extra). */
static unsigned char LF_QUOTE[256], LF_EXTRA[256];
static inline Py_ssize_t lf_extra(Py_UCS4 c) {
    if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
        return 1;
    return (c < 0x20 || c == 0x7F) ? 5 : 0;
}

static void init_lf_tables(void) {
    for (int c = 0; c < 0x80; c++) {
        LF_QUOTE[c] = (unsigned char)lf_special((Py_UCS4)c);
        LF_EXTRA[c] = (unsigned char)lf_extra((Py_UCS4)c);
    }
}

/* The size of the logfmt value of s; *quote set when it needs quotes. */
static Py_ssize_t lf_size(PyObject *s, int *quote) {
    Py_ssize_t len = PyUnicode_GET_LENGTH(s), size = 0;
    int q = len == 0;
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        const unsigned char *p = (const unsigned char *)PyUnicode_DATA(s);
        unsigned char any = 0;
        size = len;
        for (Py_ssize_t j = 0; j < len; j++) {
            any |= LF_QUOTE[p[j]];
            size += LF_EXTRA[p[j]];
        }
        q |= any;
    } else {
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        for (Py_ssize_t j = 0; j < len; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            size += utf8_size(c);
            if (c < 0x80 && lf_special(c)) {
                q = 1;
                size += lf_extra(c);
            }
        }
    }
    *quote = q;
    return size + (q ? 2 : 0);
}

static inline char *lf_put(char *o, Py_UCS4 c) {
    static const char hex[] = "0123456789abcdef";
    if (c >= 0x80)
        return put_utf8(o, c);
    if (c == '"' || c == '\\') {
        *o++ = '\\';
        *o++ = (char)c;
    } else if (c == '\n' || c == '\r' || c == '\t') {
        *o++ = '\\';
        *o++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else if (c < 0x20 || c == 0x7F) {
        memcpy(o, "\\u00", 4);
        o[4] = hex[c >> 4];
        o[5] = hex[c & 15];
        o += 6;
    } else {
        *o++ = (char)c;
    }
    return o;
}

static char *lf_into(char *o, PyObject *s, int quote) {
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    if (quote)
        *o++ = '"';
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        const unsigned char *p = (const unsigned char *)PyUnicode_DATA(s);
        if (!quote) {
            memcpy(o, p, len);
            o += len;
        } else {
            Py_ssize_t j = 0;
            while (j < len) {
                Py_ssize_t k = j;
                while (k < len && !LF_EXTRA[p[k]])
                    k++;
                memcpy(o, p + j, k - j);
                o += k - j;
                if (k < len)
                    o = lf_put(o, p[k++]);
                j = k;
            }
        }
    } else {
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        for (Py_ssize_t j = 0; j < len; j++)
            o = lf_put(o, PyUnicode_READ(kind, data, j));
    }
    if (quote)
        *o++ = '"';
    return o;
}

/*
 * encode_logfmt(head, lines, levels, tails, keys, fields) -> list[bytes]
 *
 * record i = head + logfmt_value(lines[i]) + tails[levels[i]] + fields[keys[i]] (fields[None]
 * when keys is None): encode() with logfmt's quoting instead of JSON's.
 */
static PyObject *encode_logfmt(PyObject *m, PyObject *args) {
    PyObject *head, *lines, *levels, *tails, *keys, *fields;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OO!", &PyBytes_Type, &head, &PyList_Type, &lines, &PyList_Type, &levels,
                          &PyDict_Type, &tails, &keys, &PyDict_Type, &fields))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(levels) != n || (keys != Py_None && (!PyList_Check(keys) || PyList_GET_SIZE(keys) != n))) {
        PyErr_SetString(PyExc_ValueError, "lines, levels and keys must be lists of one length");
        return NULL;
    }
    PyObject *fixed_fields = NULL;
    if (keys == Py_None) {
        fixed_fields = PyDict_GetItemWithError(fields, Py_None);
        if (!fixed_fields) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "fields[None]");
            return NULL;
        }
    }
    const char *hs = PyBytes_AS_STRING(head);
    Py_ssize_t hn = PyBytes_GET_SIZE(head);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    PyObject *last_level = NULL, *tail = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        PyObject *lvl = PyList_GET_ITEM(levels, i);
        if (!PyUnicode_Check(line)) {
            PyErr_SetString(PyExc_TypeError, "lines must be str");
            goto fail;
        }
        if (lvl != last_level) {
            tail = PyDict_GetItemWithError(tails, lvl);
            if (!tail || !PyBytes_Check(tail)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "tails[level] must be bytes");
                goto fail;
            }
            last_level = lvl;
        }
        PyObject *fb = fixed_fields;
        if (!fb) {
            fb = PyDict_GetItemWithError(fields, PyList_GET_ITEM(keys, i));
            if (!fb) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "fields[key]");
                goto fail;
            }
        }
        if (!PyBytes_Check(fb)) {
            PyErr_SetString(PyExc_TypeError, "fields values must be bytes");
            goto fail;
        }
        Py_ssize_t tn = PyBytes_GET_SIZE(tail), fn = PyBytes_GET_SIZE(fb);
        int quote;
        Py_ssize_t vn = lf_size(line, &quote);
        PyObject *rec = PyBytes_FromStringAndSize(NULL, hn + vn + tn + fn);
        if (!rec)
            goto fail;
        char *o = PyBytes_AS_STRING(rec);
        memcpy(o, hs, hn);
        o = lf_into(o + hn, line, quote);
        memcpy(o, PyBytes_AS_STRING(tail), tn);
        memcpy(o + tn, PyBytes_AS_STRING(fb), fn);
        PyList_SET_ITEM(out, i, rec);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/*
 * text_bytes(lines) -> int
 *
 * UTF-8 size of the lines' text (what the dispatcher queue's byte limit counts): the length of an
 * ASCII str, else each code point's UTF-8 length (a lone surrogate counts 3, as surrogatepass
 * would write it). Reads the str objects' own storage: nothing is encoded.
 */
static PyObject *text_bytes(PyObject *m, PyObject *arg) {
    (void)m;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "text_bytes() takes a list of str");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    long long total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(arg, i);
        if (!PyUnicode_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "text_bytes() takes a list of str");
            return NULL;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(s);
        if (PyUnicode_IS_ASCII(s)) {
            total += len;
            continue;
        }
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        for (Py_ssize_t j = 0; j < len; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            total += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        }
    }
    return PyLong_FromLongLong(total);
}

/* ---- objects of __slots__ classes ---------------------------------------------------------- */
/*
 * The Loki sink's Entry and the engine's Record are Python classes with __slots__. Their slots
 * are member descriptors at fixed offsets of the instance: slot_offsets finds them, after
 * checking that each name is an object member of the class itself (what __slots__ makes);
 * SLOT reads and writes them there, on objects checked to be instances of the class.
 */
static int slot_offsets(PyObject *cls, const char *const *names, int n, Py_ssize_t *offs) {
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class with __slots__ expected");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString(cls, names[i]);
        if (!d && !PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        int ok = d && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                 ((PyMemberDescrObject *)d)->d_common.d_type == (PyTypeObject *)cls;
        if (ok)
            offs[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_XDECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot of the class", ((PyTypeObject *)cls)->tp_name,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline void slot_set(PyObject *obj, Py_ssize_t off, PyObject *v) {
    PyObject *old = SLOT(obj, off);
    SLOT(obj, off) = Py_NewRef(v);
    Py_XDECREF(old);
}

/* ---- Loki push: entries and the protobuf PushRequest --------------------------------------- */
enum { E_VALUE, E_DEST, E_TS, E_LINE, E_STREAM, E_TENANT, E_META, E_SIZE, E_KIND, E_OWNER, E_ID, E_REWRITTEN, E_INDEX, E_N };
static const char *const ENTRY_SLOTS[E_N] = {"_value", "dest",     "ts",        "line", "stream",
                                             "tenant", "meta",     "size",      "kind", "owner",
                                             "entry_id", "rewritten", "index"};

/* The record without its leading "timestamp" member (push._without_timestamp): '{' + what follows
 * the first '",' after '{"timestamp":"'; the record itself when it does not start so. */
static PyObject *without_timestamp(PyObject *value) {
    static const char prefix[] = "{\"timestamp\":\"";
    const Py_ssize_t pn = (Py_ssize_t)sizeof(prefix) - 1;
    const char *s = PyBytes_AS_STRING(value);
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    if (n >= pn && memcmp(s, prefix, (size_t)pn) == 0) {
        for (Py_ssize_t i = pn; i + 1 < n; i++) {
            if (s[i] == '"' && s[i + 1] == ',') {
                PyObject *out = PyBytes_FromStringAndSize(NULL, n - i - 1);
                if (out) {
                    char *o = PyBytes_AS_STRING(out);
                    o[0] = '{';
                    memcpy(o + 1, s + i + 2, (size_t)(n - i - 2));
                }
                return out;
            }
        }
    }
    return Py_NewRef(value);
}

/*
 * loki_entries(cls, values, lines, stamps, ts, levels, streams, dest) -> list[cls]
 *
 * Entry i of a chunk on the sink's fast path (push.Shaper._fast_lines_py): value values[i], line
 * lines[i] as UTF-8 (backslashreplace), or, when lines is None, values[i] without its timestamp
 * member; timestamp stamps[i] (ts when stamps is None); (stream, tenant) = streams[levels[i]].
 * values not a list (push.LazyValues, with lines): each entry's _value is values, its index i.
 */
static PyObject *loki_entries(PyObject *m, PyObject *args) {
    PyObject *cls, *values, *lines, *stamps, *ts, *levels, *streams, *dest;
    Py_ssize_t off[E_N];
    (void)m;
    if (!PyArg_ParseTuple(args, "OOOOO!O!O!U", &cls, &values, &lines, &stamps, &PyLong_Type, &ts, &PyList_Type,
                          &levels, &PyDict_Type, &streams, &dest))
        return NULL;
    if (slot_offsets(cls, ENTRY_SLOTS, E_N, off) < 0)
        return NULL;
    int lazy = !PyList_Check(values);
    if (lazy && !PyList_Check(lines)) {
        PyErr_SetString(PyExc_TypeError, "values that are not a list need lines");
        return NULL;
    }
    Py_ssize_t n = lazy ? PyList_GET_SIZE(lines) : PyList_GET_SIZE(values);
    if (PyList_GET_SIZE(levels) != n || (lines != Py_None && (!PyList_Check(lines) || PyList_GET_SIZE(lines) != n)) ||
        (stamps != Py_None && (!PyList_Check(stamps) || PyList_GET_SIZE(stamps) != n))) {
        PyErr_SetString(PyExc_ValueError, "values, lines, stamps and levels must be lists of one length");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *kind = PyUnicode_InternFromString("new");
    PyObject *empty = PyUnicode_InternFromString("");
    PyObject *out = (kind && empty) ? PyList_New(n) : NULL;
    if (!out) {
        Py_XDECREF(kind);
        Py_XDECREF(empty);
        return NULL;
    }
    PyObject *last_level = NULL, *stream = NULL, *tenant = NULL;
    Py_ssize_t stream_len = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = lazy ? values : PyList_GET_ITEM(values, i);
        PyObject *lvl = PyList_GET_ITEM(levels, i);
        if (!lazy && !PyBytes_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "values must be bytes");
            goto fail;
        }
        if (lvl != last_level) {
            PyObject *pair = PyDict_GetItemWithError(streams, lvl);
            if (!pair || !PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
                !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 1))) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_KeyError, "streams[level] must be (stream, tenant)");
                goto fail;
            }
            stream = PyTuple_GET_ITEM(pair, 0);
            tenant = PyTuple_GET_ITEM(pair, 1);
            stream_len = PyUnicode_GET_LENGTH(stream);
            last_level = lvl;
        }
        PyObject *line;
        if (lines == Py_None) {
            line = without_timestamp(value);
        } else {
            PyObject *text = PyList_GET_ITEM(lines, i);
            if (!PyUnicode_Check(text)) {
                PyErr_SetString(PyExc_TypeError, "lines must be str");
                goto fail;
            }
            line = utf8_of(text, "backslashreplace");
        }
        if (!line)
            goto fail;
        PyObject *size = PyLong_FromSsize_t(PyBytes_GET_SIZE(line) + stream_len + 32);
        PyObject *index = size ? PyLong_FromSsize_t(lazy ? i : 0) : NULL;
        PyObject *e = index ? type->tp_alloc(type, 0) : NULL;
        if (!e) {
            Py_DECREF(line);
            Py_XDECREF(size);
            Py_XDECREF(index);
            goto fail;
        }
        PyList_SET_ITEM(out, i, e);
        slot_set(e, off[E_VALUE], value);
        slot_set(e, off[E_DEST], dest);
        slot_set(e, off[E_TS], stamps == Py_None ? ts : PyList_GET_ITEM(stamps, i));
        SLOT(e, off[E_LINE]) = line;
        slot_set(e, off[E_STREAM], stream);
        slot_set(e, off[E_TENANT], tenant);
        slot_set(e, off[E_META], Py_None);
        SLOT(e, off[E_SIZE]) = size;
        slot_set(e, off[E_KIND], kind);
        slot_set(e, off[E_OWNER], Py_None);
        slot_set(e, off[E_ID], empty);
        slot_set(e, off[E_REWRITTEN], Py_False);
        SLOT(e, off[E_INDEX]) = index;
        /* Out of the cyclic collector's lists: an entry holds no container but its owner (set
         * later: a Delivery, an Attempt or a waiter, none of which holds entries) and its lazy
         * values (their chunk, which holds no entry), so it is freed
         * by its reference count like a bytes object. Tracked, the entries waiting in the sink
         * made the collector's passes, walking every one of them, a large share of the agent's
         * time per line. */
        PyObject_GC_UnTrack(e);
    }
    Py_DECREF(kind);
    Py_DECREF(empty);
    return out;
fail:
    Py_DECREF(kind);
    Py_DECREF(empty);
    Py_DECREF(out);
    return NULL;
}

/* ---- protobuf ---- */
static inline Py_ssize_t varint_len(uint64_t v) {
    Py_ssize_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline char *put_varint(char *o, uint64_t v) {
    while (v >= 0x80) {
        *o++ = (char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    *o++ = (char)v;
    return o;
}

/* A length-delimited field: its tag, the payload's length, (the payload follows). */
static inline Py_ssize_t field_len(Py_ssize_t payload) { return 1 + varint_len((uint64_t)payload) + payload; }
static inline char *put_field_head(char *o, unsigned char tag, Py_ssize_t payload) {
    *o++ = (char)tag;
    return put_varint(o, (uint64_t)payload);
}

/* What loki_protobuf needs of one entry, read once in the sizing pass. */
typedef struct {
    uint64_t sec, nanos;
    const char *line;
    Py_ssize_t line_n, stamp_n, size; /* Timestamp payload, EntryAdapter payload */
    PyObject *meta;                   /* borrowed: a tuple of (name, value) str pairs, or NULL */
} pb_entry_t;

static int meta_pair(PyObject *pair, const char **name, Py_ssize_t *nn, const char **value, Py_ssize_t *vn) {
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(pair, 1))) {
        PyErr_SetString(PyExc_TypeError, "Entry.meta must hold (str, str) pairs");
        return -1;
    }
    *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), nn);
    *value = *name ? PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 1), vn) : NULL;
    return *value ? 0 : -1;
}

static Py_ssize_t pair_len(Py_ssize_t nn, Py_ssize_t vn) { return field_len(nn) + field_len(vn); }

/*
 * loki_protobuf(cls, streams) -> bytes
 *
 * push.protobuf_body in C: a PushRequest of {labels: [entries of cls]}, byte for byte the same.
 */
static PyObject *loki_protobuf(PyObject *m, PyObject *args) {
    PyObject *cls, *streams;
    Py_ssize_t off[E_N];
    (void)m;
    if (!PyArg_ParseTuple(args, "OO!", &cls, &PyDict_Type, &streams))
        return NULL;
    if (slot_offsets(cls, ENTRY_SLOTS, E_N, off) < 0)
        return NULL;
    Py_ssize_t count = 0, pos = 0;
    PyObject *labels, *entries;
    while (PyDict_Next(streams, &pos, &labels, &entries)) {
        if (!PyUnicode_Check(labels) || !PyList_Check(entries)) {
            PyErr_SetString(PyExc_TypeError, "streams must map str labels to lists of entries");
            return NULL;
        }
        count += PyList_GET_SIZE(entries);
    }
    pb_entry_t *info = PyMem_Malloc(sizeof(pb_entry_t) * (size_t)(count ? count : 1));
    Py_ssize_t nstreams = PyDict_GET_SIZE(streams);
    Py_ssize_t *stream_size = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(nstreams ? nstreams : 1));
    PyObject *out = NULL;
    if (!info || !stream_size) {
        PyErr_NoMemory();
        goto done;
    }
    /* Sizes: every entry's and stream's payload, then the whole request. */
    Py_ssize_t total = 0, k = 0, s = 0;
    pos = 0;
    while (PyDict_Next(streams, &pos, &labels, &entries)) {
        Py_ssize_t ln;
        if (!PyUnicode_AsUTF8AndSize(labels, &ln))
            goto done;
        Py_ssize_t body = field_len(ln);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++, k++) {
            PyObject *e = PyList_GET_ITEM(entries, i);
            if (!PyObject_TypeCheck(e, (PyTypeObject *)cls)) {
                PyErr_SetString(PyExc_TypeError, "streams must hold entries");
                goto done;
            }
            PyObject *tsv = SLOT(e, off[E_TS]), *line = SLOT(e, off[E_LINE]), *meta = SLOT(e, off[E_META]);
            if (!tsv || !PyLong_Check(tsv) || !line || !PyBytes_Check(line) || !meta ||
                (meta != Py_None && !PyTuple_Check(meta))) {
                PyErr_SetString(PyExc_TypeError, "an entry needs an int ts, bytes line and a tuple or None meta");
                goto done;
            }
            long long t = PyLong_AsLongLong(tsv);
            if (t == -1 && PyErr_Occurred())
                goto done;
            if (t < 0) {
                PyErr_SetString(PyExc_ValueError, "an entry's timestamp is before 1970");
                goto done;
            }
            pb_entry_t *p = &info[k];
            p->sec = (uint64_t)(t / 1000000000LL);
            p->nanos = (uint64_t)(t % 1000000000LL);
            p->line = PyBytes_AS_STRING(line);
            p->line_n = PyBytes_GET_SIZE(line);
            p->stamp_n = 2 + varint_len(p->sec) + varint_len(p->nanos);
            p->meta = (meta != Py_None && PyTuple_GET_SIZE(meta)) ? meta : NULL;
            p->size = field_len(p->stamp_n) + field_len(p->line_n);
            if (p->meta) {
                for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(meta); j++) {
                    const char *nm, *vl;
                    Py_ssize_t nn, vn;
                    if (meta_pair(PyTuple_GET_ITEM(meta, j), &nm, &nn, &vl, &vn) < 0)
                        goto done;
                    p->size += field_len(pair_len(nn, vn));
                }
            }
            body += field_len(p->size);
        }
        stream_size[s++] = body;
        total += field_len(body);
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (!out)
        goto done;
    char *o = PyBytes_AS_STRING(out);
    k = s = 0;
    pos = 0;
    while (PyDict_Next(streams, &pos, &labels, &entries)) {
        Py_ssize_t ln;
        const char *lb = PyUnicode_AsUTF8AndSize(labels, &ln);
        o = put_field_head(o, 0x0A, stream_size[s++]);
        o = put_field_head(o, 0x0A, ln);
        memcpy(o, lb, (size_t)ln);
        o += ln;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++, k++) {
            pb_entry_t *p = &info[k];
            o = put_field_head(o, 0x12, p->size);
            o = put_field_head(o, 0x0A, p->stamp_n);
            *o++ = 0x08;
            o = put_varint(o, p->sec);
            *o++ = 0x10;
            o = put_varint(o, p->nanos);
            o = put_field_head(o, 0x12, p->line_n);
            memcpy(o, p->line, (size_t)p->line_n);
            o += p->line_n;
            if (p->meta) {
                for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(p->meta); j++) {
                    const char *nm, *vl;
                    Py_ssize_t nn, vn;
                    meta_pair(PyTuple_GET_ITEM(p->meta, j), &nm, &nn, &vl, &vn); /* checked above */
                    o = put_field_head(o, 0x1A, pair_len(nn, vn));
                    o = put_field_head(o, 0x0A, nn);
                    memcpy(o, nm, (size_t)nn);
                    o += nn;
                    o = put_field_head(o, 0x12, vn);
                    memcpy(o, vl, (size_t)vn);
                    o += vn;
                }
            }
        }
    }
    if (o != PyBytes_AS_STRING(out) + total) { /* the dict or an entry changed between the passes */
        Py_CLEAR(out);
        PyErr_SetString(PyExc_RuntimeError, "the streams changed while the body was written");
    }
done:
    PyMem_Free(info);
    PyMem_Free(stream_size);
    return out;
}

/* ---- Elasticsearch _bulk body -------------------------------------------------------------- */
/* A bytes object written at its end, grown as it fills (one copy per doubling). */
typedef struct {
    PyObject *bytes;
    Py_ssize_t len, cap;
} buf_t;

static int buf_init(buf_t *b, Py_ssize_t cap) {
    b->len = 0;
    b->cap = cap > 64 ? cap : 64;
    b->bytes = PyBytes_FromStringAndSize(NULL, b->cap);
    return b->bytes ? 0 : -1;
}

/* Room for `more` bytes at the end; returns where they go, NULL (MemoryError) when it cannot. */
static char *buf_room(buf_t *b, Py_ssize_t more) {
    if (b->len + more > b->cap) {
        Py_ssize_t cap = b->cap * 2;
        if (cap < b->len + more)
            cap = b->len + more;
        if (_PyBytes_Resize(&b->bytes, cap) < 0)
            return NULL;
        b->cap = cap;
    }
    return PyBytes_AS_STRING(b->bytes) + b->len;
}

static int buf_put(buf_t *b, const char *s, Py_ssize_t n) {
    char *o = buf_room(b, n);
    if (!o)
        return -1;
    memcpy(o, s, (size_t)n);
    b->len += n;
    return 0;
}

/* JSON(s) of a str (orjson's bytes: the ASCII ones written here, the others by dumps). */
static int buf_json_str(buf_t *b, PyObject *s, PyObject *dumps) {
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        const unsigned char *p = (const unsigned char *)PyUnicode_DATA(s);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        char *o = buf_room(b, escaped_len(p, n));
        if (!o)
            return -1;
        b->len = escape_into(o, p, n) - PyBytes_AS_STRING(b->bytes);
        return 0;
    }
    PyObject *js = PyObject_CallOneArg(dumps, s);
    if (!js)
        return -1;
    int rc = PyBytes_Check(js) ? buf_put(b, PyBytes_AS_STRING(js), PyBytes_GET_SIZE(js)) : -1;
    if (rc < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
    Py_DECREF(js);
    return rc;
}

static PyObject *buf_finish(buf_t *b) {
    if (_PyBytes_Resize(&b->bytes, b->len) < 0)
        return NULL;
    return b->bytes;
}

enum { R_TOPIC, R_VALUE, R_KEY, R_N };
static const char *const RECORD_SLOTS[R_N] = {"topic", "value", "key"};

/*
 * bulk_body(cls, records, op_type, pipeline, doc_type, dumps) -> bytes
 *
 * bulk.body_py in C: per record of class cls its action line, {op_type: {"_index": topic,
 * "_id": key (unless None; bytes as UTF-8), "_type": doc_type (unless ''), "pipeline": pipeline
 * (unless '')}}, and its value, each followed by a newline; byte for byte what orjson writes.
 */
/* What every action line starts with ({"<op_type>":{"_index":) and what ends it (the _type and
 * pipeline members, "}}" and the newline). */
static int bulk_frame(buf_t *head, buf_t *tail, PyObject *op, PyObject *pipeline, PyObject *doc_type,
                      PyObject *dumps) {
    head->bytes = tail->bytes = NULL;
    if (buf_init(head, 64) < 0 || buf_init(tail, 64) < 0)
        return -1;
    if (buf_put(head, "{", 1) < 0 || buf_json_str(head, op, dumps) < 0 || buf_put(head, ":{\"_index\":", 11) < 0)
        return -1;
    if (PyUnicode_GET_LENGTH(doc_type) &&
        (buf_put(tail, ",\"_type\":", 9) < 0 || buf_json_str(tail, doc_type, dumps) < 0))
        return -1;
    if (PyUnicode_GET_LENGTH(pipeline) &&
        (buf_put(tail, ",\"pipeline\":", 12) < 0 || buf_json_str(tail, pipeline, dumps) < 0))
        return -1;
    return buf_put(tail, "}}\n", 3);
}

/* The last index written, and where its JSON is in the body (written again by a copy). */
typedef struct {
    PyObject *topic;
    Py_ssize_t at, n;
} last_topic_t;

/* A _bulk body being written: the body, its action lines' frame (bulk_frame), the last index. */
typedef struct {
    buf_t b, head, tail;
    last_topic_t last;
} bulk_t;

/* A body of about `guess` bytes begun. -1: a Python error is set (nothing to free). */
static int bulk_start(bulk_t *k, Py_ssize_t guess, PyObject *op, PyObject *pipeline, PyObject *doc_type,
                      PyObject *dumps) {
    k->last = (last_topic_t){NULL, 0, 0};
    if (buf_init(&k->b, guess) < 0)
        return -1;
    if (bulk_frame(&k->head, &k->tail, op, pipeline, doc_type, dumps) < 0) {
        Py_XDECREF(k->head.bytes);
        Py_XDECREF(k->tail.bytes);
        Py_DECREF(k->b.bytes);
        return -1;
    }
    return 0;
}

/* The body written (ok), or NULL with the Python error set (!ok); the frame is freed either way. */
static PyObject *bulk_end(bulk_t *k, int ok) {
    Py_DECREF(k->head.bytes);
    Py_DECREF(k->tail.bytes);
    if (ok)
        return buf_finish(&k->b);
    Py_XDECREF(k->b.bytes);
    return NULL;
}

/* One document: its action line and its source (``rename`` + the source after its leading
 * '{"timestamp":' when rename is not empty and the source starts so), each ended by a newline. */
static int bulk_doc(bulk_t *k, PyObject *topic, PyObject *key, PyObject *value, const char *rename,
                    Py_ssize_t rename_n, PyObject *dumps) {
    buf_t *b = &k->b;
    const buf_t *head = &k->head, *tail = &k->tail;
    last_topic_t *last = &k->last;
    if (buf_put(b, PyBytes_AS_STRING(head->bytes), head->len) < 0)
        return -1;
    if (topic == last->topic) {
        char *o = buf_room(b, last->n);
        if (!o)
            return -1;
        memcpy(o, PyBytes_AS_STRING(b->bytes) + last->at, (size_t)last->n);
        b->len += last->n;
    } else {
        Py_ssize_t at = b->len;
        if (buf_json_str(b, topic, dumps) < 0)
            return -1;
        last->topic = topic;
        last->at = at;
        last->n = b->len - at;
    }
    if (key != Py_None) {
        if (buf_put(b, ",\"_id\":", 7) < 0)
            return -1;
        if (PyUnicode_Check(key)) {
            if (buf_json_str(b, key, dumps) < 0)
                return -1;
        } else if (PyBytes_Check(key)) {
            PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), NULL);
            int rc = text ? buf_json_str(b, text, dumps) : -1;
            Py_XDECREF(text);
            if (rc < 0)
                return -1;
        } else {
            PyErr_SetString(PyExc_TypeError, "a record's key must be str, bytes or None");
            return -1;
        }
    }
    if (buf_put(b, PyBytes_AS_STRING(tail->bytes), tail->len) < 0)
        return -1;
    const char *v = PyBytes_AS_STRING(value);
    Py_ssize_t vn = PyBytes_GET_SIZE(value);
    static const char TS[] = "{\"timestamp\":";
    const Py_ssize_t ts_n = (Py_ssize_t)sizeof TS - 1;
    if (rename_n && vn >= ts_n && memcmp(v, TS, (size_t)ts_n) == 0) {
        if (buf_put(b, rename, rename_n) < 0)
            return -1;
        v += ts_n;
        vn -= ts_n;
    }
    return buf_put(b, v, vn) < 0 || buf_put(b, "\n", 1) < 0 ? -1 : 0;
}

/*
 * bulk_body(cls, records, op_type, pipeline, doc_type, dumps) -> bytes
 *
 * bulk.body_py in C: per record of class cls its action line, {op_type: {"_index": topic,
 * "_id": key (unless None; bytes as UTF-8), "_type": doc_type (unless ''), "pipeline": pipeline
 * (unless '')}}, and its value, each followed by a newline; byte for byte what orjson writes.
 */
static PyObject *bulk_body(PyObject *m, PyObject *args) {
    PyObject *cls, *records, *op, *pipeline, *doc_type, *dumps;
    Py_ssize_t off[R_N];
    (void)m;
    if (!PyArg_ParseTuple(args, "OO!UUUO", &cls, &PyList_Type, &records, &op, &pipeline, &doc_type, &dumps))
        return NULL;
    if (slot_offsets(cls, RECORD_SLOTS, R_N, off) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(records), guess = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(records, i);
        if (!PyObject_TypeCheck(r, (PyTypeObject *)cls)) {
            PyErr_SetString(PyExc_TypeError, "records must be Record objects");
            return NULL;
        }
        PyObject *v = SLOT(r, off[R_VALUE]);
        if (!v || !PyBytes_Check(v) || !SLOT(r, off[R_TOPIC]) || !PyUnicode_Check(SLOT(r, off[R_TOPIC])) ||
            !SLOT(r, off[R_KEY])) {
            PyErr_SetString(PyExc_TypeError, "a record needs a str topic and a bytes value");
            return NULL;
        }
        guess += PyBytes_GET_SIZE(v) + 96;
    }
    bulk_t k;
    if (bulk_start(&k, guess, op, pipeline, doc_type, dumps) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(records, i);
        if (bulk_doc(&k, SLOT(r, off[R_TOPIC]), SLOT(r, off[R_KEY]), SLOT(r, off[R_VALUE]), "", 0, dumps) < 0)
            return bulk_end(&k, 0);
    }
    return bulk_end(&k, 1);
}

/*
 * bulk_docs(index, values, ids, lo, hi, op_type, pipeline, doc_type, rename, dumps) -> bytes
 *
 * bulk.docs_body_py in C: the _bulk body of documents lo..hi-1 of a chunk's columns: index (one
 * str for all, or a list of str), values (bytes), ids (None, or a list of str, bytes or None);
 * a value starting with '{"timestamp":' starts with ``rename`` instead when rename is not empty.
 */
static PyObject *bulk_docs(PyObject *m, PyObject *args) {
    PyObject *index, *values, *ids, *op, *pipeline, *doc_type, *dumps;
    Py_ssize_t lo, hi, rename_n;
    const char *rename;
    (void)m;
    if (!PyArg_ParseTuple(args, "OO!OnnUUUy#O", &index, &PyList_Type, &values, &ids, &lo, &hi, &op, &pipeline,
                          &doc_type, &rename, &rename_n, &dumps))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values), guess = 0;
    int per_doc = PyList_Check(index);
    if (!per_doc && !PyUnicode_Check(index)) {
        PyErr_SetString(PyExc_TypeError, "index must be a str or a list of str");
        return NULL;
    }
    if ((per_doc && PyList_GET_SIZE(index) != n) || (ids != Py_None && (!PyList_Check(ids) || PyList_GET_SIZE(ids) != n))) {
        PyErr_SetString(PyExc_ValueError, "index, values and ids must be lists of one length");
        return NULL;
    }
    if (lo < 0 || hi > n || lo > hi) {
        PyErr_SetString(PyExc_IndexError, "lo..hi is not a range of the documents");
        return NULL;
    }
    for (Py_ssize_t i = lo; i < hi; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (!PyBytes_Check(v) || (per_doc && !PyUnicode_Check(PyList_GET_ITEM(index, i)))) {
            PyErr_SetString(PyExc_TypeError, "a document needs a str index and a bytes value");
            return NULL;
        }
        guess += PyBytes_GET_SIZE(v) + 96;
    }
    bulk_t k;
    if (bulk_start(&k, guess, op, pipeline, doc_type, dumps) < 0)
        return NULL;
    for (Py_ssize_t i = lo; i < hi; i++) {
        PyObject *topic = per_doc ? PyList_GET_ITEM(index, i) : index;
        PyObject *key = ids == Py_None ? Py_None : PyList_GET_ITEM(ids, i);
        if (bulk_doc(&k, topic, key, PyList_GET_ITEM(values, i), rename, rename_n, dumps) < 0)
            return bulk_end(&k, 0);
    }
    return bulk_end(&k, 1);
}

/* ---- Elasticsearch document ids: BLAKE2b (RFC 7693), unkeyed ------------------------------- */
static const uint64_t B2_IV[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                                  0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                                  0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

typedef struct {
    uint64_t h[8];
    uint64_t t; /* bytes hashed so far (the high word of the counter stays 0 here) */
    uint8_t buf[128];
    size_t n; /* bytes in buf */
} b2_t;

static inline uint64_t rotr64(uint64_t x, int r) { return (x >> r) | (x << (64 - r)); }

static inline uint64_t le64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
#endif
}

#define B2_G(a, b, c, d, x, y)                                                                                \
    do {                                                                                                      \
        a = a + b + (x);                                                                                      \
        d = rotr64(d ^ a, 32);                                                                                \
        c = c + d;                                                                                            \
        b = rotr64(b ^ c, 24);                                                                                \
        a = a + b + (y);                                                                                      \
        d = rotr64(d ^ a, 16);                                                                                \
        c = c + d;                                                                                            \
        b = rotr64(b ^ c, 63);                                                                                \
    } while (0)

static void b2_compress(b2_t *s, const uint8_t *block, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = le64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= s->t;
    if (last)
        v[14] = ~v[14];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 12
#endif
    for (int r = 0; r < 12; r++) {
        const uint8_t *g = B2_SIGMA[r];
        B2_G(v[0], v[4], v[8], v[12], m[g[0]], m[g[1]]);
        B2_G(v[1], v[5], v[9], v[13], m[g[2]], m[g[3]]);
        B2_G(v[2], v[6], v[10], v[14], m[g[4]], m[g[5]]);
        B2_G(v[3], v[7], v[11], v[15], m[g[6]], m[g[7]]);
        B2_G(v[0], v[5], v[10], v[15], m[g[8]], m[g[9]]);
        B2_G(v[1], v[6], v[11], v[12], m[g[10]], m[g[11]]);
        B2_G(v[2], v[7], v[8], v[13], m[g[12]], m[g[13]]);
        B2_G(v[3], v[4], v[9], v[14], m[g[14]], m[g[15]]);
    }
    for (int i = 0; i < 8; i++)
        s->h[i] ^= v[i] ^ v[i + 8];
}

static void b2_init(b2_t *s, size_t outlen) {
    memcpy(s->h, B2_IV, sizeof s->h);
    s->h[0] ^= 0x01010000ULL ^ (uint64_t)outlen;
    s->t = 0;
    s->n = 0;
}

/* A full buffer is compressed only when more input comes: the last block is compressed last. */
static void b2_update(b2_t *s, const uint8_t *p, size_t len) {
    while (len) {
        if (s->n == 128) {
            s->t += 128;
            b2_compress(s, s->buf, 0);
            s->n = 0;
        }
        size_t k = 128 - s->n < len ? 128 - s->n : len;
        memcpy(s->buf + s->n, p, k);
        s->n += k;
        p += k;
        len -= k;
    }
}

static void b2_final(b2_t *s, uint8_t *out, size_t outlen) {
    s->t += s->n;
    memset(s->buf + s->n, 0, 128 - s->n);
    b2_compress(s, s->buf, 1);
    for (size_t i = 0; i < outlen; i++)
        out[i] = (uint8_t)(s->h[i / 8] >> (8 * (i % 8)));
}

/* URL-safe base64 of 15 bytes: 20 characters, no padding. */
static void b64url15(const uint8_t *d, char *o) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) | d[i + 2];
        *o++ = abc[(v >> 18) & 63];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
}

/*
 * doc_ids_at(base, start, lines) -> list[str]
 *
 * bulk.doc_ids_py for exact positions: id i = URL-safe base64 of BLAKE2b-120(base + the line's
 * byte offset as 8 little-endian bytes + lines[i]), offsets from start, each line and its newline.
 * A line may be bytes, or str (hashed as its UTF-8, a lone surrogate as with "surrogatepass").
 */
static PyObject *doc_ids_at(PyObject *m, PyObject *args) {
    const char *base;
    Py_ssize_t base_n;
    long long start;
    PyObject *lines;
    (void)m;
    if (!PyArg_ParseTuple(args, "y#LO!", &base, &base_n, &start, &PyList_Type, &lines))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    b2_t seed;
    b2_init(&seed, 15);
    b2_update(&seed, (const uint8_t *)base, (size_t)base_n);
    uint64_t pos = (uint64_t)start;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i), *held = NULL;
        const char *data;
        Py_ssize_t len;
        if (PyBytes_Check(line)) {
            data = PyBytes_AS_STRING(line);
            len = PyBytes_GET_SIZE(line);
        } else if (PyUnicode_Check(line) && PyUnicode_IS_COMPACT_ASCII(line)) {
            data = (const char *)PyUnicode_DATA(line);
            len = PyUnicode_GET_LENGTH(line);
        } else if (PyUnicode_Check(line)) {
            /* As str.encode("utf-8", "surrogatepass"): a lone surrogate as its 3 bytes. */
            held = PyUnicode_AsEncodedString(line, "utf-8", "surrogatepass");
            if (!held) {
                Py_DECREF(out);
                return NULL;
            }
            data = PyBytes_AS_STRING(held);
            len = PyBytes_GET_SIZE(held);
        } else {
            PyErr_SetString(PyExc_TypeError, "lines must be bytes or str");
            Py_DECREF(out);
            return NULL;
        }
        b2_t s = seed;
        uint8_t at[8], digest[15];
        for (int k = 0; k < 8; k++)
            at[k] = (uint8_t)(pos >> (8 * k));
        b2_update(&s, at, 8);
        b2_update(&s, (const uint8_t *)data, (size_t)len);
        b2_final(&s, digest, 15);
        Py_XDECREF(held);
        PyObject *id = PyUnicode_New(20, 127);
        if (!id) {
            Py_DECREF(out);
            return NULL;
        }
        b64url15(digest, (char *)PyUnicode_DATA(id));
        PyList_SET_ITEM(out, i, id);
        pos += (uint64_t)len + 1;
    }
    return out;
}

/*
 * doc_ids_offsets(base, offsets) -> list[str]
 *
 * bulk.doc_ids for a Kafka chunk: id i = URL-safe base64 of BLAKE2b-120(base + offsets[i] as 8
 * little-endian bytes). An offset is an int in 0..2**64-1 (OverflowError otherwise, as
 * int.to_bytes).
 */
static PyObject *doc_ids_offsets(PyObject *m, PyObject *args) {
    const char *base;
    Py_ssize_t base_n;
    PyObject *offsets;
    (void)m;
    if (!PyArg_ParseTuple(args, "y#O!", &base, &base_n, &PyList_Type, &offsets))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(offsets);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    b2_t seed;
    b2_init(&seed, 15);
    b2_update(&seed, (const uint8_t *)base, (size_t)base_n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *off = PyList_GET_ITEM(offsets, i);
        if (!PyLong_Check(off)) {
            PyErr_SetString(PyExc_TypeError, "offsets must be ints");
            Py_DECREF(out);
            return NULL;
        }
        unsigned long long pos = PyLong_AsUnsignedLongLong(off);
        if (pos == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(out);
            return NULL;
        }
        b2_t s = seed;
        uint8_t at[8], digest[15];
        for (int k = 0; k < 8; k++)
            at[k] = (uint8_t)(pos >> (8 * k));
        b2_update(&s, at, 8);
        b2_final(&s, digest, 15);
        PyObject *id = PyUnicode_New(20, 127);
        if (!id) {
            Py_DECREF(out);
            return NULL;
        }
        b64url15(digest, (char *)PyUnicode_DATA(id));
        PyList_SET_ITEM(out, i, id);
    }
    return out;
}

/*
 * kafka_fields(prefix, offsets, keys, stamps, dumps) -> list[bytes]
 *
 * The fields object of each Kafka record, as dumps({field: {"topic", "partition", "offset", "key",
 * "timestamp"}}) gives it: prefix (up to the offset's value) + offsets[i] + ,"key": + null or
 * dumps(keys[i]) + ,"timestamp": + null or stamps[i] + }}. Offsets and stamps are ints (or None
 * for a stamp) within a long long.
 */
static int put_ll(PyObject *v, char *buf, Py_ssize_t *n) {
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *n = (Py_ssize_t)snprintf(buf, 24, "%lld", x);
    return 0;
}

static PyObject *kafka_fields(PyObject *m, PyObject *args) {
    const char *prefix;
    Py_ssize_t prefix_n;
    PyObject *offsets, *keys, *stamps, *dumps;
    (void)m;
    if (!PyArg_ParseTuple(args, "y#O!O!O!O", &prefix, &prefix_n, &PyList_Type, &offsets, &PyList_Type, &keys,
                          &PyList_Type, &stamps, &dumps))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(offsets);
    if (PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(stamps) != n) {
        PyErr_SetString(PyExc_ValueError, "offsets, keys and stamps must be lists of one length");
        return NULL;
    }
    static const char KEY[] = ",\"key\":", TS[] = ",\"timestamp\":";
    const Py_ssize_t key_n = (Py_ssize_t)sizeof(KEY) - 1, ts_n = (Py_ssize_t)sizeof(TS) - 1;
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *off = PyList_GET_ITEM(offsets, i), *key = PyList_GET_ITEM(keys, i);
        PyObject *st = PyList_GET_ITEM(stamps, i), *kj = NULL;
        char obuf[24], sbuf[24];
        Py_ssize_t on, sn = 4, kn = 4;
        const char *ks = "null";
        if (!PyLong_Check(off) || (st != Py_None && !PyLong_Check(st))) {
            PyErr_SetString(PyExc_TypeError, "offsets must be ints, stamps ints or None");
            goto fail;
        }
        if (put_ll(off, obuf, &on) < 0)
            goto fail;
        if (st == Py_None)
            memcpy(sbuf, "null", 4);
        else if (put_ll(st, sbuf, &sn) < 0)
            goto fail;
        if (key != Py_None) {
            kj = PyObject_CallOneArg(dumps, key);
            if (!kj)
                goto fail;
            if (!PyBytes_Check(kj)) {
                Py_DECREF(kj);
                PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
                goto fail;
            }
            ks = PyBytes_AS_STRING(kj);
            kn = PyBytes_GET_SIZE(kj);
        }
        PyObject *rec = PyBytes_FromStringAndSize(NULL, prefix_n + on + key_n + kn + ts_n + sn + 2);
        if (!rec) {
            Py_XDECREF(kj);
            goto fail;
        }
        char *o = PyBytes_AS_STRING(rec);
        memcpy(o, prefix, (size_t)prefix_n);
        o += prefix_n;
        memcpy(o, obuf, (size_t)on);
        o += on;
        memcpy(o, KEY, (size_t)key_n);
        o += key_n;
        memcpy(o, ks, (size_t)kn);
        o += kn;
        memcpy(o, TS, (size_t)ts_n);
        o += ts_n;
        memcpy(o, sbuf, (size_t)sn);
        o += sn;
        o[0] = '}';
        o[1] = '}';
        Py_XDECREF(kj);
        PyList_SET_ITEM(out, i, rec);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* utc_stamps: the event times (ns since the epoch) of text stamps in the agent's own shape,
 * "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (1 to 9 fraction digits), years 1678-2261 (what an int64 of
 * nanoseconds holds); None when one is anything else (Python's time_ns decides then: this gives
 * what it gives for these, never more). */
static int two_digits(const char *p, int *out) {
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return 0;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 1;
}

static long long days_from_civil(int y, int m, int d) {
    /* Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date. */
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const long long yoe = y - era * 400;
    const long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int utc_ns_of(PyObject *s, long long *ns) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n < 20 || n > 30 || n == 21)
        return 0;
    const char *p = (const char *)PyUnicode_1BYTE_DATA(s);
    int c1, c2, mo, d, h, mi, sec;
    if (!two_digits(p, &c1) || !two_digits(p + 2, &c2) || p[4] != '-' || !two_digits(p + 5, &mo) ||
        p[7] != '-' || !two_digits(p + 8, &d) || p[10] != 'T' || !two_digits(p + 11, &h) || p[13] != ':' ||
        !two_digits(p + 14, &mi) || p[16] != ':' || !two_digits(p + 17, &sec) || p[n - 1] != 'Z')
        return 0;
    int y = c1 * 100 + c2;
    static const int DIM[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1678 || y > 2261 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > DIM[mo - 1] + (mo == 2 && leap))
        return 0;
    long long frac = 0;
    if (n > 20) {
        if (p[19] != '.')
            return 0;
        int digits = 0;
        for (Py_ssize_t i = 20; i < n - 1; i++, digits++) {
            if (p[i] < '0' || p[i] > '9')
                return 0;
            frac = frac * 10 + (p[i] - '0');
        }
        for (; digits < 9; digits++)
            frac *= 10;
    }
    long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec;
    *ns = secs * 1000000000LL + frac;
    return 1;
}

static PyObject *utc_stamps(PyObject *m, PyObject *arg) {
    (void)m;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "utc_stamps() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    PyObject *out = PyList_New(n);
    if (!out)
        return NULL;
    long long last_ns = 0;
    PyObject *last = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long ns;
        if (!utc_ns_of(PyList_GET_ITEM(arg, i), &ns)) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        PyObject *v;
        if (last != NULL && ns == last_ns) {  /* a chunk's records often share one time */
            v = last;
            Py_INCREF(v);
        } else {
            v = PyLong_FromLongLong(ns);
            if (!v) {
                Py_DECREF(out);
                return NULL;
            }
            last = v;
            last_ns = ns;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

/* agent_scan: a poll's JSON records whose members are those of the first record, in its order,
 * with every member but the message, time and level byte for byte the first record's; their
 * message, time and level texts read without a dict per record. */

static const char *js_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at the opening quote: the byte after the closing one, or NULL (not a string this scan reads:
 * a control character, an escape other than the simple ones when strict, no end). *esc: seen a
 * backslash. */
static const char *js_string(const char *p, const char *end, int strict, int *esc) {
    if (p >= end || *p != '"')
        return NULL;
    p++;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            *esc = 1;
            if (p + 1 >= end)
                return NULL;
            char e = p[1];
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't')
                p += 2;
            else if (e == 'u' && !strict)
                p += 2;
            else
                return NULL;
            continue;
        }
        p++;
    }
    return NULL;
}

/* The end of any JSON value at p (not validated: the caller compares its bytes with a value
 * orjson read), or NULL. */
static const char *js_skip(const char *p, const char *end) {
    int depth = 0, esc = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = js_string(p, end, 0, &esc);
            if (!p)
                return NULL;
            if (depth == 0)
                return p;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return p;
            depth--;
            if (depth == 0)
                return p + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            return p;
        }
        p++;
    }
    return depth == 0 ? p : NULL;
}

/* The text of the JSON string between q (after the opening quote) and e (its closing quote). */
static PyObject *js_text(const char *q, const char *e, int esc) {
    if (!esc)
        return PyUnicode_DecodeUTF8(q, e - q, "strict");
    char *buf = PyMem_Malloc((size_t)(e - q) + 1);
    if (!buf)
        return PyErr_NoMemory();
    char *o = buf;
    while (q < e) {
        if (*q != '\\') {
            *o++ = *q++;
            continue;
        }
        switch (q[1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        default: *o++ = q[1]; break; /* " \ / */
        }
        q += 2;
    }
    PyObject *s = PyUnicode_DecodeUTF8(buf, o - buf, "strict");
    PyMem_Free(buf);
    return s;
}

static PyObject *agent_scan(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *values, *keys;
    Py_ssize_t mi, ti, li;
    if (!PyArg_ParseTuple(args, "O!O!nnn", &PyList_Type, &values, &PyTuple_Type, &keys, &mi, &ti, &li))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values), nk = PyTuple_GET_SIZE(keys);
    if (n == 0 || nk == 0 || nk > 64 || mi < 0 || mi >= nk || ti >= nk || li >= nk)
        Py_RETURN_NONE;
    const char *kp[64];
    Py_ssize_t kl[64];
    for (Py_ssize_t k = 0; k < nk; k++) {
        kp[k] = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(keys, k), &kl[k]);
        if (!kp[k])
            return NULL;
    }
    const char *ref[64]; /* the first record's members: compared byte for byte */
    Py_ssize_t refl[64];
    PyObject *lines = PyList_New(n);
    PyObject *times = ti >= 0 ? PyList_New(n) : NULL;
    PyObject *levels = li >= 0 ? PyList_New(n) : NULL;
    PyObject *last_t = NULL, *last_l = NULL;
    const char *last_tp = NULL, *last_lp = NULL;
    Py_ssize_t last_tl = 0, last_ll = 0;
    if (!lines || (ti >= 0 && !times) || (li >= 0 && !levels))
        goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (!PyBytes_CheckExact(v))
            goto none;
        const char *p = PyBytes_AS_STRING(v), *end = p + PyBytes_GET_SIZE(v);
        p = js_ws(p, end);
        if (p >= end || *p != '{')
            goto none;
        p++;
        for (Py_ssize_t k = 0; k < nk; k++) {
            int esc = 0;
            p = js_ws(p, end);
            if (k > 0) {
                if (p >= end || *p != ',')
                    goto none;
                p = js_ws(p + 1, end);
            }
            const char *ke = js_string(p, end, 1, &esc);
            if (!ke || esc || ke - p - 2 != kl[k] || memcmp(p + 1, kp[k], (size_t)kl[k]) != 0)
                goto none;
            p = js_ws(ke, end);
            if (p >= end || *p != ':')
                goto none;
            p = js_ws(p + 1, end);
            if (k == mi || k == ti || k == li) {
                const char *se = js_string(p, end, 1, &esc);
                if (!se)
                    goto none;
                const char *q = p + 1, *e = se - 1;
                Py_ssize_t len = e - q;
                PyObject *s;
                if (k == mi) {
                    s = js_text(q, e, esc);
                    if (!s)
                        goto decode;
                    PyList_SET_ITEM(lines, i, s);
                } else {
                    /* times and levels repeat: the previous record's text again when the same */
                    int is_t = k == ti;
                    PyObject **last = is_t ? &last_t : &last_l;
                    const char **lp = is_t ? &last_tp : &last_lp;
                    Py_ssize_t *ll = is_t ? &last_tl : &last_ll;
                    if (*last && *ll == len && memcmp(*lp, q, (size_t)len) == 0) {
                        s = *last;
                        Py_INCREF(s);
                    } else {
                        s = js_text(q, e, esc);
                        if (!s)
                            goto decode;
                        *last = s;
                        *lp = q;
                        *ll = len;
                    }
                    PyList_SET_ITEM(is_t ? times : levels, i, s);
                }
                p = se;
            } else {
                const char *ve = js_skip(p, end);
                if (!ve || ve == p)
                    goto none;
                if (i == 0) {
                    ref[k] = p;
                    refl[k] = ve - p;
                } else if (ve - p != refl[k] || memcmp(p, ref[k], (size_t)refl[k]) != 0) {
                    goto none;
                }
                p = ve;
            }
        }
        p = js_ws(p, end);
        if (p >= end || *p != '}')
            goto none;
        if (js_ws(p + 1, end) != end)
            goto none;
    }
    return Py_BuildValue("(NNN)", lines, times ? times : Py_NewRef(Py_None), levels ? levels : Py_NewRef(Py_None));
decode:
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        goto error;
    PyErr_Clear();
none:
    Py_XDECREF(lines);
    Py_XDECREF(times);
    Py_XDECREF(levels);
    Py_RETURN_NONE;
error:
    Py_XDECREF(lines);
    Py_XDECREF(times);
    Py_XDECREF(levels);
    return NULL;
}

/* ---- lines of a file buffer ---------------------------------------------------------------- */
/*
 * split_lines(data, start, end, max_line, errors) -> (lines, truncated): the lines of
 * data[start:end] (which ends with a newline), each decoded from UTF-8 straight from the buffer
 * (errors: "backslashreplace" or "replace"), a trailing '\r' removed, empty lines skipped. A line
 * longer than max_line bytes is cut to max_line bytes first (on a UTF-8 character boundary when
 * one lies within the last 4 bytes), so its end is never copied nor decoded; truncated lists the
 * indexes (in lines) of the cut ones. One pass: what sources.file.tail.TailedFile._split_py
 * does with decode, split and re-encode.
 */
static PyObject *split_lines(PyObject *m, PyObject *args) {
    (void)m;
    Py_buffer view;
    Py_ssize_t start, end, max_line;
    const char *errors;
    if (!PyArg_ParseTuple(args, "y*nnns", &view, &start, &end, &max_line, &errors))
        return NULL;
    PyObject *lines = NULL, *truncated = NULL;
    if (start < 0 || end > view.len || start > end || max_line < 1) {
        PyErr_SetString(PyExc_ValueError, "split_lines: bad range or max_line");
        goto fail;
    }
    lines = PyList_New(0);
    truncated = PyList_New(0);
    if (lines == NULL || truncated == NULL)
        goto fail;
    const unsigned char *buf = (const unsigned char *)view.buf;
    const unsigned char *p = buf + start, *stop = buf + end;
    while (p < stop) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(stop - p));
        const unsigned char *eol = nl != NULL ? nl : stop;
        Py_ssize_t n = eol - p;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n > 0) {
            int cut = n > max_line;
            if (cut) {
                Py_ssize_t c = max_line;
                while (c > 0 && c > max_line - 4 && (p[c] & 0xC0) == 0x80)
                    c--;
                n = c > max_line - 4 ? c : max_line;
            }
            PyObject *s = PyUnicode_DecodeUTF8((const char *)p, n, errors);
            if (s == NULL)
                goto fail;
            int bad = PyList_Append(lines, s);
            Py_DECREF(s);
            if (bad < 0)
                goto fail;
            if (cut) {
                PyObject *i = PyLong_FromSsize_t(PyList_GET_SIZE(lines) - 1);
                if (i == NULL)
                    goto fail;
                bad = PyList_Append(truncated, i);
                Py_DECREF(i);
                if (bad < 0)
                    goto fail;
            }
        }
        p = eol + 1;
    }
    PyBuffer_Release(&view);
    PyObject *out = PyTuple_Pack(2, lines, truncated);
    Py_DECREF(lines);
    Py_DECREF(truncated);
    return out;
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(lines);
    Py_XDECREF(truncated);
    return NULL;
}

/* ---- the "fields" object of each partition key ----------------------------------------------- */
/*
 * key_fields(keys, cache, prefix, suffix, dumps) -> number added: for every key of the list that
 * is not None and not in cache yet, cache[key] = prefix + JSON(key) + suffix (JSON as encode
 * writes strings: escaped here when ASCII, else dumps(key)). What encode then looks the keys up
 * in: a source with thousands of distinct keys costs one dict lookup per line, no Python loop.
 */
static PyObject *key_fields(PyObject *m, PyObject *args) {
    PyObject *keys, *cache, *prefix, *suffix, *dumps;
    (void)m;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O", &PyList_Type, &keys, &PyDict_Type, &cache, &PyBytes_Type, &prefix,
                          &PyBytes_Type, &suffix, &dumps))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys), added = 0;
    Py_ssize_t pn = PyBytes_GET_SIZE(prefix), sn = PyBytes_GET_SIZE(suffix);
    PyObject *last = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (k == Py_None || k == last)
            continue;
        last = k;
        int has = PyDict_Contains(cache, k);
        if (has < 0)
            return NULL;
        if (has)
            continue;
        PyObject *fb;
        if (PyUnicode_Check(k) && PyUnicode_IS_COMPACT_ASCII(k)) {
            const unsigned char *s = (const unsigned char *)PyUnicode_DATA(k);
            Py_ssize_t ln = PyUnicode_GET_LENGTH(k);
            fb = PyBytes_FromStringAndSize(NULL, pn + escaped_len(s, ln) + sn);
            if (fb == NULL)
                return NULL;
            char *o = PyBytes_AS_STRING(fb);
            memcpy(o, PyBytes_AS_STRING(prefix), pn);
            o = escape_into(o + pn, s, ln);
            memcpy(o, PyBytes_AS_STRING(suffix), sn);
        } else {
            PyObject *js = PyObject_CallOneArg(dumps, k);
            if (js == NULL)
                return NULL;
            if (!PyBytes_Check(js)) {
                Py_DECREF(js);
                PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
                return NULL;
            }
            Py_ssize_t jn = PyBytes_GET_SIZE(js);
            fb = PyBytes_FromStringAndSize(NULL, pn + jn + sn);
            if (fb == NULL) {
                Py_DECREF(js);
                return NULL;
            }
            char *o = PyBytes_AS_STRING(fb);
            memcpy(o, PyBytes_AS_STRING(prefix), pn);
            memcpy(o + pn, PyBytes_AS_STRING(js), jn);
            memcpy(o + pn + jn, PyBytes_AS_STRING(suffix), sn);
            Py_DECREF(js);
        }
        int bad = PyDict_SetItem(cache, k, fb);
        Py_DECREF(fb);
        if (bad < 0)
            return NULL;
        added++;
    }
    return PyLong_FromSsize_t(added);
}

static PyMethodDef methods[] = {
    {"text_bytes", text_bytes, METH_O, "text_bytes(lines) -> UTF-8 size of the lines' text"},
    {"json_levels", json_levels, METH_VARARGS,
     "json_levels(lines, key_field, canonical, numeric) -> (levels, keys); None: let Python decide"},
    {"text_levels", text_levels, METH_VARARGS,
     "text_levels(lines, levels, keys, key_field, canonical) -> lines left None for Python"},
    {"line_heads", line_heads, METH_VARARGS, "line_heads(lines, table) -> indexes of lines whose first char is in table"},
    {"encode", encode, METH_VARARGS, "encode(head, lines, levels, tails, keys, fields, dumps) -> records"},
    {"encode_full", encode_full, METH_VARARGS,
     "encode_full(head, lines, levels, tails, keys, fields, dumps, stamps, heads, meta, key_field, truncated)"},
    {"msgpack_values", msgpack_values, METH_VARARGS,
     "msgpack_values(data, event_time, surrogates=True) -> (values, plain), or None: let msgpack decode it"},
    {"event_items", event_items, METH_VARARGS,
     "event_items(entries, event_time) -> [(record, ns)] of [EventTime, record] entries, or None"},
    {"uniform_columns", uniform_columns, METH_VARARGS,
     "uniform_columns(items, message_keys, level_keys, slow_keys, level_cache) -> columns, or None: let Python decide"},
    {"forward_columns", forward_columns, METH_VARARGS,
     "forward_columns(message, message_keys, level_keys, slow_keys, level_cache, max_distinct) -> (tag, option, "
     "groups), or None: let Python decide"},
    {"label_groups", label_groups, METH_VARARGS,
     "label_groups(recs, max_distinct) -> [(first, [indexes])] by labels, or None: let Python decide"},
    {"encode_raw", encode_raw, METH_O, "encode_raw(lines) -> the lines' UTF-8 bytes"},
    {"encode_logfmt", encode_logfmt, METH_VARARGS,
     "encode_logfmt(head, lines, levels, tails, keys, fields) -> logfmt records"},
    {"loki_entries", loki_entries, METH_VARARGS,
     "loki_entries(cls, values, lines, stamps, ts, levels, streams, dest) -> a chunk's Loki entries"},
    {"loki_protobuf", loki_protobuf, METH_VARARGS, "loki_protobuf(cls, streams) -> a Loki PushRequest"},
    {"bulk_body", bulk_body, METH_VARARGS,
     "bulk_body(cls, records, op_type, pipeline, doc_type, dumps) -> an Elasticsearch _bulk body"},
    {"bulk_docs", bulk_docs, METH_VARARGS,
     "bulk_docs(index, values, ids, lo, hi, op_type, pipeline, doc_type, rename, dumps) -> a _bulk body"},
    {"doc_ids_at", doc_ids_at, METH_VARARGS, "doc_ids_at(base, start, lines) -> Elasticsearch ids of lines"},
    {"kafka_fields", kafka_fields, METH_VARARGS,
     "kafka_fields(prefix, offsets, keys, stamps, dumps) -> each Kafka record's fields JSON"},
    {"doc_ids_offsets", doc_ids_offsets, METH_VARARGS,
     "doc_ids_offsets(base, offsets) -> Elasticsearch ids of Kafka records"},
    {"agent_scan", agent_scan, METH_VARARGS,
     "agent_scan(values, keys, message, time, level) -> (lines, times, levels) of uniform records, or None"},
    {"utc_stamps", utc_stamps, METH_O, "utc_stamps(texts) -> ns of agent-shaped RFC 3339 UTC stamps, or None"},
    {"all_ascii", all_ascii, METH_O, "all_ascii(lines) -> whether every item is an ASCII str"},
    {"lookup_each", lookup_each, METH_VARARGS, "lookup_each(keys, mapping) -> [mapping[k] for k in keys]"},
    {"tally", tally, METH_VARARGS, "tally(topics, values, bounds) -> ({topic: [records, bytes, le...]}, longest)"},
    {"key_fields", key_fields, METH_VARARGS,
     "key_fields(keys, cache, prefix, suffix, dumps) -> how many keys' fields objects were added to cache"},
    {"split_lines", split_lines, METH_VARARGS,
     "split_lines(data, start, end, max_line, errors) -> (lines, truncated) of a buffer's complete lines"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_speedups", "The hot path's per-line work in C (see _speedups.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    init_tables();
    init_lf_tables();
    return PyModule_Create(&moduledef);
}
