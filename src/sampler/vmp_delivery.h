/*
 * vmp_delivery.h - how often the sampler thread signals each thread: the
 * timing rules shared by the sampler (vmp_sampler.c) and the bench's empty
 * signal baseline (bench/empty_signal.c), which must deliver its signals the
 * same way for the comparison to mean anything.
 */
#ifndef VMP_DELIVERY_H
#define VMP_DELIVERY_H

#include <stdint.h>

/* List the process's threads (/proc/self/task) every 1 ms, so that a thread
 * started during the run is sampled within a millisecond. */
#define VMP_SCAN_NS 1000000LL

/* Per-thread signal bookkeeping is folded into this many slots by tid. */
#define VMP_TID_SLOTS 4096

/* Samples owed to a thread are kept for up to 20 ms of periods (at least 16)
 * and sent in catch-up rounds; beyond that they are dropped rather than
 * burst.  The sampler thread is an ordinary thread: on 2 busy cores the
 * scheduler leaves it waiting 1-3 ms about every 10 ms (measured on the
 * 4-thread bench workload, wall clock at 10 kHz).  A cap of 16 periods lost
 * 13% of that workload's samples there. */
#define VMP_MAX_BACKLOG_NS 20000000LL
#define VMP_MIN_BACKLOG_PERIODS 16

static inline int64_t vmp_max_owed(int64_t period_ns)
{
    int64_t n = VMP_MAX_BACKLOG_NS / period_ns;
    return n > VMP_MIN_BACKLOG_PERIODS ? n : VMP_MIN_BACKLOG_PERIODS;
}

/* Catch-up rounds are spaced so that the previous signal was likely handled:
 * two pending signals of one kind merge into one, so a thread is never sent a
 * second before it handled the first. */
static inline int64_t vmp_catchup_gap(int64_t period_ns)
{
    return period_ns / 2 > 30000 ? period_ns / 2 : 30000;
}

#endif
