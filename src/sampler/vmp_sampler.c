/*
 * vmp_sampler.c - the run's lifecycle: enable, disable, pause, fork (the
 * contract is vmp_sampler.h; vmp_run.h lists the other parts).
 *
 * enable sets up in this order, and a failure undoes exactly what was done,
 * in reverse, through one path: native mode (before anything is written, so
 * that Python frames alone can still be recorded into the same file), the
 * profile's head, the writer's buffers, code tracking, the fault guard and
 * the signal handler, the writer thread, the sampler thread.
 *
 * disable stops the sampler thread first (no new signal), waits for the
 * signals already sent, stops recording, names the live code objects and
 * lets the writer finish the file.
 */
#include "vmp_frames.h" /* Python.h first: it sets the feature macros (_GNU_SOURCE) */
#include "vmp_sampler.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmp_codes.h"
#include "vmp_guard.h"
#include "vmp_handler.h"
#include "vmp_native_mode.h"
#include "vmp_ring.h"
#include "vmp_run.h"
#include "vmp_timer_thread.h"
#include "vmp_writer.h"

#define VMP_MIN_PERIOD 0.00001 /* 100 kHz: beyond it the signals alone saturate a core */

vmp_run_state vmp_run = {.fd = -1, .statm_fd = -1};

static int atfork_registered;
static int timer_running; /* GIL-protected: the sampler thread runs (not stopped for an exec) */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int vmp_run_start_thread(pthread_t *th, void *(*fn)(void *))
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(th, NULL, fn, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int vmp_run_writer_hopeless(void)
{
    return atomic_load(&vmp_run.stopping_for_exec) && vmp_writer_stuck_ns() >= VMP_EXEC_STUCK_NS;
}

/* fork while profiling: before it, handlers stop recording and the ones in
 * flight finish, and the writer is held between two cycles, so that the
 * child inherits no lock taken by a thread it does not have (the loader's,
 * libdw's) and no half-written slot. */
static int held_for_fork;
static int64_t enabled_at; /* (for signal_taken_ms when the sampler thread had not seen it yet) */

/* The program took the signal over and the sampler thread has not said so
 * yet: the time is noted as it would have noted it (META's
 * signal_taken_over_ms), unless noted already. */
static void note_signal_taken(void)
{
    int64_t none = -1;
    atomic_compare_exchange_strong(&vmp_run.signal_taken_ms, &none, (vmp_mono_ns() - enabled_at) / 1000000);
}

/* Whether the signal is still ours to take, at a stop that may be undone
 * (exec, fork): not when the sampler thread found the program's handler
 * on it and ended, nor when the program installed one it had not seen
 * yet (it looks every 1 ms; then the time is noted here, as it would
 * have: META's signal_taken_over_ms).  GIL held. */
static int signal_still_ours(void)
{
    if (atomic_load(&vmp_run.signal_taken_ms) >= 0)
        return 0;
    if (vmp_handler_is_ours())
        return 1;
    note_signal_taken();
    return 0;
}

/* At a restart after such a stop: whether the program left the signal as
 * the stop left it (else it installed a handler meanwhile, noted as
 * above; ours must not replace it). */
static int signal_left_alone(void)
{
    if (vmp_handler_left_alone())
        return 1;
    note_signal_taken();
    return 0;
}
#if PY_VERSION_HEX >= 0x030C0000
/* os.fork on 3.12+ (below, vmp_sampler_before_py_fork): our threads are
 * stopped until it returned; the writer's has ended, the run goes on. */
static int stopped_for_fork, writer_paused; /* GIL-protected */
#endif
/* Tests only (vmp_sampler_test_fork_waits_in_vain): forks whose wait for
 * the handlers in flight ended on its bound. */
static _Atomic uint64_t fork_waits_in_vain;

static void before_fork(void)
{
    if (!vmp_run.enabled)
        return;
    atomic_store(&vmp_run.forking, 1);
    held_for_fork = vmp_writer_hold(2000000000LL) == 0;
    /* The handlers of the current era only: one a stop left behind
     * (vmp_run.handlers) records nothing more, and may never return; it
     * held every fork of the program up the whole bound. */
    int64_t deadline = vmp_mono_ns() + 100000000LL;
    while (vmp_handlers_inside() && vmp_mono_ns() < deadline)
        vmp_sleep_ns(10000);
    if (vmp_handlers_inside())
        atomic_fetch_add(&fork_waits_in_vain, 1);
}

uint64_t vmp_sampler_test_fork_waits_in_vain(void)
{
    return atomic_load(&fork_waits_in_vain);
}

static void after_fork_parent(void)
{
    if (held_for_fork)
        vmp_writer_unhold();
    held_for_fork = 0;
    atomic_store(&vmp_run.forking, 0);
}

static void after_fork_child(void)
{
    /* The child has none of our threads and must never write into the
     * parent's profile: forget the run, freeing nothing the parent's threads
     * may have been changing, so that the child may start its own. */
    vmp_delivery_forget_tid(); /* this thread has a new tid here, profiling or not */
    held_for_fork = 0;
    atomic_store(&vmp_run.forking, 0);
#if PY_VERSION_HEX >= 0x030C0000
    stopped_for_fork = writer_paused = 0; /* (the parent's threads: the child has none) */
#endif
    if (!vmp_run.enabled)
        return;
    atomic_store(&vmp_run.active, 0);
    vmp_handler_uninstall();
    vmp_guard_restore();
    vmp_codes_abandon();
    /* (handlers of threads the child does not have, left behind or not) */
    atomic_store(&vmp_run.handlers, VMP_HANDLERS_ERA(atomic_load(&vmp_run.handlers)) << 32);
    atomic_store(&vmp_run.handlers_behind, 0);
    vmp_ring_reset(1);
    vmp_writer_after_fork_child();
    if (vmp_run.statm_fd >= 0 && !vmp_run.delivery.own_table)
        close(vmp_run.statm_fd); /* (the sampler thread's own table: not copied) */
    vmp_run.statm_fd = -1;
    vmp_run.enabled = 0;
    vmp_run.disabling = 0;
    vmp_run.paused_for_exec = 0;
    atomic_store(&vmp_run.stopping_for_exec, 0);
    timer_running = 0; /* (the parent's thread) */
    if (vmp_run.native)
        vmp_native_mode_after_fork_child(); /* forgotten, not freed; a new enable renews it */
    vmp_run.native = 0;
    vmp_run.fd = -1;
}

/* Undoes vmp_native_mode_start; with handler_inside, freeing nothing a
 * handler's walk may read. */
static void native_abandon(int handler_inside)
{
    if (vmp_run.native) {
        if (handler_inside)
            vmp_native_mode_abandon();
        else
            vmp_native_mode_stop();
    }
    vmp_run.native = 0;
}

/* Checks what needs no undoing.  0, or -1 with the reason in err. */
static int check_config(const vmp_sampler_config *cfg, char *err, size_t errlen)
{
    const char *why;
    if (vmp_run.enabled)
        return fail(err, errlen, "vmprof is already enabled: call vmprof.disable() before enabling again");
    if (!vmp_frames_supported(&why))
        return fail(err, errlen, "%s", why);
#ifdef Py_GIL_DISABLED
    return fail(err, errlen, "vmprof cannot sample a free-threaded CPython build: use a build with the GIL");
#endif
    if (PyThreadState_Get()->interp != PyInterpreterState_Main())
        return fail(err, errlen,
                    "vmprof cannot sample from a sub-interpreter: it samples every thread of the process and "
                    "names the main interpreter's code; call vmprof.enable() in the main interpreter");
    if (!(cfg->period > 0 && cfg->period < 1))
        return fail(err, errlen,
                    "period must be above 0 and below 1 second (got %g): e.g. 0.001 for 1000 samples a second",
                    cfg->period);
    if (cfg->period < VMP_MIN_PERIOD)
        return fail(err, errlen, "period %g s is shorter than the 10 microseconds vmprof can sample at: use %g or more",
                    cfg->period, VMP_MIN_PERIOD);
    int flags = fcntl(cfg->fd, F_GETFL);
    if (flags < 0)
        return fail(err, errlen, "file descriptor %d is not open: pass the fileno() of a file opened for writing",
                    cfg->fd);
    if ((flags & O_ACCMODE) == O_RDONLY)
        return fail(err, errlen, "file descriptor %d is open for reading only: open the profile file for writing ('wb')",
                    cfg->fd);
    return 0;
}

/* The reason vmp_codes_start gave (its Python exception, cleared). */
static void code_tracking_failed(char *err, size_t errlen)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *why = text ? PyUnicode_AsUTF8(text) : NULL;
    fail(err, errlen, "vmprof cannot follow the program's code objects (%s)", why ? why : "unknown reason");
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* Whether the sampler may use per-thread events (vmp_delivery.h); the
 * environment variable VMPROF_NO_PERF_EVENTS=1 keeps the per-period
 * schedule (where the events misbehave, and for the tests of that path). */
static int sources_allowed(void)
{
    const char *no = getenv("VMPROF_NO_PERF_EVENTS");
    return !(no && *no && strcmp(no, "0") != 0);
}

/* Sets the run's state for cfg (nothing is running yet). */
static void reset_run(const vmp_sampler_config *cfg, int signo)
{
    vmp_run.fd = cfg->fd;
    vmp_run.period_ns = llround(cfg->period * 1e9);
    vmp_run.memory = cfg->memory;
    vmp_run.lines = cfg->lines;
    vmp_run.real_time = cfg->real_time;
    vmp_run.pid = getpid();
    vmp_run.interp = PyInterpreterState_Main();
    vmp_run.signo = signo;
    vmp_ring_reset(0);
    atomic_store(&vmp_run.samples, 0);
    atomic_store(&vmp_run.dropped, 0);
    atomic_store(&vmp_run.received, 0);
    atomic_store(&vmp_run.names_lost, 0);
    atomic_store(&vmp_run.samples_cut, 0);
    atomic_store(&vmp_run.slots_given_up, 0);
    atomic_store(&vmp_run.write_errno, 0);
    atomic_store(&vmp_run.rss_kib, 0);
    atomic_store(&vmp_run.handlers_left, 0);
    atomic_store(&vmp_run.signal_taken_ms, -1);
    vmp_guard_reset_faults();
    vmp_run.delivery = (vmp_delivery){.period_ns = vmp_run.period_ns, .cpu_clock = !vmp_run.real_time,
                                      .signo = signo, .sources = sources_allowed(),
                                      .skip = {&vmp_run.sampler_tid, &vmp_run.writer_tid},
                                      .repeat = vmp_handler_repeat_sample, .paused = &vmp_run.paused,
                                      .room_in_vain = vmp_run_writer_hopeless,
                                      .n_python_tids = -1, .task_fd = -1,
                                      .rules_generation = cfg->native ? vmp_native_rules_generation : NULL,
                                      .stop = &vmp_run.sampler_stop,
                                      .quiet_rounds = !vmp_run.memory /* (the RSS is read each round) */};
    atomic_store(&vmp_run.sampler_tid, 0);
    atomic_store(&vmp_run.writer_tid, 0);
}

/* Wall clock, Python frames only: the stacks of the program's other threads
 * at enable(), read while it holds the GIL (none of them can change its
 * Python frames meanwhile), in the order of python_tids; the sampler
 * thread's start hands each to the writer as that thread's last sample
 * (vmp_delivery.h, "First samples"), so that none is woken by a probe to
 * be found where it waits.  Not in native mode: the C stack of another
 * thread cannot be read from here. */
static struct {
    uint64_t *words;     /* the stacks, one after the other */
    size_t *at;          /* thread i's: words[at[i] .. at[i + 1]) */
    uint64_t *thread_id;
    long n;
} First;

typedef struct first_walk {
    PyThreadState *ts;
    uint64_t *out;
    size_t n;
} first_walk;

static void walk_first(void *arg)
{
    first_walk *w = arg;
    w->n = vmp_frames_walk(w->ts, w->out, VMP_MAX_DEPTH_WRITTEN, vmp_run.lines);
}

static void first_forget(void)
{
    free(First.words);
    free(First.at);
    free(First.thread_id);
    First.words = NULL;
    First.at = NULL;
    First.thread_id = NULL;
    First.n = 0;
}

/* Reads the stacks of the n thread states of the interpreter after the
 * caller's (python_tids' order); the caller's own is left empty (it runs).
 * Nothing when memory is short: those threads are probed as before. */
static void first_read(long n)
{
    PyThreadState *me = PyThreadState_Get();
    uint64_t buf[VMP_SLOT_WORDS];
    size_t cap = 0, len = 0;
    First.at = calloc((size_t)n + 1, sizeof *First.at);
    First.thread_id = calloc((size_t)n + 1, sizeof *First.thread_id);
    if (!First.at || !First.thread_id) {
        first_forget();
        return;
    }
    long i = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead((PyInterpreterState *)vmp_run.interp); ts && i < n;
         ts = PyThreadState_Next(ts), i++) {
        First.at[i] = len;
        first_walk w = {ts, buf, 0};
        if (ts == me || vmp_guard_run(walk_first, &w) < 0 || w.n == 0)
            continue;
        if (len + w.n > cap) {
            size_t grown_cap = 2 * cap > len + w.n ? 2 * cap : len + w.n + 1024;
            uint64_t *grown = realloc(First.words, grown_cap * sizeof *grown);
            if (!grown)
                continue;
            First.words = grown;
            cap = grown_cap;
        }
        memcpy(First.words + len, buf, w.n * sizeof *buf);
        len += w.n;
        First.thread_id[i] = vmp_frames_thread_id(ts);
        /* (their names are written as any sampled code's) */
        for (size_t j = vmp_run.lines ? 1 : 0; j < w.n; j += vmp_run.lines ? 2 : 1)
            vmp_codes_note((uintptr_t)buf[j]);
    }
    for (; i <= n; i++)
        First.at[i] = len;
    First.n = n;
}

