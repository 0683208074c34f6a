/* test_decode.c - the decoder: round trips through the encoder, every mode,
 * word sizes, gzip, pipes, truncation and each kind of corrupt input. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "vmp_encode.h"
#include "vmp_profile.h"
#include "vmp_test.h"

/* ---- helpers -------------------------------------------------------------- */

typedef struct sample_spec {
    uint64_t entries[8]; /* as written: innermost first, pairs in LINES/RPYTHON */
    size_t n;
    uint64_t thread;
    uint64_t rss;
} sample_spec;

static const sample_spec SAMPLES[] = {
    {{0x1000, 0x2000, 0x3000}, 3, 77, 100},
    {{0x1008, 0x2000, 0x3000}, 3, 77, 300},
    {{0x1000, 0x2000, 0x3000}, 3, 78, 200},
    {{0x1000, 0x2000, 0x3000}, 3, 77, 50},
};
#define N_SAMPLES (sizeof SAMPLES / sizeof SAMPLES[0])

/* A complete profile in mem with the given word size and mode. */
static size_t write_profile(unsigned char *mem, size_t cap, int word, unsigned mode,
                            int trailer)
{
    vmp_wbuf b;
    if (vmp_wbuf_init_words(&b, mem, cap, word) < 0)
        return 0;
    vmp_enc_static_header(&b, 990);
    vmp_enc_header(&b, mode, "cpython");
    vmp_enc_time_n_zone(&b, 1700000000, 123456, "UTC");
    vmp_enc_meta(&b, "os", 2, "linux", 5);
    vmp_enc_meta(&b, "bits", 4, "64", 2);
    vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 0x3000, "py:main:1:a.py", 14);
    for (size_t i = 0; i < N_SAMPLES; i++)
        vmp_enc_stack(&b, SAMPLES[i].entries, SAMPLES[i].n, SAMPLES[i].thread,
                      (mode & VMP_MODE_MEMORY) != 0, SAMPLES[i].rss);
    vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 0x2000, "py:f:2:a.py", 11);
    vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 0x1000, "py:g:3:a.py", 11);
    vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 0x1008, "py:h:4:a.py", 11);
    if (trailer)
        vmp_enc_trailer(&b, 1700000005, 5, "UTC");
    return b.len;
}

static vmp_profile *read_mem(const void *data, size_t len, int strict, vmp_error *err)
{
    vmp_read_options o = {strict};
    return vmp_profile_read_memory(data, len, &o, err);
}

