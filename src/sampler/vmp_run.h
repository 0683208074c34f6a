/*
 * vmp_run.h - the state of the current profiling run, shared by the parts of
 * the sampler (internal to src/sampler; the public face is vmp_sampler.h).
 *
 * The sampler is split by concern, one file each:
 *   vmp_ring.c          the lock-free ring of sample slots
 *   vmp_guard.c         the fault guard around stack walks
 *   vmp_handler.c       the profiling signal's handler, on the sampled thread
 *   vmp_timer_thread.c  the thread that decides when to signal whom
 *   vmp_writer.c        the thread that turns slots into profile records
 *   vmp_sampler.c       enable, disable, fork: the run's lifecycle
 * They share one `vmp_run` record: set by enable before any thread or handler
 * of the run exists, read by all of them, and changed afterwards only through
 * the atomics.  `enabled` and `disabling` are GIL-protected.
 */
#ifndef VMP_RUN_H
#define VMP_RUN_H

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmp_delivery.h"

typedef struct vmp_run_state {
    /* configuration of the current run */
    int fd;
    int64_t period_ns;
    int memory, lines, real_time, native;
    pid_t pid;
    const void *interp;          /* the main interpreter: threads of others are not sampled */
    int signo;
    struct sigaction old_action; /* the program's disposition of signo */

    /* lifecycle */
    int enabled;                /* GIL-protected */
    int disabling;              /* GIL-protected: disable() runs (it lets the GIL go while it waits) */
    int paused_for_exec;        /* GIL-protected: stopped before an exec that may yet fail */
    _Atomic int stopping_for_exec; /* the stop before an exec runs: waits give up on a stuck writer */
    _Atomic int active;         /* handlers record samples */
    _Atomic int paused;         /* stop_sampling() nesting */
    /* The handlers between entry and exit, and their era, in one word:
     * (era << 32) | how many of that era are inside.  A handler counts
     * itself in and reads its era in one fetch-and-add.  Each stop of the
     * signals, once it waited for the handlers, moves the era on: a
     * handler of an earlier era still inside when it resumes - stopped by
     * a debugger, starved - belongs to a stop that went on without it,
     * and records nothing more, neither into the ring nor into any count
     * or schedule (vmp_handler.c).  The stop moves the count of those it
     * leaves behind into handlers_behind in the same compare-and-swap that
     * moves the era, so the word counts only the current era's handlers:
     * the waits for the handlers in flight (a later stop, a fork) do not
     * wait for one that may never come back (vmp_handlers_inside). */
    _Atomic uint64_t handlers;
    /* Handlers left behind by a stop that have not returned yet (each
     * takes itself off when it does): while one is inside, nothing it may
     * touch is freed (vmp_sampler.c, stop_signals). */
    _Atomic int handlers_behind;
    /* The most handlers still inside that a stop of this run found after
     * its bound (VMP_STOP_WAIT_NS), those left behind by earlier stops
     * included: META handlers_still_running. */
    _Atomic int handlers_left;
    /* Milliseconds after enable() when the sampler thread found the
     * program's own handler on our signal and stopped sending it (nothing
     * was sampled after that), -1 while it never did: META
     * signal_taken_over_ms, so that a profile cut short says why. */
    _Atomic int64_t signal_taken_ms;
    _Atomic int forking;        /* a fork is under way: handlers record nothing */

    /* threads */
    pthread_t sampler_thread, writer_thread;
    _Atomic int sampler_stop, writer_stop;
    _Atomic pid_t sampler_tid, writer_tid;
    _Atomic int sampler_ready;  /* its CPU-time baseline is taken */
    vmp_delivery delivery;      /* the sampler thread's schedule (and its figures) */
    int statm_fd;
    _Atomic uint64_t rss_kib;

    /* figures */
    _Atomic uint64_t samples, dropped, received, names_lost;
    _Atomic uint64_t samples_cut; /* of `samples`: those whose native walk was cut (VMP_SAMPLE_KEPT_CUT) or capped (deep recursion; repeats of those too) */
    /* Ring slots the writer gave up on because their producer stayed
     * between its claim and its publish past VMP_STALL_NS (or was left
     * behind by a stop): META slots_given_up (vmp_writer.c, drain). */
    _Atomic uint64_t slots_given_up;
    _Atomic int write_errno;
} vmp_run_state;

extern vmp_run_state vmp_run;

/* Starts one of the run's threads with every signal blocked: Ctrl-C and the
 * program's signals go to its own threads, and ours are never sampled.
 * Returns pthread_create's result. (vmp_sampler.c) */
int vmp_run_start_thread(pthread_t *th, void *(*fn)(void *));

/* Whether waiting for the writer is in vain: while stopping before an exec,
 * once the write under way has got no byte out for VMP_EXEC_STUCK_NS (a
 * pipe nobody reads), or the writer gave up.  The waits for it then end at
 * once (the stop's repeats for ring room, names, the last sync): an exec is
 * never held up by our writer.  disable() waits, bounded (vmp_writer.h).
 * Any thread. (vmp_sampler.c) */
#define VMP_EXEC_STUCK_NS 100000000LL

/* How long a stop of the signals waits for the handlers inside to return.
 * A handler takes microseconds; one that stays longer is stopped (a
 * debugger in non-stop mode, SIGSTOP of the thread through ptrace) or
 * starved, and may stay for ever: disable() hung.  Past the bound the
 * run ends without it (vmp_sampler.c, stop_signals). */
#define VMP_STOP_WAIT_NS 1000000000LL
int vmp_run_writer_hopeless(void);

/* The handlers' era and the count of the current era's handlers inside
 * (vmp_run.handlers). */
#define VMP_HANDLERS_ERA(word) ((word) >> 32)
#define VMP_HANDLERS_INSIDE(word) ((uint32_t)(word))
static inline uint32_t vmp_handlers_inside(void)
{
    return VMP_HANDLERS_INSIDE(atomic_load(&vmp_run.handlers));
}

/* Samples lost: those the ring or the writer had no room for, the
 * repeats of idle threads that found none and the periods dropped beyond
 * the signals' backlog (vmp_delivery.h).  What META's
 * samples_dropped and disable()'s stats report. */
static inline uint64_t vmp_run_samples_dropped(void)
{
    return atomic_load(&vmp_run.dropped) + vmp_delivery_dropped(&vmp_run.delivery);
}

static inline int64_t vmp_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void vmp_sleep_ns(long ns)
{
    struct timespec t = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}

/* Waits while *word is `value`, asleep (a futex) instead of polling: enable
 * waited for its new threads in naps of 10 us, each a wake-up (~50 us of
 * CPU here), 3-9 ms of CPU an enable on a loaded machine.  Whoever changes
 * the word calls vmp_word_changed. */
static inline void vmp_wait_while(_Atomic int *word, int value)
{
    struct timespec t = {0, 100000000L}; /* (re-reads now and then, whatever happens) */
    while (atomic_load(word) == value)
        syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, value, &t, NULL, 0);
}

/* Waits up to ns while *word holds value (a word whose setter calls
 * vmp_word_changed); may return early. */
static inline void vmp_wait_while_for(_Atomic int *word, int value, int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    if (atomic_load(word) == value)
        syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, value, &t, NULL, 0);
}

static inline void vmp_word_changed(_Atomic int *word)
{
    syscall(SYS_futex, (int *)word, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static inline pid_t vmp_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

#endif /* VMP_RUN_H */