/* vmp_delivery's first_sample, on the sampler thread at its start: thread
 * i's stack into a slot of its own, for the writer to keep (weight 0: no
 * record is written for it; its repeats are). */
static int first_hand_over(long i, pid_t tid, uint32_t place)
{
    if (i < 0 || i >= First.n || First.at[i + 1] == First.at[i])
        return -1;
    vmp_slot *s = vmp_ring_claim();
    if (!s)
        return -1;
    size_t n = First.at[i + 1] - First.at[i];
    memcpy(vmp_slot_words(s, n), First.words + First.at[i], n * sizeof *s->data);
    s->kind = VMP_SLOT_SAMPLE;
    s->n = (uint32_t)n;
    s->weight = 0;
    s->from_ns = 0;
    s->tid = tid;
    s->place = place;
    s->thread_id = First.thread_id[i];
    s->rss_kib = atomic_load_explicit(&vmp_run.rss_kib, memory_order_relaxed);
    return vmp_ring_publish(s); /* (-1: given up, as a full ring) */
}

/* Why enable() and disable() sample themselves (vmp_handler_sample_here,
 * GIL held): the calling thread signals itself, and its handler, run as the
 * call returns, takes its sample there and pays what it is owed, as any
 * signal of ours would.  enable() and disable()
 * wait for the sampler thread (its start's baseline, the stop's reading),
 * 20 ms-1.5 s on a loaded machine that keeps it from a CPU.  Without this
 * sample, on the wall clock with per-thread events, that wait went to the
 * thread's first sample after enable() (the program's code, which paid
 * every period since the start's mark) and its last one before disable()
 * (the stop repeats a thread's last sample for the time it did not run).
 * Now those periods are enable()'s and disable()'s, where the thread
 * spent them (on that schedule the sample is kept even when it pays
 * nothing: vmp_handler_sample_here).  Elsewhere it changes nothing: per
 * period it pays only a signal the sampler thread sent
 * (vmp_delivery_take_owed), on the CPU clock only the CPU time since the
 * last sample (rounded: none, as a rule).  Not when the program took the
 * signal over (signal_still_ours). */