static size_t gzip_bytes(const unsigned char *in, size_t len, unsigned char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    zs.next_in = (unsigned char *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? n : 0;
}

/* Two profiles hold the same summary, names, stacks and sample sequence. */
static int same_profile(const vmp_profile *a, const vmp_profile *b)
{
    const vmp_profile_summary *sa = vmp_profile_get_summary(a), *sb = vmp_profile_get_summary(b);
    if (sa->n_samples != sb->n_samples || sa->mode != sb->mode || sa->version != sb->version ||
        strcmp(sa->interp, sb->interp) != 0 || sa->max_rss_kib != sb->max_rss_kib ||
        sa->complete != sb->complete || sa->truncated_at != sb->truncated_at)
        return 0;
    if (vmp_profile_stack_count(a) != vmp_profile_stack_count(b) ||
        vmp_profile_name_count(a) != vmp_profile_name_count(b) ||
        vmp_profile_thread_count(a) != vmp_profile_thread_count(b))
        return 0;
    for (size_t i = 0; i < vmp_profile_stack_count(a); i++) {
        vmp_stack x, y;
        vmp_profile_stack_at(a, i, &x);
        vmp_profile_stack_at(b, i, &y);
        if (x.depth != y.depth || x.count != y.count || x.thread_index != y.thread_index)
            return 0;
        for (uint32_t j = 0; j < x.depth; j++)
            if (x.frames[j].addr != y.frames[j].addr || x.frames[j].line != y.frames[j].line ||
                x.frames[j].kind != y.frames[j].kind)
                return 0;
    }
    for (uint64_t i = 0; i < sa->n_samples; i++)
        if (vmp_profile_sample_stack(a, i) != vmp_profile_sample_stack(b, i) ||
            vmp_profile_sample_rss(a, i) != vmp_profile_sample_rss(b, i))
            return 0;
    return 1;
}

/* ---- round trips ------------------------------------------------------------ */

static void check_round_trip(int word, unsigned mode)
{
    unsigned char mem[4096];
    size_t len = write_profile(mem, sizeof mem, word, mode, 1);
    vmp_error err;
    vmp_profile *p = read_mem(mem, len, 1, &err);
    if (!p)
        fprintf(stderr, "  %s\n", err.message);
    REQUIRE(p);
    const vmp_profile_summary *s = vmp_profile_get_summary(p);
    CHECK(s->version == VMP_FORMAT_VERSION && s->mode == mode && s->word_size == word);
    CHECK(strcmp(s->interp, "cpython") == 0 && s->period_usec == 990);
    CHECK(s->has_start_time && s->start_sec == 1700000000 && s->start_usec == 123456);
    CHECK(strcmp(s->start_zone, "UTC") == 0 && strcmp(s->end_zone, "UTC") == 0);
    CHECK(s->has_end_time && s->end_sec == 1700000005 && s->end_usec == 5);
    CHECK(s->complete == 1 && s->truncated_at == -1);
    CHECK(s->n_samples == N_SAMPLES);
    CHECK(vmp_profile_thread_count(p) == 2 && vmp_profile_thread_id(p, 1) == 78);
    CHECK(vmp_profile_meta_count(p) == 2);
    CHECK(vmp_profile_name_count(p) == 4);
    size_t nl;
    const char *n = vmp_profile_name(p, 0x1008, &nl);
    CHECK(n && strcmp(n, "py:h:4:a.py") == 0);

    int pairs = (mode & (VMP_MODE_LINES | VMP_MODE_RPYTHON)) != 0;
    /* samples 0 and 3 share a stack; 2 is on another thread */
    CHECK(vmp_profile_stack_count(p) == 3);
    CHECK(vmp_profile_sample_stack(p, 0) == vmp_profile_sample_stack(p, 3));
    for (size_t i = 0; i < N_SAMPLES; i++) {
        vmp_stack st;
        vmp_profile_stack_at(p, vmp_profile_sample_stack(p, i), &st);
        const sample_spec *sp = &SAMPLES[i];
        REQUIRE(st.depth == (pairs ? sp->n / 2 : sp->n));
        CHECK(vmp_profile_thread_id(p, st.thread_index) == sp->thread);
        for (uint32_t j = 0; j < st.depth; j++) {
            if (pairs) {
                /* pairs as written: [first, second] innermost first */
                size_t k = (st.depth - 1 - j) * 2;
                CHECK(st.frames[j].addr == sp->entries[k + 1]);
                if (mode & VMP_MODE_LINES)
                    CHECK(st.frames[j].line == sp->entries[k]);
            } else {
                CHECK(st.frames[j].addr == sp->entries[sp->n - 1 - j]);
            }
        }
        CHECK(vmp_profile_sample_rss(p, i) == ((mode & VMP_MODE_MEMORY) ? sp->rss : 0));
    }
    CHECK(s->max_rss_kib == ((mode & VMP_MODE_MEMORY) ? 300 : 0));
    vmp_profile_free(p);
}

VMP_TEST(decode_round_trip_plain_8)
{
    check_round_trip(8, 0);
}

VMP_TEST(decode_round_trip_plain_4)
{
    check_round_trip(4, 0);
}

VMP_TEST(decode_round_trip_memory)
{
    check_round_trip(8, VMP_MODE_MEMORY | VMP_MODE_REAL_TIME);
    check_round_trip(4, VMP_MODE_MEMORY);
}

VMP_TEST(decode_round_trip_lines_pairs)
{
    /* the sample table read as [line, id] pairs: 1 frame for n=3 is odd, so
     * use a table of even stacks */
    unsigned char mem[4096];
    vmp_wbuf b;
    uint64_t e[4] = {12, 0x1000, 7, 0x3000}; /* inner: line 12 of 0x1000 */
    uint64_t nat[4] = {0, 0x5001, 9, 0x3000};
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    vmp_enc_static_header(&b, 990);
    vmp_enc_header(&b, VMP_MODE_LINES | VMP_MODE_NATIVE, "cpython");
    vmp_enc_stack(&b, e, 4, 1, 0, 0);
    vmp_enc_stack(&b, nat, 4, 1, 0, 0);
    vmp_error err;
    vmp_profile *p = read_mem(mem, b.len, 0, &err);
    REQUIRE(p);
    vmp_stack st;
    vmp_profile_stack_at(p, 0, &st);
    REQUIRE(st.depth == 2);
    CHECK(st.frames[0].addr == 0x3000 && st.frames[0].line == 7);
    CHECK(st.frames[1].addr == 0x1000 && st.frames[1].line == 12);
    CHECK(st.frames[1].kind == VMP_FRAME_PYTHON);
    vmp_profile_stack_at(p, 1, &st);
    CHECK(st.frames[1].addr == 0x5001 && st.frames[1].kind == VMP_FRAME_NATIVE);
    CHECK(vmp_profile_get_summary(p)->complete == 0);
    vmp_profile_free(p);
}

VMP_TEST(decode_rpython_pairs_map_kinds)
{
    unsigned char mem[4096];
    vmp_wbuf b;
    /* innermost first: gc, jitted, python code */
    uint64_t e[6] = {VMP_RPY_GC, 0, VMP_RPY_JITTED, 0x7777, VMP_RPY_PYTHON_CODE, 42};
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    vmp_enc_static_header(&b, 990);
    vmp_enc_header(&b, VMP_MODE_RPYTHON | VMP_MODE_NATIVE, "pypy");
    vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 42, "py:f:1:x.py", 11);
    vmp_enc_stack(&b, e, 6, 5, 0, 0);
    vmp_error err;
    vmp_profile *p = read_mem(mem, b.len, 0, &err);
    REQUIRE(p);
    CHECK(strcmp(vmp_profile_get_summary(p)->interp, "pypy") == 0);
    vmp_stack st;
    vmp_profile_stack_at(p, 0, &st);
    REQUIRE(st.depth == 3);
    CHECK(st.frames[0].addr == 42 && st.frames[0].kind == VMP_FRAME_PYTHON);
    CHECK(st.frames[1].addr == 0x7777 && st.frames[1].kind == VMP_FRAME_JIT);
    CHECK(st.frames[2].kind == VMP_FRAME_GC);
    vmp_profile_free(p);

    /* an unknown kind is corrupt input */
    e[0] = 9;
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    vmp_enc_static_header(&b, 990);
    vmp_enc_header(&b, VMP_MODE_RPYTHON, "pypy");
    size_t at = b.len;
    vmp_enc_stack(&b, e, 6, 5, 0, 0);
    p = read_mem(mem, b.len, 0, &err);
    CHECK(!p && err.offset == (int64_t)at && strstr(err.message, "kind 9"));
}

