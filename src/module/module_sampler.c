/* module_sampler.c - bindings for the sampler (src/sampler/vmp_sampler.h):
 * the functions vmprof/profiler.py builds the public API on.
 *
 * The sampler is built where the build defines VMP_HAVE_SAMPLER (meson.build
 * decides, from the platform: Linux).  Elsewhere the module still reads,
 * shows and exports profiles, and enable() says in one line why it cannot
 * sample (see the end of this file). */
#include "module.h"

#ifdef VMP_HAVE_SAMPLER

#include <dlfcn.h>

#include "vmp_format.h"
#include "vmp_sampler.h"
#include "vmp_handler.h" /* (a hook for tests) */
#include "vmp_writer.h" /* (a hook for tests) */
#include "vmp_native_mode.h" /* (a figure for tests) */
#include "vmp_timer_thread.h" /* (a hook for tests) */

/* os.fork and os.forkpty on 3.12+: our threads are stopped until the fork
 * returned, so that CPython's count of the process's threads does not warn
 * for them (vmp_sampler_before_py_fork).
 * Before os.exec* replaces the program, sampling stops and the profile is
 * written out (samples, names), so that no signal of ours is on its way to
 * the new program and the file can be read; when the exec fails, sampling
 * resumes by itself (vmp_sampler_before_exec).  An audit hook is the one
 * place Python tells about every exec (os.execv, os.execve and the functions
 * built on them); it stays for the process's life and costs a compare per
 * event.  It never fails: a hook's error would stop the exec. */
static int exec_audit_hook(const char *event, PyObject *args, void *data)
{
    (void)args, (void)data;
    if (strcmp(event, "os.exec") == 0)
        vmp_sampler_before_exec();
#if PY_VERSION_HEX >= 0x030C0000 /* (before, os.fork counts no threads: nothing to do) */
    else if (strcmp(event, "os.fork") == 0 || strcmp(event, "os.forkpty") == 0)
        vmp_sampler_before_py_fork();
#endif
    return 0;
}

static int exec_hook_added;

static void add_exec_hook(void)
{
    if (exec_hook_added)
        return;
    /* (Refused only when a hook of the program's forbids adding hooks; the
     * profiling signal's default action is harmless even then.) */
    if (PySys_AddAuditHook(exec_audit_hook, NULL) < 0)
        PyErr_Clear();
    else
        exec_hook_added = 1;
}

static PyObject *sampler_enable(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"fileno", "period", "memory", "lines", "real_time", "meta", "native", NULL};
    int fd, memory = 0, lines = 0, real_time = 0, native = 0;
    double period;
    PyObject *meta = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "id|pppOp", kwlist, &fd, &period, &memory, &lines,
                                     &real_time, &meta, &native))
        return NULL;
    PyObject *seq = NULL;
    const char **pairs = NULL;
    Py_ssize_t n = 0;
    if (meta && meta != Py_None) {
        seq = PySequence_Fast(meta, "meta must be a sequence of (key, value) string pairs");
        if (!seq)
            return NULL;
        n = PySequence_Fast_GET_SIZE(seq);
        pairs = PyMem_Calloc((size_t)(2 * n + 1), sizeof *pairs);
        if (!pairs) {
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
                !(pairs[2 * i] = PyUnicode_AsUTF8(PyTuple_GET_ITEM(item, 0))) ||
                !(pairs[2 * i + 1] = PyUnicode_AsUTF8(PyTuple_GET_ITEM(item, 1)))) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "meta must be a sequence of (key, value) string pairs");
                PyMem_Free(pairs);
                Py_DECREF(seq);
                return NULL;
            }
        }
    }
    vmp_sampler_config cfg = {.fd = fd, .period = period, .memory = memory, .lines = lines,
                              .real_time = real_time, .native = native, .meta = pairs, .n_meta = (size_t)n};
    char err[512];
    int rc = vmp_sampler_enable(&cfg, err, sizeof err);
    PyMem_Free(pairs);
    Py_XDECREF(seq);
    if (rc < 0) {
        PyErr_SetString(vmp_module_error, err);
        return NULL;
    }
    add_exec_hook();
    Py_RETURN_NONE;
}

