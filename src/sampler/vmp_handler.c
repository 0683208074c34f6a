/*
 * vmp_handler.c - the profiling signal's handler (contract in vmp_handler.h).
 *
 * `handlers` counts handlers between entry and exit so that disable can
 * wait for the last one before tearing down what they touch (at most
 * VMP_STOP_WAIT_NS: one left behind then, its era past, records nothing
 * more, and nothing it touches is freed); `active` and `paused` decide
 * whether a signal takes a sample at all.  A signal that arrives after the
 * run (sent before it ended) finds `active` 0 and returns.
 */
#include "vmp_frames.h" /* Python.h first: it sets the feature macros (_GNU_SOURCE) */
#include "vmp_handler.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmp_codes.h"
#include "vmp_fds.h"
#include "vmp_guard.h"
#include "vmp_native_mode.h"
#include "vmp_ring.h"
#include "vmp_run.h"

typedef struct walk_args {
    PyThreadState *ts;
    vmp_slot *slot;
    uint64_t *out; /* (set by walk: where the words went, the slot's head or its room) */
    void *ucontext;
    size_t n;
    int in_call; /* wall clock: the thread was inside a system call */
    vmp_native_walk native; /* native mode: what the C stack's walk found */
} walk_args;

/* Whether the stop this handler entered before has gone on without it
 * (vmp_run.handlers' era): it then records nothing more. */
static inline int left_behind(uint64_t era)
{
    return VMP_HANDLERS_ERA(atomic_load(&vmp_run.handlers)) != era;
}

/* vmp_handler_test_hold: the state, the thread whose handler it holds,
 * and (on that thread) whether this handler is the one held. */
static _Atomic int hold_state;
static _Atomic pid_t hold_tid;
static __thread int held_here __attribute__((tls_model("initial-exec")));
/* (set while the thread computes without the GIL in vmp_handler_test_hold_busy:
 * a handler held while its thread holds the GIL would stop the program) */
static __thread volatile int holdable __attribute__((tls_model("initial-exec")));

static void test_hold_point(void)
{
    if (atomic_load_explicit(&hold_state, memory_order_relaxed) != VMP_HOLD_ARMED || !holdable ||
        atomic_load(&hold_tid) != vmp_delivery_this_tid())
        return;
    int armed = VMP_HOLD_ARMED;
    if (!atomic_compare_exchange_strong(&hold_state, &armed, VMP_HOLD_HELD))
        return;
    held_here = 1;
    while (atomic_load(&hold_state) == VMP_HOLD_HELD)
        vmp_sleep_ns(1000000);
}

int vmp_handler_test_hold_busy(int64_t timeout_ns)
{
    vmp_handler_test_hold(1);
    holdable = 1;
    int64_t deadline = vmp_mono_ns() + timeout_ns;
    volatile uint64_t x = 0;
    while (atomic_load(&hold_state) != VMP_HOLD_LEFT && vmp_mono_ns() < deadline)
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i * 7;
    holdable = 0;
    return atomic_load(&hold_state);
}

int vmp_handler_test_hold(int what)
{
    if (what == 1) {
        atomic_store(&hold_tid, vmp_delivery_this_tid());
        atomic_store(&hold_state, VMP_HOLD_ARMED);
        vmp_native_test_hook = test_hold_point; /* (native mode holds inside its walk) */
    } else if (what == 0) {
        int held = VMP_HOLD_HELD, armed = VMP_HOLD_ARMED;
        if (!atomic_compare_exchange_strong(&hold_state, &held, VMP_HOLD_RELEASED))
            atomic_compare_exchange_strong(&hold_state, &armed, VMP_HOLD_NONE);
    }
    return atomic_load(&hold_state);
}