int vmp_sampler_enable(const vmp_sampler_config *cfg, char *err, size_t errlen)
{
    if (check_config(cfg, err, errlen) < 0)
        return -1;
    if (vmp_ring_map() < 0)
        return fail(err, errlen, "no memory for the sample buffer: %s", strerror(errno));
    int signo = vmp_handler_choose_signal();
    if (signo < 0)
        return fail(err, errlen, "every signal vmprof could use already has a handler: leave SIGURG or SIGPROF to vmprof");

    if (cfg->native && vmp_native_mode_start(err, errlen) < 0)
        return -1;
    vmp_run.native = cfg->native;
    unsigned mode = (cfg->memory ? VMP_MODE_MEMORY : 0) | (cfg->lines ? VMP_MODE_LINES : 0) |
                    (cfg->real_time ? VMP_MODE_REAL_TIME : 0) | (cfg->native ? VMP_MODE_NATIVE : 0);
    reset_run(cfg, signo);
    if (vmp_writer_prepare() < 0) {
        fail(err, errlen, "no memory for the write buffer");
        goto undo_native;
    }
    if (vmp_writer_write_head(cfg, mode) < 0) {
        fail(err, errlen, "the profile's header does not fit in the write buffer: pass shorter meta data");
        goto undo_native;
    }
    if (vmp_codes_start(vmp_writer_push_name) < 0) {
        code_tracking_failed(err, errlen);
        goto undo_native;
    }
    /* faulthandler enabled before: switched off while ours goes in, then on
     * again, so that what it puts back when Py_FatalError switches it off
     * before its abort() is ours (vmp_frames_faulthandler_hold), not the
     * SIG_DFL it found; then ours goes in front of it for SIGSEGV and SIGBUS
     * at once, as the rounds would put it (no signal of ours yet). */
    vmp_frames_faulthandler held_fh;
    int fh_held = vmp_frames_faulthandler_hold(&held_fh);
    vmp_guard_install(1);
    if (fh_held) {
        vmp_frames_faulthandler_give_back(&held_fh);
        vmp_guard_keep_first();
    }
    vmp_guard_on_fatal(vmp_writer_flush_before_death);
    if (vmp_handler_install() < 0) {
        fail(err, errlen, "cannot install the signal handler: %s", strerror(errno));
        goto undo_codes;
    }
    atomic_store(&vmp_run.paused, 0);
    atomic_store(&vmp_run.active, 1);
    int writer = vmp_writer_start();
    if (writer < 0) {
        if (writer == -2)
            fail(err, errlen, "cannot write the profile to file descriptor %d: %s (pass a file, or a pipe or socket that something reads)",
                 cfg->fd, strerror(errno));
        else
            fail(err, errlen, "cannot start the writer thread");
        goto undo_handler;
    }
    /* The threads that are Python's, read now (the GIL is held until the
     * sampler thread has taken its start): the others are never signalled
     * to learn that they are not (a signal cuts a C thread's sleep short). */
    size_t states = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead((PyInterpreterState *)vmp_run.interp); ts;
         ts = PyThreadState_Next(ts))
        states++;
    pid_t *python_tids = malloc((states + 1) * sizeof *python_tids);
    vmp_run.delivery.python_tids = python_tids;
    vmp_run.delivery.n_python_tids =
        python_tids ? vmp_frames_python_tids(vmp_run.interp, python_tids, states, vmp_guard_run) : -1;
    if (cfg->real_time && !cfg->native && vmp_run.delivery.n_python_tids > 1) {
        first_read(vmp_run.delivery.n_python_tids);
        vmp_run.delivery.first_sample = First.n ? first_hand_over : NULL;
    }
    int started = vmp_timer_thread_start();
    vmp_run.delivery.python_tids = NULL;
    vmp_run.delivery.n_python_tids = -1;
    vmp_run.delivery.first_sample = NULL;
    first_forget();
    free(python_tids);
    if (started < 0) {
        fail(err, errlen, "cannot start the sampler thread");
        goto undo_writer;
    }
    timer_running = 1;
    enabled_at = vmp_mono_ns();
    vmp_run.paused_for_exec = 0;
    if (!atfork_registered) {
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
        atfork_registered = 1;
    }
    vmp_run.enabled = 1;
    if (signal_still_ours())
        vmp_handler_sample_here(); /* (the start's wait is enable()'s: above) */
    return 0;

