/* test_export.c - every export format, written from profiles built in memory
 * and read back by an independent parser in the test (folded stacks, the
 * protobuf wire format, JSON shape).  Consumers from other projects (go tool
 * pprof, speedscope's schema, a browser) check the same files in pytest. */
#define _GNU_SOURCE /* open_memstream, memmem */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "vmp_export.h"
#include "vmp_format.h"
#include "vmp_json.h"
#include "vmp_test.h"

#define T_MAIN 7
#define T_WORKER 9

static vmp_frame py(uint64_t addr)
{
    vmp_frame f = {addr, 0, VMP_FRAME_PYTHON};
    return f;
}

static void name(vmp_profile *p, uint64_t id, const char *text)
{
    vmp_profile_add_name(p, id, text, strlen(text));
}

static void add(vmp_profile *p, uint64_t thread, int times, int depth, ...)
{
    vmp_frame fr[16];
    va_list ap;
    int i;
    va_start(ap, depth);
    for (i = 0; i < depth; i++)
        fr[i] = va_arg(ap, vmp_frame);
    va_end(ap);
    for (i = 0; i < times; i++)
        vmp_profile_add_sample(p, fr, (uint32_t)depth, thread, 0);
}

/* f (named at line 10) sampled at line 12 twice and line 14 once. */
static vmp_profile *lines_profile(void)
{
    vmp_profile *p = vmp_profile_new();
    vmp_frame a = {0x10, 12, VMP_FRAME_PYTHON}, b = {0x10, 14, VMP_FRAME_PYTHON};
    name(p, 0x10, "py:f:10:m.py");
    vmp_profile_summary_mut(p)->mode = VMP_MODE_LINES;
    add(p, 1, 2, 1, a);
    add(p, 1, 1, 1, b);
    return p;
}

/* main > work > leaf x3, main > work x2 (thread 7); main > leaf, main > memcpy
 * (native) (thread 9).  0x50 names the same function as 0x20 (a re-created
 * code object): they must fold into one function. */
static vmp_profile *sample_profile(void)
{
    vmp_profile *p = vmp_profile_new();
    vmp_frame native = {0x41, 0, VMP_FRAME_NATIVE};
    name(p, 0x10, "py:main:10:app.py");
    name(p, 0x20, "py:work:20:app.py");
    name(p, 0x50, "py:work:20:app.py");
    name(p, 0x30, "py:leaf:30:lib/util.py");
    name(p, 0x41, "n:memcpy:0:-");
    add(p, T_MAIN, 3, 3, py(0x10), py(0x20), py(0x30));
    add(p, T_MAIN, 2, 2, py(0x10), py(0x50));
    add(p, T_WORKER, 1, 2, py(0x10), py(0x30));
    add(p, T_WORKER, 1, 2, py(0x10), native);
    vmp_profile_summary_mut(p)->period_usec = 1000;
    snprintf(vmp_profile_summary_mut(p)->interp, 64, "cpython");
    return p;
}

typedef struct membuf {
    char *data;
    size_t len;
} membuf;

/* Writes the export to m, replacing what an earlier call left there. */
static int export_mem(const vmp_profile *p, const char *format, const vmp_export_options *o,
                      membuf *m, vmp_error *err)
{
    free(m->data);
    m->data = NULL;
    FILE *f = open_memstream(&m->data, &m->len);
    int rc = vmp_export_write(p, vmp_export_format_from_name(format), f, o, err);
    fclose(f);
    return rc;
}

static void release(vmp_profile *p, membuf *m)
{
    free(m->data);
    vmp_profile_free(p);
}

/* Sums the count of each folded line into a small table; returns lines. */
static int fold_count(const membuf *m, const char *stack)
{
    int total = 0;
    char *copy = strndup(m->data, m->len), *line, *save = NULL;
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strrchr(line, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        if (strcmp(line, stack) == 0)
            total += atoi(sp + 1);
    }
    free(copy);
    return total;
}

