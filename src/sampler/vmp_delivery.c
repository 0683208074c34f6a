/*
 * vmp_delivery.c - when the sampler thread signals which thread (contract in
 * the header).
 */
#define _GNU_SOURCE
#include "vmp_delivery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Signals handled per tid slot: the handler counts, the sending thread
 * compares with what it sent. */
static _Atomic uint32_t handled[VMP_TID_SLOTS];
static uint32_t sent_to[VMP_TID_SLOTS]; /* the sending thread's own */
static __thread pid_t tid_cache __attribute__((tls_model("initial-exec")));
/* Per slot, the thread whose sample was last kept and its CPU clock right
 * after it (-1: its last signal kept no sample), for the idle test. */
static _Atomic pid_t sampled_tid[VMP_TID_SLOTS];
static _Atomic int64_t sampled_cpu[VMP_TID_SLOTS];

static int64_t ns_of(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

pid_t vmp_delivery_this_tid(void)
{
    pid_t tid = tid_cache;
    if (!tid)
        tid = tid_cache = (pid_t)syscall(SYS_gettid);
    return tid;
}

void vmp_delivery_handled(void)
{
    atomic_fetch_add_explicit(&handled[vmp_tid_slot(vmp_delivery_this_tid())], 1, memory_order_release);
}

void vmp_delivery_sampled(int kept)
{
    pid_t tid = vmp_delivery_this_tid();
    size_t k = vmp_tid_slot(tid);
    int64_t cpu = -1;
    struct timespec t;
    if (kept && clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
        cpu = ns_of(t);
    atomic_store_explicit(&sampled_tid[k], 0, memory_order_release); /* being written */
    atomic_store_explicit(&sampled_cpu[k], cpu, memory_order_release);
    atomic_store_explicit(&sampled_tid[k], tid, memory_order_release);
}

void vmp_delivery_forget_tid(void)
{
    tid_cache = 0;
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ns_of(t);
}

static int64_t thread_cpu_ns(pid_t tid)
{
    /* Linux's clock id for another thread's CPU time (CPUCLOCK_SCHED of a
     * per-thread clock), as pthread_getcpuclockid builds it. */
    clockid_t clk = (clockid_t)((~(unsigned)tid << 3) | 6);
    struct timespec t;
    if (clock_gettime(clk, &t) < 0)
        return -1;
    return ns_of(t);
}

static int skipped(const vmp_delivery *d, pid_t tid)
{
    for (int i = 0; i < 2; i++)
        if (d->skip[i] && atomic_load(d->skip[i]) == tid)
            return 1;
    return 0;
}

static void note_thread(vmp_delivery *d, pid_t tid)
{
    size_t i = 0;
    while (i < d->n_threads && d->threads[i].tid != tid)
        i++;
    if (i == d->n_threads) {
        if (d->n_threads == VMP_DELIVERY_MAX_THREADS)
            return;
        d->threads[d->n_threads++] = (vmp_delivery_thread){.tid = tid, .last_cpu = -1, .idle_cpu = -1};
    }
    d->threads[i].seen = 1;
}

/* Refreshes the table from the listing of /proc/self/task (read again from
 * its start: no open or allocation per scan), keeping what is known about
 * the threads still there. */
static void scan_threads(vmp_delivery *d)
{
    char buf[8192];
    if (d->task_fd < 0 || lseek(d->task_fd, 0, SEEK_SET) < 0)
        return;
    for (size_t i = 0; i < d->n_threads; i++)
        d->threads[i].seen = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, d->task_fd, buf, sizeof buf);
        if (got < 0) {
            for (size_t i = 0; i < d->n_threads; i++)
                d->threads[i].seen = 1; /* keep what we had */
            return;
        }
        if (got == 0)
            break;
        for (long off = 0; off < got;) {
            struct dirent64 *e = (struct dirent64 *)(buf + off);
            off += e->d_reclen;
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            pid_t tid = (pid_t)atoi(e->d_name);
            if (!skipped(d, tid))
                note_thread(d, tid);
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < d->n_threads; i++) {
        if (d->threads[i].seen) {
            d->threads[kept++] = d->threads[i];
        } else {
            /* ended: what it never handled must not hold back a thread
             * that reuses its slot */
            size_t k = vmp_tid_slot(d->threads[i].tid);
            sent_to[k] = atomic_load_explicit(&handled[k], memory_order_relaxed);
            atomic_store_explicit(&sampled_tid[k], 0, memory_order_relaxed);
        }
    }
    d->n_threads = kept;
}

int vmp_delivery_start(vmp_delivery *d)
{
    atomic_store(&d->periods, 0);
    atomic_store(&d->late, 0);
    atomic_store(&d->sent, 0);
    atomic_store(&d->repeated, 0);
    d->threads = calloc(VMP_DELIVERY_MAX_THREADS, sizeof *d->threads);
    if (!d->threads)
        return -1;
    for (size_t k = 0; k < VMP_TID_SLOTS; k++) { /* nothing of an earlier run counts */
        sent_to[k] = atomic_load(&handled[k]);
        atomic_store(&sampled_tid[k], 0);
    }
    d->pid = getpid();
    d->n_threads = 0;
    int64_t n = VMP_MAX_BACKLOG_NS / d->period_ns;
    d->max_owed = n > VMP_MIN_BACKLOG_PERIODS ? n : VMP_MIN_BACKLOG_PERIODS;
    d->max_repeats = d->repeat && !d->cpu_clock ? VMP_IDLE_REFRESH_NS / d->period_ns - 1 : 0;
    /* catch-up rounds far enough apart that the last signal was likely handled */
    d->catchup_gap = d->period_ns / 2 > 30000 ? d->period_ns / 2 : 30000;
    d->catchup = 0;
    d->task_fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    scan_threads(d);
    for (size_t i = 0; i < d->n_threads; i++)
        d->threads[i].last_cpu = thread_cpu_ns(d->threads[i].tid);
    d->last_scan = d->last_round = mono_ns();
    d->next = d->last_scan + d->period_ns;
    return 0;
}

int64_t vmp_delivery_wait(vmp_delivery *d)
{
    int64_t wake = d->next;
    if (d->catchup && d->last_round + d->catchup_gap < wake)
        wake = d->last_round + d->catchup_gap;
    struct timespec dl = {wake / 1000000000LL, wake % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) == EINTR) {
    }
    int64_t now = mono_ns(), periods = 0;
    if (now >= d->next) {
        periods = 1 + (now - d->next) / d->period_ns; /* >1: woken late on a busy machine */
        atomic_fetch_add_explicit(&d->periods, 1, memory_order_relaxed);
        if (periods > 1)
            atomic_fetch_add_explicit(&d->late, 1, memory_order_relaxed);
        d->next += periods * d->period_ns;
        if (now - d->last_scan >= VMP_SCAN_NS) {
            scan_threads(d);
            d->last_scan = now;
        }
    }
    d->last_round = now;
    return periods;
}

