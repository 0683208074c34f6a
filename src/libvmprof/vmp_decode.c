/* vmp_decode.c - the record decoder (contract in vmp_decode.h). */
#include "vmp_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_array.h"
#include "vmp_format.h"
#include "vmp_hash.h"

typedef struct vmp_decoder {
    vmp_source *src;
    vmp_profile *p;
    vmp_profile_summary *s;
    vmp_error *err;
    int strict;
    int w, a;          /* word and address size */
    int seen_header;
    vmp_frame *frames; /* one stack, reused */
    size_t frames_cap;
    /* Fast path: stacks seen before, found by a hash of their raw bytes. */
    struct seen_slot *seen;
    size_t seen_cap, seen_len;
    int full_hash;                  /* sampled hashing collided too often */
    uint64_t lookups, collisions;
    struct raw_chunk *raw_chunks;   /* where the copies live */
    size_t raw_used, raw_total;
    /* where decoding stands, so that it can resume when more bytes arrive */
    int started;  /* the static header is read */
    int stopped;  /* the trailer, the end of the input or an error */
    int push;     /* bytes are pushed (vmp_decoder_push): a cut record waits */
    vmp_source push_src;
    unsigned char *pending; /* push: the bytes of an incomplete record */
    size_t pending_len, pending_cap;
    vmp_read_options options;
    /* told of each STACKTRACE record (vmp_decoder_observe) */
    vmp_stack_observer observe;
    void *observe_ctx;
    uint32_t raw_ids; /* raw copies made so far: the next one's id */
} decoder;

/* One entry of the seen-stacks table; one cache line serves a probe. */
struct seen_slot {
    uint64_t hash;
    const unsigned char *raw; /* a copy of the raw bytes, or NULL */
    uint32_t raw_len;
    uint32_t stack;           /* UINT32_MAX: a free slot */
    uint32_t raw_id;          /* the copy's id for an observer (VMP_NO_STACK_ID: none) */
};

/* Raw copies make recognising a stack one memcmp; their total is capped so a
 * file of all-distinct stacks costs no more than this extra. */
#define RAW_COPY_LIMIT (32u << 20)
#define RAW_CHUNK (1u << 20)

struct raw_chunk {
    struct raw_chunk *next;
    unsigned char data[RAW_CHUNK];
};

static const unsigned char *raw_copy(decoder *d, const unsigned char *q, size_t n)
{
    if (n > RAW_CHUNK || d->raw_total + n > RAW_COPY_LIMIT)
        return NULL;
    if (!d->raw_chunks || RAW_CHUNK - d->raw_used < n) {
        struct raw_chunk *c = malloc(sizeof *c);
        if (!c)
            return NULL;
        c->next = d->raw_chunks;
        d->raw_chunks = c;
        d->raw_used = 0;
    }
    unsigned char *dst = d->raw_chunks->data + d->raw_used;
    memcpy(dst, q, n);
    d->raw_used += n;
    d->raw_total += n;
    return dst;
}