/* A file written before the HEADER record existed (version 0): no thread ids. */
VMP_TEST(decode_version_0_without_header_and_thread)
{
    unsigned char mem[256];
    uint64_t w[5 + 6] = {0, 3, 0, 1000, 0};
    size_t n = 5;
    unsigned char *q = mem;
    memcpy(q, w, n * 8);
    q += n * 8;
    *q++ = VMP_TAG_STACKTRACE;
    uint64_t rec[4] = {1, 2, 0x10, 0x20};
    memcpy(q, rec, sizeof rec);
    q += sizeof rec;
    vmp_error err;
    vmp_profile *p = read_mem(mem, (size_t)(q - mem), 1, &err);
    REQUIRE(p);
    const vmp_profile_summary *s = vmp_profile_get_summary(p);
    CHECK(s->version == 0 && s->n_samples == 1 && s->period_usec == 1000);
    CHECK(vmp_profile_thread_count(p) == 1 && vmp_profile_thread_id(p, 0) == 0);
    vmp_stack st;
    vmp_profile_stack_at(p, 0, &st);
    CHECK(st.depth == 2 && st.frames[0].addr == 0x20 && st.frames[1].addr == 0x10);
    vmp_profile_free(p);
}

/* Version 3 meant memory before the mode byte existed. */
VMP_TEST(decode_version_3_implies_memory)
{
    unsigned char mem[256];
    vmp_wbuf b;
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    vmp_enc_static_header(&b, 990);
    size_t h = b.len;
    mem[h] = VMP_TAG_HEADER;
    mem[h + 1] = 0;
    mem[h + 2] = 3;
    mem[h + 3] = 7;
    memcpy(mem + h + 4, "cpython", 7);
    b.len = h + 11;
    uint64_t e[1] = {0x40};
    vmp_enc_stack(&b, e, 1, 9, 1, 4321);
    vmp_error err;
    vmp_profile *p = read_mem(mem, b.len, 1, &err);
    REQUIRE(p);
    CHECK(vmp_profile_get_summary(p)->mode & VMP_MODE_MEMORY);
    CHECK(vmp_profile_get_summary(p)->max_rss_kib == 4321);
    CHECK(vmp_profile_sample_rss(p, 0) == 4321);
    vmp_profile_free(p);
}

/* 64-bit Windows: 4-byte words, 8-byte addresses (flag word 4 = 1). */
VMP_TEST(decode_win64_word4_addr8)
{
    unsigned char mem[256], *q = mem;
    uint32_t hdr[5] = {0, 3, 0, 1000, 1};
    memcpy(q, hdr, sizeof hdr);
    q += sizeof hdr;
    unsigned char h[5] = {VMP_TAG_HEADER, 0, 6, 0, 0};
    memcpy(q, h, sizeof h);
    q += sizeof h;
    *q++ = VMP_TAG_STACKTRACE;
    uint32_t cd[2] = {1, 1};
    memcpy(q, cd, sizeof cd);
    q += sizeof cd;
    uint64_t entries[2] = {0x7ff712345678ULL, 4242}; /* frame, thread id */
    memcpy(q, entries, sizeof entries);
    q += sizeof entries;
    vmp_error err;
    vmp_profile *p = read_mem(mem, (size_t)(q - mem), 1, &err);
    REQUIRE(p);
    CHECK(vmp_profile_get_summary(p)->word_size == 4 && vmp_profile_get_summary(p)->addr_size == 8);
    vmp_stack st;
    vmp_profile_stack_at(p, 0, &st);
    CHECK(st.depth == 1 && st.frames[0].addr == 0x7ff712345678ULL);
    CHECK(vmp_profile_thread_id(p, 0) == 4242);
    vmp_profile_free(p);
}

