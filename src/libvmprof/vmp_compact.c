/* vmp_compact.c - the compact lossless form of a profile (see vmp_compact.h). */
#include "vmp_compact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_array.h"
#include "vmp_decode.h"
#include "vmp_hash.h"

enum { ITEM_VERBATIM = 1, ITEM_DEFINE = 2, ITEM_REF = 3, ITEM_END = 4 };

/* A record's bytes before its stack (tag, count and depth words) and after
 * it (rss and time words) are this many at most in any format version; a
 * record with more is kept verbatim. */
#define HEAD_MAX 24
#define TAIL_MAX 32
#define TAIL_WORDS (TAIL_MAX / 4)
#define OUT_BUF (64 * 1024)
/* Verbatim bytes at least this many go to the sink where they lie. */
#define SINK_DIRECT (16 * 1024)
#define IN_BUF (64 * 1024)
/* The words of a record's tail: 4 bytes first when its length leaves 4 over
 * 8-byte words (an rss word of a 4-byte-address profile before the time),
 * then 8 bytes each.  Returns the count, or -1 when the tail does not split. */
static int tail_words(size_t tail, int width[TAIL_WORDS])
{
    int n = 0;
    if (tail > TAIL_MAX || tail % 4)
        return -1;
    if (tail % 8)
        width[n++] = 4, tail -= 4;
    while (tail)
        width[n++] = 8, tail -= 8;
    return n;
}

static uint64_t load_word(const unsigned char *p, int width)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (width == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    if (width == 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
#endif
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void store_word(unsigned char *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++, v >>= 8)
        p[i] = (unsigned char)v;
}

/* Files of the first version end without a checksum; they are still read. */
#define MAGIC_V1 "vmpCMP01"
#define CHECK_LEN 8

/* ---- the checksum ------------------------------------------------------------- */

/* A streaming 64-bit checksum of the file's bytes, so that a byte changed on
 * the disk is an error rather than a profile that reads and is wrong.  Four
 * lanes over 32-byte stripes (several GB/s: the writer runs during the
 * upload), each step bijective in its word and in the lane before it, so a
 * file that differs from the one written in one 8-byte word (one flipped
 * byte, say) never sums the same. */
#define SUM_P1 0x9E3779B185EBCA87ULL
#define SUM_P2 0xC2B2AE3D27D4EB4FULL

typedef struct sum {
    uint64_t lane[4];
    unsigned char part[32]; /* a stripe not complete yet */
    size_t part_len;
    uint64_t total;
} sum;

static uint64_t rotl64(uint64_t v, int k)
{
    return (v << k) | (v >> (64 - k));
}

static void sum_init(sum *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 4; i++)
        s->lane[i] = SUM_P1 * (uint64_t)(i + 1);
}

static void sum_stripe(sum *s, const unsigned char *p)
{
    for (int i = 0; i < 4; i++)
        s->lane[i] = rotl64(s->lane[i] + load_word(p + 8 * i, 8) * SUM_P2, 31) * SUM_P1;
}

static void sum_update(sum *s, const void *data, size_t n)
{
    const unsigned char *p = data;
    s->total += n;
    if (s->part_len) {
        size_t k = 32 - s->part_len < n ? 32 - s->part_len : n;
        memcpy(s->part + s->part_len, p, k);
        s->part_len += k, p += k, n -= k;
        if (s->part_len < 32)
            return;
        sum_stripe(s, s->part);
        s->part_len = 0;
    }
    for (; n >= 32; p += 32, n -= 32)
        sum_stripe(s, p);
    memcpy(s->part, p, n);
    s->part_len = n;
}

static uint64_t sum_final(const sum *s)
{
    uint64_t h = rotl64(s->lane[0], 1) + rotl64(s->lane[1], 7) + rotl64(s->lane[2], 12) +
                 rotl64(s->lane[3], 18);
    h = vmp_mix64(h ^ s->total);
    size_t i = 0;
    for (; i + 8 <= s->part_len; i += 8)
        h = vmp_mix64(h ^ load_word(s->part + i, 8)) * SUM_P1;
    for (; i < s->part_len; i++)
        h = vmp_mix64(h ^ s->part[i]) * SUM_P1;
    return vmp_mix64(h);
}

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* ---- the writer -------------------------------------------------------------- */

/* A record the decoder recognised, waiting for its bytes (they reach the
 * writer after the decoder). */
