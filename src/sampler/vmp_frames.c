/*
 * vmp_frames.c - per-version frame walking (contract in vmp_frames.h).
 *
 * One small walker per layout: frame objects (3.8-3.10) and interpreter
 * frames (3.11, 3.12, 3.13).  From 3.11 the internal header pycore_frame.h
 * describes the frames; it needs Py_BUILD_CORE, which is defined only here and
 * only after Python.h so that the rest of the build sees the public API.
 *
 * The walkers trust only what the running thread itself keeps consistent:
 * every code pointer is checked to be a code object before it is used, and a
 * frame that has not started running yet (incomplete) or that belongs to the C
 * stack (3.12+ shim frames) is skipped, as CPython's own tracebacks do.
 */
#include "vmp_frames.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h>
#if PY_VERSION_HEX >= 0x030C0000
/* (3.12's public objimpl.h defines as a macro what pycore_gc.h, which
 * pycore_interp.h includes, defines as a function: a core build never
 * sees the macro) */
#undef _PyGC_FINALIZED
#include <internal/pycore_interp.h> /* (the os.register_at_fork hooks' lists) */
#include <internal/pycore_runtime.h> /* (faulthandler's settings) */
#endif
#undef Py_BUILD_CORE
#elif PY_VERSION_HEX < 0x030B0000
#include <frameobject.h>
#endif

#if defined(Py_GIL_DISABLED) || PY_VERSION_HEX < 0x03080000 || PY_VERSION_HEX >= 0x030E0000
#define VMP_FRAMES_UNSUPPORTED 1
#endif

int vmp_frames_supported(const char **why)
{
#ifdef VMP_FRAMES_UNSUPPORTED
    *why = "this vmprof can sample CPython 3.8 to 3.13 with the GIL only: "
           "run the program under one of those";
    return 0;
#else
    (void)why;
    return 1;
#endif
}

PyThreadState *vmp_frames_this_thread(void)
{
    /* A thread-specific key read (pthread_getspecific): no lock, no
     * allocation, and it names the calling thread even when it has released
     * the GIL, unlike _PyThreadState_GET() before 3.12. */
    return PyGILState_GetThisThreadState();
}

uint64_t vmp_frames_thread_id(PyThreadState *ts)
{
    return (uint64_t)ts->thread_id;
}

#if PY_VERSION_HEX < 0x030B0000
/* 3.8-3.10: a thread state knows its pthread_t only; the kernel tid is read
 * from the pthread (pthread_getcpuclockid encodes it in the clock id), under
 * the fault guard: a thread state left behind by a C thread that ended
 * without releasing it names a pthread that may be gone. */
struct tid_of {
    pthread_t th;
    pid_t tid;
};

static void read_tid(void *arg)
{
    struct tid_of *t = arg;
    clockid_t clk;
    if (pthread_getcpuclockid(t->th, &clk) == 0)
        t->tid = (pid_t) ~(clk >> 3);
}
#endif

long vmp_frames_python_tids(const void *interp, pid_t *out, size_t max,
                            int (*guard)(void (*fn)(void *), void *arg))
{
    size_t n = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead((PyInterpreterState *)interp); ts;
         ts = PyThreadState_Next(ts)) {
        if (n == max)
            return -1;
#if PY_VERSION_HEX >= 0x030B0000
        (void)guard;
        pid_t tid = (pid_t)ts->native_thread_id;
#else
        struct tid_of t = {(pthread_t)ts->thread_id, 0};
        if (ts->thread_id && guard(read_tid, &t) < 0)
            return -1;
        pid_t tid = t.tid;
#endif
        if (tid <= 0)
            return -1; /* a thread state its thread has not taken yet */
        for (size_t i = 0; i < n; i++)
            if (out[i] == tid)
                return -1; /* (likewise: it still names its creator) */
        out[n++] = tid;
    }
    return (long)n;
}

/* Appends one frame; returns the new word count. */
static inline size_t put_frame(uint64_t *out, size_t n, PyCodeObject *code, int line, int with_lines)
{
    if (with_lines)
        out[n++] = line > 0 ? (uint64_t)line : 0;
    out[n++] = (uint64_t)(uintptr_t)code;
    return n;
}