undo_writer:
    atomic_store(&vmp_run.active, 0);
    vmp_writer_stop();
undo_handler:
    atomic_store(&vmp_run.active, 0);
    vmp_handler_uninstall();
undo_codes:
    vmp_codes_stop();
    vmp_guard_restore();
undo_native:
    native_abandon(0);
    vmp_run.fd = -1;
    return -1;
}

/* Stops the signals: no new one is sent, those sent and not handled yet are
 * dropped, and no handler records or runs any more.  Needs no GIL: nothing
 * here waits for Python code.  Returns how many handlers are still inside
 * after VMP_STOP_WAIT_NS, those left behind by earlier stops included (0 in
 * all but a pathological case). */
static int stop_signals(void)
{
    if (timer_running)
        vmp_timer_thread_stop();
    timer_running = 0;
    /* No signal is sent any more.  A signal already sent but not handled yet
     * (its thread has not run since, or blocks the signal for good) takes
     * no sample now, and uninstalling drops it: disable never waits for a
     * thread, and leaves no handler of ours behind. */
    atomic_store(&vmp_run.active, 0);
    if (vmp_handler_is_ours()) /* else the program replaced it: leave theirs */
        vmp_handler_uninstall();
    /* The handlers inside finish within microseconds, but one held there
     * (its thread stopped by a debugger, or starved) may never: the wait
     * is bounded.  One still inside then is left behind: the era moves on,
     * so that whatever it does when it resumes records nothing (in this
     * run or a later one), and disable() frees nothing it may touch: the
     * ring slot it claimed is given up by the writer (never reused while
     * it holds it), the fault guard stays in front (its walk may fault),
     * and native mode's tables are forgotten rather than freed.  The code
     * set and the delivery's tables are never freed.  Its count goes
     * into META (handlers_still_running).
     * The wait is for the current era's handlers: one left behind by an
     * earlier stop is not waited for again (it made every later stop
     * wait its bound), only counted.  The era moves on by a compare-and-
     * swap from the count waited for, so that a handler entering after
     * the wait (a signal sent before the stop, met late; it records
     * nothing) is waited for too, not taken for one left behind. */
    int64_t deadline = vmp_mono_ns() + VMP_STOP_WAIT_NS;
    uint64_t word = atomic_load(&vmp_run.handlers);
    uint32_t inside;
    for (;;) {
        inside = VMP_HANDLERS_INSIDE(word);
        if (inside && vmp_mono_ns() < deadline) {
            vmp_sleep_ns(10000);
            word = atomic_load(&vmp_run.handlers);
            continue;
        }
        /* (counted first: a handler left behind takes itself off
         * handlers_behind as soon as it sees the era moved) */
        atomic_fetch_add(&vmp_run.handlers_behind, (int)inside);
        if (atomic_compare_exchange_strong(&vmp_run.handlers, &word, (VMP_HANDLERS_ERA(word) + 1) << 32))
            break;
        atomic_fetch_sub(&vmp_run.handlers_behind, (int)inside);
    }
    /* (the slots they hold, claimed before now: the stop waited for them
     * already, the writer need not wait its VMP_STALL_NS again) */
    if (inside)
        vmp_writer_give_up_before(vmp_ring_next_index());
    int still = atomic_load(&vmp_run.handlers_behind);
    if (still < 0)
        still = 0;
    if (still > atomic_load(&vmp_run.handlers_left))
        atomic_store(&vmp_run.handlers_left, still);
    return still;
}

