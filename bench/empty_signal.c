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
 * The candidates for a cheaper delivery (bench/signal_floor.c measures them
 * in C), armed by the sampled thread itself on itself, no helper thread:
 *   es_arm_self(period_ns, how)     0 on success; one thread at a time
 *   es_disarm_self() -> signals handled
 *   how 4: the CPU clock's perf task-clock event, O_ASYNC + F_SETSIG
 *          (SIGPROF) + F_SETOWN_EX to the thread: today's delivery without
 *          the sender's rounds
 *   how 5: the same event with perf's synchronous SIGTRAP (attr.sigtrap,
 *          remove_on_exec): no irq_work, a debugger's signal
 *   how 6: timer_create(CLOCK_MONOTONIC, SIGEV_THREAD_ID to the thread),
 *          SIGPROF: no perf; runs while the thread sleeps too
 *
 * The SA_SIGINFO handler only does the bookkeeping the sampler's handler does
 * before taking its sample (errno saved, the sender checked, a per-thread
 * count of signals handled).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
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

/* The empty handler installed for signo, the program's kept in *old. */
static int install_handler(int signo, struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return sigaction(signo, &sa, old);
}

int es_start(long period_ns, int how)
{
    if (install_handler(SIGPROF, &old_action))
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

/* ---- the candidates, armed by the thread on itself ---------------------- */

static int self_how, self_fd = -1;
static timer_t self_timer;
static struct sigaction old_trap;

int es_arm_self(long period_ns, int how)
{
    if (install_handler(SIGPROF, &old_action) || install_handler(SIGTRAP, &old_trap))
        return -1;
    atomic_store(&handled, 0);
    my_pid = getpid();
    self_how = how;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (how == 6) {
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = SIGPROF;
        ev._sigev_un._tid = tid;
        if (timer_create(CLOCK_MONOTONIC, &ev, &self_timer))
            return -1;
        struct itimerspec it;
        it.it_interval.tv_sec = period_ns / 1000000000L;
        it.it_interval.tv_nsec = period_ns % 1000000000L;
        it.it_value = it.it_interval;
        return timer_settime(self_timer, 0, &it, NULL);
    }
    if (how != 4 && how != 5)
        return -1;
    struct perf_event_attr a;
    vmp_delivery_source_attr(&a, period_ns);
    if (how == 5) {
        a.sigtrap = 1;
        a.remove_on_exec = 1;
    }
    self_fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (self_fd < 0)
        return -1;
    if (how == 4) {
        struct f_owner_ex owner = {F_OWNER_TID, tid};
        if (fcntl(self_fd, F_SETFL, O_ASYNC | O_NONBLOCK) < 0 || fcntl(self_fd, F_SETSIG, SIGPROF) < 0 ||
            fcntl(self_fd, F_SETOWN_EX, &owner) < 0)
            return -1;
    }
    return ioctl(self_fd, PERF_EVENT_IOC_ENABLE, 0);
}

long es_disarm_self(void)
{
    if (self_how == 6) {
        timer_delete(self_timer);
    } else if (self_fd >= 0) {
        ioctl(self_fd, PERF_EVENT_IOC_DISABLE, 0);
        close(self_fd);
        self_fd = -1;
    }
    /* Each of these signals is sent to the calling thread and handled before
     * it returns to user space, so none is left in flight here. */
    sigaction(SIGPROF, &old_action, NULL);
    sigaction(SIGTRAP, &old_trap, NULL);
    return atomic_load(&handled);
}
