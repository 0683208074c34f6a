/*
 * read_bench.c - times the C reader against the floor of merely reading the
 * file's bytes, in one process, interleaved run by run.
 *
 *   read_bench time FILE RUNS   JSON: per run the seconds to read() the file
 *                               into a buffer (page cache warm, the buffer
 *                               allocated and touched once before), to decode
 *                               it into a vmp_profile, and to build the call
 *                               tree (all threads) from it
 *   read_bench mem FILE         JSON: one decode + tree in a fresh process;
 *                               its peak RSS minus the RSS before it, in KiB
 *   read_bench export FILE RUNS DIR
 *                               JSON: per run and format, the seconds to
 *                               export the decoded profile to DIR/out.FORMAT
 *                               (and its size), beside that run's decode
 *
 * Linked with every .c file of src/libvmprof, built -O2 like the extension.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmp_export.h"
#include "vmp_profile.h"
#include "vmprof.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Resident KiB; *anon receives the private part (resident minus file-backed
 * and shared pages: the reader maps the file, and those pages are the page
 * cache's, not the reader's own memory). */
static long rss_kib(long *anon)
{
    long pages = 0, resident = 0, shared = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld %ld", &pages, &resident, &shared) != 3)
            resident = shared = 0;
        fclose(f);
    }
    long kib = sysconf(_SC_PAGESIZE) / 1024;
    *anon = (resident - shared) * kib;
    return resident * kib;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "read_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("cannot open", path);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0)
            die("read failed on", path);
        if (r == 0 || n + (size_t)r == cap) {
            n += (size_t)r;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    return n;
}

/* Reads the profile at path, timing it into *seconds; dies on failure. */
static vmp_profile *read_timed(const char *path, double *seconds)
{
    vmp_error err;
    memset(&err, 0, sizeof err);
    double t0 = now();
    vmp_profile *p = vmp_profile_read_file(path, NULL, &err);
    *seconds = now() - t0;
    if (!p)
        die("the reader failed", err.message);
    return p;
}

/* Decode, then build the call tree; returns the summary's sample count so
 * the work cannot be optimised away. */
static uint64_t decode(const char *path, double *t_decode, double *t_tree, size_t *stacks,
                       size_t *memory)
{
    vmp_error err;
    memset(&err, 0, sizeof err);
    vmp_profile *p = read_timed(path, t_decode);
    double t1 = now();
    vmp_query q = {.frames = VMP_Q_MERGE_RECURSION};
    vmp_tree *t = vmp_query_tree(p, &q, &err);
    *t_tree = now() - t1;
    if (!t)
        die("the call tree failed", err.message);
    vmp_result_free(t);
    uint64_t n = vmp_profile_get_summary(p)->n_samples;
    *stacks = vmp_profile_stack_count(p);
    if (memory)
        *memory = vmp_profile_memory(p);
    vmp_profile_free(p);
    return n;
}

static int export_bench(const char *path, int runs, const char *dir)
{
    printf("{\"runs\": [");
    for (int i = 0; i < runs; i++) {
        vmp_error err;
        memset(&err, 0, sizeof err);
        double t_decode;
        vmp_profile *p = read_timed(path, &t_decode);
        printf("%s{\"decode\": %.6f", i ? ", " : "", t_decode);
        for (int f = 0; f < VMP_EXPORT_FORMAT_COUNT; f++) {
            const char *name = vmp_export_format_name((vmp_export_format)f);
            char out[4096];
            snprintf(out, sizeof out, "%s/out.%s", dir, name);
            double e0 = now();
            if (vmp_export_write_path(p, (vmp_export_format)f, out, NULL, &err))
                die("the export failed", err.message);
            double e1 = now();
            struct stat st;
            long long size = stat(out, &st) ? -1 : (long long)st.st_size;
            printf(", \"%s\": %.6f, \"%s_bytes\": %lld", name, e1 - e0, name, size);
        }
        printf("}");
        fflush(stdout);
        vmp_profile_free(p);
    }
    printf("]}\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "time") && strcmp(argv[1], "mem") &&
                     strcmp(argv[1], "export")))
        die("usage: read_bench time FILE RUNS | mem FILE | export FILE RUNS DIR", NULL);
    const char *path = argv[2];
    double td, tt;
    size_t stacks;

    if (!strcmp(argv[1], "mem")) {
        long anon_before;
        long before = rss_kib(&anon_before);
        double t0 = now();
        uint64_t n = decode(path, &td, &tt, &stacks, NULL);
        double t1 = now();
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("{\"samples\": %llu, \"rss_before_kib\": %ld, \"anon_before_kib\": %ld, "
               "\"peak_kib\": %ld, \"seconds\": %.6f}\n",
               (unsigned long long)n, before, anon_before, ru.ru_maxrss, t1 - t0);
        return 0;
    }

    int runs = argc > 3 ? atoi(argv[3]) : 5;
    if (!strcmp(argv[1], "export"))
        return export_bench(path, runs, argc > 4 ? argv[4] : ".");
    struct stat st;
    if (stat(path, &st))
        die("cannot stat", path);
    size_t cap = (size_t)st.st_size + 1;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory for the read buffer", NULL);
    memset(buf, 0, cap);
    read_bytes(path, buf, cap); /* warms the page cache */

    printf("{\"file_bytes\": %lld, \"runs\": [", (long long)st.st_size);
    for (int i = 0; i < runs; i++) {
        double t0 = now();
        size_t n = read_bytes(path, buf, cap);
        double t1 = now();
        if (n != (size_t)st.st_size)
            die("short read of", path);
        size_t memory = 0;
        uint64_t samples = decode(path, &td, &tt, &stacks, &memory);
        printf("%s{\"read_bytes\": %.6f, \"decode\": %.6f, \"tree\": %.6f, "
               "\"samples\": %llu, \"stacks\": %zu, \"memory\": %zu}",
               i ? ", " : "", t1 - t0, td, tt, (unsigned long long)samples, stacks, memory);
        fflush(stdout);
    }
    printf("]}\n");
    free(buf);
    return 0;
}
