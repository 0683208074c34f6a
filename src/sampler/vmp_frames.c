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

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h>
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

#ifndef VMP_FRAMES_UNSUPPORTED
#if PY_VERSION_HEX < 0x030B0000
/* 3.8-3.10: a chain of frame objects from tstate->frame through f_back.
 * Each frame runs in its own C call of the evaluation loop, so with `last`
 * every frame ends its activation.  Inlined, so that vmp_frames_walk (last
 * NULL) pays nothing for the native mode's marks. */
static inline __attribute__((always_inline)) size_t
walk_frames(PyThreadState *ts, uint64_t *out, unsigned char *last, size_t max_frames, int with_lines)
{
    size_t n = 0, frames = 0, links = 0;
    for (PyFrameObject *f = ts->frame; f && frames < max_frames && links < max_links(max_frames);
         f = f->f_back, links++) {
        if ((uintptr_t)f & (sizeof(void *) - 1) || (uintptr_t)f < 4096)
            break; /* not a frame (see vmp_frames_walk for 3.11+) */
        PyCodeObject *code = f->f_code;
        if (!code || Py_TYPE(code) != &PyCode_Type)
            continue;
        int line = 0;
        if (with_lines) {
#if PY_VERSION_HEX >= 0x030A0000
            line = line_of(code, f->f_lasti < 0 ? -1 : f->f_lasti * 2); /* 3.10 counts code units */
#else
            line = line_of(code, f->f_lasti);
#endif
        }
        if (last)
            last[frames] = 1;
        n = put_frame(out, n, code, line, with_lines);
        frames++;
    }
    return n;
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
    if ((uintptr_t)code & (sizeof(void *) - 1) || (uintptr_t)code < 4096)
        return NULL;
    return Py_TYPE(code) == &PyCode_Type ? (PyCodeObject *)code : NULL;
}

/* With `last`, marks the outermost frame of each C activation of the
 * evaluation loop: 3.11 flags it (is_entry); from 3.12 a C-stack-owned shim
 * frame lies just outside it. */
static inline __attribute__((always_inline)) size_t
walk_frames(PyThreadState *ts, uint64_t *out, unsigned char *last, size_t max_frames, int with_lines)
{
    size_t n = 0, frames = 0, links = 0;
    for (_PyInterpreterFrame *f = current_frame(ts); f && frames < max_frames && links < max_links(max_frames);
         f = f->previous, links++) {
        /* A frame being pushed may be linked before it is written (see the
         * fault guard in vmp_guard.c): stop at a pointer no frame has. */
        if ((uintptr_t)f & (sizeof(void *) - 1) || (uintptr_t)f < 4096)
            break;
#if PY_VERSION_HEX >= 0x030C0000
        if (f->owner == FRAME_OWNED_BY_CSTACK) {
            if (last && frames > 0)
                last[frames - 1] = 1;
            continue; /* the shim each C-level eval call pushes, not a function */
        }
#endif
        PyCodeObject *code = frame_code(f);
        if (!code || _PyFrame_IsIncomplete(f))
            continue;
        int line = 0;
        if (with_lines)
            line = line_of(code, _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT));
        if (last) {
#if PY_VERSION_HEX >= 0x030C0000
            last[frames] = 0;
#else
            last[frames] = f->is_entry;
#endif
        }
        n = put_frame(out, n, code, line, with_lines);
        frames++;
    }
    if (last && frames > 0)
        last[frames - 1] = 1;
    return n;
}
#endif

size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines)
{
    return walk_frames(ts, out, NULL, max_frames, with_lines);
}

size_t vmp_frames_walk_marked(PyThreadState *ts, uint64_t *out, unsigned char *last,
                              size_t max_frames, int with_lines)
{
    return walk_frames(ts, out, last, max_frames, with_lines);
}
#else
size_t vmp_frames_walk(PyThreadState *ts, uint64_t *out, size_t max_frames, int with_lines)
{
    (void)ts, (void)out, (void)max_frames, (void)with_lines;
    return 0;
}

size_t vmp_frames_walk_marked(PyThreadState *ts, uint64_t *out, unsigned char *last,
                              size_t max_frames, int with_lines)
{
    (void)ts, (void)out, (void)last, (void)max_frames, (void)with_lines;
    return 0;
}
#endif