static void walk(void *arg)
{
    walk_args *a = arg;
    if (!vmp_run.native)
        test_hold_point();
    /* Native mode: the C stack too, spliced with the Python frames, into
     * the slot's room.  Python frames alone: into its head, and only a
     * stack that fills it is walked again into the room (its frames cannot
     * change meanwhile: they are this thread's), so that a shallow stack
     * touches no page but the head's (vmp_ring.h).  (A walk is bounded by
     * its links too, 4 a frame and 16 more: a head's 53 frames stand
     * for 228, and no stack has 3 links without code to a frame.) */
    if (vmp_run.native) {
        a->out = vmp_ring_room(a->slot);
        a->n = vmp_native_mode_sample(a->ucontext, a->ts, a->out, VMP_SLOT_WORDS, vmp_run.lines, &a->native);
    } else {
        size_t per_frame = vmp_run.lines ? 2 : 1, head_frames = VMP_SLOT_HEAD_WORDS / per_frame;
        a->out = a->slot->head;
        a->n = vmp_frames_walk(a->ts, a->out, head_frames, vmp_run.lines);
        if (a->n >= head_frames * per_frame) {
            a->out = vmp_ring_room(a->slot);
            a->n = vmp_frames_walk(a->ts, a->out, VMP_MAX_DEPTH_WRITTEN, vmp_run.lines);
        }
    }
    /* (the wall clock repeats a sample taken inside a system call while the
     * thread stays there: vmp_delivery.h) */
    if (vmp_run.real_time)
        a->in_call = vmp_delivery_in_system_call(a->ucontext);
}

/* What the sample was, for the delivery schedule (VMP_SAMPLE_*); it stands
 * for `weight` periods (0: none owed yet, nothing is recorded), the first
 * of which began at `from` (CLOCK_MONOTONIC ns; 0: not known).  *in_call:
 * the thread was inside a system call; *generation: for a sample whose
 * native walk was cut (VMP_SAMPLE_KEPT_CUT), the rules' generation it read. */
/* This thread's signal is one it sent itself (vmp_handler_sample_here) */
static __thread volatile int here_asked __attribute__((tls_model("initial-exec")));

void vmp_handler_sample_here(void)
{
    here_asked = 1;
    syscall(SYS_tgkill, vmp_run.pid, vmp_delivery_this_tid(), vmp_run.signo);
    here_asked = 0;
}

/* weight 0 with keep_empty: the sample is kept, written as no record (the
 * writer keeps it as the thread's last one, for its repeats). */
static int take_sample(void *ucontext, int64_t weight, int64_t from, int *in_call, uint64_t *generation, uint64_t era,
                       int keep_empty)
{
    PyThreadState *ts = vmp_frames_this_thread();
    /* No thread state: a C library's thread.  A thread of a sub-interpreter:
     * its code objects' deaths are not seen (3.12+ code watchers are per
     * interpreter), so its names could lie.  Neither is sampled, and the
     * delivery leaves both alone from now on. */
    if (!ts || (const void *)ts->interp != vmp_run.interp)
        return VMP_SAMPLE_NOT_PYTHON;
    if (weight < 0 || (weight == 0 && !keep_empty))
        return VMP_SAMPLE_NONE;
    /* A sample stands for `weight` periods (its signal paid them: a late
     * one, many), so that many are lost when it cannot be written, as its
     * written records would have counted that many in META's samples.
     * (Before, 1: a thread late by 20 periods whose sample found the ring
     * full was counted 1 dropped.) */
    uint64_t periods = weight < UINT32_MAX ? (uint64_t)weight : UINT32_MAX;
    vmp_slot *s = vmp_ring_claim();
    if (!s) {
        atomic_fetch_add_explicit(&vmp_run.dropped, periods, memory_order_relaxed);
        return 0;
    }
    walk_args a = {ts, s, s->head, ucontext, 0, 0, {0}};
    size_t n = vmp_guard_run(walk, &a) < 0 ? 0 : a.n;
    s->data = a.out;
    *in_call = a.in_call;
    /* (a walk the guard cut short reports nothing: a.native stays zero) */
    int cut = n > 0 && a.native.cut;
    /* A walk capped by the sample's room (deep recursion) is not whole
     * either, and is counted with the cut ones; but no rule learned later
     * would take it further, so it is repeated and probed as a whole one. */
    int capped = n > 0 && !cut && a.native.capped;
    *generation = a.native.generation;
    int lines = vmp_run.lines;
    for (size_t i = lines ? 1 : 0; i < n; i += lines ? 2 : 1)
        if (!vmp_native_word_is(s->data[i])) /* native frames are not code objects */
            vmp_codes_note((uintptr_t)s->data[i]);
    s->kind = VMP_SLOT_SAMPLE;
    s->capped = capped; /* (the writer counts its repeats cut too) */
    s->n = (uint32_t)n;
    s->weight = (uint32_t)periods; /* (s is not ours after the publish) */
    s->from_ns = weight > 1 ? from : 0; /* (one period: the reading of its signal) */
    s->tid = vmp_delivery_this_tid();
    s->place = vmp_delivery_this_place();
    s->thread_id = vmp_frames_thread_id(ts);
    s->rss_kib = atomic_load_explicit(&vmp_run.rss_kib, memory_order_relaxed);
    if (vmp_ring_publish(s) < 0) {
        /* (the writer gave the slot up: this thread was stopped or
         * descheduled between claim and publish for over VMP_STALL_NS, or
         * left behind by a stop; counted unless the run is over) */
        if (!left_behind(era))
            atomic_fetch_add_explicit(&vmp_run.dropped, periods, memory_order_relaxed);
        return 0;
    }
    if (cut || capped) /* (the samples it stands for: META samples_cut) */
        atomic_fetch_add_explicit(&vmp_run.samples_cut, periods, memory_order_relaxed);
    return n == 0 ? VMP_SAMPLE_NONE : cut ? VMP_SAMPLE_KEPT_CUT : VMP_SAMPLE_KEPT;
}

