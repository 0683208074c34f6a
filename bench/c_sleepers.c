/*
 * c_sleepers.c - threads of the C library for the whole-process bench: each
 * sleeps in nanosleep() in a loop, as the idle thread of a C pool or a
 * watchdog does, and counts the sleeps a signal cut short (EINTR).  They
 * never touch Python, so they have no Python thread state.
 *
 *   cs_start(n) -> threads started
 *   cs_tids(out, max) -> their kernel tids
 *   cs_stop() -> sleeps cut short, over all of them (joins them first)
 *
 * And the floor under the profiler's writer (bench/process_workload.py
 * --tool c-writer): one thread of its own writing a number of bytes to a
 * descriptor over a time, as the writer writes the wall clock's repeats.
 *
 *   cs_write_start(fd, bytes, ns, round_ns) -> 0, or an errno
 *   cs_write_join() -> that thread's CPU time in ns (-1: a write failed)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static pthread_t *threads;
static _Atomic int *tids;
static int n_threads;
static atomic_int stopping;
static atomic_long cut_short;

static void *sleeper(void *arg)
{
    atomic_store(&tids[(long)arg], (int)syscall(SYS_gettid));
    while (!atomic_load(&stopping)) {
        struct timespec t = {0, 100000000L};
        if (nanosleep(&t, NULL) < 0 && errno == EINTR)
            atomic_fetch_add(&cut_short, 1);
    }
    return NULL;
}

int cs_start(int n)
{
    threads = calloc((size_t)n, sizeof *threads);
    tids = calloc((size_t)n, sizeof *tids);
    if (!threads || !tids)
        return 0;
    atomic_store(&stopping, 0);
    atomic_store(&cut_short, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (n_threads = 0; n_threads < n; n_threads++)
        if (pthread_create(&threads[n_threads], &attr, sleeper, (void *)(long)n_threads) != 0)
            break;
    pthread_attr_destroy(&attr);
    for (int i = 0; i < n_threads; i++)
        while (!atomic_load(&tids[i]))
            usleep(100);
    return n_threads;
}

int cs_tids(int *out, int max)
{
    int k = 0;
    for (; k < n_threads && k < max; k++)
        out[k] = atomic_load(&tids[k]);
    return k;
}

long cs_stop(void)
{
    atomic_store(&stopping, 1);
    for (int i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    n_threads = 0;
    return atomic_load(&cut_short);
}

/* The writer's way (src/sampler/vmp_writer.c): a round every round_ns, each
 * writing its share of the bytes in writevs of 1,024 iovecs that all point
 * at one block of 28 records of 73 bytes (a repeat is iovecs pointing at a
 * block of its record copied up to ~2 KiB); once 8 MiB are written, the
 * blocks the next write needs are allocated 8 MiB ahead, the size kept
 * (allocate_ahead: on ext4; where fallocate fails it stops, as there), and
 * what lies past the end is given back at the end.  Nothing else: no ring
 * to read, no record to encode, so its CPU time is what the kernel takes
 * to put those bytes into the file in that pattern. */
#define CW_RECORD 73
#define CW_BLOCK (28 * CW_RECORD)
#define CW_IOVS 1024
#define CW_AHEAD ((off_t)8 << 20)

static struct {
    pthread_t thread;
    int fd;
    long long bytes;
    int64_t ns, round_ns, cpu_ns;
    unsigned char block[CW_BLOCK];
} cw;

static int64_t clock_ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *c_writer(void *arg)
{
    (void)arg;
    struct iovec iov[CW_IOVS];
    int64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), start = clock_ns(CLOCK_MONOTONIC);
    long long rounds = cw.ns / cw.round_ns > 0 ? cw.ns / cw.round_ns : 1, done = 0;
    off_t ahead_to = 0;
    int ahead = 1, failed = 0;
    for (long long r = 0; r < rounds && !failed; r++) {
        long long want = cw.bytes * (r + 1) / rounds - done;
        while (want > 0) {
            int n = 0;
            long long len = 0;
            for (; n < CW_IOVS && len < want; n++) {
                long long l = want - len < CW_BLOCK ? want - len : CW_BLOCK;
                iov[n].iov_base = cw.block;
                iov[n].iov_len = (size_t)l;
                len += l;
            }
            off_t end = (off_t)(done + len);
            if (ahead && end >= CW_AHEAD && end > ahead_to) {
                off_t from = done > ahead_to ? (off_t)done : ahead_to;
                if (fallocate(cw.fd, FALLOC_FL_KEEP_SIZE, from, end + CW_AHEAD - from) < 0)
                    ahead = 0;
                ahead_to = end + CW_AHEAD;
            }
            ssize_t w = writev(cw.fd, iov, n);
            if (w <= 0) {
                failed = 1;
                break;
            }
            done += w;
            want -= w;
        }
        int64_t wake = start + (r + 1) * cw.round_ns, now = clock_ns(CLOCK_MONOTONIC);
        if (wake > now) {
            struct timespec t = {(wake - now) / 1000000000, (wake - now) % 1000000000};
            nanosleep(&t, NULL);
        }
    }
    if (ahead_to > (off_t)done && ftruncate(cw.fd, (off_t)done) < 0)
        failed = 1;
    cw.cpu_ns = failed ? -1 : clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    return NULL;
}

int cs_write_start(int fd, long long bytes, long long ns, long long round_ns)
{
    for (int i = 0; i < CW_BLOCK; i++)
        cw.block[i] = (unsigned char)(i % CW_RECORD + 1);
    cw.fd = fd;
    cw.bytes = bytes;
    cw.ns = ns;
    cw.round_ns = round_ns > 0 ? round_ns : 1;
    return pthread_create(&cw.thread, NULL, c_writer, NULL);
}

long long cs_write_join(void)
{
    pthread_join(cw.thread, NULL);
    return cw.cpu_ns;
}
