/* test_compact.c - the decoder's stack observer (vmp_decoder_observe) and the
 * compact lossless form built on it (vmp_compact.h): every profile the
 * decoder accepts comes back byte for byte, pushed and read in pieces of any
 * size, for every fixture, for generated shapes (4- and 8-byte words, memory,
 * lines, sample times, mostly distinct stacks past the kept-bytes cap) and
 * under random mutations; a damaged compact file is an error, not a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmp_compact.h"
#include "vmp_encode.h"
#include "vmp_test.h"
#include "vmprof.h"

static uint64_t rng;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A piece size: mostly small and odd, sometimes large. */
static size_t piece_size(void)
{
    switch (next_random() % 4) {
    case 0: return 1 + next_random() % 8;
    case 1: return 1 + next_random() % 400;
    case 2: return 1 + next_random() % 70000;
    default: return 1 << 20;
    }
}

typedef struct buf {
    unsigned char *data;
    size_t len, cap;
} buf;

static int to_buf(void *ctx, const void *data, size_t n)
{
    buf *b = ctx;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

typedef struct from_buf {
    const unsigned char *data;
    size_t len, pos;
} from_buf;

static ssize_t read_buf(void *ctx, void *out, size_t n)
{
    from_buf *s = ctx;
    size_t k = s->len - s->pos < n ? s->len - s->pos : n;
    /* (short reads, as a file or a decompressor may give) */
    if (k > 1 && next_random() % 3 == 0)
        k = 1 + next_random() % k;
    memcpy(out, s->data + s->pos, k);
    s->pos += k;
    return (ssize_t)k;
}

/* Expands a compact file in reads of random sizes: the bytes, or NULL
 * (damaged); *len receives their count. */
static unsigned char *expand(const unsigned char *c, size_t clen, size_t *len)
{
    from_buf s = {c, clen, 0};
    vmp_compact_reader *r = vmp_compact_reader_new(read_buf, &s);
    buf out = {0};
    unsigned char tmp[9000];
    ssize_t k;
    do {
        size_t want = 1 + next_random() % sizeof tmp;
        k = vmp_compact_read(r, tmp, want);
        if (k > 0 && to_buf(&out, tmp, (size_t)k) < 0)
            k = -1;
    } while (k > 0);
    if (k < 0)
        CHECK(vmp_compact_reader_error(r)[0] != 0);
    vmp_compact_reader_free(r);
    if (k < 0) {
        free(out.data);
        return NULL;
    }
    *len = out.len;
    return out.data ? out.data : calloc(1, 1);
}

/* Decodes d while writing its compact form, in pieces of random sizes.
 * Returns 1 when the decoder accepted the profile (compact then holds the
 * form), 0 when it refused it. */
static int compact(const unsigned char *d, size_t len, buf *compact)
{
    vmp_error err;
    vmp_decoder *dec = vmp_decoder_new(NULL, &err);
    vmp_compact_writer *w = vmp_compact_writer_new(dec, to_buf, compact);
    CHECK(w != NULL);
    for (size_t at = 0; at < len;) {
        size_t n = piece_size();
        if (n > len - at)
            n = len - at;
        if (vmp_decoder_push(dec, d + at, n, &err) < 0) {
            vmp_compact_writer_free(w);
            vmp_decoder_free(dec);
            return 0;
        }
        CHECK(vmp_compact_write(w, d + at, n) == 0);
        at += n;
    }
    vmp_profile *p = vmp_decoder_finish(dec, &err);
    if (!p) {
        vmp_compact_writer_free(w);
        return 0;
    }
    vmp_profile_free(p);
    CHECK(vmp_compact_end(w) == 0);
    return 1;
}

/* The round trip; returns the compact size (0 when the decoder refused). */
static size_t round_trip(const unsigned char *d, size_t len)
{
    buf c = {0};
    if (!compact(d, len, &c)) {
        free(c.data);
        return 0;
    }
    size_t back_len = 0;
    unsigned char *back = expand(c.data, c.len, &back_len);
    CHECK(back != NULL);
    CHECK(back && back_len == len && memcmp(back, d, len) == 0);
    free(back);
    free(c.data);
    return c.len;
}

static const char *const fixtures[] = {
    "calc_py311.prof", "calc_py310.prof", "calc_py39.prof", "calc_lines_py311.prof",
    "calc_native_py311.prof", "calc_pypy.prof", "grow_mem_py311.prof", "pool_py311.prof",
    "pool_realtime_py311.prof", "../../vmprof06/v7_plain.prof", "../../vmprof06/v7_lines.prof",
    "../../vmprof06/v7_mem.prof",
};

VMP_TEST(compact_gives_back_every_fixture_byte_for_byte)
{
    rng = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        size_t len;
        unsigned char *d = vmp_test_read_file(vmp_fixture(fixtures[i]), &len);
        REQUIRE(d);
        for (int round = 0; round < 3; round++) {
            size_t clen = round_trip(d, len);
            CHECK(clen > 0);
            /* every fixture repeats stacks: the form is smaller */
            CHECK(clen < len);
        }
        free(d);
    }
}