int vmp_handler_repeat_sample(pid_t tid, int64_t count, _Atomic int64_t *paid, int64_t from, int64_t to)
{
    /* (not refused while paused: the delivery hands over, when it sees the
     * pause, the repeats owed from before it, and counts none during it) */
    if (!atomic_load(&vmp_run.active))
        return -1;
    vmp_slot *s = vmp_ring_claim();
    if (!s)
        return -1; /* full: the signal sent instead counts the drop */
    /* (claimed first: the ring's order is the writer's; vmp_delivery.h) */
    s->from_ns = from; /* (with paid: where the mark stood, the first period's start) */
    int moved = !paid || atomic_compare_exchange_strong(paid, &from, to);
    s->kind = VMP_SLOT_REPEAT;
    uint32_t n = !moved ? 0 : count < UINT32_MAX ? (uint32_t)count : UINT32_MAX;
    s->n = n;
    s->tid = tid;
    s->place = vmp_delivery_place_of(tid); /* (the thread still has it: it is given back after its last repeat) */
    s->rss_kib = atomic_load_explicit(&vmp_run.rss_kib, memory_order_relaxed);
    if (vmp_ring_publish(s) < 0) {
        /* Given up (see take_sample; s is not ours any more): its periods
         * are counted lost here, and 1 tells the caller that nothing is its
         * to count (0 made it count them repeated too: twice).  Reached by
         * a producer - the sampler thread, or a handler - stopped or
         * starved between this claim and publish for over VMP_STALL_NS
         * during the run, or a handler left behind by a stop. */
        atomic_fetch_add_explicit(&vmp_run.dropped, n, memory_order_relaxed);
        return 1;
    }
    return moved ? 0 : 1;
}

static void on_signal(int signo, siginfo_t *info, void *ucontext)
{
    (void)signo;
    int saved_errno = errno;
    vmp_delivery_entered();
    /* (counted in and the era read at once: a stop that moves the era on
     * either leaves this handler behind, counted, or moved it before) */
    uint64_t era = VMP_HANDLERS_ERA(atomic_fetch_add(&vmp_run.handlers, 1));
    int outcome = VMP_SAMPLE_NONE, in_call = 0;
    uint64_t generation = 0;
    int ours = vmp_delivery_is_ours(info, vmp_run.pid); /* sent by the sampler, or the thread's own source */
    int here = ours && here_asked; /* (sent by this thread itself: vmp_handler_sample_here) */
    here_asked = 0;
    if (here)
        vmp_delivery_not_a_probe();
    /* What this thread is owed (CPU time since its last sample, when its
     * own source signals it; wall time on the wall clock), paid now even
     * while paused; on the wall clock, the periods it waited since a
     * sample taken inside a system call repeat that one, first. */
    int64_t repeats = 0;
    int64_t weight = ours && !left_behind(era) ? vmp_delivery_take_owed(&repeats) : 1;
    int64_t from = ours ? vmp_delivery_owed_from() : 0; /* (the repeats' first period) */
    if (left_behind(era)) {
        /* Held up in here (stopped, starved) past a stop's bound: the run
         * it was sent for ended without it, and another may run now.  Its
         * place, its schedule and the counts are that other run's. */
        goto out;
    }
    if (atomic_load(&vmp_run.active) && !atomic_load_explicit(&vmp_run.paused, memory_order_relaxed) &&
        !atomic_load_explicit(&vmp_run.forking, memory_order_relaxed)) {
        int r = repeats > 0 ? vmp_handler_repeat_sample(vmp_delivery_this_tid(), repeats, NULL, from, 0) : 1;
        if (r <= 0) /* (1: none, or given up and counted) */
            atomic_fetch_add_explicit(r == 0 ? &vmp_run.delivery.repeated : &vmp_run.delivery.repeats_lost,
                                      (uint64_t)repeats, memory_order_relaxed);
        outcome = take_sample(ucontext, weight, ours ? vmp_delivery_sample_from() : 0, &in_call, &generation, era,
                              here && vmp_delivery_weighs_wall());
    } else if (repeats > 0) {
        atomic_fetch_add_explicit(&vmp_run.delivery.repeats_lost, (uint64_t)repeats, memory_order_relaxed);
    }
    if (left_behind(era))
        goto out; /* (held up in take_sample: see above) */
    if (ours) {
        atomic_fetch_add_explicit(&vmp_run.received, 1, memory_order_relaxed);
        /* an idle thread's sample may be repeated (not a cut one); a C thread is left alone */
        vmp_delivery_sampled(outcome, in_call, generation);
        vmp_delivery_source_answer(info, outcome); /* a C thread's source pauses */
        /* The sampler may send this thread its next one (it counts a
         * source's signal as its own: one it sent may have merged with it). */
        vmp_delivery_handled();
    }
    vmp_delivery_left();
out:;
    /* Counted out of its era while it is the current one; a stop that left
     * this handler behind moved it to handlers_behind, counted out there. */
    uint64_t word = atomic_load(&vmp_run.handlers);
    for (;;) {
        if (VMP_HANDLERS_ERA(word) != era) {
            atomic_fetch_sub(&vmp_run.handlers_behind, 1);
            break;
        }
        if (atomic_compare_exchange_weak(&vmp_run.handlers, &word, word - 1))
            break;
    }
    if (held_here) { /* (tests only) */
        held_here = 0;
        atomic_store(&hold_state, VMP_HOLD_LEFT);
    }
    errno = saved_errno;
}