static inline uint64_t get(const unsigned char *p, int size)
{
    if (size == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A word as the signed C long the writer stored. */
static inline int64_t get_signed(const unsigned char *p, int size)
{
    if (size == 8)
        return (int64_t)get(p, 8);
    return (int32_t)(uint32_t)get(p, 4);
}

static const char *tag_name(int tag)
{
    switch (tag) {
    case VMP_TAG_STACKTRACE: return "STACKTRACE";
    case VMP_TAG_VIRTUAL_IP: return "VIRTUAL_IP";
    case VMP_TAG_TRAILER: return "TRAILER";
    case VMP_TAG_HEADER: return "HEADER";
    case VMP_TAG_TIME_N_ZONE: return "TIME_N_ZONE";
    case VMP_TAG_META: return "META";
    case VMP_TAG_NATIVE_SYMBOLS: return "NATIVE_SYMBOLS";
    default: return "unknown";
    }
}

/* Outcome of asking for the rest of a record. */
enum { GOT = 0, CUT = 1, FAILED = -1 };

static int need(decoder *d, size_t n, const unsigned char **out)
{
    size_t avail = 0;
    *out = vmp_source_peek(d->src, n, &avail, d->err);
    if (*out)
        return GOT;
    return avail == SIZE_MAX ? FAILED : CUT;
}

static int fail(decoder *d, uint64_t at, const char *what)
{
    return vmp_error_set(d->err, (int64_t)at, "at byte %llu: %s", (unsigned long long)at, what);
}

static int read_static_header(decoder *d)
{
    const unsigned char *p;
    size_t avail = 0;
    p = vmp_source_peek(d->src, 8, &avail, d->err);
    if (!p) {
        if (avail == SIZE_MAX)
            return -1;
        if (avail == 0)
            return vmp_error_set(d->err, 0, "at byte 0: the file is empty, not a vmprof "
                                            "profile (the profiled program may have failed "
                                            "before it started sampling)");
        return vmp_error_set(d->err, 0, "at byte 0: only %zu bytes, too short for a vmprof "
                                        "profile's static header", avail);
    }
    static const unsigned char zero[8];
    int w;
    if (memcmp(p, zero, 4) == 0 && p[4] == 3 && memcmp(p + 5, zero, 3) == 0) {
        w = 4;
    } else if (memcmp(p, zero, 7) == 0 && p[7] == 3) {
        return vmp_error_set(d->err, 0, "at byte 0: this is a big-endian profile (4-byte "
                                        "words); only little-endian profiles can be read");
    } else if (memcmp(p, zero, 8) == 0) {
        p = vmp_source_peek(d->src, 16, &avail, d->err);
        if (!p && avail == SIZE_MAX)
            return -1;
        if (p && p[8] == 3 && memcmp(p + 9, zero, 7) == 0) {
            w = 8;
        } else if (p && p[15] == 3 && memcmp(p + 8, zero, 7) == 0) {
            return vmp_error_set(d->err, 0, "at byte 0: this is a big-endian profile "
                                            "(8-byte words); only little-endian profiles "
                                            "can be read");
        } else {
            return vmp_error_set(d->err, 0, "at byte 0: not a vmprof profile (the second "
                                            "word of the static header is not 3)");
        }
    } else {
        return vmp_error_set(d->err, 0, "at byte 0: not a vmprof profile (it does not start "
                                        "with the static header 0, 3, 0)");
    }
    size_t hs = (size_t)VMP_STATIC_HEADER_WORDS * (size_t)w;
    p = vmp_source_peek(d->src, hs, &avail, d->err);
    if (!p) {
        if (avail == SIZE_MAX)
            return -1;
        return vmp_error_set(d->err, (int64_t)avail, "at byte %zu: the file ends inside the "
                             "static header (%zu of %zu bytes)", avail, avail, hs);
    }
    if (get(p + 2 * w, w) != 0)
        return fail(d, 2 * (uint64_t)w, "not a vmprof profile (static header word 2 is not 0)");
    uint64_t flag = get(p + 4 * w, w);
    if (flag > 1)
        return fail(d, 4 * (uint64_t)w, "not a vmprof profile (static header word 4 is "
                                        "neither 0 nor 1)");
    d->w = w;
    d->a = (w == 4 && flag == 1) ? 8 : w; /* 64-bit Windows: 8-byte addresses */
    d->s->word_size = d->w;
    d->s->addr_size = d->a;
    d->s->period_usec = get(p + 3 * w, w);
    vmp_source_consume(d->src, hs);
    return 0;
}

static int frames_room(decoder *d, size_t n)
{
    if (n <= d->frames_cap)
        return 0;
    size_t cap = d->frames_cap ? d->frames_cap : 64;
    while (cap < n)
        cap *= 2;
    vmp_frame *f = realloc(d->frames, cap * sizeof *f);
    if (!f)
        return -1;
    d->frames = f;
    d->frames_cap = cap;
    return 0;
}

static int rpython_kind(uint64_t k)
{
    switch (k) {
    case VMP_RPY_PYTHON_CODE: return VMP_FRAME_PYTHON;
    case VMP_RPY_BLACKHOLE: return VMP_FRAME_BLACKHOLE;
    case VMP_RPY_JITTED: return VMP_FRAME_JIT;
    case VMP_RPY_JIT_TRACING: return VMP_FRAME_JIT_TRACING;
    case VMP_RPY_GC: return VMP_FRAME_GC;
    case VMP_RPY_ASSEMBLER: return VMP_FRAME_ASSEMBLER;
    case VMP_RPY_NATIVE: return VMP_FRAME_NATIVE;
    default: return -1;
    }
}

/* Hash of a record's raw entries and thread id: four independent lanes so
 * the multiplies overlap.  Only used to find candidates; matches are verified. */
static uint64_t hash_raw(const unsigned char *q, size_t n)
{
    const uint64_t k1 = 0x87c37b91114253d5ULL, k2 = 0x4cf5ad432745937fULL;
    uint64_t h1 = 0x9e3779b97f4a7c15ULL ^ n, h2 = 0xc2b2ae3d27d4eb4fULL, h3 = 0x165667b19e3779f9ULL,
             h4 = 0x27d4eb2f165667c5ULL;
    while (n >= 32) {
        uint64_t a, b, c, e;
        memcpy(&a, q, 8);
        memcpy(&b, q + 8, 8);
        memcpy(&c, q + 16, 8);
        memcpy(&e, q + 24, 8);
        h1 = (h1 ^ a) * k1;
        h2 = (h2 ^ b) * k2;
        h3 = (h3 ^ c) * k1;
        h4 = (h4 ^ e) * k2;
        h1 ^= h1 >> 31;
        h2 ^= h2 >> 29;
        h3 ^= h3 >> 30;
        h4 ^= h4 >> 28;
        q += 32;
        n -= 32;
    }
    while (n >= 8) {
        uint64_t a;
        memcpy(&a, q, 8);
        h1 = (h1 ^ a) * k1;
        h1 ^= h1 >> 31;
        q += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t a;
        memcpy(&a, q, 4);
        h2 = (h2 ^ a) * k2;
    }
    return vmp_mix64(h1 ^ (h2 * 0x9e3779b97f4a7c15ULL) ^ (h3 * k2) ^ (h4 * k1));
}

/* A cheaper hash from a few words spread over the record (the innermost and
 * outermost entries, three in between, the thread id) and its length: most
 * distinct stacks differ there, and candidates are verified anyway.  When it
 * collides too often the decoder switches to hash_raw for good. */
static uint64_t hash_sampled(const unsigned char *q, size_t n, int a)
{
    size_t w = n / (size_t)a;
    if (w <= 12)
        return hash_raw(q, n);
    size_t pick[11] = {0, 1, 2, 3, w / 4, w / 2, 3 * w / 4, w - 4, w - 3, w - 2, w - 1};
    uint64_t h1 = 0x9e3779b97f4a7c15ULL ^ n, h2 = 0xc2b2ae3d27d4eb4fULL;
    for (int i = 0; i < 10; i += 2) {
        h1 = (h1 ^ get(q + pick[i] * a, a)) * 0x87c37b91114253d5ULL;
        h2 = (h2 ^ get(q + pick[i + 1] * a, a)) * 0x4cf5ad432745937fULL;
        h1 ^= h1 >> 31;
        h2 ^= h2 >> 29;
    }
    h1 = (h1 ^ get(q + pick[10] * a, a)) * 0x87c37b91114253d5ULL;
    return vmp_mix64(h1 ^ (h2 * 0x9e3779b97f4a7c15ULL));
}

/* Does unique stack idx hold exactly what the raw record says? */
static int raw_matches(decoder *d, uint32_t idx, const unsigned char *e, uint32_t nf,
                       int rpython, int lines, int with_thread, uint64_t thread)
{
    vmp_stack st;
    int a = d->a;
    vmp_profile_stack_at(d->p, idx, &st);
    if (st.depth != nf)
        return 0;
    if (vmp_profile_thread_id(d->p, st.thread_index) != (with_thread ? thread : 0))
        return 0;
    if (rpython || lines) {
        for (uint32_t i = 0; i < nf; i++) {
            const unsigned char *q = e + (size_t)(nf - 1 - i) * 2 * a;
            const vmp_frame *f = &st.frames[i];
            if (f->addr != get(q + a, a))
                return 0;
            if (rpython) {
                if (rpython_kind(get(q, a)) != f->kind)
                    return 0;
            } else {
                int64_t line = get_signed(q, a);
                uint32_t l = (line > 0 && line <= (int64_t)UINT32_MAX) ? (uint32_t)line : 0;
                if (l != f->line)
                    return 0;
            }
        }
        return 1;
    }
    if (a == 8) {
        for (uint32_t i = 0; i < nf; i++) {
            uint64_t v;
            memcpy(&v, e + (size_t)(nf - 1 - i) * 8, 8);
            if (st.frames[i].addr != v)
                return 0;
        }
        return 1;
    }
    for (uint32_t i = 0; i < nf; i++)
        if (st.frames[i].addr != get(e + (size_t)(nf - 1 - i) * a, a))
            return 0;
    return 1;
}

static void seen_clear(decoder *d)
{
    for (size_t i = 0; i < d->seen_cap; i++)
        d->seen[i].stack = UINT32_MAX;
    d->seen_len = 0;
}

/* Returns the new raw copy's id, VMP_NO_STACK_ID when none was made (the
 * copies' cap), or -1 when out of memory. */
static int64_t seen_insert(decoder *d, uint64_t hash, uint32_t stack, const unsigned char *raw,
                           size_t raw_len)
{
    if ((d->seen_len + 1) * 2 > d->seen_cap) {
        size_t ncap = d->seen_cap ? d->seen_cap * 2 : 1024;
        struct seen_slot *ns = malloc(ncap * sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < ncap; i++)
            ns[i].stack = UINT32_MAX;
        for (size_t i = 0; i < d->seen_cap; i++) {
            if (d->seen[i].stack == UINT32_MAX)
                continue;
            size_t j = d->seen[i].hash & (ncap - 1);
            while (ns[j].stack != UINT32_MAX)
                j = (j + 1) & (ncap - 1);
            ns[j] = d->seen[i];
        }
        free(d->seen);
        d->seen = ns;
        d->seen_cap = ncap;
    }
    size_t j = hash & (d->seen_cap - 1);
    while (d->seen[j].stack != UINT32_MAX)
        j = (j + 1) & (d->seen_cap - 1);
    const unsigned char *copy = raw_copy(d, raw, raw_len);
    uint32_t id = copy ? d->raw_ids++ : VMP_NO_STACK_ID;
    d->seen[j] = (struct seen_slot){hash, copy, (uint32_t)raw_len, stack, id};
    d->seen_len++;
    return id;
}

/* Tells the observer of the STACKTRACE record [at, at + size) just read. */
static void observed(decoder *d, uint64_t at, size_t size, size_t raw_len, uint32_t repeat_of,
                     uint32_t defines)
{
    size_t head = 1 + 2 * (size_t)d->w;
    vmp_stack_record r = {at, (uint32_t)size, (uint32_t)head, (uint32_t)raw_len, repeat_of,
                          defines};
    d->observe(d->observe_ctx, &r);
}

const unsigned char *vmp_decoder_observed_bytes(const vmp_decoder *d)
{
    /* (the record is consumed only after its observer returned) */
    return d->src->data + d->src->pos;
}

/* Returns GOT, CUT or FAILED. */
static int read_stack(decoder *d, uint64_t at)
{
    const unsigned char *p;
    int w = d->w, a = d->a, r;
    size_t head = 1 + 2 * (size_t)w;
    if ((r = need(d, head, &p)) != GOT)
        return r;
    uint64_t count = get(p + 1, w);
    uint64_t depth = get(p + 1 + w, w);
    char msg[160];
    if (count != 1) {
        snprintf(msg, sizeof msg, "STACKTRACE with count %llu (always 1 in valid files); the "
                 "file is corrupt", (unsigned long long)count);
        return fail(d, at, msg);
    }
    if (depth > VMP_MAX_DEPTH_READ) {
        snprintf(msg, sizeof msg, "STACKTRACE depth %llu exceeds the limit of %d; the file "
                 "is corrupt", (unsigned long long)depth, VMP_MAX_DEPTH_READ);
        return fail(d, at, msg);
    }
    unsigned mode = d->s->mode;
    int rpython = (mode & VMP_MODE_RPYTHON) != 0;
    int lines = !rpython && (mode & VMP_MODE_LINES);
    if ((rpython || lines) && (depth & 1)) {
        snprintf(msg, sizeof msg, "STACKTRACE with an odd number of entries (%llu) in a "
                 "profile of [%s] pairs; the file is corrupt", (unsigned long long)depth,
                 rpython ? "kind, value" : "line, code");
        return fail(d, at, msg);
    }
    int with_thread = d->s->version >= 1;
    int with_rss = (mode & VMP_MODE_MEMORY) != 0;
    int with_time = d->s->version >= VMP_FORMAT_VERSION_SAMPLE_TIME;
    size_t size = head + (size_t)depth * a + (with_thread ? a : 0) + (with_rss ? a : 0) +
                  (with_time ? 8 : 0);
    if ((r = need(d, size, &p)) != GOT)
        return r;
    const unsigned char *e = p + head;
    uint32_t nf = (uint32_t)((rpython || lines) ? depth / 2 : depth);
    size_t raw_len = (size_t)depth * a + (with_thread ? a : 0);
    uint64_t thread = with_thread ? get(e + (size_t)depth * a, a) : 0;
    uint64_t rss = with_rss ? get(e + raw_len, a) : 0;
    int64_t time_ns = 0;
    if (with_time)
        memcpy(&time_ns, e + raw_len + (with_rss ? a : 0), 8);
    uint64_t hash = d->full_hash ? hash_raw(e, raw_len) : hash_sampled(e, raw_len, a);
    if (d->seen_cap) {
        size_t mask = d->seen_cap - 1;
        d->lookups++;
        for (size_t j = hash & mask; d->seen[j].stack != UINT32_MAX; j = (j + 1) & mask) {
            const struct seen_slot *sl = &d->seen[j];
            if (sl->hash != hash)
                continue;
            if (sl->raw ? (sl->raw_len == raw_len && memcmp(sl->raw, e, raw_len) == 0)
                        : raw_matches(d, sl->stack, e, nf, rpython, lines, with_thread, thread)) {
                if (vmp_profile_add_sample_at(d->p, sl->stack, rss) < 0 ||
                    (with_time && vmp_profile_set_sample_time(d->p, time_ns) < 0))
                    return fail(d, at, "out of memory while adding a sample");
                if (d->observe)
                    /* (a stack recognised through its decoded frames repeats
                     * what they say, not necessarily its bytes) */
                    observed(d, at, size, raw_len, sl->raw ? sl->raw_id : VMP_NO_STACK_ID,
                             VMP_NO_STACK_ID);
                vmp_source_consume(d->src, size);
                return GOT;
            }
            d->collisions++;
        }
        if (!d->full_hash && d->lookups >= 4096 && d->collisions * 8 > d->lookups) {
            /* Too many distinct stacks look alike to the sampled hash: hash
             * every byte from now on; stacks re-enter the table as they recur. */
            d->full_hash = 1;
            seen_clear(d);
            hash = hash_raw(e, raw_len);
        }
    }
    if (frames_room(d, nf ? nf : 1) < 0)
        return fail(d, at, "out of memory for a stack");
    vmp_frame *f = d->frames;
    if (rpython) {
        for (uint32_t i = 0; i < nf; i++) {
            const unsigned char *q = e + (size_t)(nf - 1 - i) * 2 * a;
            uint64_t k = get(q, a);
            int kind = rpython_kind(k);
            if (kind < 0) {
                snprintf(msg, sizeof msg, "STACKTRACE entry of unknown kind %llu (PyPy "
                         "writes kinds 1-7); the file is corrupt", (unsigned long long)k);
                return fail(d, at, msg);
            }
            f[i].addr = get(q + a, a);
            f[i].line = 0;
            f[i].kind = (uint8_t)kind;
        }
    } else if (lines) {
        for (uint32_t i = 0; i < nf; i++) {
            const unsigned char *q = e + (size_t)(nf - 1 - i) * 2 * a;
            int64_t line = get_signed(q, a);
            uint64_t addr = get(q + a, a);
            f[i].addr = addr;
            f[i].line = (line > 0 && line <= (int64_t)UINT32_MAX) ? (uint32_t)line : 0;
            f[i].kind = (addr & VMP_NATIVE_BIT) ? VMP_FRAME_NATIVE : VMP_FRAME_PYTHON;
        }
    } else {
        for (uint32_t i = 0; i < nf; i++) {
            uint64_t addr = get(e + (size_t)(nf - 1 - i) * a, a);
            f[i].addr = addr;
            f[i].line = 0;
            f[i].kind = (addr & VMP_NATIVE_BIT) ? VMP_FRAME_NATIVE : VMP_FRAME_PYTHON;
        }
    }
    if (vmp_profile_add_sample(d->p, f, nf, thread, rss) < 0 ||
        (with_time && vmp_profile_set_sample_time(d->p, time_ns) < 0))
        return fail(d, at, "out of memory while adding a sample");
    const vmp_profile_summary *s = d->s;
    int64_t id = seen_insert(d, hash, vmp_profile_sample_stack(d->p, s->n_samples - 1), e, raw_len);
    if (id < 0)
        return fail(d, at, "out of memory while adding a sample");
    if (d->observe)
        observed(d, at, size, raw_len, VMP_NO_STACK_ID, (uint32_t)id);
    vmp_source_consume(d->src, size);
    return GOT;
}

static int read_name(decoder *d, uint64_t at, int tag)
{
    const unsigned char *p;
    int r;
    size_t head = 1 + (size_t)d->a + (size_t)d->w;
    if ((r = need(d, head, &p)) != GOT)
        return r;
    uint64_t id = get(p + 1, d->a);
    uint64_t len = get(p + 1 + d->a, d->w);
    if (len > VMP_MAX_NAME_READ) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s name length %llu exceeds the limit of %d bytes; the "
                 "file is corrupt", tag_name(tag), (unsigned long long)len, VMP_MAX_NAME_READ);
        return fail(d, at, msg);
    }
    if ((r = need(d, head + len, &p)) != GOT)
        return r;
    if (vmp_profile_add_name(d->p, id, (const char *)p + head, (size_t)len) < 0)
        return fail(d, at, "out of memory while adding a name");
    vmp_source_consume(d->src, head + len);
    return GOT;
}