/* ---- generated profiles ------------------------------------------------------ */

typedef struct shape {
    int word;          /* 4 or 8 */
    unsigned mode;     /* VMP_MODE_* */
    int with_time;     /* version 7: each record ends with its time */
    size_t samples, stacks;
    int trailer;
} shape;

/* A profile of `samples` records over `stacks` distinct stacks (a few hot),
 * with names and, when asked, a trailer. */
static unsigned char *generate(const shape *sh, size_t *len)
{
    size_t cap = 64 * 1024 + sh->samples * (64 * 8 * 2 + 64) + sh->stacks * 64;
    unsigned char *mem = malloc(cap);
    vmp_wbuf b;
    vmp_wbuf_init_words(&b, mem, cap, sh->word);
    vmp_enc_static_header(&b, 1000);
    size_t header_at = b.len;
    vmp_enc_header(&b, sh->mode, "cpython");
    if (sh->with_time) {
        mem[header_at + 1] = 0; /* version, big-endian in the header */
        mem[header_at + 2] = VMP_FORMAT_VERSION_SAMPLE_TIME;
    }
    vmp_enc_time_n_zone(&b, 1795000000, 1, "UTC");
    vmp_enc_meta(&b, "argv", 4, "gen", 3);
    int pairs = (sh->mode & (VMP_MODE_LINES | VMP_MODE_RPYTHON)) != 0;
    uint64_t mask = sh->word == 4 ? 0xffffffffULL : ~0ULL;
    int64_t t = 1000000;
    uint64_t rss = 5000;
    for (size_t i = 0; i < sh->samples; i++) {
        /* Zipf-like: low stack numbers come more often */
        uint64_t r = next_random();
        size_t s = (size_t)((r % sh->stacks) * ((r >> 32) % 1000) / 1000);
        uint64_t seed = s * 0x9e3779b97f4a7c15ULL + 1;
        size_t depth = 1 + seed % 30;
        uint64_t e[64 * 2];
        size_t n = 0;
        for (size_t k = 0; k < depth; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            if (pairs)
                e[n++] = 1 + (seed >> 50);
            e[n++] = ((seed >> 8) & mask & ~(uint64_t)1) | 0x1000;
        }
        if (next_random() % 7 == 0)
            rss += next_random() % 100;
        vmp_enc_stack(&b, e, n, 100 + s % 3, (sh->mode & VMP_MODE_MEMORY) != 0, rss & mask);
        if (sh->with_time) {
            t += (int64_t)(next_random() % 3000000);
            memcpy(mem + b.len, &t, 8);
            b.len += 8;
        }
    }
    for (uint64_t k = 0; k < 50; k++) {
        char name[64];
        int nl = snprintf(name, sizeof name, "py:f%llu:%llu:/x.py", (unsigned long long)k,
                          (unsigned long long)k);
        vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 0x1000 + k * 16, name, (size_t)nl);
    }
    if (sh->trailer)
        vmp_enc_trailer(&b, 1795000100, 2, "UTC");
    *len = b.len;
    return mem;
}

