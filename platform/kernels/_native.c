/*
 * zasperhub.platform.kernels._native — the kernel -> client hot path in C.
 *
 * Why: at a few requests per second per kernel every event-loop wake-up of
 * the server runs its Python on a cold cache, and that, not the syscalls,
 * is most of the server's CPU per round trip (benchmarks/results/cpu.md).
 * A kernel's answer to one `2+2` is five messages; in Python each cost ~40
 * function calls (ZMTP frame parsing, HMAC, the JSON peeks routing needs,
 * the codec, WebSocket framing).  Here one call handles a whole read.
 *
 * What lives here, and only this:
 *   - HMAC-SHA256 of the four signed parts (SHA-256 per FIPS 180-4);
 *   - `ZmtpReader`: ZMTP 3 frames of one kernel channel after the handshake
 *     (zmtp.py does the greeting, READY, reconnects and commands);
 *   - `Router`: what kernel.py's `_on_kernel_message` does for the common
 *     messages of a ready kernel (verify, track status, route by the
 *     parent's session, deliver), reading the kernel's own Python state;
 *   - `ClientSink`: one WebSocket client's outgoing frames, encoded for its
 *     wire format (v1 offsets table or legacy JSON splice) and written once
 *     per batch through the connection's `write`.
 *
 * The rule that keeps it exact: whenever a message is anything but the
 * common case (not ready, a server-originated request in flight, a reply
 * that settles admission's bookkeeping ambiguously, no client connected,
 * a JSON field this scanner will not decode, a large message, a bad
 * signature ...), the Router hands the raw frames to the Python path
 * unchanged, which then does everything as it always has.  Both paths
 * deliver through the same per-client sink, so order is kept.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* SHA-256 and HMAC                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t fill;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_compress(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256_init(sha256_ctx *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->bytes = 0;
    c->fill = 0;
}

static void sha256_update(sha256_ctx *c, const uint8_t *data, size_t n)
{
    c->bytes += n;
    if (c->fill) {
        size_t take = 64 - c->fill < n ? 64 - c->fill : n;
        memcpy(c->block + c->fill, data, take);
        c->fill += take;
        data += take;
        n -= take;
        if (c->fill < 64)
            return;
        sha256_compress(c->h, c->block);
        c->fill = 0;
    }
    for (; n >= 64; data += 64, n -= 64)
        sha256_compress(c->h, data);
    memcpy(c->block, data, n);
    c->fill = n;
}

static void sha256_final(sha256_ctx *c, uint8_t out[32])
{
    uint64_t bits = c->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_update(c, &pad, 1);
    while (c->fill != 56)
        sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

/* The inner and outer states after the padded key: per message only the parts are hashed. */
typedef struct {
    sha256_ctx inner, outer;
} hmac_key;

static void hmac_prepare(hmac_key *k, const uint8_t *key, size_t n)
{
    uint8_t block[64] = {0}, ipad[64], opad[64];
    if (n > 64) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, key, n);
        sha256_final(&c, block);
    } else {
        memcpy(block, key, n);
    }
    for (int i = 0; i < 64; i++) {
        ipad[i] = block[i] ^ 0x36;
        opad[i] = block[i] ^ 0x5c;
    }
    sha256_init(&k->inner);
    sha256_update(&k->inner, ipad, 64);
    sha256_init(&k->outer);
    sha256_update(&k->outer, opad, 64);
}

typedef struct {
    const uint8_t *p;
    size_t n;
} span;

static void hmac_hex(const hmac_key *k, const span *parts, int count, char out[64])
{
    static const char hexdigits[] = "0123456789abcdef";
    uint8_t digest[32];
    sha256_ctx c = k->inner;
    for (int i = 0; i < count; i++)
        sha256_update(&c, parts[i].p, parts[i].n);
    sha256_final(&c, digest);
    c = k->outer;
    sha256_update(&c, digest, 32);
    sha256_final(&c, digest);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hexdigits[digest[i] >> 4];
        out[2 * i + 1] = hexdigits[digest[i] & 15];
    }
}

/* ------------------------------------------------------------------ */
/* A growable byte buffer                                               */
/* ------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
} bytebuf;

static int buf_reserve(bytebuf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(bytebuf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

/*
 * Once emptied, a buffer keeps at most 8 KiB: there is one per kernel channel
 * and per client, and with 64 kernels keeping each one's peak burst cost
 * ~6 MB of RSS (measured at 64x10); a fresh allocation per burst costs less.
 */