static int count_lines(const membuf *m)
{
    int n = 0;
    size_t i;
    for (i = 0; i < m->len; i++)
        n += m->data[i] == '\n';
    return n;
}

VMP_TEST(export_format_names_round_trip)
{
    int i;
    for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++)
        CHECK(vmp_export_format_from_name(vmp_export_format_name((vmp_export_format)i)) == i);
    CHECK(vmp_export_format_from_name("svg") == -1);
    CHECK(strstr(vmp_export_format_list(), "speedscope") != NULL);
}

VMP_TEST(export_collapsed_one_line_per_stack_with_thread_roots)
{
    vmp_profile *p = sample_profile();
    membuf m = {0};
    vmp_error err;
    REQUIRE(export_mem(p, "collapsed", NULL, &m, &err) == 0);
    CHECK(count_lines(&m) == 4);
    CHECK(fold_count(&m, "Thread 1 (0x7);main (app.py:10);work (app.py:20);leaf (lib/util.py:30)") == 3);
    /* 0x50 and 0x20 are one function */
    CHECK(fold_count(&m, "Thread 1 (0x7);main (app.py:10);work (app.py:20)") == 2);
    CHECK(fold_count(&m, "Thread 2 (0x9);main (app.py:10);memcpy") == 1);
    release(p, &m);
}

VMP_TEST(export_collapsed_single_thread_and_no_native)
{
    vmp_profile *p = sample_profile();
    vmp_export_options o = {0};
    membuf m = {0};
    vmp_error err;
    o.has_thread = 1;
    o.thread_id = T_WORKER;
    o.no_native = 1;
    REQUIRE(export_mem(p, "collapsed", &o, &m, &err) == 0);
    /* one thread: no thread root; the native frame is gone, so main > memcpy
     * folds into a plain "main" line */
    CHECK(fold_count(&m, "main (app.py:10);leaf (lib/util.py:30)") == 1);
    CHECK(fold_count(&m, "main (app.py:10)") == 1);
    CHECK(count_lines(&m) == 2);
    CHECK(strstr(m.data, "memcpy") == NULL);
    release(p, &m);
}

VMP_TEST(export_unknown_thread_is_an_error_naming_the_choices)
{
    vmp_profile *p = sample_profile();
    vmp_export_options o = {0};
    membuf m = {0};
    vmp_error err;
    o.has_thread = 1;
    o.thread_id = 12345;
    CHECK(export_mem(p, "speedscope", &o, &m, &err) == -1);
    CHECK(strstr(err.message, "12345") != NULL && strstr(err.message, "2 thread") != NULL);
    release(p, &m);
}

VMP_TEST(export_names_without_record_and_odd_names)
{
    vmp_profile *p = vmp_profile_new();
    membuf m = {0};
    vmp_error err;
    name(p, 0x10, "py:outer:with:colons:7:/tmp/a:b.py");
    name(p, 0x20, "py:<lambda>:-1:x.py");
    add(p, 1, 1, 3, py(0x10), py(0x20), py(0xabc0));
    REQUIRE(export_mem(p, "collapsed", NULL, &m, &err) == 0);
    CHECK(fold_count(&m, "outer:with:colons (/tmp/a:b.py:7);<lambda> (x.py:0);0xabc0") == 1);
    release(p, &m);
}

VMP_TEST(export_lines_mode_makes_one_frame_per_line)
{
    vmp_profile *p = lines_profile();
    vmp_export_options o = {0};
    membuf m = {0};
    vmp_error err;
    o.lines = 1;
    REQUIRE(export_mem(p, "collapsed", &o, &m, &err) == 0);
    CHECK(fold_count(&m, "f (m.py:12)") == 2 && fold_count(&m, "f (m.py:14)") == 1);
    REQUIRE(export_mem(p, "collapsed", NULL, &m, &err) == 0);
    CHECK(fold_count(&m, "f (m.py:10)") == 3);
    release(p, &m);
}