/* ---- truncation ------------------------------------------------------------- */

VMP_TEST(decode_missing_trailer_reads_everything)
{
    unsigned char mem[4096];
    size_t len = write_profile(mem, sizeof mem, 8, 0, 0);
    vmp_error err;
    vmp_profile *p = read_mem(mem, len, 1, &err);
    REQUIRE(p); /* no trailer is not an error, even strict */
    CHECK(vmp_profile_get_summary(p)->complete == 0);
    CHECK(vmp_profile_get_summary(p)->truncated_at == -1);
    CHECK(vmp_profile_get_summary(p)->n_samples == N_SAMPLES);
    CHECK(vmp_profile_name_count(p) == 4);
    vmp_profile_free(p);
}

VMP_TEST(decode_cut_at_every_byte)
{
    unsigned char mem[4096];
    size_t full = write_profile(mem, sizeof mem, 8, VMP_MODE_MEMORY, 1);
    uint64_t last_samples = 0;
    for (size_t len = 40; len < full; len++) {
        vmp_error err;
        vmp_profile *p = read_mem(mem, len, 0, &err);
        REQUIRE(p);
        const vmp_profile_summary *s = vmp_profile_get_summary(p);
        CHECK(s->complete == 0);
        CHECK(s->n_samples >= last_samples && s->n_samples <= N_SAMPLES);
        last_samples = s->n_samples;
        if (s->truncated_at >= 0) {
            CHECK((size_t)s->truncated_at < len);
            /* strict: the same cut is an error naming that offset */
            vmp_profile *q = read_mem(mem, len, 1, &err);
            CHECK(!q && err.offset == s->truncated_at && strstr(err.message, "ends inside"));
            vmp_profile_free(q);
        }
        vmp_profile_free(p);
    }
    CHECK(last_samples == N_SAMPLES);
}

/* ---- corrupt input ------------------------------------------------------------ */

static void expect_error(const unsigned char *data, size_t len, int64_t offset, const char *word)
{
    vmp_error err;
    vmp_profile *p = read_mem(data, len, 0, &err);
    CHECK(p == NULL);
    vmp_profile_free(p);
    if (!p) {
        CHECK(err.offset == offset);
        CHECK(strstr(err.message, word) != NULL);
        CHECK(strchr(err.message, '\n') == NULL);
        if (err.offset != offset || !strstr(err.message, word))
            fprintf(stderr, "  got offset %lld: %s\n", (long long)err.offset, err.message);
    }
}

/* Static header + HEADER, then returns the offset where records begin. */
static size_t start(vmp_wbuf *b, unsigned char *mem, size_t cap, unsigned mode)
{
    vmp_wbuf_init_words(b, mem, cap, 8);
    vmp_enc_static_header(b, 990);
    vmp_enc_header(b, mode, "cpython");
    return b->len;
}

VMP_TEST(decode_error_unknown_tag)
{
    unsigned char mem[256];
    vmp_wbuf b;
    size_t at = start(&b, mem, sizeof mem, 0);
    mem[b.len++] = 0x42;
    expect_error(mem, b.len, (int64_t)at, "unknown record tag 0x42");
}

VMP_TEST(decode_error_interp_name_record)
{
    unsigned char mem[256];
    vmp_wbuf b;
    size_t at = start(&b, mem, sizeof mem, 0);
    mem[b.len++] = VMP_TAG_INTERP_NAME;
    mem[b.len++] = 4;
    memcpy(mem + b.len, "pypy", 4);
    b.len += 4;
    expect_error(mem, b.len, (int64_t)at, "INTERP_NAME");
}

VMP_TEST(decode_error_impossible_name_length)
{
    unsigned char mem[256];
    vmp_wbuf b;
    size_t at = start(&b, mem, sizeof mem, 0);
    vmp_enc_name(&b, VMP_TAG_VIRTUAL_IP, 8, "py:x:1:y", 8);
    uint64_t huge = UINT64_MAX - 3;
    memcpy(mem + at + 9, &huge, 8); /* the length word */
    expect_error(mem, b.len, (int64_t)at, "name length");
}

VMP_TEST(decode_error_impossible_meta_length)
{
    unsigned char mem[256];
    vmp_wbuf b;
    size_t at = start(&b, mem, sizeof mem, 0);
    vmp_enc_meta(&b, "os", 2, "linux", 5);
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(mem + at + 1 + 8 + 2, &huge, 8); /* the value length */
    expect_error(mem, b.len, (int64_t)at, "META value length");
}

VMP_TEST(decode_error_depth_over_limit)
{
    unsigned char mem[256];
    vmp_wbuf b;
    uint64_t e[1] = {2};
    size_t at = start(&b, mem, sizeof mem, 0);
    vmp_enc_stack(&b, e, 1, 1, 0, 0);
    uint64_t depth = VMP_MAX_DEPTH_READ + 1;
    memcpy(mem + at + 9, &depth, 8);
    expect_error(mem, b.len, (int64_t)at, "depth 65537");
}