typedef struct queued {
    uint64_t at;
    uint32_t size, stack_at, stack_len;
    uint32_t id;  /* the compact id it defines or refers to */
    int define;
} queued;

/* A stack defined in the compact file: its record's head, kept to check the
 * records that refer to it. */
typedef struct defined {
    uint32_t head_len, stack_len, tail_len;
    int n_words;                /* its tail's words (tail_words) */
    unsigned char head[HEAD_MAX];
} defined;

struct vmp_compact_writer {
    vmp_decoder *d;
    vmp_compact_sink sink;
    void *ctx;
    int failed;
    uint64_t in_total;   /* input bytes given to vmp_compact_write */
    uint64_t emitted;    /* input before this is in the compact form */
    unsigned char *hold; /* input [emitted, in_total): not yet settled */
    size_t hold_len, hold_cap;
    queued *q;
    size_t q_len, q_cap;
    uint32_t *ids;       /* decoder id -> compact id + 1 (0: not defined) */
    size_t ids_cap;
    defined *defs;
    size_t n_defs, defs_cap;
    uint64_t defined_bytes;
    uint64_t prev[TAIL_WORDS];
    unsigned char *out;
    size_t out_len;
    uint64_t written;
    unsigned char *scratch; /* a record cut between the held bytes and the piece */
    size_t scratch_cap;
    sum check;           /* of every byte handed to the sink */
};

static int flush(vmp_compact_writer *w)
{
    sum_update(&w->check, w->out, w->out_len);
    if (w->out_len && !w->failed && w->sink(w->ctx, w->out, w->out_len) < 0)
        w->failed = 1;
    w->written += w->out_len;
    w->out_len = 0;
    return w->failed ? -1 : 0;
}

static int emit(vmp_compact_writer *w, const void *data, size_t n)
{
    if (n >= SINK_DIRECT) {
        if (flush(w) < 0)
            return -1;
        sum_update(&w->check, data, n);
        if (w->sink(w->ctx, data, n) < 0)
            w->failed = 1;
        w->written += n;
        return w->failed ? -1 : 0;
    }
    if (OUT_BUF - w->out_len < n && flush(w) < 0)
        return -1;
    memcpy(w->out + w->out_len, data, n);
    w->out_len += n;
    return 0;
}

static void on_stack(void *ctx, const vmp_stack_record *r);

vmp_compact_writer *vmp_compact_writer_new(vmp_decoder *d, vmp_compact_sink sink, void *ctx)
{
    if (vmp_decoder_settled(d) != 0)
        return NULL; /* records were read unobserved: their ids are unknown */
    vmp_compact_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->out = malloc(OUT_BUF))) {
        free(w);
        return NULL;
    }
    w->d = d;
    w->sink = sink;
    w->ctx = ctx;
    sum_init(&w->check);
    if (emit(w, VMP_COMPACT_MAGIC, VMP_COMPACT_MAGIC_LEN) < 0 || flush(w) < 0) {
        vmp_compact_writer_free(w);
        return NULL;
    }
    vmp_decoder_observe(d, on_stack, w);
    return w;
}

/* The input [from, from + n) as it stands during a write: the held bytes,
 * then the piece (which starts at base). */
typedef struct view {
    const unsigned char *piece;
    uint64_t base;
} view;

/* Hands input [from, to) to emit, from the held bytes and the piece. */
static int emit_input(vmp_compact_writer *w, const view *v, uint64_t from, uint64_t to)
{
    if (from < v->base) {
        uint64_t stop = to < v->base ? to : v->base;
        if (emit(w, w->hold + (from - w->emitted), (size_t)(stop - from)) < 0)
            return -1;
        from = stop;
    }
    if (from < to && emit(w, v->piece + (from - v->base), (size_t)(to - from)) < 0)
        return -1;
    return 0;
}

/* Drops the held bytes before `to` (written as part of an item). */
static void consumed(vmp_compact_writer *w, const view *v, uint64_t to)
{
    if (w->emitted < v->base) {
        uint64_t stop = to < v->base ? to : v->base;
        size_t drop = (size_t)(stop - w->emitted);
        memmove(w->hold, w->hold + drop, w->hold_len - drop);
        w->hold_len -= drop;
    }
    w->emitted = to;
}

static int verbatim(vmp_compact_writer *w, const view *v, uint64_t to)
{
    if (to <= w->emitted)
        return 0;
    unsigned char h[11];
    h[0] = ITEM_VERBATIM;
    size_t k = 1 + put_varint(h + 1, to - w->emitted);
    if (emit(w, h, k) < 0 || emit_input(w, v, w->emitted, to) < 0)
        return -1;
    consumed(w, v, to);
    return 0;
}