/* ---- pprof: gunzip, then walk the protobuf wire format ---------------- */

static int gunzip(const membuf *in, unsigned char **out, size_t *out_len)
{
    z_stream z;
    size_t cap = 1 << 16;
    int rc;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    *out = malloc(cap);
    *out_len = 0;
    z.next_in = (unsigned char *)in->data;
    z.avail_in = (uInt)in->len;
    do {
        if (*out_len == cap)
            *out = realloc(*out, cap *= 2);
        z.next_out = *out + *out_len;
        z.avail_out = (uInt)(cap - *out_len);
        rc = inflate(&z, Z_NO_FLUSH);
        *out_len = cap - z.avail_out;
    } while (rc == Z_OK);
    inflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

static uint64_t rd_varint(const unsigned char **p, const unsigned char *end)
{
    uint64_t v = 0;
    int shift = 0;
    while (*p < end) {
        unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80))
            break;
        shift += 7;
    }
    return v;
}

/* Calls back on each top-level field of msg. */
typedef void (*field_fn)(void *ctx, uint32_t field, uint64_t v, const unsigned char *b,
                         size_t len);
static int walk(const unsigned char *p, size_t n, field_fn fn, void *ctx)
{
    const unsigned char *end = p + n;
    while (p < end) {
        uint64_t key = rd_varint(&p, end);
        uint32_t field = (uint32_t)(key >> 3);
        if ((key & 7) == 0) {
            fn(ctx, field, rd_varint(&p, end), NULL, 0);
        } else if ((key & 7) == 2) {
            uint64_t len = rd_varint(&p, end);
            if (len > (uint64_t)(end - p))
                return -1;
            fn(ctx, field, 0, p, (size_t)len);
            p += len;
        } else {
            return -1;
        }
    }
    return 0;
}

typedef struct pprof_seen {
    int samples, locations, functions, strings;
    char strtab[64][64];
    uint64_t first_leaf_loc, total_count;
    int bad;
} pprof_seen;

static void sample_field(void *ctx, uint32_t field, uint64_t v, const unsigned char *b, size_t len)
{
    pprof_seen *s = ctx;
    (void)v;
    if (field == 1 && b && !s->first_leaf_loc) {
        const unsigned char *q = b;
        s->first_leaf_loc = rd_varint(&q, b + len);
    }
    if (field == 2 && b) {
        const unsigned char *q = b;
        s->total_count += rd_varint(&q, b + len);
    }
}

static void profile_field(void *ctx, uint32_t field, uint64_t v, const unsigned char *b, size_t len)
{
    pprof_seen *s = ctx;
    (void)v;
    switch (field) {
    case 2:
        s->samples++;
        if (walk(b, len, sample_field, s) < 0)
            s->bad = 1;
        break;
    case 4: s->locations++; break;
    case 5: s->functions++; break;
    case 6:
        if (s->strings < 64)
            snprintf(s->strtab[s->strings], 64, "%.*s", (int)len, (const char *)b);
        s->strings++;
        break;
    }
}

VMP_TEST(export_pprof_is_gzip_protobuf_with_leaf_first_samples)
{
    vmp_profile *p = sample_profile();
    membuf m = {0};
    vmp_error err;
    unsigned char *raw;
    size_t raw_len;
    pprof_seen s;
    int i, has_leaf = 0, has_thread = 0;
    REQUIRE(export_mem(p, "pprof", NULL, &m, &err) == 0);
    REQUIRE(m.len > 2 && (unsigned char)m.data[0] == 0x1f && (unsigned char)m.data[1] == 0x8b);
    REQUIRE(gunzip(&m, &raw, &raw_len) == 0);
    memset(&s, 0, sizeof s);
    CHECK(walk(raw, raw_len, profile_field, &s) == 0 && !s.bad);
    CHECK(s.samples == 4);
    CHECK(s.functions == 4); /* main, work (two ids), leaf, memcpy */
    CHECK(s.locations == 4);
    CHECK(s.total_count == 7);
    CHECK(s.strings > 0 && s.strtab[0][0] == '\0');
    for (i = 0; i < s.strings && i < 64; i++) {
        has_leaf |= strcmp(s.strtab[i], "leaf") == 0;
        has_thread |= strcmp(s.strtab[i], "thread") == 0;
    }
    CHECK(has_leaf && has_thread);
    /* the first sample is main > work > leaf: its first location is leaf,
     * the third frame seen, so location id 3 */
    CHECK(s.first_leaf_loc == 3);
    free(raw);
    release(p, &m);
}