VMP_TEST(compact_gives_back_generated_shapes_byte_for_byte)
{
    static const shape shapes[] = {
        {8, 0, 0, 20000, 300, 1},
        {4, 0, 0, 20000, 300, 1},
        {8, VMP_MODE_MEMORY, 0, 20000, 300, 0},
        {4, VMP_MODE_MEMORY, 1, 20000, 300, 1},
        {8, VMP_MODE_MEMORY | VMP_MODE_LINES, 1, 20000, 300, 1},
        {4, VMP_MODE_LINES, 0, 20000, 300, 0},
        {8, 0, 1, 20000, 20000, 1},   /* mostly distinct */
    };
    rng = 12345;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        size_t len;
        unsigned char *d = generate(&shapes[i], &len);
        size_t clen = round_trip(d, len);
        CHECK(clen > 0);
        if (shapes[i].stacks < 1000)
            CHECK(clen * 5 < len); /* references were made */
        free(d);
    }
}

VMP_TEST(compact_past_the_kept_bytes_cap_stays_exact)
{
    /* ~100,000 distinct stacks of ~15 8-byte words: past the 8 MiB of defined
     * records a file keeps; later repeats of those stay verbatim */
    shape sh = {8, VMP_MODE_MEMORY, 1, 160000, 100000, 1};
    rng = 777;
    size_t len;
    unsigned char *d = generate(&sh, &len);
    buf c = {0};
    REQUIRE(compact(d, len, &c));
    size_t back_len = 0;
    unsigned char *back = expand(c.data, c.len, &back_len);
    CHECK(back && back_len == len && memcmp(back, d, len) == 0);
    free(back);
    free(c.data);
    free(d);
}

/* ---- the observer ------------------------------------------------------------ */

typedef struct watched {
    const unsigned char *input;
    const unsigned char *defined[4096]; /* id -> its stack bytes in the input */
    uint32_t defined_len[4096];
    uint64_t next, repeats, defines, records;
    int bad;
} watched;

static void watch(void *ctx, const vmp_stack_record *r)
{
    watched *w = ctx;
    const unsigned char *stack = w->input + r->at + r->stack_at;
    w->records++;
    if (r->at < w->next)
        w->bad = 1;
    w->next = r->at + r->size;
    if (w->input[r->at] != VMP_TAG_STACKTRACE)
        w->bad = 1;
    if (r->defines != VMP_NO_STACK_ID) {
        if (r->defines != w->defines || r->repeat_of != VMP_NO_STACK_ID)
            w->bad = 1;
        if (r->defines < 4096) {
            w->defined[r->defines] = stack;
            w->defined_len[r->defines] = r->stack_len;
        }
        w->defines++;
    }
    if (r->repeat_of != VMP_NO_STACK_ID) {
        w->repeats++;
        if (r->repeat_of >= w->defines ||
            (r->repeat_of < 4096 && (w->defined_len[r->repeat_of] != r->stack_len ||
                                     memcmp(w->defined[r->repeat_of], stack, r->stack_len))))
            w->bad = 1;
    }
}

