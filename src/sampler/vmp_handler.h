/*
 * vmp_handler.h - the profiling signal: which one, its handler, and whether
 * any is still on its way.
 *
 * The handler runs on the sampled thread itself: it finds that thread's
 * thread state, walks its frames (Python only, or spliced with the C stack
 * in native mode) under the fault guard into a ring slot it claimed first,
 * notes each code object (vmp_codes.h) and tells the delivery schedule it
 * was handled.  No locks, no allocation, no Python API; errno is preserved.
 *
 * The signal: SIGURG unless the program handles it, because its default
 * action is to do nothing.  A signal of ours can still be pending when the
 * program leaves our reach: a thread calls execve (the new program starts
 * with the pending signal and default actions) or a run ends with a signal
 * not yet delivered; SIGPROF's default action then killed the program (10 of
 * 20 execs at 5 kHz on the wall clock).  Else a real-time signal that has no
 * handler and that no thread blocks (vmp_handler_choose_signal says why
 * before SIGPROF), else SIGPROF (as the original vmprof used), else a
 * real-time signal nobody installed a handler for.
 */
#ifndef VMP_HANDLER_H
#define VMP_HANDLER_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

/* The signal to use, or -1 when every candidate has the program's handler. */
int vmp_handler_choose_signal(void);

/* Installs the handler for vmp_run.signo, keeping the program's disposition
 * in vmp_run.old_action (unless ours is still there from a run whose last
 * signal never arrived).  0, or -1 with errno. */
int vmp_handler_install(void);

/* Puts the program's disposition back, dropping the signals of ours still
 * pending in any thread (so disable never waits for a thread that blocks
 * the signal). */
void vmp_handler_uninstall(void);

/* Whether our handler is the one installed for vmp_run.signo. */
int vmp_handler_is_ours(void);

/* The calling thread (GIL held: in enable() or disable()) sends itself
 * our signal: its handler samples it where it is and pays what it is owed,
 * as for any signal of ours.  On the wall clock with per-thread events the
 * sample is kept even when nothing is owed (written as no record, only as
 * the thread's last sample): the periods it then waits repeat it (see
 * vmp_sampler.c, above vmp_sampler_enable). */
void vmp_handler_sample_here(void);

/* Whether the program left vmp_run.signo as the stop left it: ours, or the
 * disposition the handler was installed over (vmp_run.old_action).  Else it
 * installed its own meanwhile, which a restart must not replace. */
int vmp_handler_left_alone(void);

/* The sampler thread's `repeat` (vmp_delivery.h): thread tid's last sample
 * `count` times more, once the writer's place is claimed, if *paid moved
 * from `from` to `to` (paid NULL: at once).  Also called by the handler
 * itself (async-signal-safe).  1 also when the writer gave the place up
 * before it was published: the periods are counted dropped then. */
int vmp_handler_repeat_sample(pid_t tid, int64_t count, _Atomic int64_t *paid, int64_t from, int64_t to);

/* Tests only: holds a handler inside, as a thread stopped there by a
 * debugger (ptrace, non-stop mode) or starved would stay.  `what` 1: the
 * next handler of the calling thread, while in vmp_handler_test_hold_busy,
 * that walks a stack (after claiming
 * its ring slot, under the fault guard; in native mode inside the native
 * walk, the unwinder's tables in hand) waits there until released; 0:
 * releases it; -1: asks only.  Returns the state: 0 none, 1 armed, 2 held,
 * 3 released, 4 the held handler has returned. */
enum { VMP_HOLD_NONE, VMP_HOLD_ARMED, VMP_HOLD_HELD, VMP_HOLD_RELEASED, VMP_HOLD_LEFT };
int vmp_handler_test_hold(int what);

/* Tests only: arms the hold for the calling thread and computes (the
 * caller has let the GIL go) until the held handler has returned, or
 * timeout_ns; only a handler that interrupted this computation is held.
 * Returns the state. */
int vmp_handler_test_hold_busy(int64_t timeout_ns);

#endif /* VMP_HANDLER_H */