static int read_meta(decoder *d, uint64_t at)
{
    const unsigned char *p;
    int r, w = d->w;
    char msg[160];
    if ((r = need(d, 1 + (size_t)w, &p)) != GOT)
        return r;
    uint64_t klen = get(p + 1, w);
    if (klen > VMP_MAX_META_TEXT) {
        snprintf(msg, sizeof msg, "META key length %llu exceeds the limit of %d bytes; the "
                 "file is corrupt", (unsigned long long)klen, VMP_MAX_META_TEXT);
        return fail(d, at, msg);
    }
    size_t vat = 1 + (size_t)w + (size_t)klen;
    if ((r = need(d, vat + w, &p)) != GOT)
        return r;
    uint64_t vlen = get(p + vat, w);
    if (vlen > VMP_MAX_META_TEXT) {
        snprintf(msg, sizeof msg, "META value length %llu exceeds the limit of %d bytes; the "
                 "file is corrupt", (unsigned long long)vlen, VMP_MAX_META_TEXT);
        return fail(d, at, msg);
    }
    size_t size = vat + w + (size_t)vlen;
    if ((r = need(d, size, &p)) != GOT)
        return r;
    if (vmp_profile_add_meta(d->p, (const char *)p + 1 + w, (size_t)klen,
                             (const char *)p + vat + w, (size_t)vlen) < 0)
        return fail(d, at, "out of memory while adding a META entry");
    vmp_source_consume(d->src, size);
    return GOT;
}

