/*
 * vmp_guard.h - the fault guard around stack walks, and how it lives with
 * the program's own SIGSEGV/SIGBUS handlers (faulthandler, crash reporters).
 *
 * A sampled thread is interrupted at an arbitrary instruction, and the
 * interpreter does not publish its frames atomically: 3.11 and 3.12 point
 * tstate->cframe at a new C-stack _PyCFrame before its current_frame is
 * written, so for a few instructions a walker may follow garbage.  Code run
 * by vmp_guard_run that faults returns -1 (the sample is dropped) instead of
 * ending the process.  Every other fault, and every SIGSEGV/SIGBUS sent with
 * kill(), does what it would have done without us: the handler we found is
 * called, or the default action taken.
 *
 * Promises:
 *   - A fault in a guarded call never reaches the program's handler (no false
 *     "Fatal Python error" from faulthandler, which would also switch itself
 *     off): when the program installs a handler over ours during a run, ours
 *     goes back in front and calls theirs for the faults that are not ours
 *     (vmp_guard_keep_first, called by the sampler thread every round, at
 *     most 10 ms apart, 40 ms in the CPU clock's long rounds).
 *   - Our handler runs on the thread's alternate signal stack when it has one
 *     (SA_ONSTACK), so a stack overflow still reaches faulthandler, and it
 *     uses little stack.
 *   - Two handlers never call each other forever: a handler below ours that
 *     calls ours again gets the default action, and a fault that comes back
 *     at once, again and again, after the handler below returned (a handler
 *     switched off, like faulthandler after disable()) gets it too.
 *   - Guards nest (a guarded call interrupted by a signal whose handler runs
 *     a guarded walk keeps its own guard).
 *   - With fatal_too, the same handler takes SIGABRT, SIGILL, SIGFPE, SIGTRAP
 *     and SIGSYS where the program would die of them (their default action,
 *     or, at the start, the crash handler ours chains to for SIGSEGV:
 *     faulthandler enabled before), for vmp_guard_on_fatal's sake only: then
 *     the handler below or the default action, as without us.  A handler of
 *     the program's own for these stays in front, untouched; SIG_IGN stays.
 *
 * vmp_guard_install/_restore/_keep_first run in normal context (install and
 * restore with the GIL held); vmp_guard_run is async-signal-safe.
 */
#ifndef VMP_GUARD_H
#define VMP_GUARD_H

#include <stdint.h>

/* Installs the SIGSEGV/SIGBUS handler (keeping the program's to chain to);
 * fatal_too: the fatal signals' too (above). */
void vmp_guard_install(int fatal_too);

/* Puts our handler back in front when the program installed one over it
 * since, keeping theirs to chain to.  No-op when not installed. */
void vmp_guard_keep_first(void);

/* Puts the program's handlers back, where ours is still the one installed. */
void vmp_guard_restore(void);

/* Called (async-signal-safe) by our handler for a fault or a SIGSEGV/SIGBUS
 * that is not a guarded call's, or a fatal signal, before the program's
 * handler or the default action gets it: the sampler lets its writer write what it has
 * (vmp_writer_flush_before_death).  NULL: none. */
void vmp_guard_on_fatal(void (*fn)(void));

/* Runs fn(arg); returns 0 when it completed, -1 when it faulted. */
int vmp_guard_run(void (*fn)(void *), void *arg);

/* Faults caught since the last vmp_guard_reset_faults. */
uint64_t vmp_guard_faults(void);
void vmp_guard_reset_faults(void);

#endif /* VMP_GUARD_H */
