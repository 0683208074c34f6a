/*
 * signal_floor.c - what the kernel alone costs per sample on this machine, in
 * C, with no Python and no profiler: the floor under any sampler that takes
 * its samples in the sampled thread (as ours does, on the CPU clock: each
 * thread's own CPU-time event, bench/process_bench.py's "empty perf" rows),
 * for each way the kernel can interrupt a thread at a rate.
 *
 *   signal_floor [--period NS] [--work N] [--rounds R] [--modes a,b,...]
 *
 * One thread does a fixed amount of arithmetic (N iterations) under each
 * mode, each run R times, the modes alternating round by round (each round
 * starts one mode further on, so that no mode always follows the same one);
 * printed: the medians of the process's CPU time (and its user / system
 * split: on this VM the host's work for an interrupt lands in whatever the
 * guest was doing), the cost per event against the run with no event in the
 * same round, and the rate the thread saw.
 *   none       no event
 *   timer      the sampler's perf task-clock event (sample_period = the
 *              period, exclude_kernel), its timer only (no signal): the
 *              timer interrupt
 *   signal     (a) today's CPU clock: overflow signals the thread (O_ASYNC +
 *              F_SETSIG + F_SETOWN_EX to its tid, as vmp_delivery.c does),
 *              empty handler: the timer, the kernel's irq_work that sends
 *              the signal, the signal frame and sigreturn
 *   signal+clock  as signal, the handler also reads the thread's CPU clock
 *              (a system call; vmp_delivery_take_owed does it per sample)
 *   sigtrap    (b) perf's own synchronous SIGTRAP (attr.sigtrap +
 *              remove_on_exec) instead of O_ASYNC: no irq_work; SIGTRAP is
 *              a debugger's signal
 *   cpu-clock  (e) as signal, with perf's cpu-clock event instead of the
 *              task clock (the same hrtimer, another accounting)
 *   posix-mono (c) timer_create(CLOCK_MONOTONIC, SIGEV_THREAD_ID to the
 *              thread): an hrtimer whose expiry queues the signal itself,
 *              no perf, no irq_work; runs while the thread sleeps too
 *   posix-cputime  (d) timer_create(CLOCK_THREAD_CPUTIME_ID,
 *              SIGEV_THREAD_ID): checked at the scheduler tick only, so its
 *              rate is the tick's whatever is asked; the periods it skipped
 *              are its overruns (column "overruns")
 *   itimer-prof  (e) setitimer(ITIMER_PROF), the original vmprof's: the
 *              process's CPU time, also tick-bound
 * Before the table, two costs with no timer at all: a system call
 * (getppid) and a signal sent to itself (tgkill: the system call, the signal
 * frame, the empty handler and sigreturn), each the median of R loops.
 * Meant to run pinned (taskset -c 0), as the process bench's pinned section.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vmp_delivery.h"

enum { NONE, TIMER, SIGNAL, SIGNAL_CLOCK, SIGTRAP_MODE, CPU_CLOCK, POSIX_MONO, POSIX_CPUTIME, ITIMER_PROF_MODE, N_MODES };
static const char *mode_name[N_MODES] = {"none",      "timer",      "signal",        "signal+clock", "sigtrap",
                                         "cpu-clock", "posix-mono", "posix-cputime", "itimer-prof"};

#define MAX_ROUNDS 99

static volatile long handled, overruns;
static volatile int read_clock;

static void handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)uc;
    int saved = errno;
    if (read_clock) {
        struct timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    }
    /* A POSIX timer's signal says how many expiries it stood for. */
    if (info && info->si_code == SI_TIMER)
        overruns += info->si_overrun;
    handled++;
    errno = saved;
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double tv_s(struct timeval t)
{
    return (double)t.tv_sec + t.tv_usec * 1e-6;
}

/* What a mode armed, for disarm(). */
typedef struct {
    int fd;
    timer_t timer;
    int has_timer, has_itimer;
} armed;

