/*
 * empty_signal.c - the floor under any signal-based sampler: an empty handler,
 * delivered at a given rate, loaded into a workload with ctypes.  The bench
 * runs the same workloads with it and with our sampler; the difference per
 * sample is the sampler's own work.
 *
 * Delivery mirrors src/sampler/vmp_sampler.c so that only the handler's work
 * differs: a helper thread sleeps to absolute CLOCK_MONOTONIC deadlines (timer
 * slack 1 ns), rescans /proc/self/task every 10 ms, and each period sends
 * SIGPROF with tgkill to
 *   delivery 0 (CPU clock): each thread whose CPU clock has advanced by a
 *     period since it was last signalled (credit capped at 4 periods);
 *   delivery 2 (wall clock): every thread.
 * delivery 1 is the original vmprof's way instead: setitimer(ITIMER_PROF),
 * which the kernel tick bounds to ~250 Hz here.
 *
 *   es_start(period_ns, delivery)   0 on success
 *   es_stop() -> signals handled    restores the previous handler and timer
 *   es_threads()                    the most threads it knew at once (so a
 *                                   wall-clock rate can be given per thread)
 *
 * The SA_SIGINFO handler only counts (and saves errno, as ours does), so the
 * count is the number of deliveries.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1024
#define RESCAN_NS 10000000LL

typedef struct {
    pid_t tid;
    int seen;
    int64_t last_cpu;
    int64_t credit;
} thread_slot;

static atomic_long handled, sent;
static atomic_int most_threads; /* the most threads signalled in one period */
static atomic_int running;
static pthread_t helper;
static atomic_int helper_tid;
static int64_t period;
static int delivery;
static struct sigaction old_action;
static struct itimerval old_timer;

static void handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    int saved = errno;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    errno = saved;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t thread_cpu_ns(pid_t tid)
{
    /* another thread's CPU clock, as pthread_getcpuclockid builds it */
    clockid_t clk = (clockid_t)((~(unsigned)tid << 3) | 6);
    struct timespec t;
    if (clock_gettime(clk, &t) < 0)
        return -1;
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static size_t scan_threads(thread_slot *table, size_t n)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return n;
    for (size_t i = 0; i < n; i++)
        table[i].seen = 0;
    pid_t self = (pid_t)atomic_load(&helper_tid);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid == self)
            continue;
        size_t i = 0;
        while (i < n && table[i].tid != tid)
            i++;
        if (i == n) {
            if (n == MAX_THREADS)
                continue;
            table[n++] = (thread_slot){.tid = tid, .last_cpu = -1};
        }
        table[i].seen = 1;
    }
    closedir(dir);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (table[i].seen)
            table[kept++] = table[i];
    return kept;
}

static void *helper_main(void *arg)
{
    (void)arg;
    atomic_store(&helper_tid, (int)syscall(SYS_gettid));
    prctl(PR_SET_TIMERSLACK, 1UL);
    thread_slot *table = calloc(MAX_THREADS, sizeof *table);
    if (!table)
        return NULL;
    pid_t pid = getpid();
    size_t n = 0;
    int64_t next = mono_ns(), last_scan = -RESCAN_NS;
    while (atomic_load(&running)) {
        next += period;
        struct timespec dl = {next / 1000000000LL, next % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) == EINTR)
            ;
        if (!atomic_load(&running))
            break;
        int64_t now = mono_ns();
        if (now - next >= period)
            next = now;
        if (now - last_scan >= RESCAN_NS) {
            n = scan_threads(table, n);
            last_scan = now;
            if ((int)n > atomic_load(&most_threads))
                atomic_store(&most_threads, (int)n);
        }
        for (size_t i = 0; i < n; i++) {
            thread_slot *t = &table[i];
            if (delivery == 0) {
                int64_t cpu = thread_cpu_ns(t->tid);
                if (cpu < 0)
                    continue;
                if (t->last_cpu < 0) {
                    t->last_cpu = cpu;
                    continue;
                }
                t->credit += cpu - t->last_cpu;
                t->last_cpu = cpu;
                if (t->credit > 4 * period)
                    t->credit = 4 * period;
                if (t->credit < period)
                    continue;
                t->credit -= period;
            }
            if (syscall(SYS_tgkill, pid, t->tid, SIGPROF) == 0)
                atomic_fetch_add_explicit(&sent, 1, memory_order_relaxed);
        }
    }
    free(table);
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
    atomic_store(&sent, 0);
    atomic_store(&most_threads, 0);
    period = period_ns;
    delivery = how;
    if (how == 1) {
        struct itimerval it;
        it.it_interval.tv_sec = period_ns / 1000000000L;
        it.it_interval.tv_usec = (period_ns % 1000000000L) / 1000;
        it.it_value = it.it_interval;
        return setitimer(ITIMER_PROF, &it, &old_timer);
    }
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
        int64_t deadline = mono_ns() + 200000000LL;
        struct timespec nap = {0, 50000};
        while (atomic_load(&handled) < atomic_load(&sent) && mono_ns() < deadline)
            nanosleep(&nap, NULL);
        if (atomic_load(&handled) < atomic_load(&sent))
            return atomic_load(&handled);
    }
    sigaction(SIGPROF, &old_action, NULL);
    return atomic_load(&handled);
}

int es_threads(void)
{
    return atomic_load(&most_threads);
}