static void buf_shrink(bytebuf *b)
{
    if (b->len == 0 && b->cap > 8192) {
        PyMem_Free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static void buf_free(bytebuf *b)
{
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ */
/* Just enough JSON: the value of one top-level key of an object        */
/* ------------------------------------------------------------------ */

static const char *skip_ws(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    return s;
}

/* Past a string starting at its opening quote; NULL if unterminated.  `*escaped` tells whether it holds a backslash. */
static const char *skip_string(const char *s, const char *end, int *escaped)
{
    s++;
    while (s < end) {
        char ch = *s;
        if (ch == '"')
            return s + 1;
        if (ch == '\\') {
            *escaped = 1;
            s += 2;
            continue;
        }
        if ((unsigned char)ch < 0x20)
            return NULL;
        s++;
    }
    return NULL;
}

/* Past one JSON value (any kind); NULL if malformed or nested too deep. */
static const char *skip_value(const char *s, const char *end, int depth)
{
    int escaped = 0;
    if (s >= end || depth > 64)
        return NULL;
    switch (*s) {
    case '"':
        return skip_string(s, end, &escaped);
    case '{':
    case '[': {
        char close = *s == '{' ? '}' : ']';
        int object = *s == '{';
        s = skip_ws(s + 1, end);
        if (s < end && *s == close)
            return s + 1;
        for (;;) {
            if (object) {
                if (s >= end || *s != '"')
                    return NULL;
                s = skip_string(s, end, &escaped);
                if (s == NULL)
                    return NULL;
                s = skip_ws(s, end);
                if (s >= end || *s != ':')
                    return NULL;
                s = skip_ws(s + 1, end);
            }
            s = skip_value(s, end, depth + 1);
            if (s == NULL)
                return NULL;
            s = skip_ws(s, end);
            if (s >= end)
                return NULL;
            if (*s == close)
                return s + 1;
            if (*s != ',')
                return NULL;
            s = skip_ws(s + 1, end);
        }
    }
    case 't':
        return end - s >= 4 && memcmp(s, "true", 4) == 0 ? s + 4 : NULL;
    case 'f':
        return end - s >= 5 && memcmp(s, "false", 5) == 0 ? s + 5 : NULL;
    case 'n':
        return end - s >= 4 && memcmp(s, "null", 4) == 0 ? s + 4 : NULL;
    default: {
        const char *start = s;
        if (s < end && *s == '-')
            s++;
        if (s >= end || *s < '0' || *s > '9')
            return NULL;
        while (s < end && ((*s >= '0' && *s <= '9') || *s == '.' || *s == 'e' || *s == 'E' || *s == '+' || *s == '-'))
            s++;
        return s > start ? s : NULL;
    }
    }
}

#define MAX_KEYS 4

typedef struct {
    const char *name;
    size_t len;
    const char *value; /* NULL: the key is absent */
    size_t vlen;
} json_key;

/*
 * Scan one JSON object (the whole text), filling each key's raw value (the
 * last occurrence wins, as when Python parses it).  0 on success; -1 if the
 * text is not one well-formed object or a key holds an escape (the caller
 * then leaves the message to Python, which decodes it properly).
 */
static int json_scan(const char *s, size_t n, json_key *keys, int nkeys)
{
    const char *end = s + n;
    for (int i = 0; i < nkeys; i++)
        keys[i].value = NULL;
    s = skip_ws(s, end);
    if (s >= end || *s != '{')
        return -1;
    s = skip_ws(s + 1, end);
    if (s < end && *s == '}')
        return skip_ws(s + 1, end) == end ? 0 : -1;
    for (;;) {
        int escaped = 0;
        if (s >= end || *s != '"')
            return -1;
        const char *kstart = s + 1;
        s = skip_string(s, end, &escaped);
        if (s == NULL || escaped)
            return -1;
        size_t klen = (size_t)(s - 1 - kstart);
        s = skip_ws(s, end);
        if (s >= end || *s != ':')
            return -1;
        s = skip_ws(s + 1, end);
        const char *vstart = s;
        s = skip_value(s, end, 1);
        if (s == NULL)
            return -1;
        for (int i = 0; i < nkeys; i++) {
            if (keys[i].len == klen && memcmp(keys[i].name, kstart, klen) == 0) {
                keys[i].value = vstart;
                keys[i].vlen = (size_t)(s - vstart);
            }
        }
        s = skip_ws(s, end);
        if (s >= end)
            return -1;
        if (*s == '}')
            return skip_ws(s + 1, end) == end ? 0 : -1;
        if (*s != ',')
            return -1;
        s = skip_ws(s + 1, end);
    }
}

/* A raw value that is a string without escapes: its characters.  0 if so, -1 if not a plain string. */
static int plain_string(const json_key *k, const char **p, size_t *n)
{
    if (k->value == NULL || k->vlen < 2 || k->value[0] != '"')
        return -1;
    for (size_t i = 1; i + 1 < k->vlen; i++)
        if (k->value[i] == '\\')
            return -1;
    *p = k->value + 1;
    *n = k->vlen - 2;
    return 0;
}

static int span_has(span s, const char *needle)
{
    size_t n = strlen(needle);
    if (s.n < n)
        return 0;
    for (size_t i = 0; i + n <= s.n; i++)
        if (memcmp(s.p + i, needle, n) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The parts of a message handed in from Python                         */
/* ------------------------------------------------------------------ */

#define MAX_PARTS 4096
#define GATHER_STACK 16

/* A Python sequence of bytes-like parts seen as spans, without copying; `gather_release` undoes it. */
typedef struct {
    PyObject *seq;
    Py_buffer *views;
    span *spans;
    Py_ssize_t n, held;
    Py_buffer stack_views[GATHER_STACK];
    span stack_spans[GATHER_STACK];
} gathered;

static void gather_release(gathered *g)
{
    for (Py_ssize_t i = 0; i < g->held; i++)
        PyBuffer_Release(&g->views[i]);
    g->held = 0;
    if (g->views != g->stack_views)
        PyMem_Free(g->views);
    if (g->spans != g->stack_spans)
        PyMem_Free(g->spans);
    g->views = g->stack_views;
    g->spans = g->stack_spans;
    Py_CLEAR(g->seq);
}

/* 0, or -1 with an exception (not a sequence, `min`..`max` parts not met, a part not bytes-like). */
static int gather(gathered *g, PyObject *obj, Py_ssize_t min, Py_ssize_t max)
{
    g->held = 0;
    g->views = g->stack_views;
    g->spans = g->stack_spans;
    g->seq = PySequence_Fast(obj, "parts must be a sequence");
    if (g->seq == NULL)
        return -1;
    g->n = PySequence_Fast_GET_SIZE(g->seq);
    if (g->n < min || g->n > max) {
        PyErr_Format(PyExc_ValueError, "a message has %zd to %zd parts, got %zd", min, max, g->n);
        goto fail;
    }
    if (g->n > GATHER_STACK) {
        g->views = PyMem_Malloc((size_t)g->n * sizeof(Py_buffer));
        g->spans = PyMem_Malloc((size_t)g->n * sizeof(span));
        if (g->views == NULL || g->spans == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    PyObject **items = PySequence_Fast_ITEMS(g->seq);
    for (; g->held < g->n; g->held++) {
        if (PyObject_GetBuffer(items[g->held], &g->views[g->held], PyBUF_SIMPLE) < 0)
            goto fail;
        g->spans[g->held].p = g->views[g->held].buf;
        g->spans[g->held].n = (size_t)g->views[g->held].len;
    }
    return 0;
fail:
    gather_release(g);
    return -1;
}

/* ------------------------------------------------------------------ */
/* ClientSink: one WebSocket client's outgoing frames                   */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *write;      /* callable(bytes): the connection's write */
    PyObject *buffered;   /* callable() -> int: bytes accepted but not yet sent */
    PyObject *on_backlog; /* callable(int): the client is too far behind */
    Py_ssize_t limit;
    int v1;
    int closed;
    bytebuf out;
} ClientSink;

static PyTypeObject ClientSinkType;

static void put_ws_header(uint8_t *h, size_t *hl, int opcode, size_t length)
{
    h[0] = (uint8_t)(0x80 | opcode);
    if (length < 126) {
        h[1] = (uint8_t)length;
        *hl = 2;
    } else if (length <= 0xFFFF) {
        h[1] = 126;
        h[2] = (uint8_t)(length >> 8);
        h[3] = (uint8_t)length;
        *hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)length >> (56 - 8 * i));
        *hl = 10;
    }
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* v1: u64le count | offsets | channel | parts (codec_v1.py has the layout). */
static int encode_v1(bytebuf *out, const char *chan, size_t chanlen, const span *parts, int nparts)
{
    size_t count = (size_t)nparts + 2;
    size_t table = 8 * (count + 1);
    size_t body = table + chanlen;
    for (int i = 0; i < nparts; i++)
        body += parts[i].n;
    uint8_t h[10];
    size_t hl;
    put_ws_header(h, &hl, 0x2, body);
    if (buf_reserve(out, hl + body) < 0)
        return -1;
    memcpy(out->p + out->len, h, hl);
    uint8_t *t = (uint8_t *)out->p + out->len + hl;
    put_u64le(t, count);
    size_t position = table;
    put_u64le(t + 8, position);
    position += chanlen;
    put_u64le(t + 16, position);
    for (int i = 0; i < nparts; i++) {
        position += parts[i].n;
        put_u64le(t + 24 + 8 * (size_t)i, position);
    }
    char *w = (char *)t + table;
    memcpy(w, chan, chanlen);
    w += chanlen;
    for (int i = 0; i < nparts; i++) {
        memcpy(w, parts[i].p, parts[i].n);
        w += parts[i].n;
    }
    out->len += hl + body;
    return 0;
}

/* Legacy JSON: the kernel's JSON parts spliced into one object (codec_json.py has the shape). */
static int encode_legacy(bytebuf *out, const char *chan, size_t chanlen, const span *parts, int nparts,
                         span msg_id, span msg_type)
{
    static const char empty[] = "{}";
    span obj[4];
    for (int i = 0; i < 4; i++) {
        obj[i] = parts[i];
        if (obj[i].n == 0 && i > 0) {
            obj[i].p = (const uint8_t *)empty;
            obj[i].n = 2;
        }
    }
    int buffers = nparts - 4;
    const char *k_header = "{\"header\":", *k_id = ",\"msg_id\":", *k_type = ",\"msg_type\":";
    const char *k_parent = ",\"parent_header\":", *k_meta = ",\"metadata\":", *k_content = ",\"content\":";
    const char *k_chan = ",\"channel\":\"", *k_tail_buffers = "\",\"buffers\":[]}", *k_tail = "\"}";
    const char *tail = buffers > 0 ? k_tail : k_tail_buffers;
    size_t json = strlen(k_header) + obj[0].n + strlen(k_id) + msg_id.n + strlen(k_type) + msg_type.n +
                  strlen(k_parent) + obj[1].n + strlen(k_meta) + obj[2].n + strlen(k_content) + obj[3].n +
                  strlen(k_chan) + chanlen + strlen(tail);
    size_t table = 0, body = json;
    if (buffers > 0) {
        table = 4 * ((size_t)buffers + 2);
        body = table + json;
        for (int i = 4; i < nparts; i++)
            body += parts[i].n;
    }
    uint8_t h[10];
    size_t hl;
    put_ws_header(h, &hl, buffers > 0 ? 0x2 : 0x1, body);
    if (buf_reserve(out, hl + body) < 0)
        return -1;
    char *w = out->p + out->len;
    memcpy(w, h, hl);
    w += hl;
    if (buffers > 0) {
        /* nbufs counts the JSON part; offset_i is where part i starts (uint32 big-endian). */
        uint8_t *t = (uint8_t *)w;
        put_u32be(t, (uint32_t)(buffers + 1));
        size_t position = table;
        put_u32be(t + 4, (uint32_t)position);
        position += json;
        for (int i = 0; i < buffers; i++) {
            put_u32be(t + 8 + 4 * (size_t)i, (uint32_t)position);
            position += parts[4 + i].n;
        }
        w += table;
    }
#define PUT(s, n) do { memcpy(w, (s), (n)); w += (n); } while (0)
#define PUTS(s) PUT((s), strlen(s))
    PUTS(k_header);
    PUT(obj[0].p, obj[0].n);
    PUTS(k_id);
    PUT(msg_id.p, msg_id.n);
    PUTS(k_type);
    PUT(msg_type.p, msg_type.n);
    PUTS(k_parent);
    PUT(obj[1].p, obj[1].n);
    PUTS(k_meta);
    PUT(obj[2].p, obj[2].n);
    PUTS(k_content);
    PUT(obj[3].p, obj[3].n);
    PUTS(k_chan);
    PUT(chan, chanlen);
    PUTS(tail);
    for (int i = 4; i < nparts; i++)
        PUT(parts[i].p, parts[i].n);
#undef PUT
#undef PUTS
    out->len += hl + body;
    return 0;
}

static const span EMPTY_STRING_JSON = {(const uint8_t *)"\"\"", 2};

/* The raw msg_id and msg_type values of a header for the legacy splice; -1 if it will not scan. */
static int legacy_ids(span header, span *msg_id, span *msg_type)
{
    json_key keys[2] = {{"msg_id", 6, NULL, 0}, {"msg_type", 8, NULL, 0}};
    if (json_scan((const char *)header.p, header.n, keys, 2) < 0)
        return -1;
    *msg_id = keys[0].value ? (span){(const uint8_t *)keys[0].value, keys[0].vlen} : EMPTY_STRING_JSON;
    *msg_type = keys[1].value ? (span){(const uint8_t *)keys[1].value, keys[1].vlen} : EMPTY_STRING_JSON;
    return 0;
}

/* `ids`: the header's raw msg_id and msg_type (the legacy splice needs them), or NULL to scan for them here. */
static int sink_encode(ClientSink *sink, const char *chan, size_t chanlen, const span *parts, int nparts,
                       const span *ids)
{
    if (sink->v1)
        return encode_v1(&sink->out, chan, chanlen, parts, nparts);
    span scanned[2];
    if (ids == NULL) {
        ids = scanned;
        if (legacy_ids(parts[0], &scanned[0], &scanned[1]) < 0) {
            /* As codec_json: a header that does not parse gets empty ids. */
            scanned[0] = scanned[1] = EMPTY_STRING_JSON;
        }
    }
    return encode_legacy(&sink->out, chan, chanlen, parts, nparts, ids[0], ids[1]);
}

static int ClientSink_init(ClientSink *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"write", "buffered", "on_backlog", "limit", "v1", NULL};
    PyObject *write, *buffered, *on_backlog;
    Py_ssize_t limit;
    int v1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOnp", kwlist, &write, &buffered, &on_backlog, &limit, &v1))
        return -1;
    Py_INCREF(write);
    Py_INCREF(buffered);
    Py_INCREF(on_backlog);
    Py_XSETREF(self->write, write);
    Py_XSETREF(self->buffered, buffered);
    Py_XSETREF(self->on_backlog, on_backlog);
    self->limit = limit;
    self->v1 = v1;
    self->closed = 0;
    return 0;
}

/* The sink, its connection and the connection's handler refer to each other: the GC must see it. */
static int ClientSink_traverse(ClientSink *self, visitproc visit, void *arg)
{
    Py_VISIT(self->write);
    Py_VISIT(self->buffered);
    Py_VISIT(self->on_backlog);
    return 0;
}

static int ClientSink_clear(ClientSink *self)
{
    Py_CLEAR(self->write);
    Py_CLEAR(self->buffered);
    Py_CLEAR(self->on_backlog);
    return 0;
}

static void ClientSink_dealloc(ClientSink *self)
{
    PyObject_GC_UnTrack(self);
    ClientSink_clear(self);
    buf_free(&self->out);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ClientSink_deliver(ClientSink *self, PyObject *args)
{
    const char *chan;
    Py_ssize_t chanlen;
    PyObject *parts;
    if (!PyArg_ParseTuple(args, "s#O", &chan, &chanlen, &parts))
        return NULL;
    if (self->closed)
        Py_RETURN_NONE;
    gathered g;
    if (gather(&g, parts, 4, MAX_PARTS) < 0)
        return NULL;
    int rc = sink_encode(self, chan, (size_t)chanlen, g.spans, (int)g.n, NULL);
    gather_release(&g);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* One write of everything queued, then the backlog check (channels.py's policy). */
static int sink_flush(ClientSink *self)
{
    if (self->out.len == 0)
        return 0;
    if (self->closed || self->write == NULL) {
        self->out.len = 0;
        return 0;
    }
    PyObject *data = PyBytes_FromStringAndSize(self->out.p, (Py_ssize_t)self->out.len);
    self->out.len = 0;
    buf_shrink(&self->out);
    if (data == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(self->write, data);
    Py_DECREF(data);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    PyObject *pending = PyObject_CallNoArgs(self->buffered);
    if (pending == NULL)
        return -1;
    Py_ssize_t behind = PyLong_AsSsize_t(pending);
    if (behind == -1 && PyErr_Occurred()) {
        Py_DECREF(pending);
        return -1;
    }
    if (behind > self->limit) {
        r = PyObject_CallOneArg(self->on_backlog, pending);
        Py_DECREF(pending);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    Py_DECREF(pending);
    return 0;
}

static PyObject *ClientSink_flush(ClientSink *self, PyObject *Py_UNUSED(ignored))
{
    if (sink_flush(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ClientSink_close(ClientSink *self, PyObject *Py_UNUSED(ignored))
{
    self->closed = 1;
    self->out.len = 0;
    buf_shrink(&self->out);
    ClientSink_clear(self); /* nothing is written any more: let go of the connection now */
    Py_RETURN_NONE;
}

static PyObject *ClientSink_pending(ClientSink *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->out.len);
}

static PyObject *ClientSink_get_closed(ClientSink *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static PyMethodDef ClientSink_methods[] = {
    {"deliver", (PyCFunction)ClientSink_deliver, METH_VARARGS,
     "deliver(channel, parts): encode a kernel message (header, parent, metadata, content, *buffers) for this client."},
    {"flush", (PyCFunction)ClientSink_flush, METH_NOARGS, "Write everything delivered since the last flush, then check the backlog."},
    {"close", (PyCFunction)ClientSink_close, METH_NOARGS, "Drop what is queued and every later delivery."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ClientSink_getset[] = {
    {"pending", (getter)ClientSink_pending, NULL, "Bytes delivered and not flushed yet.", NULL},
    {"closed", (getter)ClientSink_get_closed, NULL, "Whether close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClientSinkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zasperhub.platform.kernels._native.ClientSink",
    .tp_basicsize = sizeof(ClientSink),
    .tp_dealloc = (destructor)ClientSink_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)ClientSink_traverse,
    .tp_clear = (inquiry)ClientSink_clear,
    .tp_doc = "ClientSink(write, buffered, on_backlog, limit, v1): one WebSocket client's outgoing kernel messages.",
    .tp_methods = ClientSink_methods,
    .tp_getset = ClientSink_getset,
    .tp_init = (initproc)ClientSink_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ */
/* Router: the kernel's common messages, as kernel.py would route them  */
/* ------------------------------------------------------------------ */

/* Interned attribute names and values, made once at import. */
static PyObject *s_connections, *s_by_session, *s_inflight, *s_silent, *s_ready, *s_value, *s_overloaded,
    *s_execution_state, *s_last_activity, *s_answered, *s_native_sink, *s_idle, *s_busy;

/* Messages whose signed parts are larger than this are verified by Python (OpenSSL is faster on bulk). */
#define LARGE_MESSAGE (256 * 1024)

typedef struct {
    PyObject_HEAD
    PyObject *kernel;   /* the ManagedKernel whose state is read and updated */
    PyObject *fallback; /* callable(channel, frames): the Python path for everything else */
    PyObject *session;  /* the server's own session id (str) */
    PyObject *on_error; /* callable(exception): a Python callback failed while routing (logged there) */
    int signing;
    hmac_key key;
    /* Counters for tests and benchmarks: messages routed here, and handed to Python. */
    unsigned long long fast, slow;
} Router;

static PyTypeObject RouterType;

static int Router_init(Router *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kernel", "key", "session", "fallback", "on_error", NULL};
    PyObject *kernel, *session, *fallback, *on_error;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oy*UOO", kwlist, &kernel, &key, &session, &fallback, &on_error))
        return -1;
    Py_INCREF(on_error);
    Py_XSETREF(self->on_error, on_error);
    Py_INCREF(kernel);
    Py_INCREF(session);
    Py_INCREF(fallback);
    Py_XSETREF(self->kernel, kernel);
    Py_XSETREF(self->session, session);
    Py_XSETREF(self->fallback, fallback);
    self->signing = key.len > 0;
    if (self->signing)
        hmac_prepare(&self->key, key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    return 0;
}

/* The kernel holds its sockets, which hold their Router, which holds the kernel. */
static int Router_traverse(Router *self, visitproc visit, void *arg)
{
    Py_VISIT(self->kernel);
    Py_VISIT(self->session);
    Py_VISIT(self->fallback);
    Py_VISIT(self->on_error);
    return 0;
}

static int Router_clear(Router *self)
{
    Py_CLEAR(self->kernel);
    Py_CLEAR(self->session);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->on_error);
    return 0;
}

static void Router_dealloc(Router *self)
{
    PyObject_GC_UnTrack(self);
    Router_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/*
 * A message's routing raised in a Python callback: the message is consumed
 * (never routed twice) and the error goes to `on_error`, as zmqio.deliver_frames
 * logs a failing handler and reads on.  -1 only if `on_error` itself failed
 * on a MemoryError or KeyboardInterrupt-like exception.
 */
static int report_error(Router *r)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(tb);
        return 0;
    }
    if (tb != NULL)
        PyException_SetTraceback(value, tb);
    int fatal = PyErr_GivenExceptionMatches(type, PyExc_MemoryError) ||
                !PyErr_GivenExceptionMatches(type, PyExc_Exception);
    if (fatal) {
        PyErr_Restore(type, value, tb);
        return -1;
    }
    PyObject *res = PyObject_CallOneArg(r->on_error, value);
    if (res == NULL)
        PyErr_WriteUnraisable(r->on_error);
    Py_XDECREF(res);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return 0;
}

/* Hand the raw frames to Python (kernel.py's full path).  -1 only if building the call failed. */
static int route_slow(Router *r, PyObject *channel, const span *frames, int nframes)
{
    r->slow++;
    PyObject *list = PyList_New(nframes);
    if (list == NULL)
        return -1;
    for (int i = 0; i < nframes; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)frames[i].p, (Py_ssize_t)frames[i].n);
        if (b == NULL) {
            Py_DECREF(list);
            return -1;
        }
        PyList_SET_ITEM(list, i, b);
    }
    PyObject *res = PyObject_CallFunctionObjArgs(r->fallback, channel, list, NULL);
    Py_DECREF(list);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* A kernel attribute that must be a dict; NULL (no exception) if it is not. */
static PyObject *kernel_dict(PyObject *kernel, PyObject *name)
{
    PyObject *d = PyObject_GetAttr(kernel, name);
    if (d == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyDict_Check(d)) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* The connection's sink if it is an open ClientSink (new reference), else NULL. */
static ClientSink *conn_sink(PyObject *conn)
{
    PyObject *s = PyObject_GetAttr(conn, s_native_sink);
    if (s == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyObject_TypeCheck(s, &ClientSinkType)) {
        Py_DECREF(s);
        return NULL;
    }
    return (ClientSink *)s;
}

static int kernel_ready(PyObject *kernel)
{
    PyObject *event = PyObject_GetAttr(kernel, s_ready);
    if (event == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *value = PyObject_GetAttr(event, s_value);
    Py_DECREF(event);
    if (value == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ready = value == Py_True;
    Py_DECREF(value);
    return ready;
}

/* Whether admission has something of this kernel's to settle (kernel.py: `_inflight or _overloaded is not None`). */
static int admission_tracking(PyObject *kernel)
{
    PyObject *inflight = kernel_dict(kernel, s_inflight);
    if (inflight == NULL)
        return 1; /* unknown: let Python decide */
    Py_ssize_t n = PyDict_GET_SIZE(inflight);
    Py_DECREF(inflight);
    if (n)
        return 1;
    PyObject *over = PyObject_GetAttr(kernel, s_overloaded);
    if (over == NULL) {
        PyErr_Clear();
        return 1;
    }
    int tracking = over != Py_None;
    Py_DECREF(over);
    return tracking;
}

static int set_last_activity(PyObject *kernel)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    PyObject *now = PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec / 1e9);
    if (now == NULL)
        return -1;
    int rc = PyObject_SetAttr(kernel, s_last_activity, now);
    Py_DECREF(now);
    return rc;
}

#define MAX_SINKS 256

/* Every open client's sink, or -1 if any client has none (then Python delivers). */
static int all_sinks(PyObject *connections, ClientSink **sinks, int *count)
{
    Py_ssize_t pos = 0;
    PyObject *key, *conn;
    int n = 0;
    while (PyDict_Next(connections, &pos, &key, &conn)) {
        ClientSink *s = conn_sink(conn);
        if (s == NULL || n >= MAX_SINKS) {
            Py_XDECREF(s);
            for (int i = 0; i < n; i++)
                Py_DECREF(sinks[i]);
            return -1;
        }
        sinks[n++] = s;
    }
    *count = n;
    return 0;
}

static int string_equals(PyObject *str, const char *p, size_t n)
{
    Py_ssize_t len;
    const char *u = PyUnicode_AsUTF8AndSize(str, &len);
    if (u == NULL) {
        PyErr_Clear();
        return 0;
    }
    return (size_t)len == n && memcmp(u, p, n) == 0;
}

/*
 * One complete message from the kernel: `frames` are the ZMTP frames.  Routed
 * here when it is a common message of a ready kernel, else handed to Python.
 * Returns -1 with an exception only for failures of Python calls.
 */
static int route_message(Router *r, PyObject *channel, int iopub, int shell, const span *frames, int nframes)
{
    if (r->kernel == NULL || r->fallback == NULL)
        return 0; /* cleared by the GC: its kernel is gone */
    int delim = -1;
    for (int i = 0; i < nframes; i++) {
        if (frames[i].n == 9 && memcmp(frames[i].p, "<IDS|MSG>", 9) == 0) {
            delim = i;
            break;
        }
    }
    if (delim < 0 || nframes - delim - 1 < 5)
        return route_slow(r, channel, frames, nframes);
    const span sig = frames[delim + 1];
    const span *parts = frames + delim + 2;
    int nparts = nframes - delim - 2;
    PyObject *kernel = r->kernel;

    size_t signed_size = parts[0].n + parts[1].n + parts[2].n + parts[3].n;
    if (signed_size > LARGE_MESSAGE || !kernel_ready(kernel))
        return route_slow(r, channel, frames, nframes);
    PyObject *silent = kernel_dict(kernel, s_silent);
    if (silent == NULL || PyDict_GET_SIZE(silent)) {
        Py_XDECREF(silent);
        return route_slow(r, channel, frames, nframes);
    }
    Py_DECREF(silent);
    if (r->signing) {
        char hex[64];
        hmac_hex(&r->key, parts, 4, hex);
        unsigned diff = sig.n != 64;
        for (size_t i = 0; i < 64 && i < sig.n; i++)
            diff |= (unsigned)(hex[i] ^ sig.p[i]);
        if (diff)
            return route_slow(r, channel, frames, nframes); /* Python logs and drops it */
    }

    json_key hkeys[2] = {{"msg_type", 8, NULL, 0}, {"msg_id", 6, NULL, 0}};
    if (json_scan((const char *)parts[0].p, parts[0].n, hkeys, 2) < 0)
        return route_slow(r, channel, frames, nframes);
    /* msg_id, msg_type as written, for the legacy splice (codec_json.py puts "" for a missing one). */
    span ids[2] = {hkeys[1].value ? (span){(const uint8_t *)hkeys[1].value, hkeys[1].vlen} : EMPTY_STRING_JSON,
                   hkeys[0].value ? (span){(const uint8_t *)hkeys[0].value, hkeys[0].vlen} : EMPTY_STRING_JSON};

    ClientSink *sinks[MAX_SINKS];
    int nsinks = 0;
    PyObject *new_state = NULL;  /* iopub status: the execution_state to record */
    PyObject *answered_id = NULL; /* shell execute_reply that admission is waiting for: its parent msg_id */
    int answered = 0;
    const char *ty;
    size_t tyn;
    if (hkeys[0].value != NULL && hkeys[0].value[0] == '"' && plain_string(&hkeys[0], &ty, &tyn) < 0)
        return route_slow(r, channel, frames, nframes); /* an escaped msg_type: Python decodes it */
    int is_status = plain_string(&hkeys[0], &ty, &tyn) == 0 && tyn == 6 && memcmp(ty, "status", 6) == 0;

    if (iopub) {
        if (is_status) {
            json_key ckeys[1] = {{"execution_state", 15, NULL, 0}};
            if (json_scan((const char *)parts[3].p, parts[3].n, ckeys, 1) < 0)
                return route_slow(r, channel, frames, nframes);
            const char *st;
            size_t stn;
            if (ckeys[0].value != NULL && ckeys[0].value[0] == '"') {
                if (plain_string(&ckeys[0], &st, &stn) < 0)
                    return route_slow(r, channel, frames, nframes);
                if (stn == 4 && memcmp(st, "idle", 4) == 0) {
                    /* An idle may settle an execute_request admission tracks: Python's rules. */
                    if (admission_tracking(kernel))
                        return route_slow(r, channel, frames, nframes);
                    new_state = s_idle;
                    Py_INCREF(new_state);
                } else if (stn == 4 && memcmp(st, "busy", 4) == 0) {
                    new_state = s_busy;
                    Py_INCREF(new_state);
                } else {
                    new_state = PyUnicode_DecodeUTF8(st, (Py_ssize_t)stn, NULL);
                    if (new_state == NULL) {
                        PyErr_Clear();
                        return route_slow(r, channel, frames, nframes);
                    }
                }
            }
        }
        PyObject *connections = kernel_dict(kernel, s_connections);
        if (connections == NULL || PyDict_GET_SIZE(connections) == 0 || all_sinks(connections, sinks, &nsinks) < 0) {
            Py_XDECREF(connections);
            Py_XDECREF(new_state);
            return route_slow(r, channel, frames, nframes); /* replay buffer, or a client Python writes to */
        }
        Py_DECREF(connections);
    } else {
        PyObject *session = NULL;
        int parent_nonempty = 0;
        json_key pkeys[2] = {{"session", 7, NULL, 0}, {"msg_id", 6, NULL, 0}};
        if (parts[1].n > 2) {
            if (json_scan((const char *)parts[1].p, parts[1].n, pkeys, 2) < 0)
                return route_slow(r, channel, frames, nframes);
            /* `{}` with spaces is still empty to Python. */
            const char *q = skip_ws((const char *)parts[1].p + 1, (const char *)parts[1].p + parts[1].n);
            parent_nonempty = *q != '}';
            if (pkeys[0].value != NULL && pkeys[0].value[0] == '"') {
                const char *sp;
                size_t sn;
                if (plain_string(&pkeys[0], &sp, &sn) < 0)
                    return route_slow(r, channel, frames, nframes);
                if (string_equals(r->session, sp, sn))
                    return route_slow(r, channel, frames, nframes); /* the server's own request */
                session = PyUnicode_DecodeUTF8(sp, (Py_ssize_t)sn, NULL);
                if (session == NULL) {
                    PyErr_Clear();
                    return route_slow(r, channel, frames, nframes);
                }
            }
        }
        if (parent_nonempty && shell && span_has(parts[0], "execute_reply") && admission_tracking(kernel)) {
            const char *ip;
            size_t in;
            if (pkeys[1].value == NULL) {
                answered_id = Py_None;
                Py_INCREF(answered_id);
            } else if (plain_string(&pkeys[1], &ip, &in) == 0) {
                answered_id = PyUnicode_DecodeUTF8(ip, (Py_ssize_t)in, NULL);
            }
            if (answered_id == NULL) {
                PyErr_Clear();
                Py_XDECREF(session);
                return route_slow(r, channel, frames, nframes);
            }
            answered = 1;
        }
        ClientSink *target = NULL;
        if (session != NULL) {
            PyObject *by_session = kernel_dict(kernel, s_by_session);
            PyObject *conn = by_session != NULL ? PyDict_GetItemWithError(by_session, session) : NULL;
            if (conn == NULL && PyErr_Occurred())
                PyErr_Clear();
            if (conn != NULL) {
                target = conn_sink(conn);
                if (target == NULL) {
                    Py_XDECREF(by_session);
                    Py_DECREF(session);
                    Py_XDECREF(answered_id);
                    return route_slow(r, channel, frames, nframes);
                }
            }
            Py_XDECREF(by_session);
            Py_DECREF(session);
        }
        if (target != NULL) {
            sinks[0] = target;
            nsinks = 1;
        } else {
            PyObject *connections = kernel_dict(kernel, s_connections);
            if (connections == NULL || PyDict_GET_SIZE(connections) == 0 ||
                all_sinks(connections, sinks, &nsinks) < 0) {
                Py_XDECREF(connections);
                Py_XDECREF(answered_id);
                return route_slow(r, channel, frames, nframes);
            }
            Py_DECREF(connections);
        }
    }

    r->fast++;
    int rc = set_last_activity(kernel);
    if (rc == 0 && new_state != NULL)
        rc = PyObject_SetAttr(kernel, s_execution_state, new_state);
    Py_XDECREF(new_state);
    Py_ssize_t chanlen;
    const char *chan = PyUnicode_AsUTF8AndSize(channel, &chanlen);
    for (int i = 0; i < nsinks; i++) {
        if (rc == 0 && chan != NULL && !sinks[i]->closed)
            rc = sink_encode(sinks[i], chan, (size_t)chanlen, parts, nparts, ids);
        Py_DECREF(sinks[i]);
    }
    if (chan == NULL)
        rc = -1;
    if (rc == 0 && answered) {
        /* After delivery, as kernel.py: a failed cell's reply reaches its client before the `aborted` answers. */
        PyObject *hdr = PyBytes_FromStringAndSize((const char *)parts[0].p, (Py_ssize_t)parts[0].n);
        PyObject *content = PyBytes_FromStringAndSize((const char *)parts[3].p, (Py_ssize_t)parts[3].n);
        PyObject *res = NULL;
        if (hdr != NULL && content != NULL)
            res = PyObject_CallMethodObjArgs(kernel, s_answered, answered_id, hdr, content, NULL);
        Py_XDECREF(hdr);
        Py_XDECREF(content);
        if (res == NULL)
            rc = -1;
        Py_XDECREF(res);
    }
    Py_XDECREF(answered_id);
    return rc;
}

static PyObject *Router_counts(Router *self, void *Py_UNUSED(closure))
{
    return Py_BuildValue("(KK)", self->fast, self->slow);
}

static PyGetSetDef Router_getset[] = {
    {"counts", (getter)Router_counts, NULL, "(messages routed here, messages handed to Python)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RouterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zasperhub.platform.kernels._native.Router",
    .tp_basicsize = sizeof(Router),
    .tp_dealloc = (destructor)Router_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Router_traverse,
    .tp_clear = (inquiry)Router_clear,
    .tp_doc = "Router(kernel, key, session, fallback): routes one kernel's common messages to its clients' sinks.",
    .tp_getset = Router_getset,
    .tp_init = (initproc)Router_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ */
/* ZmtpReader: one channel's frames after the handshake                 */
/* ------------------------------------------------------------------ */

#define ZMTP_MORE 0x01
#define ZMTP_LONG 0x02
#define ZMTP_COMMAND 0x04
#define MAX_FRAME ((uint64_t)1 << 32)

typedef struct {
    PyObject_HEAD
    Router *router;
    PyObject *channel;    /* str */
    PyObject *on_command; /* callable(body: bytes) for ZMTP commands (PING, ERROR ...) */
    int iopub, shell;
    int busy;             /* inside feed: a nested call only appends */
    int closed;           /* close(): nothing more is routed, even from a batch being parsed */
    bytebuf in;
    span *frames;         /* offsets into `in` while a message is being assembled (p holds the offset) */
    int nframes, capframes;
} ZmtpReader;

static PyTypeObject ZmtpReaderType;

static int ZmtpReader_init(ZmtpReader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"router", "channel", "on_command", NULL};
    PyObject *router, *channel, *on_command;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!UO", kwlist, &RouterType, &router, &channel, &on_command))
        return -1;
    Py_INCREF(router);
    Py_INCREF(channel);
    Py_INCREF(on_command);
    Py_XSETREF(self->router, (Router *)router);
    Py_XSETREF(self->channel, channel);
    Py_XSETREF(self->on_command, on_command);
    self->iopub = string_equals(channel, "iopub", 5);
    self->shell = string_equals(channel, "shell", 5);
    return 0;
}

static int ZmtpReader_traverse(ZmtpReader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->router);
    Py_VISIT(self->channel);
    Py_VISIT(self->on_command);
    return 0;
}

static int ZmtpReader_clear(ZmtpReader *self)
{
    Py_CLEAR(self->router);
    Py_CLEAR(self->channel);
    Py_CLEAR(self->on_command);
    return 0;
}

static void ZmtpReader_dealloc(ZmtpReader *self)
{
    PyObject_GC_UnTrack(self);
    ZmtpReader_clear(self);
    buf_free(&self->in);
    PyMem_Free(self->frames);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ProtocolError;

/*
 * Parse and route every complete message in the buffer.  Frame positions are
 * kept as offsets: a Python callback may append to the buffer (a nested feed)
 * and move it.  Returns the bytes consumed, or -1 with an exception.
 */
static Py_ssize_t reader_drain(ZmtpReader *self)
{
    size_t pos = 0, msg_start = 0;
    self->nframes = 0;
    for (;;) {
        size_t avail = self->in.len - pos;
        const uint8_t *b = (const uint8_t *)self->in.p + pos;
        if (avail < 2)
            break;
        uint8_t flags = b[0];
        uint64_t length;
        size_t head;
        if (flags & ZMTP_LONG) {
            if (avail < 9)
                break;
            length = 0;
            for (int i = 1; i <= 8; i++)
                length = length << 8 | b[i];
            if (length > MAX_FRAME) {
                PyErr_Format(ProtocolError, "frame of %llu bytes", (unsigned long long)length);
                return -1;
            }
            head = 9;
        } else {
            length = b[1];
            head = 2;
        }
        if (avail - head < length)
            break;
        size_t body = pos + head;
        pos = body + (size_t)length;
        if (flags & ZMTP_COMMAND) {
            if (self->nframes) {
                PyErr_SetString(ProtocolError, "command frame inside a multipart message");
                return -1;
            }
            PyObject *cmd = PyBytes_FromStringAndSize(self->in.p + body, (Py_ssize_t)length);
            if (cmd == NULL)
                return -1;
            PyObject *res = PyObject_CallOneArg(self->on_command, cmd);
            Py_DECREF(cmd);
            if (res == NULL)
                return -1;
            Py_DECREF(res);
            msg_start = pos;
            if (self->closed)
                break;
            continue;
        }
        if (self->nframes >= self->capframes) {
            int cap = self->capframes ? self->capframes * 2 : 16;
            if (cap > 65536) {
                PyErr_SetString(ProtocolError, "message with more than 65536 frames");
                return -1;
            }
            span *f = PyMem_Realloc(self->frames, (size_t)cap * sizeof(span));
            if (f == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->frames = f;
            self->capframes = cap;
        }
        self->frames[self->nframes].p = (const uint8_t *)(uintptr_t)body;
        self->frames[self->nframes].n = (size_t)length;
        self->nframes++;
        if (flags & ZMTP_MORE)
            continue;
        /* A complete message: turn offsets into pointers for this call only. */
        int n = self->nframes;
        span stack[16];
        span *frames = n <= 16 ? stack : PyMem_Malloc((size_t)n * sizeof(span));
        if (frames == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < n; i++) {
            frames[i].p = (const uint8_t *)self->in.p + (uintptr_t)self->frames[i].p;
            frames[i].n = self->frames[i].n;
        }
        self->nframes = 0;
        int rc = route_message(self->router, self->channel, self->iopub, self->shell, frames, n);
        if (frames != stack)
            PyMem_Free(frames);
        msg_start = pos;
        if (rc < 0 && report_error(self->router) < 0)
            return -1;
        if (self->closed)
            break; /* a callback closed the channel (a restart, a shutdown): drop the rest, as zmtp.py did */
    }
    self->nframes = 0;
    return (Py_ssize_t)msg_start;
}

static PyObject *ZmtpReader_feed(ZmtpReader *self, PyObject *arg)
{
    if (self->router == NULL || self->on_command == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the reader was cleared");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = buf_put(&self->in, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    if (rc < 0)
        return NULL;
    if (self->busy || self->closed)
        Py_RETURN_NONE; /* the outer feed parses it; or nothing is routed any more */
    self->busy = 1;
    Py_ssize_t consumed;
    for (;;) {
        size_t before = self->in.len;
        consumed = reader_drain(self);
        if (consumed < 0)
            break;
        if (self->closed) {
            self->in.len = 0;
            break;
        }
        memmove(self->in.p, self->in.p + consumed, self->in.len - (size_t)consumed);
        self->in.len -= (size_t)consumed;
        /* A nested feed appended while we routed: parse that too. */
        if (self->in.len == before - (size_t)consumed)
            break;
    }
    buf_shrink(&self->in);
    self->busy = 0;
    if (consumed < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ZmtpReader_close(ZmtpReader *self, PyObject *Py_UNUSED(ignored))
{
    self->closed = 1;
    if (!self->busy)
        self->in.len = 0; /* inside feed, the feed drops it on its way out */
    Py_RETURN_NONE;
}

static PyObject *ZmtpReader_buffered(ZmtpReader *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->in.len);
}

static PyMethodDef ZmtpReader_methods[] = {
    {"feed", (PyCFunction)ZmtpReader_feed, METH_O,
     "feed(data): add bytes read from the connection; route every complete message.  Raises ProtocolError."},
    {"close", (PyCFunction)ZmtpReader_close, METH_NOARGS, "Route nothing more (the rest of a batch being parsed included)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ZmtpReader_getset[] = {
    {"buffered", (getter)ZmtpReader_buffered, NULL, "Bytes of an incomplete message held.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ZmtpReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zasperhub.platform.kernels._native.ZmtpReader",
    .tp_basicsize = sizeof(ZmtpReader),
    .tp_dealloc = (destructor)ZmtpReader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)ZmtpReader_traverse,
    .tp_clear = (inquiry)ZmtpReader_clear,
    .tp_doc = "ZmtpReader(router, channel, on_command): one kernel channel's ZMTP frames after the handshake.",
    .tp_methods = ZmtpReader_methods,
    .tp_getset = ZmtpReader_getset,
    .tp_init = (initproc)ZmtpReader_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ */
/* module                                                               */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Client -> kernel: signing and ZMTP framing of one message            */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    hmac_key key;
} Hmac;

static int Hmac_init(Hmac *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key", NULL};
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*", kwlist, &key))
        return -1;
    hmac_prepare(&self->key, key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    return 0;
}

static PyObject *Hmac_sign(Hmac *self, PyObject *arg)
{
    /* sign(parts) -> hex of header, parent, metadata, content; None when they are large (OpenSSL is faster there). */
    gathered g;
    if (gather(&g, arg, 4, MAX_PARTS) < 0)
        return NULL;
    PyObject *result;
    if (g.spans[0].n + g.spans[1].n + g.spans[2].n + g.spans[3].n > LARGE_MESSAGE) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        char hex[64];
        hmac_hex(&self->key, g.spans, 4, hex);
        result = PyBytes_FromStringAndSize(hex, 64);
    }
    gather_release(&g);
    return result;
}

static PyMethodDef Hmac_methods[] = {
    {"sign", (PyCFunction)Hmac_sign, METH_O,
     "sign(parts) -> hex HMAC-SHA256 of the first four parts, or None when they exceed 256 KiB."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HmacType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zasperhub.platform.kernels._native.Hmac",
    .tp_basicsize = sizeof(Hmac),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Hmac(key): HMAC-SHA256 with the key's padding hashed once.",
    .tp_methods = Hmac_methods,
    .tp_init = (initproc)Hmac_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *native_zmtp_message(PyObject *Py_UNUSED(module), PyObject *arg)
{
    /* zmtp_message(parts) -> the parts as ZMTP 3 frames (MORE on all but the last), one bytes object. */
    gathered g;
    if (gather(&g, arg, 1, MAX_PARTS) < 0)
        return NULL;
    size_t total = 0;
    for (Py_ssize_t i = 0; i < g.n; i++)
        total += (g.spans[i].n > 255 ? 9 : 2) + g.spans[i].n;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (result != NULL) {
        uint8_t *w = (uint8_t *)PyBytes_AS_STRING(result);
        for (Py_ssize_t i = 0; i < g.n; i++) {
            uint64_t len = g.spans[i].n;
            uint8_t more = i + 1 < g.n ? ZMTP_MORE : 0;
            if (len > 255) {
                *w++ = more | ZMTP_LONG;
                for (int b = 7; b >= 0; b--)
                    *w++ = (uint8_t)(len >> (8 * b));
            } else {
                *w++ = more;
                *w++ = (uint8_t)len;
            }
            memcpy(w, g.spans[i].p, (size_t)len);
            w += len;
        }
    }
    gather_release(&g);
    return result;
}

/* ------------------------------------------------------------------ */
/* Client -> server: the common WebSocket frame and the v1 decode       */
/* ------------------------------------------------------------------ */

static PyObject *native_ws_message(PyObject *Py_UNUSED(module), PyObject *args)
{
    /*
     * ws_message(data, max_size) -> str | bytes | None.  The message when
     * `data` is exactly one final, masked text or binary frame within
     * `max_size` (and, for text, valid UTF-8): the usual client frame.
     * None for anything else, which ws_direct.py parses (and rejects) itself.
     */
    Py_buffer b;
    Py_ssize_t max_size;
    if (!PyArg_ParseTuple(args, "y*n", &b, &max_size))
        return NULL;
    const uint8_t *p = b.buf;
    size_t n = (size_t)b.len, head = 6;
    PyObject *result = NULL;
    if (n < 6 || (p[0] & 0xF0) != 0x80 || !(p[1] & 0x80) || ((p[0] & 0x0F) != 1 && (p[0] & 0x0F) != 2))
        goto none;
    uint64_t length = p[1] & 0x7F;
    if (length == 126) {
        head = 8;
        if (n < head)
            goto none;
        length = (uint64_t)p[2] << 8 | p[3];
    } else if (length == 127) {
        head = 14;
        if (n < head)
            goto none;
        length = 0;
        for (int i = 2; i < 10; i++)
            length = length << 8 | p[i];
    }
    if (length > (uint64_t)max_size || head + length != n)
        goto none;
    const uint8_t *mask = p + head - 4;
    PyObject *payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
    if (payload == NULL)
        goto done;
    uint8_t *w = (uint8_t *)PyBytes_AS_STRING(payload);
    const uint8_t *src = p + head;
    for (size_t i = 0; i < length; i++)
        w[i] = src[i] ^ mask[i & 3];
    if ((p[0] & 0x0F) == 2) {
        result = payload;
        goto done;
    }
    result = PyUnicode_DecodeUTF8((const char *)w, (Py_ssize_t)length, NULL);
    Py_DECREF(payload);
    if (result == NULL) {
        PyErr_Clear(); /* not UTF-8: ws_direct.py closes with 1007 */
        goto none;
    }
    goto done;
none:
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&b);
    return result;
}

static PyObject *native_v1_decode(PyObject *Py_UNUSED(module), PyObject *arg)
{
    /*
     * v1_decode(frame) -> (channel, [header, parent, metadata, content, *buffers]) | None.
     * None for anything codec_v1.py would reject, and for frames with large
     * buffers (the Python decoder hands those out without copying).
     */
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = b.buf;
    size_t size = (size_t)b.len;
    PyObject *result = NULL, *parts = NULL, *channel = NULL;
    if (size < 8)
        goto none;
    uint64_t count = 0;
    for (int i = 7; i >= 0; i--)
        count = count << 8 | p[i];
    if (count < 6 || count > MAX_PARTS || 8 * (count + 1) > size)
        goto none;
    uint64_t offsets[MAX_PARTS];
    uint64_t previous = 8 * (count + 1);
    for (uint64_t k = 0; k < count; k++) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | p[8 + 8 * k + (uint64_t)i];
        if (v < previous || v > size)
            goto none;
        offsets[k] = previous = v;
    }
    const char *chan = (const char *)p + offsets[0];
    size_t chanlen = (size_t)(offsets[1] - offsets[0]);
    static const char *channels[] = {"shell", "control", "stdin", "iopub"};
    for (int i = 0; i < 4; i++)
        if (strlen(channels[i]) == chanlen && memcmp(channels[i], chan, chanlen) == 0)
            channel = PyUnicode_FromStringAndSize(chan, (Py_ssize_t)chanlen);
    if (channel == NULL) {
        if (PyErr_Occurred())
            goto done;
        goto none;
    }
    if (size - offsets[5] > 65536) {
        Py_CLEAR(channel);
        goto none;
    }
    parts = PyList_New((Py_ssize_t)count - 2);
    if (parts == NULL)
        goto done;
    for (uint64_t k = 1; k + 1 < count; k++) {
        PyObject *part = PyBytes_FromStringAndSize((const char *)p + offsets[k], (Py_ssize_t)(offsets[k + 1] - offsets[k]));
        if (part == NULL)
            goto done;
        PyList_SET_ITEM(parts, (Py_ssize_t)k - 1, part);
    }
    result = PyTuple_Pack(2, channel, parts);
    goto done;
none:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(channel);
    Py_XDECREF(parts);
    PyBuffer_Release(&b);
    return result;
}

static PyMethodDef module_methods[] = {
    {"ws_message", native_ws_message, METH_VARARGS,
     "ws_message(data, max_size) -> the message of exactly one final masked data frame, else None."},
    {"v1_decode", native_v1_decode, METH_O, "v1_decode(frame) -> (channel, parts) for a valid v1 frame, else None."},
    {"zmtp_message", native_zmtp_message, METH_O, "zmtp_message(parts) -> bytes: one multipart message as ZMTP 3 frames."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native",
    "The kernel -> client hot path in C (see the comment at the top of _native.c).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&ClientSinkType) < 0 || PyType_Ready(&RouterType) < 0 || PyType_Ready(&ZmtpReaderType) < 0 ||
        PyType_Ready(&HmacType) < 0)
        return NULL;
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_connections, "_connections");
    INTERN(s_by_session, "_by_session");
    INTERN(s_inflight, "_inflight");
    INTERN(s_silent, "_silent");
    INTERN(s_ready, "_ready");
    INTERN(s_value, "_value");
    INTERN(s_overloaded, "_overloaded");
    INTERN(s_execution_state, "execution_state");
    INTERN(s_last_activity, "last_activity");
    INTERN(s_answered, "_answered");
    INTERN(s_native_sink, "native_sink");
    INTERN(s_idle, "idle");
    INTERN(s_busy, "busy");
#undef INTERN
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    ProtocolError = PyErr_NewException("zasperhub.platform.kernels._native.ProtocolError", PyExc_ValueError, NULL);
    if (ProtocolError == NULL)
        return NULL;
    Py_INCREF(&ClientSinkType);
    Py_INCREF(&RouterType);
    Py_INCREF(&ZmtpReaderType);
    Py_INCREF(&HmacType);
    if (PyModule_AddObject(m, "Hmac", (PyObject *)&HmacType) < 0 ||
        PyModule_AddObject(m, "ClientSink", (PyObject *)&ClientSinkType) < 0 ||
        PyModule_AddObject(m, "Router", (PyObject *)&RouterType) < 0 ||
        PyModule_AddObject(m, "ZmtpReader", (PyObject *)&ZmtpReaderType) < 0 ||
        PyModule_AddObject(m, "ProtocolError", ProtocolError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