static vmp_profile *read_through_pipe(const unsigned char *data, size_t len, vmp_error *err);

VMP_TEST(decode_depth_at_limit_is_accepted)
{
    size_t cap = 200 + (size_t)VMP_MAX_DEPTH_READ * 8 + 64;
    unsigned char *mem = malloc(cap);
    uint64_t *e = malloc((size_t)VMP_MAX_DEPTH_READ * 8);
    REQUIRE(mem && e);
    for (size_t i = 0; i < VMP_MAX_DEPTH_READ; i++)
        e[i] = 2 * i + 2;
    vmp_wbuf b;
    start(&b, mem, cap, 0);
    CHECK(vmp_enc_stack(&b, e, VMP_MAX_DEPTH_READ, 1, 0, 0) == 0);
    vmp_error err;
    vmp_profile *p = read_mem(mem, b.len, 1, &err);
    CHECK(p != NULL);
    if (p) {
        vmp_stack st;
        vmp_profile_stack_at(p, 0, &st);
        CHECK(st.depth == VMP_MAX_DEPTH_READ && st.frames[0].addr == 2 * VMP_MAX_DEPTH_READ);
    }
    /* through a pipe the record is larger than the read window: it grows */
    vmp_profile *q = read_through_pipe(mem, b.len, &err);
    CHECK(q != NULL);
    if (p && q) {
        vmp_stack x, y;
        vmp_profile_stack_at(p, 0, &x);
        vmp_profile_stack_at(q, 0, &y);
        int same = x.depth == y.depth;
        for (uint32_t i = 0; same && i < x.depth; i++)
            same = x.frames[i].addr == y.frames[i].addr && x.frames[i].kind == y.frames[i].kind;
        CHECK(same);
    }
    vmp_profile_free(q);
    vmp_profile_free(p);
    free(mem);
    free(e);
}

VMP_TEST(decode_error_count_not_one)
{
    unsigned char mem[256];
    vmp_wbuf b;
    uint64_t e[1] = {2};
    size_t at = start(&b, mem, sizeof mem, 0);
    vmp_enc_stack(&b, e, 1, 1, 0, 0);
    uint64_t count = 1000000;
    memcpy(mem + at + 1, &count, 8);
    expect_error(mem, b.len, (int64_t)at, "count 1000000");
}

VMP_TEST(decode_error_odd_pairs)
{
    unsigned char mem[256];
    vmp_wbuf b;
    uint64_t e[3] = {1, 2, 3};
    size_t at = start(&b, mem, sizeof mem, VMP_MODE_LINES);
    vmp_enc_stack(&b, e, 3, 1, 0, 0);
    expect_error(mem, b.len, (int64_t)at, "odd number");
}

VMP_TEST(decode_error_second_header)
{
    unsigned char mem[256];
    vmp_wbuf b;
    size_t at = start(&b, mem, sizeof mem, 0);
    vmp_enc_header(&b, 0, "cpython");
    expect_error(mem, b.len, (int64_t)at, "second HEADER");
}

VMP_TEST(decode_error_newer_version)
{
    unsigned char mem[256];
    vmp_wbuf b;
    start(&b, mem, sizeof mem, 0);
    mem[40 + 2] = VMP_FORMAT_NEWEST_READ + 1; /* HEADER follows the 40-byte static header */
    expect_error(mem, b.len, 40, "newer");
}

VMP_TEST(decode_error_big_endian)
{
    unsigned char be8[40] = {0}, be4[20] = {0};
    be8[15] = 3;
    be4[7] = 3;
    expect_error(be8, sizeof be8, 0, "big-endian");
    expect_error(be4, sizeof be4, 0, "big-endian");
}

VMP_TEST(decode_error_not_a_profile)
{
    const char *text = "#!/usr/bin/env python\nprint('hello, world')\n";
    expect_error((const unsigned char *)text, strlen(text), 0, "not a vmprof profile");
    expect_error((const unsigned char *)"", 0, 0, "empty");
    expect_error((const unsigned char *)"\0\0\0", 3, 0, "too short");
    unsigned char hdr[40] = {0};
    hdr[8] = 3;
    hdr[16] = 1; /* word 2 must be 0 */
    expect_error(hdr, sizeof hdr, 16, "word 2");
    unsigned char cut[30] = {0};
    cut[8] = 3;
    expect_error(cut, sizeof cut, 30, "static header");
}

VMP_TEST(decode_error_corrupt_gzip)
{
    unsigned char mem[4096], gz[4096];
    size_t len = write_profile(mem, sizeof mem, 8, 0, 1);
    size_t glen = gzip_bytes(mem, len, gz, sizeof gz);
    REQUIRE(glen > 40);
    for (size_t i = 20; i < 30; i++)
        gz[i] ^= 0x5a;
    vmp_error err;
    vmp_profile *p = read_mem(gz, glen, 0, &err);
    if (p) {
        /* a flipped block may still inflate; it must then decode or be cut */
        vmp_profile_free(p);
    } else {
        CHECK(err.message[0] != '\0');
    }
}