/* The line of a byte offset; 0 when unknown (PyCode_Addr2Line gives -1). */
static inline int line_of(PyCodeObject *code, int byte_offset)
{
    if (byte_offset < 0)
        return code->co_firstlineno;
    int line = PyCode_Addr2Line(code, byte_offset);
    return line < 0 ? 0 : line;
}

/* The walk follows at most this many links.  Frames that are skipped (shims,
 * incomplete frames, a non-code object) do not count towards max_frames, so
 * without a second bound a chain read while the interpreter was rewriting it
 * could loop forever inside the signal handler, hanging the program: seen on
 * 3.12, a `previous` chain that had become a cycle. */
static inline size_t max_links(size_t max_frames)
{
    return 4 * max_frames + 16;
}

/* A pointer no frame (or _PyCFrame) has: the chain was read while being
 * rewritten (see the fault guard in vmp_guard.c). */
static inline int bad_pointer(const void *p)
{
    return ((uintptr_t)p & (sizeof(void *) - 1)) || (uintptr_t)p < 4096;
}

static inline size_t frame_words(int with_lines)
{
    return with_lines ? 2 : 1;
}

#ifndef VMP_FRAMES_UNSUPPORTED
#if PY_VERSION_HEX < 0x030B0000
/* 3.8-3.10: a chain of frame objects from tstate->frame through f_back;
 * each frame runs in its own C call of the evaluation loop. */
static inline int frame_line(PyFrameObject *f, PyCodeObject *code, int with_lines)
{
    if (!with_lines)
        return 0;
#if PY_VERSION_HEX >= 0x030A0000
    return line_of(code, f->f_lasti < 0 ? -1 : f->f_lasti * 2); /* 3.10 counts code units */
#else
    return line_of(code, f->f_lasti);
#endif
}

static inline PyCodeObject *frame_code(PyFrameObject *f)
{
    PyCodeObject *code = f->f_code;
    return code && Py_TYPE(code) == &PyCode_Type ? code : NULL;
}

size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines)
{
    size_t n = 0, frames = 0, links = 0;
    for (PyFrameObject *f = ts->frame; f && frames < max_frames && links < max_links(max_frames);
         f = f->f_back, links++) {
        if (bad_pointer(f))
            break;
        PyCodeObject *code = frame_code(f);
        if (!code)
            continue;
        n = put_frame(out, n, code, frame_line(f, code, with_lines), with_lines);
        frames++;
    }
    return n;
}

void vmp_frames_cursor_start(vmp_frames_cursor *c, PyThreadState *ts, size_t max_frames,
                             int with_lines)
{
    c->frame = ts->frame;
    c->stop = c->cframe = NULL;
    c->anchor = 0;
    c->links = 0;
    c->max_links = max_links(max_frames);
    c->peeked = 0;
    c->with_lines = with_lines;
    int count = 0;
    for (PyFrameObject *f = ts->frame; f && !bad_pointer(f) && (size_t)count < c->max_links;
         f = f->f_back)
        count++;
    c->count = count;
}

int vmp_frames_next_group(vmp_frames_cursor *c, uintptr_t *anchor)
{
    if (!c->frame || bad_pointer(c->frame) || c->links >= c->max_links)
        return 0;
    *anchor = 0;
    return 1;
}

int vmp_frames_emit_group(vmp_frames_cursor *c, uint64_t *out, int max, int *cut)
{
    *cut = 0;
    uintptr_t anchor;
    if (!vmp_frames_next_group(c, &anchor))
        return 0;
    PyFrameObject *f = (PyFrameObject *)c->frame;
    c->frame = f->f_back;
    c->links++;
    PyCodeObject *code = frame_code(f);
    if (!code)
        return 0;
    if ((size_t)max < frame_words(c->with_lines)) {
        *cut = 1;
        return 0;
    }
    return (int)put_frame(out, 0, code, frame_line(f, code, c->with_lines), c->with_lines);
}
#else
/* 3.11+: _PyInterpreterFrame records linked through `previous`. */
static inline _PyInterpreterFrame *current_frame(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return ts->current_frame;
#else
    return ts->cframe ? ts->cframe->current_frame : NULL;
#endif
}