/* The bytes of input [at, at + n), contiguous. */
static const unsigned char *input_at(vmp_compact_writer *w, const view *v, uint64_t at, size_t n)
{
    if (at >= v->base)
        return v->piece + (at - v->base);
    if (at + n <= v->base)
        return w->hold + (at - w->emitted);
    if (vmp_array_grow((void **)&w->scratch, &w->scratch_cap, n, 1) < 0)
        return NULL;
    size_t first = (size_t)(v->base - at);
    memcpy(w->scratch, w->hold + (at - w->emitted), first);
    memcpy(w->scratch + first, v->piece, n - first);
    return w->scratch;
}

/* (rec: the record's bytes when the caller has them, else NULL) */
static int define_item(vmp_compact_writer *w, const view *v, const queued *e,
                       const unsigned char *rec)
{
    defined *def = &w->defs[e->id];
    if (verbatim(w, v, e->at) < 0)
        return -1;
    if (!rec)
        rec = input_at(w, v, e->at, e->size);
    if (!rec)
        return -1;
    memcpy(def->head, rec, def->head_len);
    unsigned char h[1 + 3 * 10];
    size_t k = 0;
    h[k++] = ITEM_DEFINE;
    k += put_varint(h + k, def->head_len);
    k += put_varint(h + k, def->stack_len);
    k += put_varint(h + k, def->tail_len);
    if (emit(w, h, k) < 0 || emit(w, rec, e->size) < 0)
        return -1;
    consumed(w, v, e->at + e->size);
    return 0;
}

static int ref_item(vmp_compact_writer *w, const view *v, const queued *e,
                    const unsigned char *rec)
{
    const defined *def = &w->defs[e->id];
    if (!rec)
        rec = input_at(w, v, e->at, e->size);
    if (!rec)
        return -1;
    /* Exact or not at all: the same head and the same shape, else verbatim. */
    if (e->stack_at != def->head_len || e->stack_len != def->stack_len ||
        (uint64_t)e->size - e->stack_at - e->stack_len != def->tail_len ||
        memcmp(rec, def->head, def->head_len) != 0)
        return 0;
    if (e->at > w->emitted) {
        if (verbatim(w, v, e->at) < 0)
            return -1;
        /* (that moved the held bytes: the record's may have moved too) */
        if (e->at < v->base && !(rec = input_at(w, v, e->at, e->size)))
            return -1;
    }
    /* (written in place: a reference is most of the items) */
    if (OUT_BUF - w->out_len < 1 + 10 + TAIL_WORDS * 10 && flush(w) < 0)
        return -1;
    unsigned char *h = w->out + w->out_len;
    size_t k = 0;
    h[k++] = ITEM_REF;
    k += put_varint(h + k, e->id);
    const unsigned char *t = rec + def->head_len + def->stack_len;
    /* (the tail's words: 4 bytes first when it leaves 4 over, as tail_words) */
    int width = def->tail_len % 8 ? 4 : 8;
    for (int i = 0; i < def->n_words; t += width, width = 8, i++) {
        uint64_t value = load_word(t, width);
        int64_t delta = (int64_t)(value - w->prev[i]);
        w->prev[i] = value;
        k += put_varint(h + k, ((uint64_t)delta << 1) ^ (uint64_t)(delta >> 63));
    }
    w->out_len += k;
    if (e->at < v->base)
        consumed(w, v, e->at + e->size);
    else
        w->emitted = e->at + e->size; /* (nothing held before it) */
    return 0;
}

