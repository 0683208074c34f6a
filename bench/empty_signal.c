/*
 * empty_signal.c - the floor under any signal-based sampler: an empty handler,
 * delivered at a given rate, loaded into a workload with ctypes.  The bench
 * runs the same workloads with it and with our sampler; the difference per
 * sample is the sampler's own work.
 *
 * Delivery is the sampler's own (src/sampler/vmp_delivery.c, linked in), from
 * a helper thread with 1 ns timer slack as the sampler thread has, so that
 * only the handler's work differs.
 *   delivery 0: CPU clock, the per-period schedule (VMPROF_NO_PERF_EVENTS);
 *   delivery 2: wall clock;
 *   delivery 3: CPU clock, each thread's own CPU-time event (the sampler's
 *   default: perf task clock, F_SETOWN_EX to the thread) with the sender's
 *   10 ms rounds: what the kernel's timer interrupt and signal delivery
 *   cost per sample, the floor under any sampler that samples in the thread;
 *   delivery 1: the original vmprof's way instead, setitimer(ITIMER_PROF),
 *   which the kernel tick bounds to ~250 Hz here.
 *
 *   es_start(period_ns, delivery)   0 on success
 *   es_stop() -> signals handled    restores the previous handler and timer
 *
 * The SA_SIGINFO handler only does the bookkeeping the sampler's handler does
 * before taking its sample (errno saved, the sender checked, a per-thread
 * count of signals handled).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vmp_delivery.h"

static atomic_long handled;
static atomic_int running;
static pthread_t helper;
static _Atomic pid_t helper_tid;
static pid_t my_pid;
static int delivery;
static vmp_delivery schedule;
static struct sigaction old_action;
static struct itimerval old_timer;

static void handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)uc;
    int saved = errno;
    if (info && info->si_code == SI_TKILL && info->si_pid == my_pid)
        vmp_delivery_handled();
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    errno = saved;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *helper_main(void *arg)
{
    (void)arg;
    atomic_store(&helper_tid, (pid_t)syscall(SYS_gettid));
    prctl(PR_SET_TIMERSLACK, 1UL);
    if (vmp_delivery_start(&schedule) < 0)
        return NULL;
    while (atomic_load(&running))
        vmp_delivery_send(&schedule, vmp_delivery_wait(&schedule));
    vmp_delivery_stop(&schedule);
    return NULL;
}

int es_start(long period_ns, int how)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, &old_action))
        return -1;
    atomic_store(&handled, 0);
    my_pid = getpid();
    delivery = how;
    if (how == 1) {
        struct itimerval it;
        it.it_interval.tv_sec = period_ns / 1000000000L;
        it.it_interval.tv_usec = (period_ns % 1000000000L) / 1000;
        it.it_value = it.it_interval;
        return setitimer(ITIMER_PROF, &it, &old_timer);
    }
    schedule = (vmp_delivery){.period_ns = period_ns, .cpu_clock = how == 0 || how == 3, .signo = SIGPROF,
                              .sources = how == 3, .skip = {&helper_tid, NULL}, .task_fd = -1};
    atomic_store(&running, 1);
    return pthread_create(&helper, NULL, helper_main, NULL) ? -1 : 0;
}

long es_stop(void)
{
    if (delivery == 1) {
        setitimer(ITIMER_PROF, &old_timer, NULL);
    } else {
        atomic_store(&running, 0);
        pthread_join(helper, NULL);
        /* As the sampler's disable does: wait for the signals already sent
         * (a late one would meet SIGPROF's default action and end the
         * process); if some never arrive, leave the inert handler in place. */
        long sent = (long)atomic_load(&schedule.sent);
        int64_t deadline = mono_ns() + 200000000LL;
        struct timespec nap = {0, 50000};
        while (atomic_load(&handled) < sent && mono_ns() < deadline)
            nanosleep(&nap, NULL);
        if (atomic_load(&handled) < sent)
            return atomic_load(&handled);
    }
    sigaction(SIGPROF, &old_action, NULL);
    return atomic_load(&handled);
}