/* Wall clock: whether thread t (tid slot k, no signal pending) has not run
 * since its last sample, by the rule in the header. */
static int idle_since_sample(vmp_delivery *d, vmp_delivery_thread *t, size_t k)
{
    if (t->repeats >= d->max_repeats)
        return 0;
    pid_t who = atomic_load_explicit(&sampled_tid[k], memory_order_acquire);
    int64_t at = atomic_load_explicit(&sampled_cpu[k], memory_order_acquire);
    if (who != t->tid || at < 0 || atomic_load_explicit(&sampled_tid[k], memory_order_acquire) != who)
        return 0;
    int64_t now = thread_cpu_ns(t->tid);
    if (now < at || now - at > VMP_IDLE_SLACK_NS || (t->idle_cpu >= 0 && now != t->idle_cpu))
        return 0;
    t->idle_cpu = now;
    return 1;
}

void vmp_delivery_send(vmp_delivery *d, int64_t periods)
{
    d->catchup = 0;
    for (size_t i = 0; i < d->n_threads; i++) {
        vmp_delivery_thread *t = &d->threads[i];
        if (!d->cpu_clock) {
            t->owed += periods;
        } else {
            int64_t cpu = thread_cpu_ns(t->tid);
            if (cpu < 0)
                continue; /* gone; the next scan drops it */
            /* A thread first seen now was born during the run: all its CPU
             * time is the run's. */
            t->credit += t->last_cpu >= 0 ? cpu - t->last_cpu : cpu;
            t->last_cpu = cpu;
            while (t->credit >= d->period_ns) {
                t->owed++;
                t->credit -= d->period_ns;
            }
        }
        if (t->owed > d->max_owed)
            t->owed = d->max_owed; /* far behind: drop rather than burst */
        if (t->owed <= 0)
            continue;
        size_t k = vmp_tid_slot(t->tid);
        if (sent_to[k] != atomic_load_explicit(&handled[k], memory_order_acquire)) {
            d->catchup = 1; /* the last one is still pending: next round */
            continue;
        }
        t->owed--;
        if (t->owed)
            d->catchup = 1;
        if (d->max_repeats && idle_since_sample(d, t, k) && d->repeat(t->tid) == 0) {
            t->repeats++;
            atomic_fetch_add_explicit(&d->repeated, 1, memory_order_relaxed);
            continue;
        }
        t->idle_cpu = -1;
        t->repeats = 0;
        if (syscall(SYS_tgkill, d->pid, t->tid, d->signo) == 0) {
            sent_to[k]++;
            atomic_fetch_add_explicit(&d->sent, 1, memory_order_relaxed);
        }
    }
}

void vmp_delivery_stop(vmp_delivery *d)
{
    free(d->threads);
    d->threads = NULL;
    d->n_threads = 0;
    if (d->task_fd >= 0)
        close(d->task_fd);
    d->task_fd = -1;
}