static void on_stack(void *ctx, const vmp_stack_record *r)
{
    vmp_compact_writer *w = ctx;
    if (w->failed)
        return;
    queued e = {r->at, r->size, r->stack_at, r->stack_len, 0, 0};
    if (r->defines != VMP_NO_STACK_ID) {
        uint64_t tail = (uint64_t)r->size - r->stack_at - r->stack_len;
        int width[TAIL_WORDS];
        uint64_t keep = (uint64_t)r->stack_at + r->stack_len;
        if (r->stack_at > HEAD_MAX || tail_words(tail, width) < 0 ||
            w->defined_bytes + keep > VMP_COMPACT_DEFINED_MAX)
            return; /* verbatim, and so are its repeats */
        size_t had = w->ids_cap;
        if (vmp_array_grow((void **)&w->ids, &w->ids_cap, (size_t)r->defines + 1,
                           sizeof *w->ids) < 0 ||
            vmp_array_grow((void **)&w->defs, &w->defs_cap, w->n_defs + 1, sizeof *w->defs) < 0) {
            w->failed = 1;
            return;
        }
        /* (new room comes uninitialised: 0 is "not defined") */
        memset(w->ids + had, 0, (w->ids_cap - had) * sizeof *w->ids);
        w->ids[r->defines] = (uint32_t)w->n_defs + 1;
        w->defs[w->n_defs] = (defined){r->stack_at, r->stack_len, (uint32_t)tail,
                                       tail_words(tail, width), {0}};
        e.id = (uint32_t)w->n_defs++;
        e.define = 1;
        w->defined_bytes += keep;
    } else if (r->repeat_of != VMP_NO_STACK_ID && r->repeat_of < w->ids_cap &&
               w->ids[r->repeat_of]) {
        e.id = w->ids[r->repeat_of] - 1;
    } else {
        return;
    }
    if (!w->q_len && e.at == w->emitted) {
        /* Nothing before it waits: written now, from where the decoder read
         * it (a second pass over the piece after the push cost as much as a
         * fifth of the decoding).  Not exact as a reference: it waits, and
         * goes verbatim. */
        view v = {NULL, w->in_total};
        const unsigned char *rec = vmp_decoder_observed_bytes(w->d);
        if ((e.define ? define_item(w, &v, &e, rec) : ref_item(w, &v, &e, rec)) < 0)
            w->failed = 1;
        if (w->failed || w->emitted > e.at)
            return;
    }
    if (w->q_len == w->q_cap &&
        vmp_array_grow((void **)&w->q, &w->q_cap, w->q_len + 1, sizeof *w->q) < 0) {
        w->failed = 1;
        return;
    }
    w->q[w->q_len++] = e;
}

/* Writes the queued records and the settled bytes up to `settled`; holds
 * the rest of the piece. */
static int advance(vmp_compact_writer *w, const unsigned char *piece, size_t n, uint64_t settled)
{
    view v = {piece, w->in_total};
    uint64_t end = w->in_total + n;
    for (size_t i = 0; i < w->q_len && !w->failed; i++) {
        const queued *e = &w->q[i];
        if (e->at < w->emitted || e->at + e->size > end) {
            /* Cannot be when the decoder was given the same bytes first; the
             * ids would no longer match the file's. */
            w->failed = 1;
            break;
        }
        if ((e->define ? define_item(w, &v, e, NULL) : ref_item(w, &v, e, NULL)) < 0)
            w->failed = 1;
    }
    w->q_len = 0;
    if (w->failed)
        return -1;
    if (settled > end)
        settled = end;
    if (verbatim(w, &v, settled) < 0)
        return -1;
    /* hold = input [emitted, end) */
    if (w->emitted < end) {
        uint64_t from = w->emitted > v.base ? w->emitted : v.base;
        size_t add = (size_t)(end - from);
        if (vmp_array_grow((void **)&w->hold, &w->hold_cap, w->hold_len + add, 1) < 0)
            return w->failed = 1, -1;
        memcpy(w->hold + w->hold_len, piece + (from - v.base), add);
        w->hold_len += add;
    }
    w->in_total = end;
    return 0;
}

int vmp_compact_write(vmp_compact_writer *w, const void *data, size_t n)
{
    if (w->failed)
        return -1;
    return advance(w, data, n, vmp_decoder_settled(w->d));
}

int vmp_compact_end(vmp_compact_writer *w)
{
    int rc = w->failed ? -1 : advance(w, NULL, 0, UINT64_MAX);
    if (rc == 0) {
        unsigned char h[11], check[CHECK_LEN];
        h[0] = ITEM_END;
        size_t k = 1 + put_varint(h + 1, w->in_total);
        rc = emit(w, h, k) < 0 || flush(w) < 0 ? -1 : 0;
        if (rc == 0) {
            store_word(check, sum_final(&w->check), CHECK_LEN);
            rc = emit(w, check, CHECK_LEN) < 0 || flush(w) < 0 ? -1 : 0;
        }
    }
    vmp_compact_writer_free(w);
    return rc;
}

void vmp_compact_writer_free(vmp_compact_writer *w)
{
    if (!w)
        return;
    free(w->hold);
    free(w->q);
    free(w->ids);
    free(w->defs);
    free(w->out);
    free(w->scratch);
    free(w);
}