VMP_TEST(observer_reports_each_stack_record_and_exact_repeats)
{
    size_t len;
    unsigned char *d = vmp_test_read_file(vmp_fixture("calc_lines_py311.prof"), &len);
    REQUIRE(d);
    watched *w = calloc(1, sizeof *w);
    w->input = d;
    vmp_error err;
    vmp_decoder *dec = vmp_decoder_new(NULL, &err);
    vmp_decoder_observe(dec, watch, w);
    CHECK(vmp_decoder_settled(dec) == 0);
    for (size_t at = 0; at < len; at += 333) {
        size_t n = len - at < 333 ? len - at : 333;
        REQUIRE(vmp_decoder_push(dec, d + at, n, &err) == 0);
        uint64_t settled = vmp_decoder_settled(dec);
        /* settled: past every record observed, within the bytes pushed */
        CHECK(settled == UINT64_MAX || (settled >= w->next && settled <= at + n));
    }
    vmp_profile *p = vmp_decoder_finish(dec, &err);
    REQUIRE(p);
    vmp_facts f;
    vmp_profile_facts(p, &f);
    CHECK(!w->bad);
    CHECK(w->records == f.n_samples);
    CHECK(w->repeats > 0 && w->defines > 0);
    CHECK(w->repeats + w->defines <= w->records);
    vmp_profile_free(p);
    free(w);
    free(d);
}

/* ---- random mutations ----------------------------------------------------------- */

static void mutate(unsigned char *d, size_t *len, size_t cap)
{
    int kinds = 1 + (int)(next_random() % 4);
    for (int k = 0; k < kinds; k++) {
        size_t n = *len;
        if (!n)
            return;
        size_t at = (size_t)(next_random() % n);
        switch (next_random() % 5) {
        case 0: /* flip a byte */
            d[at] ^= (unsigned char)(1 + next_random() % 255);
            break;
        case 1: /* cut the file */
            *len = at;
            break;
        case 2: { /* repeat a stretch (records again, or a record's middle) */
            size_t span = 1 + (size_t)(next_random() % 600);
            if (at + span > n)
                span = n - at;
            if (n + span <= cap) {
                memmove(d + at + span, d + at, n - at);
                *len = n + span;
            }
            break;
        }
        case 3: { /* drop a stretch */
            size_t span = 1 + (size_t)(next_random() % 64);
            if (at + span > n)
                span = n - at;
            memmove(d + at, d + at + span, n - at - span);
            *len = n - span;
            break;
        }
        default: /* a word's low byte set, as an rss or a time might be */
            d[at] = (unsigned char)next_random();
            break;
        }
    }
}

VMP_TEST(compact_is_exact_for_whatever_the_decoder_accepts_under_mutation)
{
    static const char *const seeds[] = {"calc_py311.prof", "grow_mem_py311.prof",
                                        "calc_lines_py311.prof", "../../vmprof06/v7_mem.prof"};
    rng = 2026;
    int accepted = 0, refused = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        size_t len;
        unsigned char *orig = vmp_test_read_file(vmp_fixture(seeds[s]), &len);
        REQUIRE(orig);
        size_t cap = len * 2 + 4096;
        unsigned char *d = malloc(cap);
        for (int i = 0; i < 60; i++) {
            size_t n = len;
            memcpy(d, orig, len);
            mutate(d, &n, cap);
            if (round_trip(d, n))
                accepted++;
            else
                refused++;
        }
        free(d);
        free(orig);
    }
    /* both verdicts were exercised */
    CHECK(accepted > 20 && refused > 5);
}

VMP_TEST(a_damaged_compact_file_is_an_error_not_a_crash)
{
    size_t len;
    unsigned char *d = vmp_test_read_file(vmp_fixture("grow_mem_py311.prof"), &len);
    REQUIRE(d);
    rng = 99;
    buf c = {0};
    REQUIRE(compact(d, len, &c));
    unsigned char *m = malloc(c.len);
    int errors = 0;
    for (int i = 0; i < 200; i++) {
        memcpy(m, c.data, c.len);
        size_t n = c.len;
        if (i % 4 == 0)
            n = (size_t)(next_random() % c.len); /* cut short: always an error */
        else
            m[next_random() % n] ^= (unsigned char)(1 + next_random() % 255);
        size_t back_len = 0;
        unsigned char *back = expand(m, n, &back_len);
        if (!back)
            errors++;
        /* cut short, or changed: the end item's checksum tells */
        CHECK(back == NULL);
        free(back);
    }
    CHECK(errors == 200);
    free(m);
    free(c.data);
    free(d);
}

