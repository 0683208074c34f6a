/*
 * empty_signal.c - the floor under any signal-based sampler: an empty handler,
 * delivered at a given rate, loaded into a workload with ctypes.  The bench
 * runs the same workloads with it and with our sampler; the difference per
 * sample is the sampler's own work.
 *
 *   es_start(period_ns, delivery)   delivery 0: a helper thread that sleeps to
 *                                   absolute CLOCK_MONOTONIC deadlines and sends
 *                                   SIGPROF to the thread that called es_start
 *                                   (with cpu_only set, only when that thread's
 *                                   CPU clock advanced since the last tick);
 *                                   delivery 1: setitimer(ITIMER_PROF), the
 *                                   original vmprof's way (tick-bound);
 *                                   delivery 2: the helper thread, signalling
 *                                   every thread of the process each tick.
 *   es_stop() -> signals handled    restores the previous handler and timer.
 *
 * The handler only counts, so the count is the number of deliveries.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_long handled;
static atomic_int running;
static pthread_t helper;
static pid_t target_tid;
static clockid_t target_clock;
static long period;
static int delivery;
static int cpu_only;
static struct sigaction old_action;
static struct itimerval old_timer;

static void handler(int sig)
{
    (void)sig;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
}

static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(target_clock, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void signal_all_threads(pid_t pid)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != (pid_t)syscall(SYS_gettid))
            syscall(SYS_tgkill, pid, tid, SIGPROF);
    }
    closedir(d);
}

static void *helper_main(void *arg)
{
    (void)arg;
    pid_t pid = getpid();
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long long last_cpu = cpu_only ? cpu_ns() : 0;
    while (atomic_load(&running)) {
        next.tv_nsec += period;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
        if (!atomic_load(&running))
            break;
        if (delivery == 2) {
            signal_all_threads(pid);
            continue;
        }
        if (cpu_only) {
            long long now = cpu_ns();
            if (now == last_cpu)
                continue;
            last_cpu = now;
        }
        syscall(SYS_tgkill, pid, target_tid, SIGPROF);
    }
    return NULL;
}

int es_start(long period_ns, int how, int only_when_running)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, &old_action))
        return -1;
    atomic_store(&handled, 0);
    period = period_ns;
    delivery = how;
    cpu_only = only_when_running;
    if (how == 1) {
        struct itimerval it;
        it.it_interval.tv_sec = period_ns / 1000000000L;
        it.it_interval.tv_usec = (period_ns % 1000000000L) / 1000;
        it.it_value = it.it_interval;
        return setitimer(ITIMER_PROF, &it, &old_timer);
    }
    target_tid = (pid_t)syscall(SYS_gettid);
    if (pthread_getcpuclockid(pthread_self(), &target_clock))
        return -1;
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
    }
    sigaction(SIGPROF, &old_action, NULL);
    return atomic_load(&handled);
}
