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
 *   vmp_native_splice()     async-signal-safe, pure: merges the native program
 *                           counters with the Python frames.
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

/* Async-signal-safe.  Walks the C stack of the context `ucontext` (the third
 * argument of an SA_SIGINFO handler) into pcs[0..], innermost first, at most
 * min(max, VMP_NATIVE_MAX_DEPTH) entries.  Returns the number written (0 when
 * setup has not run or the first address is already unknown). */
int vmp_native_unwind(void *ucontext, uintptr_t *pcs, int max);

/* Outside signal context, one thread at a time (the writer): teaches the
 * fast path how to step from pc and pc | 1 (pc even; the caller checked the
 * rule holds at both, as the profile's entries lose the low bit).
 * Returns 0, or -1 when the table is full (the slow path still works). */
struct vmp_unwind_rule;
int vmp_native_learn(uintptr_t pc, const struct vmp_unwind_rule *rule);

/* The two walks vmp_native_unwind chooses between, for tests and the bench:
 * the fast one steps with learned rules only and returns -1 at the first pc
 * it has no rule for; the slow one is libunwind's.  Both async-signal-safe,
 * and they agree wherever the fast one answers. */
int vmp_native_unwind_fast(void *ucontext, uintptr_t *pcs, int max);
int vmp_native_unwind_slow(void *ucontext, uintptr_t *pcs, int max);

/* Async-signal-safe: whether pc lies in the dynamic loader or in
 * dl_iterate_phdr (where a thread may hold the loader's lock). */
int vmp_native_in_loader(uintptr_t pc);

/* Async-signal-safe: whether pc lies in the evaluation loop. */
int vmp_native_is_eval(uintptr_t pc);

/* Async-signal-safe: whether pc lies in code of a loaded object (as of the
 * last setup/refresh). */
int vmp_native_is_known_code(uintptr_t pc);

/*
 * Async-signal-safe and pure apart from the eval-range lookup.  Merges
 *   pcs[0..npcs)   native program counters, innermost first;
 *   py[0..npy)     Python stack entries, innermost first, already in the
 *                  file's encoding (one word per frame, or `py_width` words
 *                  per frame in lines mode);
 *   py_last[k]     nonzero when Python frame k is the outermost frame run by
 *                  its C activation of the evaluation loop (before 3.11 every
 *                  frame; from 3.11 the entry frame) - one flag per frame;
 * into out[0..max), innermost first.  Each native frame becomes
 * `pc | 1` (preceded by a 0 line word when py_width is 2, as lines mode
 * writes native frames); an evaluation-loop frame is preceded by the Python
 * frames of its activation and then written itself, so the file keeps the
 * interpreter's machinery and views may fold it.  Python frames left when the
 * native stack ends (a walk that stopped early) follow at the outer end, so
 * no Python frame is ever lost to a short native walk.  Returns the number
 * of words written.
 *
 * out may overlap py (the sampler walks the Python frames into the tail of
 * the very slot the splice fills) provided out + npcs * py_width <= py: the
 * output then never overtakes the input it has yet to read.
 */
int vmp_native_splice(const uintptr_t *pcs, int npcs, const uint64_t *py,
                      const unsigned char *py_last, int npy, int py_width,
                      uint64_t *out, int max);

#endif /* VMP_NATIVE_UNWIND_H */
