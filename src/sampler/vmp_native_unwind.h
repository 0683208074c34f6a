/*
 * vmp_native_unwind.h - the C stack of an interrupted thread, read from inside
 * the signal handler, and its splice with the thread's Python frames.
 *
 * Native mode records, for each sample, every C frame between the signal and
 * the thread's first function, with the Python frames each activation of the
 * evaluation loop was running standing where that activation stands.  The
 * work is split so that each part has one job and can be tested alone:
 *
 *   vmp_native_setup()      outside signal context, once per enable: prepares
 *                           libunwind (global cache, warmed), learns the
 *                           executable ranges of every loaded object and the
 *                           address ranges of the evaluation loop.
 *   vmp_native_refresh()    outside signal context, whenever libraries may have
 *                           been loaded (cheap when none were): publishes a new
 *                           executable-range table without disturbing handlers.
 *   vmp_native_unwind()     async-signal-safe: walks the interrupted context,
 *                           with learned per-pc rules when it knows every
 *                           frame's (a few arithmetic steps and loads per
 *                           frame), else with libunwind (which takes a lock
 *                           and masks signals twice per frame).
 *                           It stops - keeping what it has - at the depth cap,
 *                           at an address outside every known object (JIT code,
 *                           garbage), at a nested signal frame, when the stack
 *                           pointer fails to grow (a corrupted or looping
 *                           stack), or when libunwind gives up.
 *   vmp_native_splice()     async-signal-safe, pure: merges the native frames
 *                           with the Python frames, each activation of the
 *                           evaluation loop's frames where its C frame stood
 *                           (matched by stack address, not by counting).
 *   vmp_native_teardown()   outside signal context, after the last handler has
 *                           finished: frees the tables.
 *
 * Program counters: the first is the exact interrupted instruction; every
 * other is a return address minus one, so that it lies inside the calling
 * function even when the call was the function's last instruction.  They are
 * not function starts: the writer maps them to their function (vmp_symbols)
 * outside signal context, because finding a function's start in the handler
 * would cost a search of the unwind tables per frame.
 *
 * Learning: the writer sees every pc the samples carry and, outside signal
 * context, reads its unwind rule with libdw (vmp_symbols_unwind_rule) into
 * a fixed table the handlers read without locks; after the first samples of
 * a code path its walks take the fast path.
 *
 * Nothing here takes a lock, allocates, or calls Python in signal context,
 * except what libunwind does on a cache miss: it looks the address up through
 * dl_iterate_phdr, which takes the dynamic loader's lock.  Warming the cache
 * at setup and the fast walk make that rare, and a thread interrupted inside
 * the loader itself is never walked that way; the residual risk is a short
 * wait while another thread is inside dlopen.
 */
#ifndef VMP_NATIVE_UNWIND_H
#define VMP_NATIVE_UNWIND_H

#include <stddef.h>
#include <stdint.h>

/* The deepest native walk one sample makes, whatever the caller's room. */
#define VMP_NATIVE_MAX_DEPTH 512

/* Up to this many address ranges count as "the evaluation loop". */
#define VMP_NATIVE_MAX_EVAL_RANGES 8

/* Prepares native unwinding (idempotent).  Returns 0, or -1 when libunwind
 * cannot walk even this thread's own stack (then native mode must stay off). */
int vmp_native_setup(void);

/* Declares [start, end) as part of the evaluation loop: a C frame whose
 * program counter lies there runs Python frames.  Call before sampling starts
 * (setup does it for _PyEval_EvalFrameDefault and its .cold part when the
 * running process has them).  Returns 0, or -1 when the table is full. */
int vmp_native_add_eval_range(uintptr_t start, uintptr_t end);

/* Adds the ranges of the function called `symbol` (and of `symbol.cold`, the
 * part compilers split off) in whatever object of the process defines it.
 * Returns the number of ranges added (0 when the symbol is unknown). */
int vmp_native_add_eval_function(const char *symbol);

/* Rebuilds the executable-range table if objects were loaded or unloaded
 * since the last build.  Not signal-safe; safe while handlers run. */
void vmp_native_refresh(void);

/* Frees everything setup made.  Call only when no handler can still run. */
void vmp_native_teardown(void);