uint64_t vmp_compact_written(const vmp_compact_writer *w)
{
    return w->written + w->out_len;
}

/* ---- the reader -------------------------------------------------------------- */

typedef struct kept {
    size_t at;  /* in store */
    uint32_t head_len, stack_len, tail_len;
} kept;

struct vmp_compact_reader {
    vmp_compact_source src;
    void *ctx;
    unsigned char in[IN_BUF];
    size_t in_pos, in_len;
    int started, ended, broken;
    char error[160];
    kept *defs;
    size_t n_defs, defs_cap;
    unsigned char *store; /* the defined records' head + stack bytes */
    size_t store_len, store_cap;
    unsigned char *rec;   /* the record being given back */
    size_t rec_len, rec_pos, rec_cap;
    uint64_t verbatim_left;
    uint64_t given;
    uint64_t prev[TAIL_WORDS];
    int checked;        /* the file ends with a checksum (not version 1) */
    sum check;          /* of the bytes of in before summed, and of those before */
    size_t summed;
};

vmp_compact_reader *vmp_compact_reader_new(vmp_compact_source src, void *ctx)
{
    vmp_compact_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->src = src;
    r->ctx = ctx;
    sum_init(&r->check);
    return r;
}

/* Adds what was read of in since the last call to the checksum. */
static void sum_read(vmp_compact_reader *r)
{
    sum_update(&r->check, r->in + r->summed, r->in_pos - r->summed);
    r->summed = r->in_pos;
}

static int broken(vmp_compact_reader *r, const char *what)
{
    if (!r->broken)
        snprintf(r->error, sizeof r->error, "the compact profile is damaged: %s", what);
    r->broken = 1;
    return -1;
}

/* Makes at least one input byte available: 1, 0 at the end of the file, -1. */
static int fill(vmp_compact_reader *r)
{
    if (r->in_pos < r->in_len)
        return 1;
    sum_read(r);
    ssize_t k = r->src(r->ctx, r->in, sizeof r->in);
    if (k < 0) {
        if (!r->broken)
            snprintf(r->error, sizeof r->error, "the compact profile cannot be read");
        r->broken = 1;
        return -1;
    }
    r->in_pos = r->summed = 0;
    r->in_len = (size_t)k;
    return k > 0;
}

static int take(vmp_compact_reader *r, void *dst, size_t n)
{
    unsigned char *p = dst;
    while (n) {
        int f = fill(r);
        if (f <= 0)
            return f < 0 ? -1 : broken(r, "it is cut short");
        size_t k = r->in_len - r->in_pos < n ? r->in_len - r->in_pos : n;
        memcpy(p, r->in + r->in_pos, k);
        r->in_pos += k, p += k, n -= k;
    }
    return 0;
}

static int varint(vmp_compact_reader *r, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        unsigned char b;
        if (take(r, &b, 1) < 0)
            return -1;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return broken(r, "a number is too long");
}

static int rec_room(vmp_compact_reader *r, size_t n)
{
    if (vmp_array_grow((void **)&r->rec, &r->rec_cap, n ? n : 1, 1) < 0) {
        snprintf(r->error, sizeof r->error, "out of memory expanding the compact profile");
        r->broken = 1;
        return -1;
    }
    return 0;
}

static int read_define(vmp_compact_reader *r)
{
    uint64_t head, stack, tail;
    int width[TAIL_WORDS];
    if (varint(r, &head) < 0 || varint(r, &stack) < 0 || varint(r, &tail) < 0)
        return -1;
    if (head > HEAD_MAX || tail_words(tail, width) < 0 ||
        r->store_len + head + stack > VMP_COMPACT_DEFINED_MAX)
        return broken(r, "a defined record is out of bounds");
    size_t keep = (size_t)(head + stack), size = keep + (size_t)tail;
    if (rec_room(r, size) < 0 || take(r, r->rec, size) < 0)
        return -1;
    if (vmp_array_grow((void **)&r->store, &r->store_cap, r->store_len + keep, 1) < 0 ||
        vmp_array_grow((void **)&r->defs, &r->defs_cap, r->n_defs + 1, sizeof *r->defs) < 0)
        return broken(r, "out of memory");
    memcpy(r->store + r->store_len, r->rec, keep);
    r->defs[r->n_defs++] = (kept){r->store_len, (uint32_t)head, (uint32_t)stack, (uint32_t)tail};
    r->store_len += keep;
    r->rec_len = size;
    r->rec_pos = 0;
    return 0;
}

