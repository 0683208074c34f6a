/*
 * vmp_codes.h - which code objects a profile refers to, and their names.
 *
 * A sample records code-object addresses only; the name of each must be
 * written while the object is alive, and an address must never stand for two
 * functions in one profile even when an object dies and another is made at
 * the same address.  So:
 *
 *   - every sampled address goes into a lock-free set (vmp_codes_note, called
 *     from the signal handler: one hash probe, no lock, no allocation);
 *   - when a code object in the set dies (3.12+: a code watcher; 3.8-3.11: a
 *     wrapper around PyCode_Type's deallocator), its name is handed to the
 *     `died` callback and its address leaves the set; the callback puts the
 *     name in the same ordered stream as the samples, after every sample that
 *     could hold the old object, so the writer can retire the address;
 *   - at the end, vmp_codes_name_live() names the sampled objects still alive.
 *
 *   - during the run, the writer names the sampled objects it has given
 *     ids to without the GIL (vmp_codes_name_now): a profile whose program
 *     dies before the end (SIGKILL, a crash, os._exit) is still named.
 *
 * Everything but vmp_codes_note, vmp_codes_deaths, vmp_codes_death_bucket
 * and vmp_codes_name_now runs with the GIL held.
 */
#ifndef VMP_CODES_H
#define VMP_CODES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* Receives a name ("py:func:line:file", len bytes, not NUL-terminated). */
typedef void (*vmp_codes_name_fn)(uintptr_t code, const char *name, size_t len, int died);

/* Starts tracking with an empty set; `died` is called for each dying tracked
 * object until vmp_codes_stop().  Installs the death hook the first time.
 * Returns 0, or -1 with a Python exception set. */
int vmp_codes_start(vmp_codes_name_fn died);

/* Stops reporting deaths and releases the set. */
void vmp_codes_stop(void);

/* Forgets the set without touching Python (the child after fork()). */
void vmp_codes_abandon(void);

/* Async-signal-safe: remembers that a sample holds this code object. */
void vmp_codes_note(uintptr_t code);

/* Runs fn(arg) so that a memory fault inside it makes it return -1 instead of
 * ending the process; returns 0 when fn completed. */
typedef int (*vmp_guard_fn)(void (*fn)(void *), void *arg);

/* Calls emit(code, name, len, 0) for every noted code object still alive.
 * Each object is first read under `guard`: an address noted from a frame
 * that was being torn down may no longer hold a code object. */
void vmp_codes_name_live(vmp_codes_name_fn emit, vmp_guard_fn guard);

/* Writes code's name in the profile's form into buf (NUL-terminated, cut to
 * the format's limits); returns its length. */
size_t vmp_codes_format_name(PyCodeObject *code, char *buf, size_t cap);

/* Deaths are counted per bucket of addresses (a 4,096th of them), as each
 * begins, before its name is pushed and before its memory is freed. */
#define VMP_CODES_DEATH_BITS 12
#define VMP_CODES_DEATH_BUCKETS (1u << VMP_CODES_DEATH_BITS)
unsigned vmp_codes_death_bucket(uintptr_t code);
uint64_t vmp_codes_deaths(unsigned bucket);

/* Without the GIL (the writer): the name of the code object at `code`, read
 * twice under `guard`, into buf (VMP_MAX_NAME + 1 bytes); its length, or 0
 * when it is not a code object with str names, or the readings differ.
 * The name is the object's only when no death was counted at its bucket
 * from before the call to after it, and every death counted there before
 * it had been settled (its name in the stream, its address retired): the
 * caller reads vmp_codes_deaths before and, after an acquire fence, again
 * after.  A death's count moves before the object's memory is freed, so a
 * reading that saw it freed or reused sees the count moved. */
size_t vmp_codes_name_now(uintptr_t code, char *buf, vmp_guard_fn guard);

/* Addresses that did not fit in the set (their names may be missing). */
uint64_t vmp_codes_untracked(void);

#endif /* VMP_CODES_H */