static PyObject *sampler_disable(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    vmp_sampler_stats st = {0};
    char err[512];
    if (vmp_sampler_disable(&st, err, sizeof err) < 0) {
        PyErr_SetString(vmp_module_error, err);
        return NULL;
    }
    PyObject *stats = Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsi}", "samples", (unsigned long long)st.samples, "dropped",
                         (unsigned long long)st.dropped, "signals_sent", (unsigned long long)st.signals_sent,
                         "samples_repeated", (unsigned long long)st.samples_repeated,
                         "periods", (unsigned long long)st.periods, "periods_late",
                         (unsigned long long)st.periods_late, "untracked_codes",
                         (unsigned long long)st.untracked_codes, "walk_faults",
                         (unsigned long long)st.walk_faults, "names_lost",
                         (unsigned long long)st.names_lost, "threads_max", (unsigned long long)st.threads_max,
                         "threads_blocking_signal", (unsigned long long)st.threads_blocking,
                         "samples_blocking_signal", (unsigned long long)st.samples_blocking,
                         "samples_cut", (unsigned long long)st.samples_cut, "unwind_pcs_learned",
                         (unsigned long long)st.unwind_pcs_learned, "unwind_pcs_libdw",
                         (unsigned long long)st.unwind_pcs_libdw,
                         "not_python_answers", (unsigned long long)st.not_python, "sampler_rounds",
                         (unsigned long long)st.sampler_rounds, "writer_rounds",
                         (unsigned long long)st.writer_rounds, "bytes_allocated_ahead",
                         (unsigned long long)st.allocated_ahead, "clock_reads",
                         (unsigned long long)st.clock_reads, "polls", (unsigned long long)st.polls, "cold_polls",
                         (unsigned long long)st.cold_polls, "listings",
                         (unsigned long long)st.listings, "births_read", (unsigned long long)st.births_read, "deaths_read", (unsigned long long)st.deaths_read, "unseen_waits", (unsigned long long)st.unseen_waits, "visits", (unsigned long long)st.visits, "first_samples",
                         (unsigned long long)st.first_samples, "first_sample_periods",
                         (unsigned long long)st.first_sample_periods, "sources_opened",
                         (unsigned long long)st.sources_opened, "handlers_still_running",
                         (unsigned long long)st.handlers_left, "slots_given_up",
                         (unsigned long long)st.slots_given_up, "signal",
                         st.signo);
    /* (None: the program never replaced our handler) */
    PyObject *taken = Py_None;
    if (st.signal_taken_ms >= 0)
        taken = PyLong_FromLongLong(st.signal_taken_ms);
    else
        Py_INCREF(taken);
    if (stats && (!taken || PyDict_SetItemString(stats, "signal_taken_over_ms", taken) < 0))
        Py_CLEAR(stats);
    Py_XDECREF(taken);
    return stats;
}

static PyObject *sampler_is_enabled(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    return PyBool_FromLong(vmp_sampler_is_enabled());
}

static PyObject *sampler_fileno(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    return PyLong_FromLong(vmp_sampler_fd());
}

static PyObject *sampler_stop_sampling(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    vmp_sampler_pause();
    return PyLong_FromLong(vmp_sampler_fd());
}

static PyObject *sampler_start_sampling(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    vmp_sampler_resume();
    Py_RETURN_NONE;
}