static int handler_is_mine(const struct sigaction *cur)
{
    return (cur->sa_flags & SA_SIGINFO) && cur->sa_sigaction == on_signal;
}

/* Whether the program left sig alone (no handler of its own; ours left
 * inert by an earlier run counts as alone). */
static int is_free(int sig, int ignored_too)
{
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) < 0)
        return 0;
    if (handler_is_mine(&cur))
        return 1;
    return !(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_DFL || (ignored_too && cur.sa_handler == SIG_IGN));
}

/* The real-time signals the profiler may take (bit sig - 1). */
static uint64_t real_time_bits(void)
{
    uint64_t bits = 0;
    for (int sig = SIGRTMIN + 1; sig <= SIGRTMAX - 1 && sig <= 64; sig++)
        bits |= 1ULL << (sig - 1);
    return bits;
}

/* mask, unless it blocks every one of them: that says nothing of one (a
 * thread that blocks all signals; and glibc's pthread_create blocks them
 * all in the creating thread for a moment: read so, the caller seemed to
 * block every one, and the test's choice fell to SIGPROF in 2 of 3 runs). */
static uint64_t selective(uint64_t mask)
{
    uint64_t rt = real_time_bits();
    return (mask & rt) == rt ? mask & ~rt : mask;
}

/* The signals that threads of the process other than `skip` and the
 * calling one block (bit sig - 1, selective()), from their SigBlk in
 * /proc/self/task. */
static uint64_t blocked_in_tasks(pid_t skip)
{
    uint64_t mask = 0;
    pid_t self = (pid_t)syscall(SYS_gettid);
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        pid_t tid = e->d_name[0] >= '1' && e->d_name[0] <= '9' ? (pid_t)atoi(e->d_name) : 0;
        if (tid <= 0 || tid == skip || tid == self)
            continue;
        char buf[4096];
        if (vmp_delivery_read_task_file(tid, "status", buf, sizeof buf) < 0)
            continue; /* (a thread that ended meanwhile) */
        const char *at = strstr(buf, "\nSigBlk:");
        if (at)
            mask |= selective(strtoull(at + 8, NULL, 16));
    }
    closedir(dir);
    return mask;
}

/* A thread of ours for the reading, with a descriptor table of its own
 * (vmp_fds.h): what it opens never takes a number of the program's, which
 * another thread of the program may be about to dup2() onto.  Where the
 * kernel refuses the table (older than 5.9), it reads nothing.  arg: the
 * caller's tid in, the mask out. */
static void *read_blocked(void *arg)
{
    uint64_t *io = arg;
    pid_t caller = (pid_t)*io;
    *io = vmp_fd_own_table() ? blocked_in_tasks(caller) : 0;
    return NULL;
}

