/*
 * test_delivery.c - the sampler thread's schedule (vmp_delivery) with real
 * threads and signals: an idle thread's sample is repeated instead of
 * signalled (wall clock), but a real one still comes every refresh interval;
 * a thread that runs is signalled; the CPU clock never repeats.
 *
 * The test's own thread is the sender; two threads are its targets: one
 * blocked in read() on a pipe, one spinning.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmp_delivery.h"
#include "vmp_test.h"

enum { IDLE, BUSY, ROLES };

static _Atomic pid_t tids[ROLES];
static _Atomic long signalled[ROLES], repeated[ROLES];
static _Atomic int stop_spinning;
static _Atomic long busy_cpu_ms; /* the spinning thread's CPU time, at its end */
static int wake_pipe[2];

static int role_of(pid_t tid)
{
    for (int r = 0; r < ROLES; r++)
        if (atomic_load(&tids[r]) == tid)
            return r;
    return -1;
}

static void on_signal(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    int r = role_of((pid_t)syscall(SYS_gettid));
    if (r >= 0)
        atomic_fetch_add(&signalled[r], 1);
    vmp_delivery_sampled(VMP_SAMPLE_KEPT); /* as the sampler's handler does after a kept sample */
    vmp_delivery_handled();
}

static int count_repeat(pid_t tid, int64_t count)
{
    int r = role_of(tid);
    if (r >= 0)
        atomic_fetch_add(&repeated[r], (long)count);
    return 0;
}

static void *idle_thread(void *arg)
{
    (void)arg;
    atomic_store(&tids[IDLE], (pid_t)syscall(SYS_gettid));
    char c;
    while (read(wake_pipe[0], &c, 1) < 0) /* SA_RESTART: only a real error ends it */
        ;
    return NULL;
}

static void *busy_thread(void *arg)
{
    (void)arg;
    atomic_store(&tids[BUSY], (pid_t)syscall(SYS_gettid));
    volatile unsigned long n = 0;
    while (!atomic_load(&stop_spinning))
        n++;
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    atomic_store(&busy_cpu_ms, (long)t.tv_sec * 1000 + t.tv_nsec / 1000000);
    return NULL;
}

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Runs the schedule for `ms` at a 1 ms period on the given clock. */
static int run_schedule(int cpu_clock, int ms)
{
    for (int r = 0; r < ROLES; r++) {
        atomic_store(&tids[r], 0);
        atomic_store(&signalled[r], 0);
        atomic_store(&repeated[r], 0);
    }
    atomic_store(&stop_spinning, 0);
    if (pipe(wake_pipe) < 0)
        return -1;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, &old);
    pthread_t idle, busy;
    pthread_create(&idle, NULL, idle_thread, NULL);
    pthread_create(&busy, NULL, busy_thread, NULL);
    while (!atomic_load(&tids[IDLE]) || !atomic_load(&tids[BUSY]))
        usleep(100);
    usleep(20000); /* the idle thread is blocked in read() by now */

    static _Atomic pid_t me;
    atomic_store(&me, (pid_t)syscall(SYS_gettid));
    vmp_delivery d = {.period_ns = 1000000, .cpu_clock = cpu_clock, .signo = SIGUSR2,
                      .skip = {&me, NULL}, .repeat = count_repeat, .task_fd = -1};
    int rc = vmp_delivery_start(&d);
    if (rc == 0) {
        int64_t end = mono_ms() + ms;
        while (mono_ms() < end)
            vmp_delivery_send(&d, vmp_delivery_wait(&d));
        vmp_delivery_stop(&d);
    }
    atomic_store(&stop_spinning, 1);
    if (write(wake_pipe[1], "x", 1) != 1)
        rc = -1;
    pthread_join(idle, NULL);
    pthread_join(busy, NULL);
    usleep(10000); /* a last signal in flight is handled before the handler goes */
    sigaction(SIGUSR2, &old, NULL);
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    return rc;
}

VMP_TEST(wall_clock_repeats_an_idle_threads_sample_and_signals_a_busy_one)
{
    REQUIRE(run_schedule(0, 300) == 0);
    long idle_sig = atomic_load(&signalled[IDLE]), idle_rep = atomic_load(&repeated[IDLE]);
    long busy_sig = atomic_load(&signalled[BUSY]), busy_rep = atomic_load(&repeated[BUSY]);
    /* ~300 samples owed to each.  The idle one: a real sample at least every
     * 50 ms (VMP_IDLE_REFRESH_NS), the rest repeated. */
    CHECK(idle_rep > 5 * idle_sig);
    CHECK(idle_sig >= 300 / 50 - 2);
    CHECK(idle_rep + idle_sig >= 150);
    /* The busy one runs between nearly every two rounds: signalled, far
     * more often than the idle one.  A loaded machine leaves it waiting for
     * a CPU now and then: the periods a signal waited for it repeat the
     * sample it then took, so it still gets nearly every period's sample. */
    CHECK(busy_sig > 4 * idle_sig);
    CHECK(busy_rep + busy_sig >= 200);
}

VMP_TEST(cpu_clock_never_repeats_and_signals_only_the_thread_that_ran)
{
    REQUIRE(run_schedule(1, 300) == 0);
    CHECK(atomic_load(&repeated[IDLE]) == 0);
    CHECK(atomic_load(&repeated[BUSY]) == 0);
    CHECK(atomic_load(&signalled[IDLE]) <= 2); /* it used no CPU while blocked */
    /* one per millisecond of CPU time it got (less than 300 on a loaded machine) */
    CHECK(atomic_load(&busy_cpu_ms) > 30);
    CHECK(atomic_load(&signalled[BUSY]) >= atomic_load(&busy_cpu_ms) / 2);
    CHECK(atomic_load(&signalled[BUSY]) <= atomic_load(&busy_cpu_ms) + 20);
}
