/*
 * vmp_c_threads.c - threads of a C library for the sampler's tests, loaded
 * with ctypes (no Python thread state: they never touch Python).
 *
 *   ct_start_sleepers(n, nap_ns)  n threads sleeping in nanosleep(nap_ns) in a
 *                                 loop, as a C pool's idle worker or a
 *                                 watchdog; counts the naps a signal cut short
 *   ct_start_spinner()            one thread that computes (a BLAS worker)
 *   ct_start_blocker(spin)        one thread that blocks every signal, then
 *                                 spins (spin != 0) or naps in a loop
 *   ct_cpu_ns() -> ns             the CPU clock of the thread started last
 *                                 (-1: none)
 *   ct_stop() -> naps cut short   stops and joins them all; the blocker
 *                                 unblocks its signals first, so a signal
 *                                 still pending for it is delivered then
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#define MAX_THREADS 64

static pthread_t threads[MAX_THREADS];
static int n_threads;
static atomic_int stopping;
static atomic_long cut_short;
static long nap;

static void *sleeper(void *arg)
{
    (void)arg;
    while (!atomic_load(&stopping)) {
        struct timespec t = {nap / 1000000000L, nap % 1000000000L};
        if (nanosleep(&t, NULL) < 0 && errno == EINTR)
            atomic_fetch_add(&cut_short, 1);
    }
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    volatile unsigned long n = 0;
    while (!atomic_load(&stopping))
        n++;
    return NULL;
}

static void *blocker(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    volatile unsigned long n = 0;
    while (!atomic_load(&stopping)) {
        if (arg) {
            n++;
        } else {
            struct timespec t = {0, 1000000L};
            nanosleep(&t, NULL);
        }
    }
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    return NULL;
}

static int start(void *(*fn)(void *), void *arg)
{
    if (n_threads == MAX_THREADS || pthread_create(&threads[n_threads], NULL, fn, arg) != 0)
        return -1;
    n_threads++;
    return 0;
}

int ct_start_sleepers(int n, long nap_ns)
{
    nap = nap_ns;
    for (int i = 0; i < n; i++)
        if (start(sleeper, NULL) < 0)
            return -1;
    return 0;
}

int ct_start_spinner(void)
{
    return start(spinner, NULL);
}

int ct_start_blocker(int spin)
{
    return start(blocker, spin ? (void *)1 : NULL);
}

long long ct_cpu_ns(void)
{
    clockid_t clock;
    struct timespec t;
    if (!n_threads || pthread_getcpuclockid(threads[n_threads - 1], &clock) != 0 || clock_gettime(clock, &t) != 0)
        return -1;
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

long ct_stop(void)
{
    atomic_store(&stopping, 1);
    for (int i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    n_threads = 0;
    atomic_store(&stopping, 0);
    return atomic_exchange(&cut_short, 0);
}
