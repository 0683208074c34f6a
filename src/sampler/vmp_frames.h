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
 * Native mode interleaves here: the cursor below hands out the frames one C
 * activation of the evaluation loop at a time, and is where the activations'
 * marks (3.11 _PyCFrame, 3.12+ C-stack-owned shim frames) are seen.
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

/* With the GIL: the kernel tids of interpreter interp's threads (those with
 * a thread state) into out; their number, or -1 when it cannot be told
 * (more than max, or a thread state its thread has not taken yet, which
 * still names the thread that made it).  guard runs a read that may fault
 * (vmp_guard_run). */
long vmp_frames_python_tids(const void *interp, pid_t *out, size_t max,
                            int (*guard)(void (*fn)(void *), void *arg));

/* Writes ts's Python stack, innermost frame first, into out: one code-object
 * address per frame, or [line, code] pairs when with_lines (lines are never
 * negative; 0 when unknown).  Stops after max_frames frames (the deepest
 * callers are cut).  Returns the number of words written. */
size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines);

/*
 * For native mode (vmp_native_mode.c): the same frames, a group at a time,
 * one group per C activation of the evaluation loop, innermost first, each
 * with its anchor: an address inside that activation's C stack frame (3.11
 * its _PyCFrame, 3.12+ its entry shim frame) or 0 before 3.11, where every
 * frame is an activation of its own and has no such address.  A group may
 * be empty: an activation entering, leaving, or clearing a finished frame
 * runs no frame of its own.  Async-signal-safe like vmp_frames_walk; the
 * links followed in all are bounded as there.
 */
typedef struct vmp_frames_cursor {
    const void *frame;  /* the next frame to read */
    const void *stop;   /* where the peeked group ends (3.11+) */
    const void *cframe; /* the next activation's _PyCFrame (3.11; 3.12 the
                         * innermost's) */
    const void *resume; /* where the next group starts (3.12+) */
    uintptr_t anchor;   /* the peeked group's */
    size_t links, max_links;
    int peeked, with_lines;
    int count; /* groups in all before 3.11 (bounded), else -1 */
} vmp_frames_cursor;

void vmp_frames_cursor_start(vmp_frames_cursor *c, PyThreadState *ts, size_t max_frames,
                             int with_lines);

/* 1 and the next group's anchor (UINTPTR_MAX when the chain ends without
 * the activation's mark: it is then placed outermost), or 0 at the end. */
int vmp_frames_next_group(vmp_frames_cursor *c, uintptr_t *anchor);

/* Writes the next group's frames into out[0..max) (whole frames; *cut set
 * when some did not fit) and moves past it.  Returns the words written. */
int vmp_frames_emit_group(vmp_frames_cursor *c, uint64_t *out, int max, int *cut);

/* 3.12+, with the GIL, on ts's own thread: where its innermost running
 * frame is (the frame and the instruction it runs), and later whether that
 * thread has moved on from there: that frame is the innermost again (its
 * call returned into it), or is no longer on the stack, or runs another
 * instruction.  A function called by the call (a hook of os.fork) runs
 * deeper, with the frame still at its call: not moved on.  No frame: moved
 * on at once.  (vmp_sampler.c: our threads stopped for os.fork start again
 * only once os.fork has returned.) */
typedef struct vmp_frames_place {
    const void *frame;
    int lasti;
} vmp_frames_place;
void vmp_frames_here(PyThreadState *ts, vmp_frames_place *p);
int vmp_frames_moved_on(PyThreadState *ts, const vmp_frames_place *p);
/* Whether ts's innermost running frame is p's frame at p's instruction:
 * called from C by the call p was taken at (a C hook os.fork runs), it is
 * still inside that call. */
int vmp_frames_still_at(PyThreadState *ts, const vmp_frames_place *p);

/* 3.12+, with the GIL: puts callable last among the interpreter's
 * os.register_at_fork after_in_parent hooks (moved there when it is in
 * already), so that no hook of the program's runs after it (one that an
 * earlier hook registers still does); 0, or -1.  drop takes it out.  The
 * list is CPython's own (os.fork calls a copy of it), never shown to the
 * program. */
int vmp_frames_last_after_fork_parent(PyObject *callable);
void vmp_frames_drop_after_fork_parent(PyObject *callable);

/* 3.12+, with the GIL: puts callable where it runs last among the
 * interpreter's os.register_at_fork before hooks (os.fork runs them only
 * once every audit hook let it go on); 0, or -1.  drop takes it out. */
int vmp_frames_last_before_fork(PyObject *callable);
void vmp_frames_drop_before_fork(PyObject *callable);

/* faulthandler switched off and on again around the run's start, so that
 * the dispositions it puts back when switched off are ours: Py_FatalError
 * switches it off just before its abort(), and with faulthandler enabled
 * before profiling that put back the SIG_DFL it had found, and the abort
 * was never ours to flush.  3.12+, with the GIL: hold, when faulthandler is
 * enabled, keeps its settings (file, number, all_threads) and switches it
 * off (1; 0: it is off, or its settings cannot be read: before 3.12 they
 * are private to faulthandler.c); give_back switches it on again with the
 * same settings (1; 0: nothing held; -1: it failed and stays off). */
typedef struct {
    PyObject *module, *file;
    int fd, all_threads;
    void *interp;
} vmp_frames_faulthandler;
int vmp_frames_faulthandler_hold(vmp_frames_faulthandler *held);
int vmp_frames_faulthandler_give_back(vmp_frames_faulthandler *held);

#endif /* VMP_FRAMES_H */
