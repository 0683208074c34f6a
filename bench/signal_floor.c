/*
 * signal_floor.c - what the kernel alone costs per sample on this machine, in
 * C, with no Python and no profiler: the floor under any sampler that takes
 * its samples in the sampled thread (as ours does, on the CPU clock: each
 * thread's own CPU-time event, bench/process_bench.py's "empty perf" rows).
 *
 *   signal_floor [--period NS] [--work N] [--rounds R]
 *
 * One thread does a fixed amount of arithmetic (N iterations) with its own
 * perf task-clock event (the sampler's: sample_period = the period,
 * exclude_kernel) set up five ways, each run R times in turn, round by
 * round; printed: the medians of the process's CPU time and the cost per
 * event against the run with no event in the same round.
 *   none       no event
 *   timer      the event's timer only (no signal): the timer interrupt
 *   signal     overflow signals the thread (O_ASYNC + F_SETSIG + F_SETOWN_EX
 *              to its tid, as vmp_delivery.c does), empty handler: the
 *              timer, the kernel's irq_work that sends the signal, the
 *              signal frame and sigreturn
 *   signal+clock  as signal, the handler also reads the thread's CPU clock
 *              (a system call; vmp_delivery_take_owed does it per sample)
 *   sigtrap    perf's own synchronous SIGTRAP (attr.sigtrap) instead of
 *              O_ASYNC: no irq_work; not usable by a profiler of other
 *              people's programs (SIGTRAP is a debugger's), shown as what
 *              the irq_work costs
 * Meant to run pinned (taskset -c 0), as the process bench's pinned section.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmp_delivery.h"

enum { NONE, TIMER, SIGNAL, SIGNAL_CLOCK, SIGTRAP_MODE, N_MODES };
static const char *mode_name[N_MODES] = {"none", "timer", "signal", "signal+clock", "sigtrap"};

static volatile long handled;
static volatile int read_clock;

static void handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    int saved = errno;
    if (read_clock) {
        struct timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    }
    handled++;
    errno = saved;
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* The event of `mode` on the calling thread; -1 for none (or it failed). */
static int open_event(int mode, long period_ns)
{
    if (mode == NONE)
        return -1;
    struct perf_event_attr a;
    vmp_delivery_source_attr(&a, period_ns); /* the sampler's own event */
    if (mode == SIGTRAP_MODE) {
        a.sigtrap = 1;
        a.remove_on_exec = 1;
    }
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "signal_floor: perf_event_open (%s): %s\n", mode_name[mode], strerror(errno));
        return -1;
    }
    if (mode == SIGNAL || mode == SIGNAL_CLOCK) {
        struct f_owner_ex owner = {F_OWNER_TID, (pid_t)syscall(SYS_gettid)};
        if (fcntl(fd, F_SETFL, O_ASYNC | O_NONBLOCK) < 0 || fcntl(fd, F_SETSIG, SIGURG) < 0 ||
            fcntl(fd, F_SETOWN_EX, &owner) < 0) {
            fprintf(stderr, "signal_floor: fcntl: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
    }
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    return fd;
}

/* One run: the CPU time of N iterations under `mode`; *events: signals
 * handled (the timer's firings are not counted). */
static double run(int mode, long period_ns, long work, long *events)
{
    handled = 0;
    read_clock = mode == SIGNAL_CLOCK;
    double c0 = cpu_s();
    int fd = open_event(mode, period_ns);
    volatile double x = 0;
    for (long i = 0; i < work; i++)
        x += (double)i * 0.5;
    if (fd >= 0) {
        ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
        close(fd);
    }
    double c = cpu_s() - c0;
    *events = handled;
    return c;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    long period_ns = 100000, work = 300000000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--period") && i + 1 < argc)
            period_ns = atol(argv[++i]);
        else if (!strcmp(argv[i], "--work") && i + 1 < argc)
            work = atol(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: signal_floor [--period NS] [--work N] [--rounds R]\n");
            return 2;
        }
    }
    if (period_ns < 10000 || work < 1 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "signal_floor: --period must be at least 10000 ns, --work and --rounds positive (rounds < 100)\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGURG, &sa, NULL);
    sigaction(SIGTRAP, &sa, NULL);

    double cpu[N_MODES][100], extra[N_MODES][100], per_event[N_MODES][100];
    long events[N_MODES][100];
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < N_MODES; m++)
            cpu[m][r] = run(m, period_ns, work, &events[m][r]);
    /* The timer fires once per period of the thread's CPU time (it is not
     * counted: its firings are the CPU time over the period). */
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < N_MODES; m++) {
            double n = m == TIMER ? cpu[m][r] * 1e9 / (double)period_ns : (double)events[m][r];
            extra[m][r] = cpu[m][r] / cpu[NONE][r] - 1;
            per_event[m][r] = n > 0 ? (cpu[m][r] - cpu[NONE][r]) / n * 1e6 : 0;
        }
    printf("signal_floor: period %ld ns, %ld iterations, medians of %d rounds\n", period_ns, work, rounds);
    printf("| mode | CPU s | against none | per event (us) | events |\n|---|---|---|---|---|\n");
    for (int m = 0; m < N_MODES; m++) {
        double ev[100];
        for (int r = 0; r < rounds; r++)
            ev[r] = (double)events[m][r];
        double c = median(cpu[m], rounds), e = median(extra[m], rounds), p = median(per_event[m], rounds);
        double n = median(ev, rounds);
        if (m == NONE)
            printf("| %s | %.3f | | | |\n", mode_name[m], c);
        else if (m == TIMER)
            printf("| %s | %.3f | %+.1f%% | %.1f | (timer: one per period) |\n", mode_name[m], c, 100 * e, p);
        else
            printf("| %s | %.3f | %+.1f%% | %.1f | %.0f |\n", mode_name[m], c, 100 * e, p, n);
    }
    return 0;
}
