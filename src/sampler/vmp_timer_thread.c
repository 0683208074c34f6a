/*
 * vmp_timer_thread.c - the sampler thread (contract in vmp_timer_thread.h).
 *
 * A thread rather than setitimer: the kernel's CPU timers fire on the tick
 * (~250 Hz here), so the original's "1 ms" was really 4 ms; a thread that
 * sleeps to absolute deadlines (with a 1 ns timer slack) delivers the rate
 * asked from 100 Hz to 10 kHz.  On either clock each thread's own
 * CPU-time event signals it where the kernel allows (vmp_delivery.h), and
 * this thread only keeps house every 10 ms.
 */
#define _GNU_SOURCE
#include "vmp_timer_thread.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>

#include "vmp_fds.h"
#include "vmp_guard.h"
#include "vmp_handler.h"
#include "vmp_run.h"

/* How often the sampler checks that our handler is still the one installed
 * for the signal: once a program installs its own, every signal of ours
 * until the check calls the program's handler (a Python handler for SIGURG
 * ran ~50 more times than the program sent it in the 50 ms this was).  One
 * rt_sigaction() each round at 1 kHz, a fraction of a microsecond; with
 * per-thread events the rounds themselves are 10 ms apart (40 ms on the
 * CPU clock), and the events' signals in between still reach it. */
#define VMP_CHECK_NS 1000000LL
/* Our fault handler back in front of one the program installed meanwhile
 * (vmp_guard.h), at most this often: with rounds 10 ms apart (40 ms in the
 * CPU clock's long rounds: vmp_delivery.h), each round. */
#define VMP_GUARD_TICK_NS 5000000LL

/* The RSS readings of the run, for repeats written later than their
 * periods (vmp_rss_at): each reading that differs from the one before, with
 * when it was read, in a ring of RSS_HISTORY.  The sampler thread writes;
 * the writer reads (an entry being overwritten reads as none: its time is
 * cleared first and set last). */
#define RSS_HISTORY 4096
static _Atomic int64_t rss_read_at[RSS_HISTORY];
static _Atomic uint64_t rss_read[RSS_HISTORY];
static _Atomic uint64_t rss_readings;

