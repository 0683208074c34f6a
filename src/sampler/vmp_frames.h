/*
 * vmp_frames.h - the one place that knows how each CPython version keeps its
 * thread states and frames (3.8-3.10: PyFrameObject chains; 3.11+: the
 * per-thread stack of _PyInterpreterFrame).  Everything else in the sampler
 * is version-agnostic and sees only code-object addresses.
 *
 * vmp_frames_this_thread() and vmp_frames_walk() are async-signal-safe: they
 * take no locks, allocate nothing and call no Python API that could (the only
 * call is the pure line-table lookup PyCode_Addr2Line, in lines mode).  They
 * must run on the thread whose stack they read, which is what a signal
 * handler does; a thread's own frames cannot change under it.
 *
 * Native unwinding (helper `native`) interleaves here: the walker visits one
 * frame at a time, and vmp_frames_walk() is where entry-frame boundaries
 * (3.11 is_entry, 3.12+ C-stack-owned shim frames) are seen.
 */
#ifndef VMP_FRAMES_H
#define VMP_FRAMES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* 1 when this build can sample the running interpreter; else 0 with *why set
 * to a one-line reason that says what to do. */
int vmp_frames_supported(const char **why);

/* The calling OS thread's own thread state, attached or not; NULL for threads
 * that never ran Python or are being torn down. */
PyThreadState *vmp_frames_this_thread(void);

/* The id samples carry: the thread's pthread_t (threading.get_ident()). */
uint64_t vmp_frames_thread_id(PyThreadState *ts);

/* Writes ts's Python stack, innermost frame first, into out: one code-object
 * address per frame, or [line, code] pairs when with_lines (lines are never
 * negative; 0 when unknown).  Stops after max_frames frames (the deepest
 * callers are cut).  Returns the number of words written. */
size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines);

/* The same, and for native mode (vmp_native_mode.c) last[k] = 1 when frame k
 * is the outermost Python frame run by its C-level call of the evaluation
 * loop (before 3.11 every frame; 3.11 the entry frame; 3.12+ the frame just
 * inside a C-stack-owned shim), and for the outermost frame written. */
size_t vmp_frames_walk_marked(PyThreadState *ts, uint64_t *out, unsigned char *last,
                              size_t max_frames, int with_lines);

#endif /* VMP_FRAMES_H */