/* ---- gzip, files, pipes --------------------------------------------------------- */

VMP_TEST(decode_gzip_equals_plain)
{
    unsigned char mem[4096], gz[4096];
    size_t len = write_profile(mem, sizeof mem, 8, VMP_MODE_MEMORY, 1);
    size_t glen = gzip_bytes(mem, len, gz, sizeof gz);
    REQUIRE(glen > 0);
    vmp_error err;
    vmp_profile *a = read_mem(mem, len, 1, &err), *b = read_mem(gz, glen, 1, &err);
    REQUIRE(a && b);
    CHECK(same_profile(a, b));
    vmp_profile_free(b);
    /* cut gzip stream: lenient read keeps what inflated */
    b = read_mem(gz, glen - 20, 0, &err);
    REQUIRE(b);
    CHECK(vmp_profile_get_summary(b)->complete == 0);
    vmp_profile_free(a);
    vmp_profile_free(b);
}

static vmp_profile *read_through_pipe(const unsigned char *data, size_t len, vmp_error *err);

/* Several gzip members (pigz, bgzip, cat a.gz b.gz) read as one stream;
 * bytes after the last member that are not gzip are ignored. */
VMP_TEST(decode_gzip_several_members)
{
    unsigned char mem[4096], gz[8192];
    size_t len = write_profile(mem, sizeof mem, 8, VMP_MODE_MEMORY, 1);
    size_t cut = len / 3; /* anywhere: the members' bytes are concatenated */
    size_t g1 = gzip_bytes(mem, cut, gz, sizeof gz);
    REQUIRE(g1 > 0);
    size_t g2 = gzip_bytes(mem + cut, len - cut, gz + g1, sizeof gz - g1);
    REQUIRE(g2 > 0);
    memset(gz + g1 + g2, 0, 16); /* padding some tools leave */
    vmp_error err;
    vmp_profile *a = read_mem(mem, len, 1, &err);
    vmp_profile *b = read_mem(gz, g1 + g2 + 16, 1, &err);
    REQUIRE(a && b);
    CHECK(same_profile(a, b) && vmp_profile_get_summary(b)->complete);
    vmp_profile_free(b);
    b = read_through_pipe(gz, g1 + g2 + 16, &err);
    CHECK(b && same_profile(a, b));
    vmp_profile_free(b);
    vmp_profile_free(a);
}