static inline PyCodeObject *frame_code(_PyInterpreterFrame *f)
{
    /* (The guard in vmp_guard.c catches a fault on a garbage pointer.) */
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *code = f->f_executable; /* may be None (3.13) */
#else
    PyObject *code = (PyObject *)f->f_code;
#endif
    if (bad_pointer(code))
        return NULL;
    return Py_TYPE(code) == &PyCode_Type ? (PyCodeObject *)code : NULL;
}

/* The shim each C-level eval call pushes (3.12+), not a function. */
static inline int is_shim(_PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    return f->owner == FRAME_OWNED_BY_CSTACK;
#else
    (void)f;
    return 0;
#endif
}

/* The code of a frame that runs a function, or NULL (shims, frames that have
 * not started running yet, a non-code object), as CPython's tracebacks
 * choose them. */
static inline PyCodeObject *running_code(_PyInterpreterFrame *f)
{
    if (is_shim(f))
        return NULL;
    PyCodeObject *code = frame_code(f);
    return code && !_PyFrame_IsIncomplete(f) ? code : NULL;
}

static inline int frame_line(_PyInterpreterFrame *f, PyCodeObject *code, int with_lines)
{
    return with_lines ? line_of(code, _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT)) : 0;
}

size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines)
{
    size_t n = 0, frames = 0, links = 0;
    for (_PyInterpreterFrame *f = current_frame(ts); f && frames < max_frames && links < max_links(max_frames);
         f = f->previous, links++) {
        /* A frame being pushed may be linked before it is written: stop at a
         * pointer no frame has. */
        if (bad_pointer(f))
            break;
        PyCodeObject *code = running_code(f);
        if (!code)
            continue;
        n = put_frame(out, n, code, frame_line(f, code, with_lines), with_lines);
        frames++;
    }
    return n;
}

#if PY_VERSION_HEX >= 0x030C0000
/* The innermost frame that runs a function (shims and incomplete frames
 * skipped), bounded as a walk. */
static _PyInterpreterFrame *innermost_running(PyThreadState *ts)
{
    size_t links = 0;
    for (_PyInterpreterFrame *f = current_frame(ts); f && links < max_links(1); f = f->previous, links++)
        if (running_code(f))
            return f;
    return NULL;
}

void vmp_frames_here(PyThreadState *ts, vmp_frames_place *p)
{
    _PyInterpreterFrame *f = innermost_running(ts);
    p->frame = f;
    p->lasti = f ? _PyInterpreterFrame_LASTI(f) : -1;
}

int vmp_frames_moved_on(PyThreadState *ts, const vmp_frames_place *p)
{
    _PyInterpreterFrame *f = innermost_running(ts);
    if (!p->frame || !f || f == p->frame)
        return 1;
    /* (GIL held, own thread: the chain is whole; the bound only guards
     * against a chain longer than any recursion limit lets it be) */
    size_t links = 0;
    for (; f && links < ((size_t)1 << 22); f = f->previous, links++)
        if (f == p->frame)
            return _PyInterpreterFrame_LASTI(f) != p->lasti;
    return 1;
}

int vmp_frames_still_at(PyThreadState *ts, const vmp_frames_place *p)
{
    _PyInterpreterFrame *f = innermost_running(ts);
    return p->frame && f == p->frame && _PyInterpreterFrame_LASTI(f) == p->lasti;
}

static void drop_hook(PyObject *hooks, PyObject *callable)
{
    if (!hooks || !PyList_CheckExact(hooks))
        return;
    for (Py_ssize_t i = PyList_GET_SIZE(hooks); i-- > 0;)
        if (PyList_GET_ITEM(hooks, i) == callable && PySequence_DelItem(hooks, i) < 0)
            PyErr_Clear();
}

/* callable into *list (made when there is none) at index at (-1: the
 * end), out of it first. */
