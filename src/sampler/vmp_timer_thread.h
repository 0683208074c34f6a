/*
 * vmp_timer_thread.h - the sampler thread: when to signal which thread.
 *
 * It sleeps to absolute CLOCK_MONOTONIC deadlines one period apart (with
 * per-thread events: VMP_SOURCE_ROUND_NS apart) and lets the
 * delivery schedule (vmp_delivery.h) signal the threads owed a sample; in
 * memory mode it reads the RSS each round; every VMP_CHECK_NS it checks
 * that our handler is still installed and stops sending once the program
 * took the signal over; every round (at most every 5 ms) it puts our fault
 * handler back in front of one the program installed (vmp_guard.h).
 */
#ifndef VMP_TIMER_THREAD_H
#define VMP_TIMER_THREAD_H

#include <stdint.h>

/* Starts the thread and waits until the CPU time of the threads already
 * there counts.  0, or -1 when the thread could not be started.  Started
 * again after os.fork (vmp_sampler.c), without waiting (wait 0): the
 * forking program goes on at once; the thread itself first waits (at most
 * 1 s) for the writer started just before it to know its tid. */
int vmp_timer_thread_start(void);
int vmp_timer_thread_start_nowait(void);

/* Stops the thread and waits for it; no signal is sent after this returns. */
void vmp_timer_thread_stop(void);

/* Tests only: the next sampler thread naps start_ns once right after its
 * start's baseline, before enable() may return, and stop_ns once when the
 * stop word woke it, before the stop's reading: as one a loaded machine
 * keeps from a CPU there (enable() and disable() wait for it meanwhile). */
void vmp_timer_thread_test_naps(int64_t start_ns, int64_t stop_ns);

/* Memory mode: the RSS (KiB) the thread read last at or before CLOCK_MONOTONIC
 * time t, else the first it read after t (t older than every reading kept:
 * the latest 4,095 changes), else `fallback` (none read yet); *next: when
 * the reading after the one returned was taken (INT64_MAX: none yet).  For
 * the writer, which writes a repeated sample's records long after their
 * periods (an idle thread's repeats are handed over up to 1 s later,
 * VMP_VISIT_MAX_NS; 4,095 changes are 4 s when the RSS changes at every
 * reading of a 1 ms period). */
uint64_t vmp_rss_at(int64_t t, uint64_t fallback, int64_t *next);

#endif /* VMP_TIMER_THREAD_H */