static int read_header(decoder *d, uint64_t at)
{
    const unsigned char *p;
    int r;
    if (d->seen_header)
        return fail(d, at, "a second HEADER record; the file is corrupt (two profiles "
                           "written into one file?)");
    if ((r = need(d, 3, &p)) != GOT)
        return r;
    int version = (p[1] << 8) | p[2];
    if (version > VMP_FORMAT_NEWEST_READ) {
        char msg[160];
        snprintf(msg, sizeof msg, "format version %d is newer than this reader knows "
                 "(%d-%d); upgrade vmprof", version, VMP_FORMAT_OLDEST_VERSION,
                 VMP_FORMAT_NEWEST_READ);
        return fail(d, at, msg);
    }
    size_t fixed = version >= 4 ? 5 : 4;
    if ((r = need(d, fixed, &p)) != GOT)
        return r;
    unsigned mode = version >= 4 ? p[3] : 0;
    size_t n = p[fixed - 1];
    if ((r = need(d, fixed + n, &p)) != GOT)
        return r;
    if (version == 3)
        mode |= VMP_MODE_MEMORY; /* before the mode byte, version 3 meant memory */
    if (version == 2)
        mode |= VMP_MODE_RPYTHON; /* version 2 was PyPy's [kind, value] stacks */
    vmp_profile_summary *s = d->s;
    s->version = version;
    s->mode = mode;
    size_t copy = n < sizeof s->interp - 1 ? n : sizeof s->interp - 1;
    memcpy(s->interp, p + fixed, copy);
    s->interp[copy] = '\0';
    d->seen_header = 1;
    /* The stack layout may have changed: forget raw stacks seen before. */
    seen_clear(d);
    vmp_source_consume(d->src, fixed + n);
    return GOT;
}