/* os.fork (and os.forkpty) on CPython 3.12+ count the process's threads in
 * the parent once fork() returned (on Linux /proc/self/stat's num_threads)
 * and warn "This process (pid=N) is multi-threaded, use of fork() may lead
 * to deadlocks in the child." when there are more than one: our sampler
 * and writer threads made every single-threaded program that forks print
 * it.  So when the forking thread is the program's only one, both threads
 * are stopped by a before hook of ours that the os.fork audit event puts
 * where it runs last among the os.register_at_fork before hooks (the
 * fork goes ahead from there: before hooks cannot refuse it, and the after
 * hooks run even when fork() fails).  Stopped at the audit event itself, a
 * program's audit hook after ours that refused the fork (raised) left them
 * stopped until the next fork or disable().  They start again once os.fork
 * has returned into its caller: the count was taken meanwhile, wherever
 * the version takes it (3.12.1 before the os.register_at_fork
 * after_in_parent hooks, 3.13.0 after them; no hook of ours runs after the
 * count in both).  A pending call, which the main
 * thread runs at its next check of the eval breaker (at the end of the
 * CALL that called os.fork), starts them when the thread has moved on
 * from that call (vmp_frames_moved_on; run in a hook, it asks again).
 * Samples are lost from the stop to the start (the stats' fork_gap_ns);
 * the profile and its names are whole (the ring keeps what is published
 * meanwhile: names of code that dies in the hooks).  A program with a
 * thread of its own gets its warning as before, and ours are not
 * stopped.  3.8-3.11 do not count: nothing is done there. */
#if PY_VERSION_HEX >= 0x030C0000
/* The writer is waited for while it works (a native round that opens its
 * libdw session or learns many pcs took over 100 ms on a loaded machine),
 * at most FORK_WRITER_WAIT_NS, but not once a write got no byte out for
 * FORK_WRITER_STUCK_NS (a pipe nobody reads): the warning is then the
 * lesser evil. */
#define FORK_WRITER_WAIT_NS 2000000000LL
#define FORK_WRITER_STUCK_NS 100000000LL
#define FORK_GONE_WAIT_NS 20000000LL

static pid_t fork_tid;
static int sampler_was_sending; /* (else it ended: the program took its signal over) */
static vmp_frames_place fork_place;
static int64_t fork_stopped_at;
static uint64_t fork_stops, fork_stops_refused, fork_gap_ns;

/* The process's thread count as os.fork reads it, or -1.  (Opened in the
 * program's table, on its thread, as os.fork itself opens the same file a
 * moment later.) */
static long threads_now(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'), *save; /* (the command may hold spaces and parentheses) */
    long field = 2, value = -1;
    for (char *tok = p ? strtok_r(p + 1, " ", &save) : NULL; tok; tok = strtok_r(NULL, " ", &save))
        if (++field == 20) {
            value = strtol(tok, NULL, 10);
            break;
        }
    return value;
}

/* Until the kernel counts only this thread (a join returns once the thread
 * cleared its tid, a moment before the kernel lets it go), bounded. */