/* The reader's error for a compact file, or NULL when it reads whole. */
static int reads_whole(const unsigned char *c, size_t clen, const char **error,
                       vmp_compact_reader **keep)
{
    from_buf s = {c, clen, 0};
    vmp_compact_reader *r = vmp_compact_reader_new(read_buf, &s);
    unsigned char tmp[4096];
    ssize_t k;
    while ((k = vmp_compact_read(r, tmp, sizeof tmp)) > 0)
        ;
    *error = vmp_compact_reader_error(r);
    *keep = r;
    return k == 0;
}

VMP_TEST(one_byte_changed_anywhere_in_a_compact_file_is_an_error)
{
    /* Whatever byte of the file changes, in a stack's bytes, a reference's
     * delta or a verbatim stretch, the file never reads whole as a profile
     * that would be wrong: the end item's checksum differs. */
    size_t len;
    unsigned char *d = vmp_test_read_file(vmp_fixture("calc_py311.prof"), &len);
    REQUIRE(d);
    rng = 7;
    buf c = {0};
    REQUIRE(compact(d, len, &c));
    unsigned char *m = malloc(c.len);
    int flips = 0, said_checksum = 0;
    size_t step = c.len / 3000 + 1;
    for (size_t at = 0; at < c.len; at += step) {
        memcpy(m, c.data, c.len);
        m[at] ^= (unsigned char)(1u << (at % 8));
        const char *error;
        vmp_compact_reader *r;
        CHECK(!reads_whole(m, c.len, &error, &r));
        CHECK(error[0] != 0);
        said_checksum += strstr(error, "checksum does not match") != NULL;
        vmp_compact_reader_free(r);
        flips++;
    }
    CHECK(flips > 100);
    /* most changes leave the structure readable: only the checksum tells */
    CHECK(said_checksum > flips / 2);
    free(m);
    free(c.data);
    free(d);
}

VMP_TEST(a_compact_file_of_the_first_version_still_reads)
{
    /* Version 1 ("vmpCMP01") ended without the checksum: data folders keep
     * such files, and they still give back their bytes. */
    size_t len;
    unsigned char *d = vmp_test_read_file(vmp_fixture("calc_py311.prof"), &len);
    REQUIRE(d);
    rng = 11;
    buf c = {0};
    REQUIRE(compact(d, len, &c));
    REQUIRE(c.len > VMP_COMPACT_MAGIC_LEN + 8);
    CHECK(memcmp(c.data, VMP_COMPACT_MAGIC, VMP_COMPACT_MAGIC_LEN) == 0);
    memcpy(c.data, "vmpCMP01", VMP_COMPACT_MAGIC_LEN);
    size_t back_len = 0;
    unsigned char *back = expand(c.data, c.len - 8, &back_len);
    CHECK(back && back_len == len && memcmp(back, d, len) == 0);
    free(back);
    /* a version-1 file is not taken for a version-2 one with its check cut */
    memcpy(c.data, VMP_COMPACT_MAGIC, VMP_COMPACT_MAGIC_LEN);
    CHECK(expand(c.data, c.len - 8, &back_len) == NULL);
    free(c.data);
    free(d);
}

VMP_TEST(a_compact_writer_comes_before_the_first_record_is_read)
{
    size_t len;
    unsigned char *d = vmp_test_read_file(vmp_fixture("calc_py311.prof"), &len);
    REQUIRE(d);
    vmp_error err;
    vmp_decoder *dec = vmp_decoder_new(NULL, &err);
    REQUIRE(vmp_decoder_push(dec, d, len / 2, &err) == 0);
    buf c = {0};
    /* records were read unobserved: a writer now could not know their ids */
    CHECK(vmp_compact_writer_new(dec, to_buf, &c) == NULL);
    vmp_decoder_free(dec);
    free(c.data);
    free(d);
}