static void read_time(const unsigned char *p, int64_t *sec, int64_t *usec, char zone[9])
{
    memcpy(sec, p, 8);
    memcpy(usec, p + 8, 8);
    memcpy(zone, p + 16, 8);
    zone[8] = '\0';
}

static void decoder_release(decoder *d)
{
    free(d->frames);
    free(d->seen);
    while (d->raw_chunks) {
        struct raw_chunk *next = d->raw_chunks->next;
        free(d->raw_chunks);
        d->raw_chunks = next;
    }
    free(d->pending);
    d->frames = NULL;
    d->seen = NULL;
    d->pending = NULL;
}

/* Decodes records until the input has no complete one left.  Returns 0 (the
 * end, the trailer, or in push mode a record still incomplete: d->stopped
 * tells), or -1 with d->err set. */
static int run(decoder *d)
{
    vmp_source *src = d->src;
    vmp_error *err = d->err;
    if (d->stopped)
        return 0;
    if (!d->started) {
        /* pushed bytes: wait for enough to tell the word size */
        if (d->push && !src->eof &&
            src->end - src->pos < (size_t)VMP_STATIC_HEADER_WORDS * 8)
            return 0;
        if (read_static_header(d) < 0) {
            d->stopped = 1;
            return -1;
        }
        d->started = 1;
    }
    int rc = 0;
    for (;;) {
        uint64_t at = vmp_source_offset(src);
        const unsigned char *t;
        size_t avail = 0;
        t = vmp_source_peek(src, 1, &avail, err);
        if (!t) {
            if (avail == SIZE_MAX)
                rc = -1;
            else if (d->push && !src->eof)
                return 0; /* more may come */
            break; /* a clean end without a TRAILER: the program died */
        }
        int tag = t[0], r;
        switch (tag) {
        case VMP_TAG_STACKTRACE:
            r = read_stack(d, at);
            break;
        case VMP_TAG_VIRTUAL_IP:
        case VMP_TAG_NATIVE_SYMBOLS:
            r = read_name(d, at, tag);
            break;
        case VMP_TAG_META:
            r = read_meta(d, at);
            break;
        case VMP_TAG_HEADER:
            r = read_header(d, at);
            break;
        case VMP_TAG_TIME_N_ZONE:
        case VMP_TAG_TRAILER: {
            int timed = tag == VMP_TAG_TIME_N_ZONE || d->s->version >= 5;
            const unsigned char *q;
            r = need(d, timed ? 25 : 1, &q);
            if (r != GOT)
                break;
            if (tag == VMP_TAG_TIME_N_ZONE) {
                read_time(q + 1, &d->s->start_sec, &d->s->start_usec, d->s->start_zone);
                d->s->has_start_time = 1;
            } else if (timed) {
                read_time(q + 1, &d->s->end_sec, &d->s->end_usec, d->s->end_zone);
                d->s->has_end_time = 1;
            }
            vmp_source_consume(src, timed ? 25 : 1);
            if (tag == VMP_TAG_TRAILER)
                d->s->complete = 1;
            break;
        }
        case VMP_TAG_INTERP_NAME:
            r = fail(d, at, "obsolete INTERP_NAME record (tag 0x04), which no supported "
                            "writer produces; the file is corrupt or from a pre-2016 vmprof");
            break;
        default: {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown record tag 0x%02x; the file is corrupt (or "
                     "written by a newer vmprof)", tag);
            r = fail(d, at, msg);
            break;
        }
        }
        if (r == FAILED) {
            rc = -1;
            break;
        }
        if (r == CUT) {
            if (d->push && !src->eof)
                return 0; /* the record's rest is still to come */
            size_t have = src->end - src->pos;
            if (d->strict) {
                char msg[160];
                snprintf(msg, sizeof msg, "the file ends inside a %s record (%zu bytes of it "
                         "present); read it without strict to keep the samples before it",
                         tag_name(tag), have);
                rc = fail(d, at, msg);
            } else {
                d->s->truncated_at = (int64_t)at;
            }
            break;
        }
        if (d->s->complete)
            break;
    }
    d->stopped = 1;
    return rc;
}