static int put_hook(PyObject **list, PyObject *callable, Py_ssize_t at)
{
    if (!*list && !(*list = PyList_New(0))) {
        PyErr_Clear();
        return -1;
    }
    PyObject *hooks = *list;
    if (!PyList_CheckExact(hooks))
        return -1;
    drop_hook(hooks, callable);
    if ((at < 0 ? PyList_Append(hooks, callable) : PyList_Insert(hooks, at, callable)) < 0) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

int vmp_frames_last_after_fork_parent(PyObject *callable)
{
    return put_hook(&PyInterpreterState_Get()->after_forkers_parent, callable, -1);
}

void vmp_frames_drop_after_fork_parent(PyObject *callable)
{
    drop_hook(PyInterpreterState_Get()->after_forkers_parent, callable);
}

/* (os.fork calls the before hooks last registered first: the list's
 * first runs last) */
int vmp_frames_last_before_fork(PyObject *callable)
{
    return put_hook(&PyInterpreterState_Get()->before_forkers, callable, 0);
}

void vmp_frames_drop_before_fork(PyObject *callable)
{
    drop_hook(PyInterpreterState_Get()->before_forkers, callable);
}
#endif

void vmp_frames_cursor_start(vmp_frames_cursor *c, PyThreadState *ts, size_t max_frames,
                             int with_lines)
{
#if PY_VERSION_HEX >= 0x030C0000
    c->frame = current_frame(ts);
#if PY_VERSION_HEX < 0x030D0000
    c->cframe = ts->cframe;
#else
    c->cframe = NULL;
#endif
    c->resume = NULL;
#else
    c->frame = NULL;
    c->cframe = ts->cframe;
#endif
    c->stop = NULL;
    c->anchor = 0;
    c->links = 0;
    c->max_links = max_links(max_frames);
    c->peeked = 0;
    c->with_lines = with_lines;
    c->count = -1;
}

int vmp_frames_next_group(vmp_frames_cursor *c, uintptr_t *anchor)
{
    if (c->peeked) {
        *anchor = c->anchor;
        return 1;
    }
    if (c->links >= c->max_links)
        return 0;
#if PY_VERSION_HEX >= 0x030C0000
    /* The group runs from the cursor to the activation's shim, which lies
     * in the activation's own C frame; a chain that ends (or breaks) before
     * any shim is placed outermost. */
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)c->frame;
    if (!f || bad_pointer(f))
        return 0;
    size_t links = c->links;
    while (f && !bad_pointer(f) && !is_shim(f) && links < c->max_links) {
        f = f->previous;
        links++;
    }
    int shim = f && !bad_pointer(f) && links < c->max_links && is_shim(f);
    c->stop = shim ? f : NULL;
    c->anchor = shim ? (uintptr_t)f : UINTPTR_MAX;
    c->resume = shim ? f->previous : NULL;
#if PY_VERSION_HEX < 0x030D0000
    /* 3.12: an activation being entered publishes its _PyCFrame before the
     * frame it runs, so for a few instructions the innermost current_frame
     * is stale (often a suspended generator's frame, whose chain ends at
     * once).  That activation runs no frame yet: an empty group at its
     * _PyCFrame, and the frames start at its caller's current frame. */
    const _PyCFrame *cf = (const _PyCFrame *)c->cframe;
    if (!shim && c->links == 0 && cf && !bad_pointer(cf) && cf->previous && !bad_pointer(cf->previous)) {
        c->frame = c->stop = NULL;
        c->anchor = (uintptr_t)cf;
        c->resume = cf->previous->current_frame;
    }
#endif
#else
    /* 3.11: each activation's _PyCFrame (on its C stack) holds the frame it
     * runs now; its frames end where the caller activation's begin.  The
     * thread's root _PyCFrame (no previous) belongs to no activation. */
    const _PyCFrame *cf = (const _PyCFrame *)c->cframe;
    if (!cf || bad_pointer(cf) || !cf->previous || bad_pointer(cf->previous))
        return 0;
    c->frame = cf->current_frame;
    c->stop = cf->previous->current_frame;
    c->anchor = (uintptr_t)cf;
    /* An activation being entered publishes its _PyCFrame before the frame
     * it runs: its current_frame is stale for a few instructions, and its
     * chain does not come to the caller's.  It runs no frame yet. */
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)c->frame;
    size_t links = c->links;
    while (f && f != c->stop && !bad_pointer(f) && links < c->max_links) {
        f = f->previous;
        links++;
    }
    if (f != c->stop)
        c->frame = c->stop;
#endif
    c->peeked = 1;
    *anchor = c->anchor;
    return 1;
}

