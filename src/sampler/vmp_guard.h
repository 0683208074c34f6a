/*
 * vmp_guard.h - the fault guard around stack walks.
 *
 * A sampled thread is interrupted at an arbitrary instruction, and the
 * interpreter does not publish its frames atomically: 3.11 and 3.12 point
 * tstate->cframe at a new C-stack _PyCFrame before its current_frame is
 * written, so for a few instructions a walker may follow garbage.  Code run
 * by vmp_guard_run that faults returns -1 (the sample is dropped) instead of
 * ending the process; any other fault goes to the program's own handler, as
 * if we were not there.
 *
 * vmp_guard_install/_restore run with the GIL held; vmp_guard_run is
 * async-signal-safe.
 */
#ifndef VMP_GUARD_H
#define VMP_GUARD_H

#include <stdint.h>

/* Installs the SIGSEGV/SIGBUS handler (keeping the program's to chain to). */
void vmp_guard_install(void);

/* Puts the program's handlers back, where ours is still the one installed. */
void vmp_guard_restore(void);

/* Runs fn(arg); returns 0 when it completed, -1 when it faulted. */
int vmp_guard_run(void (*fn)(void *), void *arg);

/* Faults caught since the last vmp_guard_reset_faults. */
uint64_t vmp_guard_faults(void);
void vmp_guard_reset_faults(void);

#endif /* VMP_GUARD_H */