static void wait_alone(int64_t deadline)
{
    while (threads_now() > 1 && vmp_mono_ns() < deadline)
        vmp_sleep_ns(20000);
}

/* Starts what vmp_sampler_before_py_fork stopped, without waiting for the
 * threads to be up: the program goes on at once (the sampler thread waits
 * for the writer's tid itself).  GIL held. */
static void restart_after_fork_stop(void)
{
    if (writer_paused && vmp_writer_resume() == 0)
        writer_paused = 0;
    if (!timer_running && sampler_was_sending && !writer_paused && !vmp_run.paused_for_exec &&
        signal_left_alone() && vmp_handler_install() == 0) {
        atomic_store(&vmp_run.active, 1);
        if (vmp_timer_thread_start_nowait() == 0)
            timer_running = 1;
    }
}

static void fork_resume(void)
{
    stopped_for_fork = 0;
    restart_after_fork_stop();
    fork_gap_ns += (uint64_t)(vmp_mono_ns() - fork_stopped_at);
}

static int resume_after_py_fork(void *arg)
{
    (void)arg;
    if (!stopped_for_fork)
        return 0; /* (disable() or an exec did) */
    if (vmp_delivery_this_tid() != fork_tid || !vmp_frames_moved_on(PyThreadState_Get(), &fork_place)) {
        /* (still inside os.fork: a hook registered by a hook, after ours) */
        if (Py_AddPendingCall(resume_after_py_fork, NULL) == 0)
            return 0;
    }
    fork_resume();
    return 0;
}

/* Our after_in_parent hook, the last (vmp_frames_last_after_fork_parent):
 * it queues the pending call that starts the threads.  Queued earlier (at
 * the audit event), the call ran in every check of the eval breaker of the
 * program's Python hooks, asking again each time: a hook's loop ran 13-50
 * times slower.  It takes itself out of the list (os.fork runs a copy). */
static PyObject *after_fork_parent_fn;

static PyObject *after_fork_parent_hook(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    /* (self is the function's m_self, NULL: not the function itself, which
     * therefore stayed in the list) */
    vmp_frames_drop_after_fork_parent(after_fork_parent_fn);
    if (stopped_for_fork && Py_AddPendingCall(resume_after_py_fork, NULL) < 0)
        fork_resume(); /* (the queue is full: the warning may be printed) */
    Py_RETURN_NONE;
}

static PyMethodDef after_fork_parent_def = {"_vmprof_after_fork_in_parent", after_fork_parent_hook, METH_NOARGS,
                                            NULL};

static int may_stop_for_fork(void)
{
    return vmp_run.enabled && !vmp_run.disabling && !vmp_run.paused_for_exec && !stopped_for_fork && timer_running;
}

/* The stop itself, from our before hook: os.fork goes ahead. */
static void stop_for_fork(pid_t me)
{
    /* (a sampler thread that found the program's handler on our signal has
     * ended: it is not started again, the program's handler stays) */
    int alive = atomic_load(&vmp_run.signal_taken_ms) < 0; /* (its thread runs) */
    int sending = signal_still_ours();
    if (threads_now() != 2 + alive)
        return; /* the program has threads of its own: the warning is its */
    sampler_was_sending = sending;
    fork_stopped_at = vmp_mono_ns();
    int paused;
    Py_BEGIN_ALLOW_THREADS
    vmp_writer_pause_ask(); /* (both threads end at once) */
    stop_signals();
    paused = vmp_writer_pause(FORK_WRITER_WAIT_NS, FORK_WRITER_STUCK_NS) == 0;
    if (paused)
        wait_alone(vmp_mono_ns() + FORK_GONE_WAIT_NS);
    Py_END_ALLOW_THREADS
    writer_paused = paused;
    fork_tid = me;
    stopped_for_fork = 1;
    if (!after_fork_parent_fn) {
        after_fork_parent_fn = PyCFunction_New(&after_fork_parent_def, NULL);
        if (!after_fork_parent_fn)
            PyErr_Clear();
    }
    if (!paused || !after_fork_parent_fn || vmp_frames_last_after_fork_parent(after_fork_parent_fn) < 0) {
        fork_stops_refused++;
        fork_resume();
        return;
    }
    fork_stops++;
}

/* Our before hook (vmp_frames_last_before_fork), put in by the os.fork
 * audit event: it takes itself out, and stops our threads when it runs in
 * the os.fork that event announced (one refused by a later audit hook
 * left it in the list, for a later fork: of os.fork, put in again by its
 * own event, or of another caller of the hooks, a subprocess's
 * preexec_fn, which is not ours to stop for). */
static pid_t announced_tid;

static PyObject *before_fork_fn;

static PyObject *before_fork_hook(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    vmp_frames_drop_before_fork(before_fork_fn);
    pid_t me = vmp_delivery_this_tid();
    if (may_stop_for_fork() && me == announced_tid && vmp_frames_still_at(PyThreadState_Get(), &fork_place))
        stop_for_fork(me);
    announced_tid = 0;
    Py_RETURN_NONE;
}

static PyMethodDef before_fork_def = {"_vmprof_before_fork", before_fork_hook, METH_NOARGS, NULL};

/* The os.fork and os.forkpty audit event: a later audit hook may still
 * refuse the fork, so only our before hook is put in here. */
