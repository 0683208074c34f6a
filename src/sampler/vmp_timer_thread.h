/*
 * vmp_timer_thread.h - the sampler thread: when to signal which thread.
 *
 * It sleeps to absolute CLOCK_MONOTONIC deadlines one period apart (with
 * per-thread events: VMP_SOURCE_ROUND_NS apart) and lets the
 * delivery schedule (vmp_delivery.h) signal the threads owed a sample; in
 * memory mode it reads the RSS each round; every VMP_CHECK_NS it checks
 * that our handler is still installed and stops sending once the program
 * took the signal over.
 */
#ifndef VMP_TIMER_THREAD_H
#define VMP_TIMER_THREAD_H

/* Starts the thread and waits until the CPU time of the threads already
 * there counts.  0, or -1 when the thread could not be started. */
int vmp_timer_thread_start(void);

/* Stops the thread and waits for it; no signal is sent after this returns. */
void vmp_timer_thread_stop(void);

#endif /* VMP_TIMER_THREAD_H */