static size_t count_str(const membuf *m, const char *needle)
{
    size_t n = 0;
    const char *at = m->data, *end = m->data + m->len;
    while ((at = memmem(at, (size_t)(end - at), needle, strlen(needle))) != NULL) {
        n++;
        at += strlen(needle);
    }
    return n;
}

VMP_TEST(export_speedscope_one_profile_per_thread_shared_frames)
{
    vmp_profile *p = sample_profile();
    membuf m = {0};
    vmp_error err;
    REQUIRE(export_mem(p, "speedscope", NULL, &m, &err) == 0);
    CHECK(count_str(&m, "\"type\":\"sampled\"") == 2);
    CHECK(count_str(&m, "{\"name\":\"work\"") == 1); /* shared, once */
    CHECK(count_str(&m, "\"samples\":[[0,1,2],[0,1]]") == 1);
    CHECK(count_str(&m, "\"weights\":[3,2]") == 1);
    CHECK(m.data[m.len - 2] == '}');
    release(p, &m);
}

VMP_TEST(export_firefox_has_a_timed_sample_per_sample)
{
    vmp_profile *p = sample_profile();
    membuf m = {0};
    vmp_error err;
    REQUIRE(export_mem(p, "firefox", NULL, &m, &err) == 0);
    CHECK(count_str(&m, "\"preprocessedProfileVersion\":48") == 1);
    CHECK(count_str(&m, "\"samples\":{") == 2);
    /* thread 7: 5 samples over stacks main>work>leaf (node 3, stack 2) and
     * main>work (stack 1) */
    CHECK(count_str(&m, "\"stack\":[2,2,2,1,1],\"time\":[0,1,2,3,4],\"length\":5}") == 1);
    CHECK(count_str(&m, "\"prefix\":[null,0,1]") == 1);
    release(p, &m);
}

VMP_TEST(export_html_embeds_trees_not_samples)
{
    vmp_profile *p = vmp_profile_new();
    vmp_export_options o = {0};
    membuf m = {0};
    vmp_error err;
    uint64_t i;
    name(p, 0x10, "py:main:1:a.py");
    name(p, 0x20, "py:hot:2:a.py");
    name(p, 0x30, "py:rare</script>:3:a.py");
    for (i = 0; i < 20000; i++)
        add(p, 1, 1, 2, py(0x10), py(0x20));
    add(p, 1, 1, 2, py(0x10), py(0x30));
    REQUIRE(export_mem(p, "html", NULL, &m, &err) == 0);
    CHECK(count_str(&m, "/*VMPROF_DATA*/") == 0);
    CHECK(count_str(&m, "\"value\":[20001,20001,20000]") == 1); /* rare pruned */
    CHECK(count_str(&m, "\"pruned\":true") == 1);
    CHECK(count_str(&m, "</html>") == 1);
    CHECK(m.len < 64 * 1024);
    o.html_min_fraction = 1e-9; /* keep everything */
    REQUIRE(export_mem(p, "html", &o, &m, &err) == 0);
    CHECK(count_str(&m, "\"value\":[20001,20001,20000,1]") == 1);
    /* a name cannot close the data's script element */
    CHECK(count_str(&m, "rare</script>") == 0 && count_str(&m, "rare\\u003c/script>") == 1);
    release(p, &m);
}

