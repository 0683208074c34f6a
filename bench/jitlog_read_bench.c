/*
 * jitlog_read_bench.c - times the JIT log decoder against the floor of merely
 * reading the file's bytes, in one process, interleaved run by run.
 *
 *   jitlog_read_bench FILE RUNS
 *
 * JSON on stdout: per run the wall and CPU seconds to read() the file into a
 * buffer (page cache warm, the buffer allocated and touched once before), to
 * read() it into a new buffer (as any reader that keeps the bytes must: the
 * kernel hands out zeroed pages), to decode it into a trace forest
 * (vjl_forest_read_file: its own read into a new buffer, the decode and the
 * links), to decode it from a mapping of the file instead (vjl_forest_map_file:
 * no copy, no fresh buffer), and to select traces with a query on that forest.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vjl_forest.h"
#include "vjl_query.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void read_all(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    size_t got = 0;
    while (fd >= 0 && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (fd < 0 || got != size) {
        fprintf(stderr, "jitlog_read_bench: cannot read %s\n", path);
        exit(1);
    }
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: jitlog_read_bench FILE RUNS\n");
        return 2;
    }
    const char *path = argv[1];
    int runs = atoi(argv[2]);
    /* Every run as a fresh process would see it: freed memory goes back to
     * the kernel.  (glibc otherwise raises its mmap and trim thresholds after
     * the 100 MB buffer is freed, and later decodes would reuse memory the
     * first one had faulted in and the kernel had zeroed: a third of the
     * decoder's cost, which a command reading one log always pays.) */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return 1;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size);
    memset(buf, 1, size);
    read_all(path, buf, size); /* warm the page cache */
    static const char query[] = "loops & func(\"merge_sort\") | op(\"call_assembler\")";
    printf("{\"file\": \"%s\", \"bytes\": %zu, \"runs\": [", path, size);
    for (int r = 0; r < runs; r++) {
        double t[6][2]; /* wall, cpu at each step */
        t[0][0] = wall(), t[0][1] = cpu();
        read_all(path, buf, size);
        t[1][0] = wall(), t[1][1] = cpu();
        char *fresh = malloc(size);
        if (!fresh)
            return 1;
        read_all(path, fresh, size);
        free(fresh);
        t[2][0] = wall(), t[2][1] = cpu();
        vmp_error err;
        vjl_forest *f = vjl_forest_read_file(path, &err);
        t[3][0] = wall(), t[3][1] = cpu();
        if (!f) {
            fprintf(stderr, "jitlog_read_bench: %s\n", err.message);
            return 1;
        }
        vjl_query *q = vjl_query_parse(query, sizeof query - 1, &err);
        uint32_t *out = malloc(vjl_forest_trace_count(f) * sizeof *out);
        size_t selected = vjl_query_select(q, f, out);
        t[4][0] = wall(), t[4][1] = cpu();
        vjl_forest *m = vjl_forest_map_file(path, &err);
        t[5][0] = wall(), t[5][1] = cpu();
        if (!m || vjl_forest_trace_count(m) != vjl_forest_trace_count(f)) {
            fprintf(stderr, "jitlog_read_bench: the mapped decode differs: %s\n", err.message);
            return 1;
        }
        printf("%s{\"read\": [%.6f, %.6f], \"read_fresh\": [%.6f, %.6f], "
               "\"decode\": [%.6f, %.6f], \"select\": [%.6f, %.6f], "
               "\"decode_mapped\": [%.6f, %.6f], \"traces\": %zu, \"selected\": %zu}",
               r ? ", " : "", t[1][0] - t[0][0], t[1][1] - t[0][1], t[2][0] - t[1][0],
               t[2][1] - t[1][1], t[3][0] - t[2][0], t[3][1] - t[2][1], t[4][0] - t[3][0],
               t[4][1] - t[3][1], t[5][0] - t[4][0], t[5][1] - t[4][1],
               vjl_forest_trace_count(f), selected);
        free(out);
        vjl_query_free(q);
        vjl_forest_free(m);
        vjl_forest_free(f);
    }
    printf("]}\n");
    free(buf);
    return 0;
}