void vmp_sampler_before_py_fork(void)
{
    if (!may_stop_for_fork())
        return;
    /* (the main thread: the one pending calls reach) */
    pid_t me = vmp_delivery_this_tid();
    if (me != getpid())
        return;
    if (!before_fork_fn) {
        before_fork_fn = PyCFunction_New(&before_fork_def, NULL);
        if (!before_fork_fn) {
            PyErr_Clear();
            return;
        }
    }
    vmp_frames_here(PyThreadState_Get(), &fork_place);
    announced_tid = vmp_frames_last_before_fork(before_fork_fn) == 0 ? me : 0;
}

void vmp_sampler_test_fork_stops(uint64_t out[3])
{
    out[0] = fork_stops;
    out[1] = fork_stops_refused;
    out[2] = fork_gap_ns;
}
#else
static const int stopped_for_fork = 0, writer_paused = 0;
static void fork_resume(void)
{
}

void vmp_sampler_before_py_fork(void)
{
}

void vmp_sampler_test_fork_stops(uint64_t out[3])
{
    out[0] = out[1] = out[2] = 0;
}
#endif

int vmp_sampler_disable(vmp_sampler_stats *stats, char *err, size_t errlen)
{
    if (!vmp_run.enabled)
        return fail(err, errlen, "vmprof is not enabled: call vmprof.enable() first");
    if (vmp_run.disabling)
        return fail(err, errlen, "vmprof is being disabled by another thread already");
    /* The waits below run without the GIL: the program's other threads go
     * on, and one of them may be the reader of a pipe the profile goes to,
     * which the writer needs to make progress. */
    if (stopped_for_fork) /* (os.fork has not returned to Python since) */
        fork_resume();
    vmp_run.disabling = 1;
    /* A handler the program installed on our signal since the sampler
     * thread last looked (up to 40 ms ago, or longer on a loaded machine)
     * is noted as it would have noted it: before, a program that took the
     * signal over shortly before the stop had its profile cut short with
     * nothing to say why. */
    if (timer_running && signal_still_ours())
        vmp_handler_sample_here(); /* (the stop's wait is disable()'s: above) */
    vmp_writer_stopping(); /* (a writer nobody reads gives up within 10 s from now) */
    int left;
    Py_BEGIN_ALLOW_THREADS
    left = stop_signals();
    vmp_writer_end_live_names(); /* (before the guard goes, below) */
    Py_END_ALLOW_THREADS

    vmp_codes_name_live(vmp_writer_push_name, vmp_guard_run);
    vmp_codes_stop();
    if (!left) /* (else a late walk's fault must still find the guard: it stays in front) */
        vmp_guard_restore();
    Py_BEGIN_ALLOW_THREADS
    if (!writer_paused)
        vmp_writer_stop();
    else /* (its thread could not be started again after a fork: the end is lost) */
        atomic_store(&vmp_run.write_errno, EAGAIN);
    Py_END_ALLOW_THREADS
    /* No handler samples any more (active is 0 and none is inside, or the
     * ones left behind record nothing), and the writer is done: native
     * mode's tables can go, or be forgotten while a handler may walk. */
    int was_native = vmp_run.native;
    native_abandon(left);
    vmp_ring_give_back_pages();
    vmp_writer_release();
    vmp_run.enabled = 0;
    vmp_run.disabling = 0;
    vmp_run.paused_for_exec = 0;
    vmp_run.fd = -1;

    if (stats) {
        stats->samples = atomic_load(&vmp_run.samples);
        stats->dropped = vmp_run_samples_dropped();
        stats->signals_sent = atomic_load(&vmp_run.delivery.sent);
        stats->samples_repeated = atomic_load(&vmp_run.delivery.repeated);
        stats->periods = atomic_load(&vmp_run.delivery.periods);
        stats->periods_late = atomic_load(&vmp_run.delivery.late);
        stats->untracked_codes = vmp_codes_untracked();
        stats->walk_faults = vmp_guard_faults();
        stats->names_lost = atomic_load(&vmp_run.names_lost);
        stats->threads_max = atomic_load(&vmp_run.delivery.threads_max);
        stats->threads_blocking = atomic_load(&vmp_run.delivery.threads_blocking);
        stats->samples_blocking = atomic_load(&vmp_run.delivery.periods_blocked);
        stats->samples_cut = atomic_load(&vmp_run.samples_cut);
        stats->unwind_pcs_learned = was_native ? vmp_native_mode_pcs_learned() : 0;
        stats->unwind_pcs_libdw = was_native ? vmp_native_mode_pcs_from_libdw() : 0;
        stats->not_python = atomic_load(&vmp_run.delivery.not_python);
        stats->sampler_rounds = atomic_load(&vmp_run.delivery.rounds);
        stats->writer_rounds = vmp_writer_wakeups();
        stats->allocated_ahead = vmp_writer_allocated_ahead();
        stats->clock_reads = atomic_load(&vmp_run.delivery.clock_reads);
        stats->polls = atomic_load(&vmp_run.delivery.polls);
        stats->cold_polls = atomic_load(&vmp_run.delivery.cold_polls);
        stats->listings = atomic_load(&vmp_run.delivery.scans);
        stats->births_read = atomic_load(&vmp_run.delivery.births_read);
        stats->deaths_read = atomic_load(&vmp_run.delivery.deaths_read);
        stats->unseen_waits = atomic_load(&vmp_run.delivery.unseen_waits);
        stats->visits = atomic_load(&vmp_run.delivery.visits);
        stats->first_samples = atomic_load(&vmp_run.delivery.first_samples);
        stats->sources_opened = atomic_load(&vmp_run.delivery.sources_opened);
        stats->first_sample_periods = vmp_delivery_first_sample_periods();
        stats->handlers_left = (uint64_t)atomic_load(&vmp_run.handlers_left);
        stats->slots_given_up = atomic_load(&vmp_run.slots_given_up);
        stats->signo = vmp_run.signo;
        stats->signal_taken_ms = atomic_load(&vmp_run.signal_taken_ms);
    }
    int e = atomic_load(&vmp_run.write_errno);
    if (e == ETIMEDOUT)
        return fail(err, errlen,
                    "nothing could be written to the profile for 10 s (a full pipe nobody reads?): "
                    "it holds the samples written before");
    if (e)
        return fail(err, errlen, "writing the profile failed (%s): it holds the samples written before", strerror(e));
    return 0;
}