/* Arms `mode` on the calling thread. 0, or -1 (said why). */
static int arm(int mode, long period_ns, armed *a)
{
    memset(a, 0, sizeof *a);
    a->fd = -1;
    if (mode == NONE)
        return 0;
    if (mode == POSIX_MONO || mode == POSIX_CPUTIME) {
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = SIGURG;
        ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        if (timer_create(mode == POSIX_MONO ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ev, &a->timer)) {
            fprintf(stderr, "signal_floor: timer_create (%s): %s\n", mode_name[mode], strerror(errno));
            return -1;
        }
        a->has_timer = 1;
        struct itimerspec it;
        it.it_interval.tv_sec = period_ns / 1000000000L;
        it.it_interval.tv_nsec = period_ns % 1000000000L;
        it.it_value = it.it_interval;
        return timer_settime(a->timer, 0, &it, NULL);
    }
    if (mode == ITIMER_PROF_MODE) {
        struct itimerval it;
        it.it_interval.tv_sec = period_ns / 1000000000L;
        it.it_interval.tv_usec = (period_ns % 1000000000L) / 1000;
        it.it_value = it.it_interval;
        a->has_itimer = 1;
        return setitimer(ITIMER_PROF, &it, NULL);
    }
    struct perf_event_attr pa;
    vmp_delivery_source_attr(&pa, period_ns); /* the sampler's own event */
    if (mode == CPU_CLOCK)
        pa.config = PERF_COUNT_SW_CPU_CLOCK;
    if (mode == SIGTRAP_MODE) {
        pa.sigtrap = 1;
        pa.remove_on_exec = 1; /* the kernel refuses sigtrap without it */
    }
    int fd = (int)syscall(SYS_perf_event_open, &pa, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "signal_floor: perf_event_open (%s): %s\n", mode_name[mode], strerror(errno));
        return -1;
    }
    a->fd = fd;
    if (mode == SIGNAL || mode == SIGNAL_CLOCK || mode == CPU_CLOCK) {
        struct f_owner_ex owner = {F_OWNER_TID, (pid_t)syscall(SYS_gettid)};
        if (fcntl(fd, F_SETFL, O_ASYNC | O_NONBLOCK) < 0 || fcntl(fd, F_SETSIG, SIGURG) < 0 ||
            fcntl(fd, F_SETOWN_EX, &owner) < 0) {
            fprintf(stderr, "signal_floor: fcntl: %s\n", strerror(errno));
            return -1;
        }
    }
    return ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
}

static void disarm(armed *a)
{
    if (a->fd >= 0) {
        ioctl(a->fd, PERF_EVENT_IOC_DISABLE, 0);
        close(a->fd);
    }
    if (a->has_timer)
        timer_delete(a->timer);
    if (a->has_itimer) {
        struct itimerval off;
        memset(&off, 0, sizeof off);
        setitimer(ITIMER_PROF, &off, NULL);
    }
}

typedef struct {
    double cpu, user, sys;
    long events, overruns;
    long loc, iwi; /* local timer and irq-work interrupts on the CPU, whoever they interrupted */
    int failed;
} result;

/* This CPU's counts of local timer ("LOC") and irq-work ("IWI") interrupts
 * from /proc/interrupts (read outside the timed part: they tell where the
 * time goes, as the guest sees it; other processes' count too). */
static void interrupts(int cpu, long *loc, long *iwi)
{
    *loc = *iwi = -1;
    FILE *f = fopen("/proc/interrupts", "r");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ')
            p++;
        long *out = !strncmp(p, "LOC:", 4) ? loc : !strncmp(p, "IWI:", 4) ? iwi : NULL;
        if (!out)
            continue;
        p += 4;
        for (int c = 0; c <= cpu; c++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p)
                break;
            if (c == cpu)
                *out = v;
            p = end;
        }
    }
    fclose(f);
}

/* One run: the CPU time of N iterations under `mode`; events: signals
 * handled (the perf timer's firings are not counted). */