static int read_ref(vmp_compact_reader *r)
{
    uint64_t id;
    if (varint(r, &id) < 0)
        return -1;
    if (id >= r->n_defs)
        return broken(r, "a reference to a stack not defined before it");
    const kept *k = &r->defs[id];
    size_t keep = (size_t)k->head_len + k->stack_len;
    int width[TAIL_WORDS];
    int nw = tail_words(k->tail_len, width);
    if (rec_room(r, keep + k->tail_len) < 0)
        return -1;
    memcpy(r->rec, r->store + k->at, keep);
    unsigned char *t = r->rec + keep;
    for (int i = 0; i < nw; t += width[i], i++) {
        uint64_t zz;
        if (varint(r, &zz) < 0)
            return -1;
        uint64_t delta = (zz >> 1) ^ (0 - (zz & 1));
        r->prev[i] += delta;
        store_word(t, r->prev[i], width[i]);
    }
    r->rec_len = keep + k->tail_len;
    r->rec_pos = 0;
    return 0;
}

/* Reads the next item's head; 0, or -1. */
static int next_item(vmp_compact_reader *r)
{
    unsigned char tag;
    int f = fill(r);
    if (f <= 0)
        return f < 0 ? -1 : broken(r, "it is cut short (no end)");
    tag = r->in[r->in_pos++];
    uint64_t n;
    switch (tag) {
    case ITEM_VERBATIM:
        if (varint(r, &n) < 0)
            return -1;
        r->verbatim_left = n;
        return 0;
    case ITEM_DEFINE:
        return read_define(r);
    case ITEM_REF:
        return read_ref(r);
    case ITEM_END:
        if (varint(r, &n) < 0)
            return -1;
        if (n != r->given)
            return broken(r, "its length does not match");
        if (r->checked) {
            unsigned char check[CHECK_LEN];
            sum_read(r);
            uint64_t want = sum_final(&r->check);
            r->checked = 0; /* the checksum's own bytes are not summed */
            if (take(r, check, CHECK_LEN) < 0)
                return -1;
            if (load_word(check, CHECK_LEN) != want)
                return broken(r, "its checksum does not match (bytes changed on the disk: restore the file from a backup)");
        }
        if (fill(r) != 0)
            return broken(r, "bytes follow its end");
        r->ended = 1;
        return 0;
    default:
        return broken(r, "an unknown item");
    }
}

ssize_t vmp_compact_read(vmp_compact_reader *r, void *buf, size_t n)
{
    if (r->broken)
        return -1;
    if (!r->started) {
        unsigned char magic[VMP_COMPACT_MAGIC_LEN];
        if (take(r, magic, sizeof magic) < 0)
            return -1;
        r->checked = memcmp(magic, VMP_COMPACT_MAGIC, VMP_COMPACT_MAGIC_LEN) == 0;
        if (!r->checked && memcmp(magic, MAGIC_V1, VMP_COMPACT_MAGIC_LEN) != 0)
            return broken(r, "it does not start with the compact form's magic");
        r->started = 1;
    }
    unsigned char *out = buf;
    size_t got = 0;
    while (got < n && !r->ended) {
        if (r->rec_pos < r->rec_len) {
            size_t k = r->rec_len - r->rec_pos < n - got ? r->rec_len - r->rec_pos : n - got;
            memcpy(out + got, r->rec + r->rec_pos, k);
            r->rec_pos += k, got += k, r->given += k;
        } else if (r->verbatim_left) {
            int f = fill(r);
            if (f <= 0)
                return f < 0 ? -1 : broken(r, "it is cut short");
            size_t k = r->in_len - r->in_pos;
            if (k > n - got)
                k = n - got;
            if (k > r->verbatim_left)
                k = (size_t)r->verbatim_left;
            memcpy(out + got, r->in + r->in_pos, k);
            r->in_pos += k, got += k, r->given += k, r->verbatim_left -= k;
        } else if (next_item(r) < 0) {
            return -1;
        }
    }
    return (ssize_t)got;
}

const char *vmp_compact_reader_error(const vmp_compact_reader *r)
{
    return r->error[0] ? r->error : "";
}

void vmp_compact_reader_free(vmp_compact_reader *r)
{
    if (!r)
        return;
    free(r->defs);
    free(r->store);
    free(r->rec);
    free(r);
}
