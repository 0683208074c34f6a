/*
 * c_sleepers.c - threads of the C library for the whole-process bench: each
 * sleeps in nanosleep() in a loop, as the idle thread of a C pool or a
 * watchdog does, and counts the sleeps a signal cut short (EINTR).  They
 * never touch Python, so they have no Python thread state.
 *
 *   cs_start(n) -> threads started
 *   cs_tids(out, max) -> their kernel tids
 *   cs_stop() -> sleeps cut short, over all of them (joins them first)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
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
