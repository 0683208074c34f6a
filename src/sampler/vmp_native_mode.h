/*
 * vmp_native_mode.h - the sampler's native mode: what the sampler calls so
 * that samples carry C frames interleaved with the Python frames, and the
 * profile names them.
 *
 * Who calls what:
 *   enable (GIL held)       vmp_native_mode_start: prepares the unwinder and
 *                           finds the evaluation loop; fails with a one-line
 *                           reason when native frames cannot be interleaved.
 *   signal handler          vmp_native_mode_sample: one sample into a slot.
 *   writer thread           vmp_native_mode_entry_id for each native word
 *                           of a sample (vmp_native_word: the pc becomes
 *                           its function's start | 1),
 *                           vmp_native_mode_tick every round (learns unwind
 *                           rules and newly loaded libraries),
 *                           vmp_native_mode_write_new_names every round
 *                           (the names of the functions met since the last
 *                           one), vmp_native_mode_learn_left
 *                           and vmp_native_mode_write_names once at the end,
 *                           before the trailer;
 *                           vmp_native_mode_writer_table at its start and
 *                           vmp_native_mode_writer_done at its end.
 *   disable (after the last handler and the writer finished)
 *                           vmp_native_mode_stop; when a handler outlived
 *                           the stop's bound, vmp_native_mode_abandon.
 * Python-only mode calls none of these and pays nothing for them.
 */
#ifndef VMP_NATIVE_MODE_H
#define VMP_NATIVE_MODE_H

#include "vmp_frames.h" /* Python.h first */

#include <stddef.h>
#include <stdint.h>

#include "vmp_encode.h"
#include "vmp_native_unwind.h"

/* Returns 0, or -1 with a one-line reason in err. */
int vmp_native_mode_start(char *err, size_t errlen);

void vmp_native_mode_stop(void);

/* vmp_native_mode_stop when a handler may still be walking: the unwinder's
 * tables are forgotten, not freed (vmp_native_abandon). */
void vmp_native_mode_abandon(void);

/*
 * Async-signal-safe.  Records the interrupted thread's stack: native frames
 * from ucontext, Python frames of ts, spliced (vmp_native_splice) into
 * slot[0..slot_words), innermost first, at most VMP_MAX_DEPTH_WRITTEN frames
 * (pairs in lines mode).  Returns the number of words written.  *walk (when
 * not NULL) receives what the native walk found: whether it was cut for
 * want of a rule, and the rules' generation it used (vmp_native_unwind.h).
 */
size_t vmp_native_mode_sample(void *ucontext, PyThreadState *ts, uint64_t *slot,
                              size_t slot_words, int lines, vmp_native_walk *walk);

/* Writer thread: the profile id of a sample's native word (vmp_native_word
 * of the exact pc): its function's start | 1, remembered so that the
 * function is named at the end; in the top 16 bits, how many functions
 * started there in objects unloaded since the run began (a function of a
 * library loaded where another was gets a name of its own). */
uint64_t vmp_native_mode_entry_id(uint64_t entry);

/* Writer thread, every round: looks for libraries loaded or unloaded (the
 * loader's counters; when a walk asked and none explains its pc, for new
 * arenas of CPython's perf trampolines in the process's maps), pages in the unwind tables of objects new to the
 * code table, and learns the unwind rules of the pcs walks had no learned
 * rule for.  Cheap when there is nothing new.  A walk that stops at a pc
 * not noted yet (one the object's own tables could not get it past), or at
 * code outside every known object, rings the ring's bell (vmp_ring_ring):
 * the writer's round comes at once, not after its nap. */
void vmp_native_mode_tick(void);

/* Writer thread, before it writes the slot with claim index `index` (or
 * where it found the ring empty): an object unloaded before the writer
 * noticed it, at a claim index at or below this one, stops naming samples
 * from here on (its functions named first: see write_names). */
void vmp_native_mode_settle(uint64_t index);

/* Writer thread: a walk met code outside every known object and asked for
 * a look at the loader not answered yet (the round should not wait). */
int vmp_native_mode_refresh_asked(void);

/* Writer thread, at its end, when no handler runs any more: learns the pcs
 * walks noted since its last round (the run's last moments: a thread's
 * final wait, the join of the others), which teardown would otherwise
 * forget; the rules outlive the run (vmp_native_teardown), so the next
 * run's walks know them. */
void vmp_native_mode_learn_left(void);

/* In a fork child, before anything else of native mode: forgets the
 * parent's run without freeing (vmp_native_after_fork_child, and the
 * parent's symbol session and pc map).  The next enable starts anew. */
void vmp_native_mode_after_fork_child(void);

/* Writer thread, at the end: a NATIVE_SYMBOLS record for every function
 * entry_id returned (those of objects unloaded meanwhile were named
 * before they went).  `flush` empties buf when a record does not fit. */
void vmp_native_mode_write_names(vmp_wbuf *buf, void (*flush)(void));

/* The writer's round, after its drain: writes the names of the functions
 * met since the last round (each name is written once; write_names then
 * writes the rest). */
void vmp_native_mode_write_new_names(vmp_wbuf *buf, void (*flush)(void));

/* Writer thread, at its start: whether it has a descriptor table of its
 * own (vmp_fds.h); then it opens a symbol session of its own at its first
 * need instead of using enable's, whose descriptors are the program's. */
void vmp_native_mode_writer_table(int own);

/* Writer thread, at its end: closes its own session (in its own table). */
void vmp_native_mode_writer_done(void);
/* The writer's thread ends for a pause: its session goes with its table,
 * and the next thread opens it again only when it needs it. */
void vmp_native_mode_writer_paused(void);

/* The pcs the writer learned the unwind rules of in the current (or the
 * last) run: the walks' misses (for tests and figures; after disable too). */
/* Tests only: how often the writer opened a libdw session of its own in
 * the current (or the last) run. */
size_t vmp_native_mode_test_sessions_opened(void);

/* Tests only: while on, the writer's map of the pcs met cannot grow, as if
 * memory were short (vmp_native_mode_entry_id's out-of-memory fallback). */
void vmp_native_mode_test_starts_fail(int on);

size_t vmp_native_mode_pcs_learned(void);

/* Of those, the pcs whose rules the writer read with libdw: the ones the
 * objects' own .eh_frame gave no rule for (vmp_native_rules_from_tables),
 * i.e. where walks were cut.  A pc the walk got past is learned from the
 * tables it was got past with. */
size_t vmp_native_mode_pcs_from_libdw(void);

/* Native functions met so far (for tests and figures). */
size_t vmp_native_mode_functions(void);

#endif /* VMP_NATIVE_MODE_H */
