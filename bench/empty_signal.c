/*
 * empty_signal.c - the floor under any signal-based sampler: an empty handler,
 * delivered at a given rate, loaded into a workload with ctypes.  The bench
 * runs the same workloads with it and with our sampler; the difference per
 * sample is the sampler's own work.
 *
 * Delivery mirrors the sampler thread of src/sampler/vmp_sampler.c, with the
 * timing rules of src/sampler/vmp_delivery.h, so that only the handler's work
 * differs: absolute CLOCK_MONOTONIC deadlines with 1 ns timer slack;
 * /proc/self/task listed every millisecond with getdents on a kept
 * descriptor; per thread a count of samples owed (CPU clock: one per period
 * of CPU time the thread used; wall clock: one per period), capped by
 * vmp_max_owed(); never a second signal to a thread before it handled the
 * first, the rest sent in catch-up rounds vmp_catchup_gap() apart.
 *   delivery 0: CPU clock, delivery 2: wall clock;
 *   delivery 1: the original vmprof's way instead, setitimer(ITIMER_PROF),
 *   which the kernel tick bounds to ~250 Hz here.
 *
 *   es_start(period_ns, delivery)   0 on success
 *   es_stop() -> signals handled    restores the previous handler and timer
 *   es_threads()                    the most threads it knew at once (so a
 *                                   wall-clock rate can be given per thread)
 *
 * The SA_SIGINFO handler only does the bookkeeping the sampler's handler does
 * before taking its sample (errno saved, the sender checked, a per-thread
 * count of signals handled).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "vmp_delivery.h" /* the sampler's own timing rules */

#define MAX_THREADS 1024

typedef struct {
    pid_t tid;
    int seen;
    int64_t last_cpu;
    int64_t credit;
    int64_t owed;
} thread_slot;

static atomic_long handled, sent;
static atomic_int most_threads; /* the most threads known at once */
static _Atomic uint32_t handled_by[VMP_TID_SLOTS];
static uint32_t sent_to[VMP_TID_SLOTS];
static __thread pid_t tid_cache __attribute__((tls_model("initial-exec")));
static atomic_int running;
static pthread_t helper;
static atomic_int helper_tid;
static pid_t my_pid;
static int64_t period;
static int delivery;
static struct sigaction old_action;
static struct itimerval old_timer;

static void handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)uc;
    int saved = errno;
    if (info && info->si_code == SI_TKILL && info->si_pid == my_pid) {
        pid_t tid = tid_cache;
        if (!tid)
            tid = tid_cache = (pid_t)syscall(SYS_gettid);
        atomic_fetch_add_explicit(&handled_by[tid & (VMP_TID_SLOTS - 1)], 1, memory_order_relaxed);
    }
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

static size_t scan_threads(int dir_fd, thread_slot *table, size_t n)
{
    char buf[8192];
    if (dir_fd < 0 || lseek(dir_fd, 0, SEEK_SET) < 0)
        return n;
    for (size_t i = 0; i < n; i++)
        table[i].seen = 0;
    pid_t self = (pid_t)atomic_load(&helper_tid);
    for (;;) {
        long got = syscall(SYS_getdents64, dir_fd, buf, sizeof buf);
        if (got < 0) {
            for (size_t i = 0; i < n; i++)
                table[i].seen = 1;
            return n;
        }
        if (got == 0)
            break;
        for (long off = 0; off < got;) {
            struct dirent64 *e = (struct dirent64 *)(buf + off);
            off += e->d_reclen;
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
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (table[i].seen) {
            table[kept++] = table[i];
        } else {
            size_t k = (size_t)table[i].tid & (VMP_TID_SLOTS - 1);
            sent_to[k] = atomic_load_explicit(&handled_by[k], memory_order_relaxed);
        }
    }
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
    size_t n = 0;
    const int64_t catchup_gap = vmp_catchup_gap(period), max_owed = vmp_max_owed(period);
    int64_t next = mono_ns() + period, last_scan = -VMP_SCAN_NS, last_round = 0;
    int task_fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int catchup = 0;
    while (atomic_load(&running)) {
        int64_t wake = next;
        if (catchup && last_round + catchup_gap < wake)
            wake = last_round + catchup_gap;
        struct timespec dl = {wake / 1000000000LL, wake % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) == EINTR)
            ;
        if (!atomic_load(&running))
            break;
        int64_t now = mono_ns(), ticks = 0;
        if (now >= next) {
            ticks = 1 + (now - next) / period;
            next += ticks * period;
            if (now - last_scan >= VMP_SCAN_NS) {
                n = scan_threads(task_fd, table, n);
                last_scan = now;
                if ((int)n > atomic_load(&most_threads))
                    atomic_store(&most_threads, (int)n);
            }
        }
        last_round = now;
        catchup = 0;
        for (size_t i = 0; i < n; i++) {
            thread_slot *t = &table[i];
            if (delivery == 2) {
                t->owed += ticks;
            } else {
                int64_t cpu = thread_cpu_ns(t->tid);
                if (cpu < 0)
                    continue;
                if (t->last_cpu >= 0)
                    t->credit += cpu - t->last_cpu;
                t->last_cpu = cpu;
                while (t->credit >= period) {
                    t->owed++;
                    t->credit -= period;
                }
            }
            if (t->owed > max_owed)
                t->owed = max_owed;
            if (t->owed <= 0)
                continue;
            size_t k = (size_t)t->tid & (VMP_TID_SLOTS - 1);
            if (sent_to[k] != atomic_load_explicit(&handled_by[k], memory_order_relaxed)) {
                catchup = 1;
                continue;
            }
            t->owed--;
            if (t->owed)
                catchup = 1;
            if (syscall(SYS_tgkill, my_pid, t->tid, SIGPROF) == 0) {
                sent_to[k]++;
                atomic_fetch_add_explicit(&sent, 1, memory_order_relaxed);
            }
        }
    }
    free(table);
    if (task_fd >= 0)
        close(task_fd);
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
    for (size_t k = 0; k < VMP_TID_SLOTS; k++)
        sent_to[k] = atomic_load(&handled_by[k]);
    my_pid = getpid();
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