static result run(int mode, long period_ns, long work)
{
    result r;
    memset(&r, 0, sizeof r);
    handled = 0;
    overruns = 0;
    read_clock = mode == SIGNAL_CLOCK;
    int on = sched_getcpu();
    long loc0, iwi0, loc1, iwi1;
    interrupts(on, &loc0, &iwi0);
    struct rusage u0, u1;
    getrusage(RUSAGE_SELF, &u0);
    double c0 = cpu_s();
    armed a;
    if (arm(mode, period_ns, &a) < 0)
        r.failed = 1;
    volatile double x = 0;
    for (long i = 0; i < work; i++)
        x += (double)i * 0.5;
    disarm(&a);
    r.cpu = cpu_s() - c0;
    getrusage(RUSAGE_SELF, &u1);
    r.user = tv_s(u1.ru_utime) - tv_s(u0.ru_utime);
    r.sys = tv_s(u1.ru_stime) - tv_s(u0.ru_stime);
    r.events = handled;
    r.overruns = overruns;
    interrupts(on, &loc1, &iwi1);
    r.loc = sched_getcpu() == on && loc0 >= 0 ? loc1 - loc0 : -1;
    r.iwi = sched_getcpu() == on && iwi0 >= 0 ? iwi1 - iwi0 : -1;
    return r;
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

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* The costs with no timer: a system call, and a signal sent to oneself
 * (handled on the way out of tgkill), in us, medians of `rounds` loops. */
static void costs_without_timer(int rounds)
{
    enum { LOOPS = 200000 };
    double sys_us[MAX_ROUNDS], sig_us[MAX_ROUNDS];
    pid_t pid = getpid(), tid = (pid_t)syscall(SYS_gettid);
    for (int r = 0; r < rounds; r++) {
        double c0 = cpu_s();
        for (int i = 0; i < LOOPS; i++)
            syscall(SYS_getppid);
        sys_us[r] = (cpu_s() - c0) / LOOPS * 1e6;
        handled = 0;
        c0 = cpu_s();
        for (int i = 0; i < LOOPS / 4; i++)
            syscall(SYS_tgkill, pid, tid, SIGURG);
        sig_us[r] = (cpu_s() - c0) / (LOOPS / 4) * 1e6;
    }
    printf("no timer: a system call (getppid) %.2f us; a signal to oneself (tgkill + empty handler + "
           "sigreturn) %.2f us (medians of %d)\n",
           median(sys_us, rounds), median(sig_us, rounds), rounds);
}

int main(int argc, char **argv)
{
    long period_ns = 100000, work = 300000000;
    int rounds = 5;
    int use[N_MODES];
    for (int m = 0; m < N_MODES; m++)
        use[m] = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--period") && i + 1 < argc)
            period_ns = atol(argv[++i]);
        else if (!strcmp(argv[i], "--work") && i + 1 < argc)
            work = atol(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--modes") && i + 1 < argc) {
            char *list = argv[++i];
            for (int m = 0; m < N_MODES; m++)
                use[m] = m == NONE; /* the baseline is always run */
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                int found = 0;
                for (int m = 0; m < N_MODES; m++)
                    if (!strcmp(tok, mode_name[m]))
                        use[m] = found = 1;
                if (!found) {
                    fprintf(stderr, "signal_floor: no mode %s\n", tok);
                    return 2;
                }
            }
        } else {
            fprintf(stderr, "usage: signal_floor [--period NS] [--work N] [--rounds R] [--modes a,b,...]\n"
                            "modes:");
            for (int m = 0; m < N_MODES; m++)
                fprintf(stderr, " %s", mode_name[m]);
            fprintf(stderr, "\n");
            return 2;
        }
    }
    if (period_ns < 10000 || work < 1 || rounds < 1 || rounds > MAX_ROUNDS) {
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
    sigaction(SIGPROF, &sa, NULL);

    double load[3] = {0};
    getloadavg(load, 3);
    printf("signal_floor: period %ld ns, %ld iterations, medians of %d rounds, load %.2f at the start\n",
           period_ns, work, rounds, load[0]);
    costs_without_timer(rounds);

    int modes[N_MODES], n_modes = 0;
    for (int m = 0; m < N_MODES; m++)
        if (use[m])
            modes[n_modes++] = m;
    static result res[N_MODES][MAX_ROUNDS];
    double t0 = mono_s();
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < n_modes; k++) {
            int m = modes[(k + r) % n_modes];
            res[m][r] = run(m, period_ns, work);
        }
    getloadavg(load, 3);
    printf("(%.0f s; load %.2f at the end)\n", mono_s() - t0, load[0]);
    printf("| mode | CPU s | user / sys s | against none | per event (us) | events | rate (Hz of CPU time) | "
           "overruns | timer / irq-work interrupts per ms |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < n_modes; k++) {
        int m = modes[k];
        double c[MAX_ROUNDS], us[MAX_ROUNDS], sy[MAX_ROUNDS], extra[MAX_ROUNDS], per[MAX_ROUNDS], ev[MAX_ROUNDS],
            rate[MAX_ROUNDS], ov[MAX_ROUNDS], loc[MAX_ROUNDS], iwi[MAX_ROUNDS];
        int failed = 0;
        for (int r = 0; r < rounds; r++) {
            result *x = &res[m][r], *none = &res[NONE][r];
            failed |= x->failed;
            /* The perf timer without a signal fires once per period of the
             * thread's CPU time (it is not counted). */
            double n = m == TIMER ? x->cpu * 1e9 / (double)period_ns : (double)x->events;
            c[r] = x->cpu;
            us[r] = x->user;
            sy[r] = x->sys;
            extra[r] = x->cpu / none->cpu - 1;
            per[r] = n > 0 ? (x->cpu - none->cpu) / n * 1e6 : 0;
            ev[r] = (double)x->events;
            rate[r] = (double)x->events / x->cpu;
            ov[r] = (double)x->overruns;
            /* interrupts per ms of the run's CPU time */
            loc[r] = x->loc >= 0 ? x->loc / (x->cpu * 1e3) : -1;
            iwi[r] = x->iwi >= 0 ? x->iwi / (x->cpu * 1e3) : -1;
        }
        if (failed) {
            printf("| %s | (failed) | | | | | | |\n", mode_name[m]);
            continue;
        }
        double cm = median(c, rounds), um = median(us, rounds), sm = median(sy, rounds);
        char irqs[64];
        snprintf(irqs, sizeof irqs, "%.1f / %.1f", median(loc, rounds), median(iwi, rounds));
        if (m == NONE)
            printf("| %s | %.3f | %.2f / %.2f | | | | | | %s |\n", mode_name[m], cm, um, sm, irqs);
        else if (m == TIMER)
            printf("| %s | %.3f | %.2f / %.2f | %+.1f%% | %.1f | (no signal: one per period) | | | %s |\n",
                   mode_name[m], cm, um, sm, 100 * median(extra, rounds), median(per, rounds), irqs);
        else
            printf("| %s | %.3f | %.2f / %.2f | %+.1f%% | %.1f | %.0f | %.0f | %.0f | %s |\n", mode_name[m], cm, um,
                   sm, 100 * median(extra, rounds), median(per, rounds), median(ev, rounds), median(rate, rounds),
                   median(ov, rounds), irqs);
    }
    return 0;
}
