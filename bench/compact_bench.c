/*
 * compact_bench.c - what the compact lossless store (vmp_compact.h) keeps of
 * a profile, and what writing it costs beside the decode: pushes FILE into
 * the incremental decoder in 256 KiB pieces (as an upload arrives), alone
 * and with the compact writer (into memory), interleaved RUNS times (CPU
 * time of the process, medians); then
 * expands the compact bytes and checks they are the file's.
 *
 *   compact_bench FILE [RUNS [PIECE]]     -> one JSON line
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmp_compact.h"
#include "vmprof.h"

static size_t PIECE = 256 * 1024;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: a loaded machine inflates it less */
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct mem {
    unsigned char *data;
    size_t len, cap;
} mem;

static int to_mem(void *ctx, const void *data, size_t n)
{
    mem *m = ctx;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1 << 20;
        while (cap < m->len + n)
            cap *= 2;
        unsigned char *d = realloc(m->data, cap);
        if (!d)
            return -1;
        m->data = d, m->cap = cap;
    }
    memcpy(m->data + m->len, data, n);
    m->len += n;
    return 0;
}

static void die(const char *what)
{
    fprintf(stderr, "compact_bench: %s\n", what);
    exit(1);
}

static double decode(const unsigned char *buf, size_t n, mem *out)
{
    vmp_error err;
    double t0 = now();
    vmp_decoder *d = vmp_decoder_new(NULL, &err);
    vmp_compact_writer *w = out ? vmp_compact_writer_new(d, to_mem, out) : NULL;
    if (!d || (out && !w))
        die("out of memory");
    for (size_t off = 0; off < n; off += PIECE) {
        size_t k = n - off < PIECE ? n - off : PIECE;
        if (vmp_decoder_push(d, buf + off, k, &err) < 0)
            die(err.message);
        if (w && vmp_compact_write(w, buf + off, k) < 0)
            die("the compact writer failed");
    }
    vmp_profile *p = vmp_decoder_finish(d, &err);
    if (!p)
        die(err.message);
    if (w && vmp_compact_end(w) < 0)
        die("the compact writer failed at its end");
    double t = now() - t0;
    vmp_profile_free(p);
    return t;
}

typedef struct src {
    const unsigned char *data;
    size_t len, pos;
} src;

static ssize_t from_mem(void *ctx, void *buf, size_t n)
{
    src *s = ctx;
    size_t k = s->len - s->pos < n ? s->len - s->pos : n;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (ssize_t)k;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: compact_bench FILE [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (argc > 3)
        PIECE = (size_t)atol(argv[3]);
    if (runs < 1 || runs > 100)
        runs = 5;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[1]);
        return 1;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    for (size_t got = 0; got < n;) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0)
            die("cannot read the file");
        got += (size_t)k;
    }
    close(fd);
    double plain[100], written[100];
    mem out = {0};
    for (int i = 0; i < runs; i++) {
        plain[i] = decode(buf, n, NULL);
        out.len = 0;
        written[i] = decode(buf, n, &out);
    }
    /* expand and compare */
    src s = {out.data, out.len, 0};
    vmp_compact_reader *r = vmp_compact_reader_new(from_mem, &s);
    unsigned char *back = malloc(PIECE);
    size_t at = 0;
    int same = 1;
    double t0 = now();
    ssize_t k;
    while ((k = vmp_compact_read(r, back, PIECE)) > 0) {
        if (at + (size_t)k > n || memcmp(back, buf + at, (size_t)k) != 0)
            same = 0;
        at += (size_t)k;
    }
    double expand = now() - t0;
    if (k < 0)
        die(vmp_compact_reader_error(r));
    vmp_compact_reader_free(r);
    qsort(plain, (size_t)runs, sizeof *plain, cmp);
    qsort(written, (size_t)runs, sizeof *written, cmp);
    printf("{\"file_bytes\": %zu, \"compact_bytes\": %zu, \"ratio\": %.1f, \"identical\": %s, "
           "\"decode_cpu_median\": %.4f, \"decode_and_compact_cpu_median\": %.4f, \"expand_cpu\": %.4f}\n",
           n, out.len, out.len ? (double)n / (double)out.len : 0.0,
           same && at == n ? "true" : "false", plain[runs / 2], written[runs / 2], expand);
    free(back);
    free(out.data);
    free(buf);
    return same && at == n ? 0 : 1;
}