static PyObject *sampler_stack_now(PyObject *self, PyObject *args)
{
    (void)self;
    int skip = 0;
    if (!PyArg_ParseTuple(args, "|i", &skip))
        return NULL;
    static uint64_t words[VMP_MAX_DEPTH_WRITTEN];
    size_t n = vmp_sampler_stack_now(words, VMP_MAX_DEPTH_WRITTEN);
    PyObject *list = PyList_New(0);
    for (size_t i = (size_t)(skip > 0 ? skip : 0); list && i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(words[i]);
        if (!v || PyList_Append(list, v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(v);
    }
    return list;
}

static PyObject *sampler_resolve_addr(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long addr;
    if (!PyArg_ParseTuple(args, "K", &addr))
        return NULL;
    Dl_info info;
    if (!dladdr((void *)(uintptr_t)(addr & ~(unsigned long long)VMP_NATIVE_BIT), &info) || !info.dli_sname)
        Py_RETURN_NONE;
    return Py_BuildValue("(sis)", info.dli_sname, 0, info.dli_fname ? info.dli_fname : "-");
}

static PyObject *sampler_guard_selftest(PyObject *self, PyObject *args)
{
    (void)self;
    int nested = 0;
    if (!PyArg_ParseTuple(args, "|p", &nested))
        return NULL;
    return PyLong_FromLong(vmp_sampler_guard_selftest(nested));
}

static PyObject *sampler_writer_hold_at_empty(PyObject *self, PyObject *args)
{
    (void)self;
    int on, after_look = 0;
    if (!PyArg_ParseTuple(args, "p|p", &on, &after_look))
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = vmp_writer_test_hold_at_empty(!on ? 0 : after_look ? VMP_WRITER_HOLD_AFTER_LOOK : VMP_WRITER_HOLD_AT_EMPTY,
                                       5000000000LL);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(rc == 0);
}

static PyObject *sampler_writer_stall_next_name(PyObject *self, PyObject *args)
{
    (void)self;
    double seconds = 0;
    if (!PyArg_ParseTuple(args, "|d", &seconds))
        return NULL;
    return PyLong_FromLong(vmp_writer_test_stall_next_name((int64_t)(seconds * 1e9)));
}

static PyObject *sampler_writer_stalls(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    int c[3];
    vmp_writer_test_stalls(c);
    return Py_BuildValue("(iii)", c[0], c[1], c[2]);
}

static PyObject *sampler_writer_lost_room(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long n;
    if (!PyArg_ParseTuple(args, "K", &n))
        return NULL;
    vmp_writer_test_lost_room((uint64_t)n);
    Py_RETURN_NONE;
}

static PyObject *sampler_handler_hold(PyObject *self, PyObject *args)
{
    (void)self;
    int what = -1;
    if (!PyArg_ParseTuple(args, "|i", &what))
        return NULL;
    return PyLong_FromLong(vmp_handler_test_hold(what < 0 ? -1 : what ? 1 : 0));
}

static PyObject *sampler_handler_hold_busy(PyObject *self, PyObject *args)
{
    (void)self;
    double seconds;
    if (!PyArg_ParseTuple(args, "d", &seconds))
        return NULL;
    int state;
    Py_BEGIN_ALLOW_THREADS
    state = vmp_handler_test_hold_busy((int64_t)(seconds * 1e9));
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(state);
}

static PyObject *sampler_writer_give_ups(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    uint64_t c[2];
    vmp_writer_test_give_ups(c);
    return Py_BuildValue("(KK)", (unsigned long long)c[0], (unsigned long long)c[1]);
}

static PyObject *sampler_fork_waits_in_vain(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromUnsignedLongLong(vmp_sampler_test_fork_waits_in_vain());
}

static PyObject *sampler_fork_stops(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    uint64_t c[3];
    vmp_sampler_test_fork_stops(c);
    return Py_BuildValue("(KKK)", (unsigned long long)c[0], (unsigned long long)c[1], (unsigned long long)c[2]);
}

static PyObject *sampler_writer_sessions(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromSize_t(vmp_native_mode_test_sessions_opened());
}

static PyObject *sampler_native_starts_fail(PyObject *self, PyObject *args)
{
    (void)self;
    int on;
    if (!PyArg_ParseTuple(args, "p", &on))
        return NULL;
    vmp_native_mode_test_starts_fail(on);
    Py_RETURN_NONE;
}

static PyObject *sampler_sampler_naps(PyObject *self, PyObject *args)
{
    (void)self;
    double start, stop;
    if (!PyArg_ParseTuple(args, "dd", &start, &stop))
        return NULL;
    vmp_timer_thread_test_naps((int64_t)(start * 1e9), (int64_t)(stop * 1e9));
    Py_RETURN_NONE;
}

static PyMethodDef sampler_methods[] = {
    {"_sampler_naps", sampler_sampler_naps, METH_VARARGS,
     "_sampler_naps(start, stop), tests only: the next sampler thread naps `start` seconds once right after "
     "its start's baseline (enable() waits for it) and `stop` seconds once when disable() woke it, before "
     "the stop's reading (disable() waits for it), as a sampler thread a loaded machine keeps from a CPU."},
    {"_native_starts_fail", sampler_native_starts_fail, METH_VARARGS,
     "_native_starts_fail(on), tests only: while on, native mode's map of the pcs met cannot grow, as if "
     "memory were short (every pc it has not met then gets the out-of-memory fallback id)."},
    {"_writer_sessions", sampler_writer_sessions, METH_NOARGS,
     "_writer_sessions(), tests only: how often native mode's writer opened a libdw session of its own "
     "in this run (or the last): once, and again after a fork's pause only when it needed one."},
    {"_fork_stops", sampler_fork_stops, METH_NOARGS,
     "_fork_stops(), tests only: (stopped, refused, gap_ns): os.fork calls (3.12+) before which the "
     "profiler's threads were stopped so that CPython's thread count does not warn for them, those where "
     "they could not be (a busy writer), and how long they were stopped in all."},
    {"_writer_give_ups", sampler_writer_give_ups, METH_NOARGS,
     "_writer_give_ups(), tests only: (after_waiting, at_once) ring slots the writer gave up on in this run "
     "(or the last): their producer stayed between its claim and its publish for the bound, or was left "
     "behind by a stop that waited for it already."},
    {"_fork_waits_in_vain", sampler_fork_waits_in_vain, METH_NOARGS,
     "_fork_waits_in_vain(), tests only: forks taken while enabled whose wait for the signal handlers "
     "in flight ended on its bound."},
    {"_handler_hold_busy", sampler_handler_hold_busy, METH_VARARGS,
     "_handler_hold_busy(seconds), tests only: computes without the GIL, the next handler of the profiling "
     "signal that interrupts it held inside (see _handler_hold), until that handler has returned or seconds "
     "passed.  Returns the state."},
    {"_handler_hold", sampler_handler_hold, METH_VARARGS,
     "_handler_hold(what=-1), tests only: 1 arms the hold of _handler_hold_busy's handler "
     "inside (after its ring slot is claimed; in native mode inside the native walk) as a thread stopped "
     "there would stay, 0 releases it, -1 asks.  Returns 0 (none), 1 (armed), 2 (held), 3 (released) or "
     "4 (the held handler returned)."},
    {"_guard_selftest", sampler_guard_selftest, METH_VARARGS,
     "_guard_selftest(nested=False), tests only: 1 when a fault under the sampler's guard is caught "
     "(while enabled)."},
    {"_writer_hold_at_empty", sampler_writer_hold_at_empty, METH_VARARGS,
     "_writer_hold_at_empty(on, after_look=False), tests only: True once the writer waits where it next "
     "finds the ring empty (on), or with after_look at its next round's start, once native mode looked at the "
     "loader, until called with False."},
    {"_writer_stall_next_name", sampler_writer_stall_next_name, METH_VARARGS,
     "_writer_stall_next_name(seconds=0), tests only: with seconds, the next name of a dying code object "
     "this thread pushes waits that long (without the GIL) between its claim of a ring slot and its "
     "publish.  Returns 0 (not asked this run), 1 (asked), 2 (waiting), 3 (done) or 4 (done, and its "
     "publish refused: the writer gave the slot up meanwhile)."},
    {"_writer_stalls", sampler_writer_stalls, METH_NOARGS,
     "_writer_stalls(), tests only: (waiting, done, refused) of the stalls _writer_stall_next_name asked, "
     "of every thread so far."},
    {"_writer_lost_room", sampler_writer_lost_room, METH_VARARGS,
     "_writer_lost_room(n), tests only: in this run, the writer keeps at most n lost names not yet "
     "retired (0: as many as it can)."},
    {"enable", (PyCFunction)(void (*)(void))sampler_enable, METH_VARARGS | METH_KEYWORDS,
     "enable(fileno, period, memory=False, lines=False, real_time=False, meta=(), native=False): "
     "start the sampler."},
    {"disable", sampler_disable, METH_NOARGS, "disable() -> dict of figures: stop and finish the profile."},
    {"is_enabled", sampler_is_enabled, METH_NOARGS, "True while the sampler runs."},
    {"profile_fileno", sampler_fileno, METH_NOARGS, "The profile's fd, or -1 when not enabled."},
    {"stop_sampling", sampler_stop_sampling, METH_NOARGS, "Pause recording (nests); returns the fd or -1."},
    {"start_sampling", sampler_start_sampling, METH_NOARGS, "Undo one stop_sampling()."},
    {"sample_stack_now", sampler_stack_now, METH_VARARGS,
     "sample_stack_now(skip=0) -> list of code-object addresses, innermost first."},
    {"resolve_addr", sampler_resolve_addr, METH_VARARGS,
     "resolve_addr(addr) -> (name, line, file) of a native symbol, or None."},
    {NULL, NULL, 0, NULL},
};

int vmp_module_init_sampler(PyObject *module)
{
    return PyModule_AddFunctions(module, sampler_methods);
}

#else /* !VMP_HAVE_SAMPLER */

static PyObject *sampler_unavailable(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self, (void)args, (void)kw;
    PyErr_SetString(vmp_module_error,
                    "vmprof cannot sample here: this build has no sampler, which needs Linux "
                    "with libdw and libelf (Debian: apt install libdw-dev, then reinstall "
                    "vmprof; read_profile, vmprofshow and the exports work)");
    return NULL;
}

static PyObject *sampler_off(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    Py_RETURN_FALSE;
}

static PyObject *sampler_no_fd(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    return PyLong_FromLong(-1);
}

#define UNAVAILABLE(name) \
    {name, (PyCFunction)(void (*)(void))sampler_unavailable, METH_VARARGS | METH_KEYWORDS, \
     "Not available: vmprof's sampler runs on Linux only."}
static PyMethodDef sampler_methods[] = {
    UNAVAILABLE("enable"),
    UNAVAILABLE("disable"),
    UNAVAILABLE("start_sampling"),
    UNAVAILABLE("sample_stack_now"),
    UNAVAILABLE("resolve_addr"),
    UNAVAILABLE("_guard_selftest"),
    UNAVAILABLE("_handler_hold"),
    UNAVAILABLE("_handler_hold_busy"),
    UNAVAILABLE("_writer_hold_at_empty"),
    UNAVAILABLE("_writer_stall_next_name"),
    UNAVAILABLE("_writer_stalls"),
    UNAVAILABLE("_writer_lost_room"),
    UNAVAILABLE("_writer_give_ups"),
    UNAVAILABLE("_fork_waits_in_vain"),
    UNAVAILABLE("_fork_stops"),
    UNAVAILABLE("_writer_sessions"),
    UNAVAILABLE("_native_starts_fail"),
    {"is_enabled", sampler_off, METH_NOARGS, "False: there is no sampler on this platform."},
    {"profile_fileno", sampler_no_fd, METH_NOARGS, "-1: there is no sampler on this platform."},
    {"stop_sampling", sampler_no_fd, METH_NOARGS, "-1: there is no sampler on this platform."},
    {NULL, NULL, 0, NULL},
};
#undef UNAVAILABLE

int vmp_module_init_sampler(PyObject *module)
{
    return PyModule_AddFunctions(module, sampler_methods);
}

#endif /* VMP_HAVE_SAMPLER */