/* exec: sampling stops before the thread calls execve (a signal of ours
 * pending then would reach the new program), and what the file needs to be
 * read is written out: the samples, the names of the code objects still
 * alive and of the native functions met.  The new program replaces us with
 * nothing more to do; when the exec fails, a pending call (run by the main
 * thread once Python code runs again) resumes sampling, at once when the
 * main thread called exec, else after EXEC_RESUME_NS so that the exec is
 * surely over. */
#define EXEC_RESUME_NS 50000000LL

static int64_t exec_paused_at;
static pid_t exec_tid;
static int exec_was_sending; /* (else the program had taken the signal over: it keeps it) */

static int resume_after_exec(void *arg)
{
    (void)arg;
    if (!vmp_run.enabled || !vmp_run.paused_for_exec || vmp_run.disabling) {
        vmp_run.paused_for_exec = 0;
        return 0;
    }
    if (vmp_delivery_this_tid() != exec_tid && vmp_mono_ns() - exec_paused_at < EXEC_RESUME_NS) {
        /* (pending calls are run by the main thread only: ask again) */
        if (Py_AddPendingCall(resume_after_exec, NULL) < 0)
            vmp_run.paused_for_exec = 0;
        return 0;
    }
    vmp_run.paused_for_exec = 0;
    /* (the program's handler on our signal, from before the exec or since:
     * it stays, as at a fork, and the run goes on without samples) */
    if (!exec_was_sending || !signal_left_alone())
        return 0;
    if (vmp_handler_install() < 0)
        return 0; /* (the run stays without samples; disable() finishes it) */
    atomic_store(&vmp_run.active, 1);
    if (vmp_timer_thread_start() == 0)
        timer_running = 1;
    return 0;
}

void vmp_sampler_before_exec(void)
{
    if (!vmp_run.enabled || vmp_run.disabling || vmp_run.paused_for_exec)
        return;
    if (stopped_for_fork)
        fork_resume();
    vmp_run.paused_for_exec = 1;
    exec_was_sending = signal_still_ours();
    exec_tid = vmp_delivery_this_tid();
    exec_paused_at = vmp_mono_ns();
    /* A writer stuck on a pipe nobody reads is not waited for (it held the
     * exec up for 10 s): what it could not write is lost with the program. */
    atomic_store(&vmp_run.stopping_for_exec, 1);
    Py_BEGIN_ALLOW_THREADS
    stop_signals();
    Py_END_ALLOW_THREADS
    vmp_codes_name_live(vmp_writer_push_name, vmp_guard_run);
    Py_BEGIN_ALLOW_THREADS
    if (!writer_paused) /* (a writer that could not be started again after a fork) */
        vmp_writer_sync(10000000000LL, VMP_EXEC_STUCK_NS); /* (native names may take a while) */
    Py_END_ALLOW_THREADS
    atomic_store(&vmp_run.stopping_for_exec, 0);
    if (Py_AddPendingCall(resume_after_exec, NULL) < 0)
        vmp_run.paused_for_exec = 0; /* (no resuming: disable() still finishes the file) */
}

int vmp_sampler_is_enabled(void)
{
    return vmp_run.enabled;
}

int vmp_sampler_fd(void)
{
    return vmp_run.enabled ? vmp_run.fd : -1;
}

void vmp_sampler_pause(void)
{
    atomic_fetch_add(&vmp_run.paused, 1);
}

void vmp_sampler_resume(void)
{
    if (atomic_fetch_sub(&vmp_run.paused, 1) <= 0)
        atomic_fetch_add(&vmp_run.paused, 1); /* never below zero */
}

size_t vmp_sampler_stack_now(uint64_t *out, size_t max_frames)
{
    PyThreadState *ts = vmp_frames_this_thread();
    return ts ? vmp_frames_walk(ts, out, max_frames, 0) : 0;
}

static volatile uintptr_t unmapped_address = 16; /* the first page is never mapped */

static void read_unmapped(void *arg)
{
    (void)arg;
    volatile const char *p = (volatile const char *)unmapped_address;
    (void)*p;
}

/* A guarded call that runs a guarded call that completes, then faults:
 * its own guard must still catch the fault. */
static void nothing(void *arg)
{
    (void)arg;
}

static void nested_then_fault(void *arg)
{
    vmp_guard_run(read_unmapped, NULL);
    vmp_guard_run(nothing, NULL);
    read_unmapped(arg);
}

int vmp_sampler_guard_selftest(int nested)
{
    if (!vmp_run.enabled)
        return -1;
    vmp_guard_keep_first();
    return vmp_guard_run(nested ? nested_then_fault : read_unmapped, NULL) < 0 ? 1 : 0;
}