static vmp_profile *read_through_pipe(const unsigned char *data, size_t len, vmp_error *err)
{
    int fds[2];
    if (pipe(fds) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        size_t off = 0;
        while (off < len) {
            size_t chunk = len - off < 777 ? len - off : 777; /* odd-sized writes */
            ssize_t w = write(fds[1], data + off, chunk);
            if (w <= 0)
                _exit(1);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    vmp_profile *p = vmp_profile_read_fd(fds[0], NULL, err);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return p;
}

VMP_TEST(decode_fixtures_via_file_pipe_and_gzip)
{
    static const char *names[] = {"calc_py39.prof", "calc_lines_py311.prof",
                                  "grow_mem_py311.prof", "pool_py311.prof", "calc_pypy.prof"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *path = vmp_fixture(names[i]);
        vmp_error err;
        vmp_profile *a = vmp_profile_read_file(path, NULL, &err);
        if (!a)
            fprintf(stderr, "  %s: %s\n", names[i], err.message);
        REQUIRE(a);
        const vmp_profile_summary *s = vmp_profile_get_summary(a);
        CHECK(s->complete && s->truncated_at == -1 && s->n_samples > 0);
        uint64_t total = 0;
        for (size_t k = 0; k < vmp_profile_stack_count(a); k++) {
            vmp_stack st;
            vmp_profile_stack_at(a, k, &st);
            total += st.count;
        }
        CHECK(total == s->n_samples);

        size_t len;
        unsigned char *data = vmp_test_read_file(path, &len);
        REQUIRE(data);
        vmp_profile *b = read_through_pipe(data, len, &err);
        CHECK(b && same_profile(a, b));
        vmp_profile_free(b);

        size_t gcap = len + len / 2 + 1024;
        unsigned char *gz = malloc(gcap);
        size_t glen = gzip_bytes(data, len, gz, gcap);
        CHECK(glen > 0);
        b = read_mem(gz, glen, 1, &err);
        CHECK(b && same_profile(a, b));
        vmp_profile_free(b);
        b = read_through_pipe(gz, glen, &err);
        CHECK(b && same_profile(a, b));
        vmp_profile_free(b);

        /* cut in the middle: lenient keeps a prefix of the samples */
        b = read_mem(data, len / 2, 0, &err);
        REQUIRE(b);
        CHECK(vmp_profile_get_summary(b)->n_samples <= s->n_samples);
        CHECK(vmp_profile_get_summary(b)->complete == 0);
        for (uint64_t k = 0; k < vmp_profile_get_summary(b)->n_samples; k++) {
            vmp_stack x, y;
            vmp_profile_stack_at(a, vmp_profile_sample_stack(a, k), &x);
            vmp_profile_stack_at(b, vmp_profile_sample_stack(b, k), &y);
            CHECK(x.depth == y.depth);
        }
        vmp_profile_free(b);
        free(gz);
        free(data);
        vmp_profile_free(a);
    }
}

VMP_TEST(decode_missing_file_names_it)
{
    vmp_error err;
    vmp_profile *p = vmp_profile_read_file("/nonexistent/x.prof", NULL, &err);
    CHECK(!p && strstr(err.message, "/nonexistent/x.prof"));
    p = vmp_profile_read_file("/", NULL, &err);
    CHECK(!p && strstr(err.message, "directory"));
}

/* ---- the decoder's fast path (raw-byte recognition of known stacks) ------- */

static unsigned char *write_many(size_t n_stacks, size_t depth, int rounds, size_t mid,
                                 size_t *len)
{
    size_t cap = 200 + (size_t)rounds * n_stacks * (1 + 16 + 8 * (depth + 1));
    unsigned char *mem = malloc(cap);
    uint64_t *e = malloc(depth * sizeof *e);
    if (!mem || !e) {
        free(mem);
        free(e);
        return NULL;
    }
    vmp_wbuf b;
    vmp_wbuf_init_words(&b, mem, cap, 8);
    vmp_enc_static_header(&b, 990);
    vmp_enc_header(&b, 0, "cpython");
    for (int r = 0; r < rounds; r++) {
        for (size_t s = 0; s < n_stacks; s++) {
            for (size_t i = 0; i < depth; i++)
                e[i] = 0x1000 + 16 * i;
            /* distinct stacks differ in one entry: at mid, or spread out */
            e[mid ? mid : s % depth] = 0x100000 + 16 * s;
            vmp_enc_stack(&b, e, depth, 7, 0, 0);
        }
    }
    free(e);
    *len = b.len;
    return mem;
}

static void check_many(const unsigned char *mem, size_t len, size_t n_stacks, int rounds)
{
    vmp_error err;
    vmp_profile *p = read_mem(mem, len, 1, &err);
    REQUIRE(p);
    CHECK(vmp_profile_get_summary(p)->n_samples == n_stacks * (size_t)rounds);
    CHECK(vmp_profile_stack_count(p) == n_stacks);
    int ok = 1;
    for (size_t i = 0; i < vmp_profile_stack_count(p) && ok; i++) {
        vmp_stack st;
        vmp_profile_stack_at(p, i, &st);
        ok = st.count == (uint64_t)rounds;
    }
    CHECK(ok);
    for (size_t i = 0; i < n_stacks * (size_t)rounds && ok; i++)
        ok = vmp_profile_sample_stack(p, i) == i % n_stacks;
    CHECK(ok);
    vmp_profile_free(p);
}

/* Stacks that differ only between the words the sampled hash looks at: every
 * lookup collides, the decoder must still count exactly (and switch to
 * hashing every byte). */
VMP_TEST(decode_stacks_alike_to_sampled_hash)
{
    size_t len;
    unsigned char *mem = write_many(300, 40, 20, 12, &len);
    REQUIRE(mem);
    check_many(mem, len, 300, 20);
    free(mem);
}

/* More distinct stacks than the raw-copy budget holds: later ones are
 * recognised by comparing with the profile's frames instead. */
VMP_TEST(decode_beyond_raw_copy_budget)
{
    size_t len;
    unsigned char *mem = write_many(36000, 120, 2, 0, &len);
    REQUIRE(mem);
    REQUIRE(len > 2 * (32u << 20));
    check_many(mem, len, 36000, 2);
    free(mem);
}

/* Version 7 (vmprof 0.6): a nanosecond timestamp ends every STACKTRACE. */
VMP_TEST(decode_version_7_sample_times)
{
    unsigned char mem[512];
    vmp_wbuf b;
    vmp_wbuf_init_words(&b, mem, sizeof mem, 8);
    vmp_enc_static_header(&b, 1000);
    vmp_enc_header(&b, VMP_MODE_MEMORY, "cpython");
    mem[40 + 2] = VMP_FORMAT_VERSION_SAMPLE_TIME;
    uint64_t e[2] = {0x20, 0x10};
    for (int i = 0; i < 3; i++) {
        vmp_enc_stack(&b, e, 2, 5, 1, 100 + i);
        int64_t ns = 1000000 * (i + 1);
        memcpy(mem + b.len, &ns, 8);
        b.len += 8;
    }
    vmp_error err;
    vmp_profile *p = read_mem(mem, b.len, 1, &err);
    if (!p)
        fprintf(stderr, "  %s\n", err.message);
    REQUIRE(p);
    CHECK(vmp_profile_get_summary(p)->version == 7);
    CHECK(vmp_profile_get_summary(p)->n_samples == 3 && vmp_profile_stack_count(p) == 1);
    CHECK(vmp_profile_has_sample_times(p));
    for (int i = 0; i < 3; i++) {
        CHECK(vmp_profile_sample_time(p, i) == 1000000 * (i + 1));
        CHECK(vmp_profile_sample_rss(p, i) == (uint64_t)(100 + i));
    }
    vmp_profile_free(p);
    /* cut inside the timestamp: the last sample is not kept */
    p = read_mem(mem, b.len - 3, 0, &err);
    REQUIRE(p);
    CHECK(vmp_profile_get_summary(p)->n_samples == 2);
    vmp_profile_free(p);
}

/* ---- the encoder writes what the original tools write ----------------------- */

/* Walks a fixture record by record and re-encodes each with vmp_encode.h: the
 * bytes must be identical (layout, field order, zone padding, pairs). */
static void check_reencode(const char *name)
{
    size_t len;
    unsigned char *data = vmp_test_read_file(vmp_fixture(name), &len);
    REQUIRE(data && len > 40);
    unsigned char *out = malloc(len + 4096);
    REQUIRE(out);
    vmp_wbuf b;
    vmp_wbuf_init_words(&b, out, len + 4096, 8);
    uint64_t w[5];
    memcpy(w, data, sizeof w);
    CHECK(vmp_enc_static_header(&b, w[3]) == 0);
    size_t pos = 40, records = 0;
    unsigned mode = 0;
    int ok = memcmp(out, data, 40) == 0;
    uint64_t *entries = malloc(70000 * sizeof *entries);
    REQUIRE(entries);
    while (ok && pos < len) {
        size_t start = b.len;
        const unsigned char *r = data + pos;
        uint64_t a, c;
        switch (r[0]) {
        case VMP_TAG_HEADER: {
            mode = r[3];
            char interp[256];
            memcpy(interp, r + 5, r[4]);
            interp[r[4]] = '\0';
            ok = r[2] == VMP_FORMAT_VERSION && vmp_enc_header(&b, mode, interp) == 0;
            break;
        }
        case VMP_TAG_TIME_N_ZONE:
        case VMP_TAG_TRAILER: {
            int64_t sec, usec;
            char zone[9] = {0};
            memcpy(&sec, r + 1, 8);
            memcpy(&usec, r + 9, 8);
            memcpy(zone, r + 17, 8);
            ok = (r[0] == VMP_TAG_TRAILER ? vmp_enc_trailer(&b, sec, usec, zone)
                                          : vmp_enc_time_n_zone(&b, sec, usec, zone)) == 0;
            break;
        }
        case VMP_TAG_META:
            memcpy(&a, r + 1, 8);
            memcpy(&c, r + 9 + a, 8);
            ok = vmp_enc_meta(&b, (const char *)r + 9, a, (const char *)r + 17 + a, c) == 0;
            break;
        case VMP_TAG_VIRTUAL_IP:
        case VMP_TAG_NATIVE_SYMBOLS:
            memcpy(&a, r + 1, 8);
            memcpy(&c, r + 9, 8);
            ok = vmp_enc_name(&b, (enum vmp_tag)r[0], a, (const char *)r + 17, c) == 0;
            break;
        case VMP_TAG_STACKTRACE: {
            uint64_t depth, thread, rss = 0;
            memcpy(&depth, r + 9, 8);
            REQUIRE(depth < 70000);
            memcpy(entries, r + 17, depth * 8);
            memcpy(&thread, r + 17 + depth * 8, 8);
            int with_rss = (mode & VMP_MODE_MEMORY) != 0;
            if (with_rss)
                memcpy(&rss, r + 25 + depth * 8, 8);
            ok = vmp_enc_stack(&b, entries, depth, thread, with_rss, rss) == 0;
            break;
        }
        default:
            ok = 0;
        }
        size_t n = b.len - start;
        ok = ok && n > 0 && pos + n <= len && memcmp(out + start, data + pos, n) == 0;
        if (!ok)
            fprintf(stderr, "  %s: record with tag %d at byte %zu differs\n", name, r[0], pos);
        pos += n;
        records++;
    }
    CHECK(ok && pos == len && b.len == len);
    CHECK(records > 20);
    free(entries);
    free(out);
    free(data);
}

VMP_TEST(encode_reproduces_fixture_bytes)
{
    static const char *names[] = {"calc_py39.prof", "calc_py310.prof", "calc_py311.prof",
                                  "calc_native_py311.prof", "calc_lines_py311.prof",
                                  "pool_py311.prof", "pool_realtime_py311.prof",
                                  "grow_mem_py311.prof", "calc_pypy.prof"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_reencode(names[i]);
}