int vmp_decode(vmp_source *src, vmp_profile *p, const vmp_read_options *options,
               vmp_error *err)
{
    decoder d = {.src = src, .p = p, .s = vmp_profile_summary_mut(p), .err = err};
    d.strict = options && options->strict;
    vmp_error_clear(err);
    int rc = run(&d);
    decoder_release(&d);
    return rc;
}

/* ---- pushed bytes ------------------------------------------------------------ */

vmp_decoder *vmp_decoder_new(const vmp_read_options *options, vmp_error *err)
{
    vmp_error_clear(err);
    decoder *d = calloc(1, sizeof *d);
    if (!d || !(d->p = vmp_profile_new())) {
        free(d);
        vmp_error_set(err, -1, "out of memory");
        return NULL;
    }
    d->s = vmp_profile_summary_mut(d->p);
    d->strict = options && options->strict;
    d->push = 1;
    d->src = &d->push_src;
    return d;
}

/* Decodes what the source holds, then keeps the unread rest (an incomplete
 * record) in pending for the next push. */
static int push_run(decoder *d, vmp_error *err)
{
    d->err = err;
    if (run(d) < 0)
        return -1;
    vmp_source *src = d->src;
    size_t rest = src->end - src->pos;
    if (d->stopped) {
        rest = 0; /* the trailer: what follows is ignored, as a file's tail */
    } else if (src->data != d->pending) {
        if (vmp_array_grow((void **)&d->pending, &d->pending_cap, rest ? rest : 1, 1) < 0)
            return vmp_error_set(err, -1, "out of memory while buffering the upload");
        memcpy(d->pending, src->data + src->pos, rest);
    } else if (src->pos) {
        memmove(d->pending, d->pending + src->pos, rest);
    }
    src->base += src->pos;
    d->pending_len = rest;
    src->data = d->pending;
    src->pos = 0;
    src->end = rest;
    return 0;
}