static void read_rss(void)
{
    char buf[128];
    ssize_t n = pread(vmp_run.statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return;
    buf[n] = 0;
    unsigned long size, resident;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return;
    uint64_t kib = (uint64_t)resident * (uint64_t)(sysconf(_SC_PAGESIZE) / 1024);
    atomic_store_explicit(&vmp_run.rss_kib, kib, memory_order_relaxed);
    uint64_t i = atomic_load_explicit(&rss_readings, memory_order_relaxed);
    if (i && atomic_load_explicit(&rss_read[(i - 1) % RSS_HISTORY], memory_order_relaxed) == kib)
        return; /* (unchanged: the entry before still holds) */
    size_t at = i % RSS_HISTORY;
    atomic_store_explicit(&rss_read_at[at], 0, memory_order_release);
    atomic_store_explicit(&rss_read[at], kib, memory_order_release);
    atomic_store_explicit(&rss_read_at[at], vmp_mono_ns(), memory_order_release);
    atomic_store_explicit(&rss_readings, i + 1, memory_order_release);
}

uint64_t vmp_rss_at(int64_t t, uint64_t fallback, int64_t *next)
{
    uint64_t n = atomic_load_explicit(&rss_readings, memory_order_acquire);
    uint64_t oldest = n > RSS_HISTORY - 1 ? n - (RSS_HISTORY - 1) : 0; /* (one spare: being written) */
    uint64_t found = fallback;
    int64_t newer = INT64_MAX, found_next = INT64_MAX; /* newer: when the reading after entry i was taken */
    for (uint64_t i = n; i-- > oldest;) {
        size_t at = i % RSS_HISTORY;
        int64_t when = atomic_load_explicit(&rss_read_at[at], memory_order_acquire);
        uint64_t kib = atomic_load_explicit(&rss_read[at], memory_order_acquire);
        if (!when || atomic_load_explicit(&rss_read_at[at], memory_order_acquire) != when)
            break; /* (overwritten meanwhile: older than the history) */
        if (when <= t) {
            *next = newer;
            return kib;
        }
        found = kib; /* (t before it: the nearest reading is the first after t) */
        found_next = newer;
        newer = when;
    }
    *next = found_next;
    return found;
}

/* (opened by this thread, in its own table: closed by it too) */
static void close_statm(void)
{
    if (vmp_run.statm_fd >= 0)
        close(vmp_run.statm_fd);
    vmp_run.statm_fd = -1;
}

static _Atomic int64_t test_nap_start_ns, test_nap_stop_ns;

void vmp_timer_thread_test_naps(int64_t start_ns, int64_t stop_ns)
{
    atomic_store(&test_nap_start_ns, start_ns);
    atomic_store(&test_nap_stop_ns, stop_ns);
}

static void *sampler_main(void *arg)
{
    (void)arg;
    atomic_store(&vmp_run.sampler_tid, vmp_gettid());
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake at the deadline, not up to 50 us late */
    /* This thread opens and closes /proc files every round (and a
     * CPU-time event per running thread): in a descriptor table of its
     * own, none of them can take, even for a moment, a number the program
     * is about to dup2() onto (vmp_fds.h). */
    vmp_run.delivery.own_table = vmp_fd_own_table();
    /* (started again after os.fork without waiting for the writer: its
     * tid, to be skipped, must be known before the threads are listed) */
    for (int64_t until = vmp_mono_ns() + 1000000000LL;
         !atomic_load(&vmp_run.writer_tid) && !atomic_load(&vmp_run.sampler_stop) && vmp_mono_ns() < until;)
        vmp_sleep_ns(20000);
    atomic_store(&rss_readings, 0);
    if (vmp_run.memory) {
        vmp_run.statm_fd = vmp_fd_out_of_the_way(open("/proc/self/statm", O_RDONLY | O_CLOEXEC));
        read_rss();
    }
    /* The CPU time of the threads already there counts from now, before
     * enable returns (it waits for `sampler_ready`): a CPU-time baseline taken
     * at this thread's first wake-up instead lost all the time burned before
     * it, every sample of a short run when a loaded machine let this new
     * thread wait longer than the run (seen: 0 samples of 0.1 s of CPU). */
    int started = vmp_delivery_start(&vmp_run.delivery);
    int64_t nap = atomic_exchange(&test_nap_start_ns, 0);
    if (nap > 0)
        vmp_sleep_ns(nap);
    atomic_store(&vmp_run.sampler_ready, 1); /* enable must not wait for a sampler that gave up */
    vmp_word_changed(&vmp_run.sampler_ready);
    if (started < 0) {
        close_statm();
        return NULL;
    }
    int64_t last_check = 0, last_guard = 0, run_from = vmp_mono_ns();
    while (!atomic_load(&vmp_run.sampler_stop)) {
        int64_t periods = vmp_delivery_wait(&vmp_run.delivery);
        if (periods < 0)
            break; /* disable(): the stop word woke it */
        if (periods) {
            int64_t now = vmp_run.delivery.last_round; /* when this round woke */
            /* (here, not in the writer, which naps up to 100 ms) */
            if (now - last_guard >= VMP_GUARD_TICK_NS) {
                last_guard = now;
                vmp_guard_keep_first();
            }
            if (now - last_check >= VMP_CHECK_NS) {
                last_check = now;
                if (!vmp_handler_is_ours()) {
                    /* the program took our signal over: stop sending it */
                    atomic_store(&vmp_run.signal_taken_ms, (now - run_from) / 1000000);
                    break;
                }
            }
            if (vmp_run.memory)
                read_rss();
        }
        vmp_delivery_send(&vmp_run.delivery, periods);
    }
    nap = atomic_exchange(&test_nap_stop_ns, 0);
    if (nap > 0 && atomic_load(&vmp_run.sampler_stop))
        vmp_sleep_ns(nap);
    vmp_delivery_stop(&vmp_run.delivery);
    close_statm();
    return NULL;
}

int vmp_timer_thread_start_nowait(void)
{
    atomic_store(&vmp_run.sampler_stop, 0);
    atomic_store(&vmp_run.sampler_tid, 0);
    atomic_store(&vmp_run.sampler_ready, 0);
    return vmp_run_start_thread(&vmp_run.sampler_thread, sampler_main) != 0 ? -1 : 0;
}

int vmp_timer_thread_start(void)
{
    if (vmp_timer_thread_start_nowait() < 0)
        return -1;
    vmp_wait_while(&vmp_run.sampler_ready, 0); /* the program's CPU time counts from here */
    return 0;
}

void vmp_timer_thread_stop(void)
{
    atomic_store(&vmp_run.sampler_stop, 1);
    vmp_word_changed(&vmp_run.sampler_stop); /* (it sleeps on the word: vmp_delivery_wait) */
    pthread_join(vmp_run.sampler_thread, NULL);
}