/* The signals some thread of the process blocks (bit sig - 1, selective()):
 * the calling thread's mask, and the others' (read_blocked; only when
 * SIGURG is the program's, at enable()).  A thread that lists none is
 * taken to block none. */
static uint64_t blocked_anywhere(void)
{
    uint64_t mask = 0;
    sigset_t own;
    if (pthread_sigmask(SIG_BLOCK, NULL, &own) == 0)
        for (int sig = 1; sig <= 64 && sig < NSIG; sig++)
            if (sigismember(&own, sig) == 1)
                mask |= 1ULL << (sig - 1);
    uint64_t others = (uint64_t)syscall(SYS_gettid);
    pthread_t reader;
    if (pthread_create(&reader, NULL, read_blocked, &others) == 0)
        pthread_join(reader, NULL);
    else
        others = 0;
    return selective(mask) | others;
}

/* SIGURG first: its default action is to do nothing, so one of ours still
 * pending when a thread calls execve, or after a run, cannot hurt.  Where
 * the program took it, a real-time signal with no handler that no thread
 * blocks, from SIGRTMAX - 1 down (SIGRTMIN is what the C library leaves
 * to programs, above its own two or three; libraries that take one count
 * up from SIGRTMIN, and some take SIGRTMAX), before SIGPROF: both end the
 * process by default, but programs and libraries hard-code SIGPROF (an
 * ITIMER_PROF timer, another profiler), and one that installs a handler for
 * it and puts SIG_DFL back while we run is killed by our next signal (10 of
 * 10 runs with the handler kept 0.2 ms).  A signal some thread blocks may
 * be one the program waits for in sigwaitinfo() or reads from a signalfd:
 * ours would reach it there.  Real-time signals queue (one per send), so
 * per-thread events are not used with one (vmp_delivery.h: a thread that
 * blocks it, or a handler slower than a period, would pile them up, and
 * past RLIMIT_SIGPENDING the kernel sends SIGIO instead, whose default
 * also ends the process); the per-period schedule sends a thread its next
 * signal only once the last was handled, so at most one of ours waits per
 * thread, and the stop's SIG_IGN discards every queued one, as it does
 * SIGPROF's.  Then SIGPROF, then any real-time signal with no handler (as
 * before: blocked somewhere or not). */
int vmp_handler_choose_signal(void)
{
    if (is_free(SIGURG, 1))
        return SIGURG;
    uint64_t blocked = blocked_anywhere();
    for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN + 1; sig--)
        if (sig <= 64 && !(blocked >> (sig - 1) & 1) && is_free(sig, 0))
            return sig;
    if (is_free(SIGPROF, 1))
        return SIGPROF;
    for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN + 1; sig--)
        if (is_free(sig, 0))
            return sig;
    return -1;
}

int vmp_handler_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    struct sigaction cur;
    if (sigaction(vmp_run.signo, NULL, &cur) == 0 && handler_is_mine(&cur)) {
        /* ours, left inert by a run whose last signal never arrived: the
         * program's own disposition from that run is still in old_action */
    } else if (sigaction(vmp_run.signo, NULL, &vmp_run.old_action) < 0) {
        return -1;
    }
    return sigaction(vmp_run.signo, &sa, NULL);
}

void vmp_handler_uninstall(void)
{
    /* Setting SIG_IGN discards the signal wherever it is pending (a thread
     * that blocks it, or has not run since it was sent): none is left to
     * meet the program's disposition, whose default for SIGPROF ends the
     * process. */
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(vmp_run.signo, &ignore, NULL);
    sigaction(vmp_run.signo, &vmp_run.old_action, NULL);
}

int vmp_handler_left_alone(void)
{
    struct sigaction cur;
    if (sigaction(vmp_run.signo, NULL, &cur) < 0)
        return 0;
    if (handler_is_mine(&cur))
        return 1;
    const struct sigaction *old = &vmp_run.old_action;
    if ((cur.sa_flags & SA_SIGINFO) != (old->sa_flags & SA_SIGINFO))
        return 0;
    return cur.sa_flags & SA_SIGINFO ? cur.sa_sigaction == old->sa_sigaction : cur.sa_handler == old->sa_handler;
}

int vmp_handler_is_ours(void)
{
    struct sigaction cur;
    return sigaction(vmp_run.signo, NULL, &cur) == 0 && handler_is_mine(&cur);
}