int vmp_decoder_push(vmp_decoder *d, const void *data, size_t len, vmp_error *err)
{
    vmp_error_clear(err);
    if (d->stopped)
        return 0;
    vmp_source *src = d->src;
    if (d->pending_len == 0 && !d->started && src->base == 0 && len >= 2 &&
        ((const unsigned char *)data)[0] == 0x1f && ((const unsigned char *)data)[1] == 0x8b)
        return vmp_error_set(err, 0, "at byte 0: gzip-compressed input; push the profile's "
                                     "plain bytes (the upload protocol sends them uncompressed)");
    const unsigned char *in = data;
    /* A record cut by the end of the last piece: it is completed in pending
     * with as few of these bytes as it needs (a few hundred, doubled while
     * not enough), and the rest is decoded where it lies.  (Appending the
     * whole piece to pending copied nearly every byte of an upload once.) */
    for (size_t take = 256; d->pending_len && len; take *= 2) {
        size_t n = take < len ? take : len;
        if (vmp_array_grow((void **)&d->pending, &d->pending_cap, d->pending_len + n, 1) < 0)
            return vmp_error_set(err, -1, "out of memory while buffering the upload");
        memcpy(d->pending + d->pending_len, in, n);
        src->data = d->pending;
        src->pos = 0;
        src->end = d->pending_len + n;
        if (push_run(d, err) < 0)
            return -1;
        in += n;
        len -= n;
        if (d->stopped)
            return 0;
        if (d->pending_len <= n) {
            /* The cut record is decoded: what is left pending are the last
             * bytes just copied, still in the piece; read them there. */
            in -= d->pending_len;
            len += d->pending_len;
            d->pending_len = 0;
        }
    }
    if (!len)
        return 0;
    src->data = in;
    src->pos = 0;
    src->end = len;
    return push_run(d, err);
}