int vmp_frames_emit_group(vmp_frames_cursor *c, uint64_t *out, int max, int *cut)
{
    *cut = 0;
    uintptr_t anchor;
    if (!vmp_frames_next_group(c, &anchor))
        return 0;
    size_t n = 0, w = frame_words(c->with_lines);
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)c->frame;
    for (; f && f != c->stop && !bad_pointer(f) && c->links < c->max_links; f = f->previous, c->links++) {
        PyCodeObject *code = running_code(f);
        if (!code)
            continue;
        if (n + w > (size_t)max) {
            *cut = 1;
            break;
        }
        n = put_frame(out, n, code, frame_line(f, code, c->with_lines), c->with_lines);
    }
    c->peeked = 0;
    c->links++;
#if PY_VERSION_HEX >= 0x030C0000
    c->frame = c->resume;
#else
    c->cframe = ((const _PyCFrame *)c->cframe)->previous;
#endif
    return (int)n;
}
#endif
#else
size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines)
{
    (void)ts, (void)out, (void)max_frames, (void)with_lines;
    return 0;
}

void vmp_frames_cursor_start(vmp_frames_cursor *c, PyThreadState *ts, size_t max_frames,
                             int with_lines)
{
    (void)ts, (void)max_frames, (void)with_lines;
    memset(c, 0, sizeof *c);
    c->count = -1;
}

int vmp_frames_next_group(vmp_frames_cursor *c, uintptr_t *anchor)
{
    (void)c, (void)anchor;
    return 0;
}

int vmp_frames_emit_group(vmp_frames_cursor *c, uint64_t *out, int max, int *cut)
{
    (void)c, (void)out, (void)max;
    *cut = 0;
    return 0;
}
#endif

/* faulthandler's settings live in _PyRuntime from 3.12; before, in statics
 * of faulthandler.c that nothing outside it can read. */
#if PY_VERSION_HEX >= 0x030C0000 && !defined(VMP_FRAMES_UNSUPPORTED)
int vmp_frames_faulthandler_hold(vmp_frames_faulthandler *held)
{
    memset(held, 0, sizeof *held);
    if (!_PyRuntime.faulthandler.fatal_error.enabled)
        return 0;
    PyObject *fh = PyImport_ImportModule("faulthandler");
    if (!fh) {
        PyErr_Clear();
        return 0;
    }
    held->module = fh;
    held->file = _PyRuntime.faulthandler.fatal_error.file;
    Py_XINCREF(held->file);
    held->fd = _PyRuntime.faulthandler.fatal_error.fd;
    held->all_threads = _PyRuntime.faulthandler.fatal_error.all_threads;
    held->interp = _PyRuntime.faulthandler.fatal_error.interp;
    PyObject *r = PyObject_CallMethod(fh, "disable", NULL);
    if (!r || _PyRuntime.faulthandler.fatal_error.enabled) {
        PyErr_Clear();
        Py_XDECREF(r);
        Py_XDECREF(held->file);
        Py_DECREF(fh);
        memset(held, 0, sizeof *held);
        return 0;
    }
    Py_DECREF(r);
    return 1;
}

int vmp_frames_faulthandler_give_back(vmp_frames_faulthandler *held)
{
    if (!held->module)
        return 0;
    /* By its number: enable(file=f) would also flush f; the file itself
     * is put back below, as enable() keeps it (it keeps the number open). */
    PyObject *r = PyObject_CallMethod(held->module, "enable", "(ii)", held->fd, held->all_threads);
    int ok = r && _PyRuntime.faulthandler.fatal_error.enabled;
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
    if (ok) {
        PyObject *was = _PyRuntime.faulthandler.fatal_error.file;
        _PyRuntime.faulthandler.fatal_error.file = held->file; /* (our reference, handed over) */
        _PyRuntime.faulthandler.fatal_error.interp = held->interp;
        Py_XDECREF(was);
    } else {
        Py_XDECREF(held->file);
    }
    Py_DECREF(held->module);
    memset(held, 0, sizeof *held);
    return ok ? 1 : -1;
}
#else
int vmp_frames_faulthandler_hold(vmp_frames_faulthandler *held)
{
    memset(held, 0, sizeof *held);
    return 0;
}

int vmp_frames_faulthandler_give_back(vmp_frames_faulthandler *held)
{
    (void)held;
    return 0;
}
#endif