VMP_TEST(export_html_memory_profile_has_rss_series)
{
    vmp_profile *p = vmp_profile_new();
    vmp_frame f = py(0x10);
    membuf m = {0};
    vmp_error err;
    uint64_t i;
    name(p, 0x10, "py:grow:1:g.py");
    vmp_profile_summary_mut(p)->mode = VMP_MODE_MEMORY;
    for (i = 0; i < 5000; i++)
        vmp_profile_add_sample(p, &f, 1, 1, 1000 + i);
    REQUIRE(export_mem(p, "html", NULL, &m, &err) == 0);
    CHECK(count_str(&m, "\"rss\":[[") == 1);
    CHECK(count_str(&m, ",5999]]") == 1); /* the peak survives bucketing */
    release(p, &m);
}

VMP_TEST(export_json_escapes_and_replaces_bad_utf8)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vmp_json_string(f, "a\"b\\c\n\x01<\xc3\xa9\xff", 11);
    fclose(f);
    CHECK(strcmp(buf, "\"a\\\"b\\\\c\\n\\u0001\\u003c\xc3\xa9\\ufffd\"") == 0);
    free(buf);
}

VMP_TEST(export_to_a_path_that_cannot_be_created_fails_cleanly)
{
    vmp_profile *p = sample_profile();
    vmp_error err;
    CHECK(vmp_export_write_path(p, VMP_EXPORT_COLLAPSED, "/nonexistent-dir/x.txt", NULL, &err) ==
          -1);
    CHECK(strstr(err.message, "/nonexistent-dir/x.txt") != NULL);
    vmp_profile_free(p);
}

VMP_TEST(export_empty_profile_writes_valid_files)
{
    vmp_profile *p = vmp_profile_new();
    membuf m = {0};
    vmp_error err;
    int i;
    for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++)
        CHECK(export_mem(p, vmp_export_format_name((vmp_export_format)i), NULL, &m, &err) == 0);
    release(p, &m);
}

VMP_TEST(export_json_millis_rounds_to_the_microsecond)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vmp_json_millis(f, 0);
    fputc(' ', f);
    vmp_json_millis(f, 12.5);
    fputc(' ', f);
    vmp_json_millis(f, 3.0004);
    fputc(' ', f);
    vmp_json_millis(f, 1234567.0016);
    fputc(' ', f);
    vmp_json_millis(f, -0.25);
    fclose(f);
    CHECK(strcmp(buf, "0 12.5 3 1234567.002 -0.25") == 0);
    free(buf);
}

VMP_TEST(export_pprof_and_firefox_always_keep_lines)
{
    vmp_profile *p = lines_profile();
    membuf m = {0};
    vmp_error err;
    REQUIRE(export_mem(p, "firefox", NULL, &m, &err) == 0);
    CHECK(count_str(&m, "\"line\":[12,14]") == 1);
    CHECK(count_str(&m, "\"lineNumber\":[10]") == 1); /* one function */
    release(p, &m);
}

VMP_TEST(export_collapsed_keeps_separators_out_of_labels)
{
    vmp_profile *p = vmp_profile_new();
    membuf m = {0};
    vmp_error err;
    name(p, 0x10, "py:a;b:1:x\ny.py");
    add(p, 1, 2, 1, py(0x10));
    REQUIRE(export_mem(p, "collapsed", NULL, &m, &err) == 0);
    CHECK(count_lines(&m) == 1);
    CHECK(fold_count(&m, "a_b (x_y.py:1)") == 2);
    release(p, &m);
}

VMP_TEST(export_title_names_the_profiled_command)
{
    vmp_profile *p = sample_profile();
    membuf m = {0};
    vmp_error err;
    vmp_profile_add_meta(p, "argv", 4, "app.py --fast", 13);
    REQUIRE(export_mem(p, "speedscope", NULL, &m, &err) == 0);
    CHECK(count_str(&m, "\"name\":\"app.py --fast - vmprof cpython profile, 7 samples\"") == 1);
    release(p, &m);
}
