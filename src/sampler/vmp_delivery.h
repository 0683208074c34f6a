/*
 * vmp_delivery.h - when the sampler thread signals which thread.
 *
 * One thread (the sampler's, or the bench's empty-signal baseline's, which
 * must deliver exactly alike for the comparison to mean anything) sleeps to
 * absolute CLOCK_MONOTONIC deadlines one period apart and sends each thread
 * of the process the samples it is owed with tgkill:
 *   - CPU clock: one per period of CPU time the thread used since the last
 *     round (a thread born during the run: all its CPU time);
 *   - wall clock: one per period, whatever the thread is doing.
 * Threads are found by listing /proc/self/task every VMP_SCAN_NS (one
 * getdents on a kept descriptor), so none has to register.
 *
 * A thread is never sent a second signal before it handled the first (two
 * pending signals of one kind merge into one): the handler calls
 * vmp_delivery_handled(), and what is still owed is sent in catch-up rounds.
 *
 * Idle threads (wall clock): a thread that has not run since its last sample
 * still has that sample's stack, so instead of waking it with a signal the
 * sender asks for the last sample again (the `repeat` callback).  "Has not
 * run" is read off the thread's CPU clock: it used at most VMP_IDLE_SLACK_NS
 * after the sample (the end of the handler and going back to sleep), and not
 * a nanosecond more since the previous round.  A real sample is still taken
 * at least every VMP_IDLE_REFRESH_NS, which bounds how long a stack changed
 * within that slack can be shown.  The handler reports its sample with
 * vmp_delivery_sampled().
 *
 * Contract:
 *   - vmp_delivery_handled(), vmp_delivery_sampled(), vmp_delivery_this_tid()
 *     and vmp_delivery_forget_tid() are async-signal-safe; the rest runs in
 *     the sending thread only, one sending thread per process at a time,
 *     except the figures (atomics).
 *   - The `repeat` callback runs in the sending thread and must be as cheap
 *     and lock-free as a signal (the sampler's claims a ring slot).
 *   - vmp_delivery_start, _wait, _send, _stop are called in that order by
 *     the sending thread; start allocates, stop frees.
 */
#ifndef VMP_DELIVERY_H
#define VMP_DELIVERY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* List the process's threads every 1 ms, so that a thread started during the
 * run is sampled within a millisecond. */
#define VMP_SCAN_NS 1000000LL

/* Samples owed to a thread are kept for up to 20 ms of periods (at least 16)
 * and sent in catch-up rounds; beyond that they are dropped rather than
 * burst.  The sending thread is an ordinary thread: on 2 busy cores the
 * scheduler leaves it waiting 1-3 ms about every 10 ms (measured on the
 * 4-thread bench workload, wall clock at 10 kHz).  A cap of 16 periods lost
 * 13% of that workload's samples there. */
#define VMP_MAX_BACKLOG_NS 20000000LL
#define VMP_MIN_BACKLOG_PERIODS 16

/* See "Idle threads" above.  A waiting thread uses 1-4 us between the
 * handler's clock reading and being asleep again (measured on 3.8 and 3.13,
 * 16 threads waiting on an Event). */
#define VMP_IDLE_SLACK_NS 10000LL
#define VMP_IDLE_REFRESH_NS 50000000LL

/* Per-thread bookkeeping here and in the sampler's writer is folded into
 * this many slots by tid (threads sharing a slot only cost each other a
 * repeat or a pending check now and then). */
#define VMP_TID_SLOTS 4096

static inline size_t vmp_tid_slot(pid_t tid)
{
    return (size_t)tid & (VMP_TID_SLOTS - 1);
}

/* The most threads signalled; more are left out. */
#define VMP_DELIVERY_MAX_THREADS 1024

typedef struct vmp_delivery_thread {
    pid_t tid;
    int seen;
    int64_t last_cpu; /* ns; -1 before the first reading */
    int64_t credit;   /* CPU time not yet paid for by a sample, ns */
    int64_t owed;     /* samples due but not yet signalled */
    int64_t idle_cpu; /* CPU clock when last found idle; -1: not idle */
    int64_t repeats;  /* samples repeated since the last real one */
} vmp_delivery_thread;

typedef struct vmp_delivery {
    /* set by the caller before vmp_delivery_start */
    int64_t period_ns;
    int cpu_clock;                /* 1: CPU clock, 0: wall clock */
    int signo;
    const _Atomic pid_t *skip[2]; /* threads never signalled (the caller's own); NULL: none */
    /* Wall clock only, may be NULL: queue thread tid's last sample again
     * instead of signalling it; 0 when queued. */
    int (*repeat)(pid_t tid);

    /* figures, readable from any thread */
    _Atomic uint64_t periods; /* deadlines woken for */
    _Atomic uint64_t late;    /* wake-ups that missed one or more deadlines */
    _Atomic uint64_t sent;    /* signals sent */
    _Atomic uint64_t repeated; /* samples of idle threads repeated instead */

    /* the sending thread's own */
    pid_t pid;
    int task_fd;
    vmp_delivery_thread *threads;
    size_t n_threads;
    int64_t max_owed, catchup_gap, next, last_scan, max_repeats;
    int64_t last_round; /* CLOCK_MONOTONIC ns of the latest wake-up (the caller may read it) */
    int catchup;
} vmp_delivery;

/* Takes the CPU-time baseline of the threads already there (so CPU burned
 * from now on is sampled even if the sending thread is slow to get its first
 * wake-up).  0, or -1 when out of memory (nothing to stop then). */
int vmp_delivery_start(vmp_delivery *d);

/* Sleeps to the next deadline, or to the next catch-up round when samples
 * are still owed.  Returns the periods that passed (more than one: woken
 * late), or 0 for a catch-up round; lists the threads again when due. */
int64_t vmp_delivery_wait(vmp_delivery *d);

/* Adds what `periods` owe each thread and signals the threads owed one. */
void vmp_delivery_send(vmp_delivery *d, int64_t periods);

void vmp_delivery_stop(vmp_delivery *d);

/* In the signal handler, for a signal the sending thread sent. */
void vmp_delivery_handled(void);

/* In the signal handler, before vmp_delivery_handled(): whether this
 * thread's sample was kept (written to the ring with its stack), so that it
 * may be repeated while the thread stays idle. */
void vmp_delivery_sampled(int kept);

/* The calling thread's kernel tid (cached; async-signal-safe). */
pid_t vmp_delivery_this_tid(void);

/* In a fork child: the calling thread has a new tid. */
void vmp_delivery_forget_tid(void);

#endif