/* What a walk found besides its frames. */
typedef struct vmp_native_walk {
    int n;         /* frames written */
    int complete;  /* 1: the walk reached the thread's outermost frame */
    uintptr_t top; /* the upper end of the last frame's stack range (its
                    * caller's stack pointer); UINTPTR_MAX for the outermost
                    * frame; 0 when unknown */
} vmp_native_walk;

/* Async-signal-safe.  Walks the C stack of the context `ucontext` (the third
 * argument of an SA_SIGINFO handler) into frames[0..2n), innermost first, at
 * most min(max, VMP_NATIVE_MAX_DEPTH) frames, two words each: the program
 * counter, then the stack pointer that frame ran with (the interrupted one
 * for frame 0, its callee's CFA for a caller).  Frame i's locals lie in
 * [sp_i, sp_i+1) and the last frame's in [sp, walk->top).  Returns n (0 when
 * setup has not run or there is no context). */
int vmp_native_unwind(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk);

/* Outside signal context, one thread at a time (the writer): teaches the
 * fast path how to step from pc and pc | 1 (pc even; the caller checked the
 * rule holds at both, as the profile's entries lose the low bit).
 * Returns 0, or -1 when the table is full (the slow path still works). */
struct vmp_unwind_rule;
int vmp_native_learn(uintptr_t pc, const struct vmp_unwind_rule *rule);

/* The two walks vmp_native_unwind chooses between, for tests and the bench:
 * the fast one steps with learned rules only and returns -1 at the first pc
 * it has no rule for; the slow one is libunwind's.  Both async-signal-safe,
 * and they agree wherever the fast one answers.  `walk` may be NULL. */
int vmp_native_unwind_fast(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk);
int vmp_native_unwind_slow(void *ucontext, uint64_t *frames, int max, vmp_native_walk *walk);

/* Async-signal-safe: whether pc lies in the dynamic loader or in
 * dl_iterate_phdr (where a thread may hold the loader's lock). */
int vmp_native_in_loader(uintptr_t pc);

/* Async-signal-safe: whether pc lies in the evaluation loop. */
int vmp_native_is_eval(uintptr_t pc);

/* Async-signal-safe: whether pc lies in code of a loaded object (as of the
 * last setup/refresh). */
int vmp_native_is_known_code(uintptr_t pc);

/*
 * The Python side of a splice: the thread's Python frames as groups, one per
 * C activation of the evaluation loop, innermost first (vmp_frames.h makes
 * them from the interpreter's own structures).  A group's anchor is an
 * address inside the C stack frame of the activation that runs it (3.11 its
 * _PyCFrame, 3.12+ its entry shim), or 0 when the layout has none (before
 * 3.11, where each activation runs exactly one frame).
 */
typedef struct vmp_native_groups {
    /* 1 and the next group's anchor, or 0 when no group is left. */
    int (*next)(void *ctx, uintptr_t *anchor);
    /* Writes the next group's frames (innermost first, whole frames only)
     * into out[0..max) and moves past the group; *cut set when some did not
     * fit.  Returns the number of words written. */
    int (*emit)(void *ctx, uint64_t *out, int max, int *cut);
    int count; /* groups in all when anchors are 0, else -1 */
    void *ctx;
} vmp_native_groups;

/*
 * Async-signal-safe and pure apart from the eval-range lookup.  Merges the
 * native frames of a walk (frames as vmp_native_unwind writes them) with the
 * Python groups into out[0..max), innermost first.  Each native frame becomes
 * `pc | 1` (preceded by a 0 line word when py_width is 2, as lines mode writes
 * native frames); each Python group (py_width words per frame) stands just
 * inside the native frame whose stack range holds its anchor, so that an
 * activation with no Python frame of its own (entering or leaving, or
 * clearing a finished frame) takes nobody else's.  Without anchors each
 * evaluation-loop frame runs one group; when the walk is complete and has
 * more such frames than there are groups, the innermost ones are those still
 * entering or already leaving, and get none.  Groups whose activation the
 * walk did not reach follow at the outer end, so no Python frame is lost to
 * a short walk.  Returns the number of words written.
 *
 * frames may lie in out's own buffer, after the output's start (the sampler
 * walks into the tail of the slot the splice fills): the splice stops early
 * rather than write over a frame it has yet to read.
 */
int vmp_native_splice(const uint64_t *frames, const vmp_native_walk *walk,
                      const vmp_native_groups *py, int py_width, uint64_t *out, int max);

#endif /* VMP_NATIVE_UNWIND_H */