void vmp_decoder_observe(vmp_decoder *d, vmp_stack_observer fn, void *ctx)
{
    d->observe = fn;
    d->observe_ctx = ctx;
}

uint64_t vmp_decoder_settled(const vmp_decoder *d)
{
    /* (after a push, pending holds the cut record, which starts at base) */
    return d->stopped ? UINT64_MAX : d->src->base;
}

vmp_profile *vmp_decoder_finish(vmp_decoder *d, vmp_error *err)
{
    vmp_error_clear(err);
    vmp_source *src = d->src;
    src->eof = 1;
    src->data = d->pending ? d->pending : (const unsigned char *)"";
    src->pos = 0;
    src->end = d->pending_len;
    d->err = err;
    int rc = run(d);
    vmp_profile *p = d->p;
    d->p = NULL;
    if (rc == 0 && vmp_profile_resolve(p) < 0)
        rc = vmp_error_set(err, -1, "out of memory while resolving the profile's functions");
    if (rc < 0) {
        vmp_profile_free(p);
        p = NULL;
    }
    vmp_decoder_free(d);
    return p;
}

void vmp_decoder_free(vmp_decoder *d)
{
    if (!d)
        return;
    decoder_release(d);
    vmp_profile_free(d->p);
    free(d);
}

/* ---- vmp_profile_read_* ---------------------------------------------------- */

static vmp_profile *read_source(vmp_source *src, const vmp_read_options *options,
                                vmp_error *err)
{
    if (!src)
        return NULL;
    vmp_profile *p = vmp_profile_new();
    if (!p) {
        vmp_error_set(err, -1, "out of memory");
        vmp_source_close(src);
        return NULL;
    }
    int rc = vmp_decode(src, p, options, err);
    vmp_source_close(src);
    if (rc == 0 && vmp_profile_resolve(p) < 0)
        rc = vmp_error_set(err, -1, "out of memory while resolving the profile's functions");
    if (rc < 0) {
        vmp_profile_free(p);
        return NULL;
    }
    return p;
}

vmp_profile *vmp_profile_read_file(const char *path, const vmp_read_options *options,
                                   vmp_error *err)
{
    vmp_error_clear(err);
    return read_source(vmp_source_open_file(path, err), options, err);
}

vmp_profile *vmp_profile_read_fd(int fd, const vmp_read_options *options, vmp_error *err)
{
    vmp_error_clear(err);
    return read_source(vmp_source_open_fd(fd, err), options, err);
}

vmp_profile *vmp_profile_read_memory(const void *data, size_t len,
                                     const vmp_read_options *options, vmp_error *err)
{
    vmp_error_clear(err);
    return read_source(vmp_source_open_memory(data, len, err), options, err);
}
