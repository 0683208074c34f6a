/*
 * vmp_guard.c - the fault guard (contract in vmp_guard.h).
 *
 * Each guarded call pushes a frame (a sigjmp_buf and the frame below) on a
 * thread-local stack (initial-exec TLS: reading it in a signal handler never
 * allocates).  Our SIGSEGV/SIGBUS handler jumps to the top frame for a fault
 * the kernel raised (si_code > 0) while one is pushed; a signal sent with
 * kill() is never taken for a walk's fault.
 *
 * The program's dispositions we chain to are kept in a small array of
 * slots and published through an atomic index, so that a handler running in
 * another thread while vmp_guard_keep_first replaces them reads a whole one.
 * Each slot has an entry point of its own, the one installed when that slot
 * was filled: a handler the program installed over ours keeps that entry as
 * the disposition it puts back when switched off (faulthandler.disable()),
 * and the entry then chains to what ours chained to when it was installed,
 * not to the handler that was switched off (which returns at once: a
 * SIGSEGV sent with raise(), as faulthandler._sigsegv() sends it, then did
 * nothing, and CPython's test_concurrent_futures saw a worker that should
 * have died return a result).
 *
 * The same handler sits in front of the other signals a program dies of by
 * its own doing (abort(), a C assert, Py_FatalError; an illegal
 * instruction, a division by zero, a breakpoint, a system call a seccomp
 * filter refuses), only to let the writer write what the ring holds before
 * the program's handler or the default action gets them.  There it takes
 * only the default action's place, or the place of the crash handler we
 * already chain to for SIGSEGV (faulthandler enabled before the run): never
 * a handler of the program's own (it keeps its flags, mask and place), and
 * never SIG_IGN (an exec keeps SIG_IGN, and would then get SIG_DFL).
 */
#include "vmp_guard.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

typedef struct guard_frame {
    sigjmp_buf env;
    struct guard_frame *below;
} guard_frame;

#define TLS __thread __attribute__((tls_model("initial-exec")))

/* The signals our handler takes: the faults a guarded read may raise, then
 * those a program dies of by its own doing (faulthandler's: SIGABRT,
 * SIGILL, SIGFPE; and a breakpoint's and a seccomp filter's, whose
 * default is a core dump too). */
enum { G_SEGV, G_BUS, G_FIRST_FATAL, G_N = G_FIRST_FATAL + 5 };
static const int guarded_signal[G_N] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGTRAP, SIGSYS};

static int index_of(int sig)
{
    for (int i = 0; i < G_N; i++)
        if (guarded_signal[i] == sig)
            return i;
    return -1;
}

static TLS guard_frame *guard_top;
/* Where on this thread's stack our handler called the handler below, per
 * signal; a deeper entry of ours for that signal is that handler calling us
 * back.  (A position, not a flag: a handler below that leaves by longjmp
 * must not mark the thread for good, and a later fault enters at or above
 * it.  Per signal: a crash handler below that calls abort() is calling
 * SIGABRT's handler below, not us back.) */
static TLS uintptr_t chaining_from[G_N];
static TLS uintptr_t last_fault_addr; /* the last fault we passed on, and when it returned */
static TLS int64_t last_return_ns;
static TLS int repeats;

/* A fault at the same address within this long after the handler below
 * returned, this many times in a row, is a loop nobody resolves. */
#define REPEAT_WINDOW_NS 1000000LL
#define REPEATS_MAX 8

#define SLOTS 8
static struct sigaction below[SLOTS][G_N];
static _Atomic unsigned below_current; /* slot index in use */
static int installed, with_fatal;
static _Atomic uint64_t faults;
static void (*_Atomic on_fatal)(void);

void vmp_guard_on_fatal(void (*fn)(void))
{
    atomic_store(&on_fatal, fn);
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Whether returning runs the instruction that raised sig again (a fault),
 * rather than going on after it (a sent signal, a breakpoint's trap, a
 * refused system call, abort()'s raise). */
static int refaults(int sig, const siginfo_t *info)
{
    return info && info->si_code > 0 && (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE);
}

/* What the kernel would do with no handler: a fault re-runs the faulting
 * instruction once we return, anything else is raised again. */
static void default_action(int sig, const siginfo_t *info)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (!refaults(sig, info))
        raise(sig);
}

static void on_fault(unsigned slot, int sig, siginfo_t *info, void *ucontext)
{
    int from_kernel = info && info->si_code > 0;
    guard_frame *g = guard_top;
    if (g && from_kernel && (sig == SIGSEGV || sig == SIGBUS)) {
        guard_top = g->below;
        sigset_t unblock;
        sigemptyset(&unblock);
        sigaddset(&unblock, sig);
        pthread_sigmask(SIG_UNBLOCK, &unblock, NULL); /* we leave without sigreturn */
        siglongjmp(g->env, 1);
    }
    /* Not ours: most likely the program dies of it now.  The profile's
     * samples still in the ring go out first (a bounded wait; the hook
     * does it once a run), so its crash report and status are as before,
     * only a moment later. */
    void (*fatal)(void) = atomic_load(&on_fatal);
    if (fatal) {
        int saved = errno;
        fatal();
        errno = saved;
    }
    int i = index_of(sig);
    if (i < 0) { /* (cannot be: installed for those only) */
        default_action(sig, info);
        return;
    }
    char here;
    if (chaining_from[i] && (uintptr_t)&here < chaining_from[i]) { /* the handler below called ours back */
        default_action(sig, info);
        return;
    }
    chaining_from[i] = 0;
    int again = refaults(sig, info);
    if (again) {
        uintptr_t addr = (uintptr_t)info->si_addr;
        if (addr == last_fault_addr && mono_ns() - last_return_ns < REPEAT_WINDOW_NS) {
            if (++repeats >= REPEATS_MAX) {
                repeats = 0;
                default_action(sig, info);
                return;
            }
        } else {
            repeats = 0;
        }
        last_fault_addr = addr;
    }
    const struct sigaction *b = &below[slot][i];
    if (b->sa_flags & SA_SIGINFO) {
        chaining_from[i] = (uintptr_t)&here;
        b->sa_sigaction(sig, info, ucontext);
        chaining_from[i] = 0;
    } else if (b->sa_handler == SIG_IGN) {
        if (from_kernel) /* the kernel does not let a fault be ignored */
            default_action(sig, info);
    } else if (b->sa_handler == SIG_DFL) {
        default_action(sig, info);
    } else {
        chaining_from[i] = (uintptr_t)&here;
        b->sa_handler(sig);
        chaining_from[i] = 0;
    }
    if (again)
        last_return_ns = mono_ns();
}

/* One entry point per slot (header): which one the kernel called says which
 * slot's dispositions were below ours when it was installed. */
#define ENTRY(n) \
    static void on_fault_##n(int sig, siginfo_t *info, void *ucontext) { on_fault(n, sig, info, ucontext); }
ENTRY(0) ENTRY(1) ENTRY(2) ENTRY(3) ENTRY(4) ENTRY(5) ENTRY(6) ENTRY(7)
#undef ENTRY
typedef void (*fault_entry)(int, siginfo_t *, void *);
static const fault_entry entry[SLOTS] = {on_fault_0, on_fault_1, on_fault_2, on_fault_3,
                                         on_fault_4, on_fault_5, on_fault_6, on_fault_7};

int vmp_guard_run(void (*fn)(void *), void *arg)
{
    guard_frame g;
    g.below = guard_top;
    if (sigsetjmp(g.env, 0)) {
        atomic_fetch_add_explicit(&faults, 1, memory_order_relaxed);
        return -1; /* (on_fault popped g) */
    }
    guard_top = &g;
    fn(arg);
    guard_top = g.below;
    return 0;
}

uint64_t vmp_guard_faults(void)
{
    return atomic_load(&faults);
}

void vmp_guard_reset_faults(void)
{
    atomic_store(&faults, 0);
}

/* The slot whose entry point cur is, or -1: not ours. */
static int slot_of(const struct sigaction *cur)
{
    if (!(cur->sa_flags & SA_SIGINFO))
        return -1;
    for (int k = 0; k < SLOTS; k++)
        if (cur->sa_sigaction == entry[k])
            return k;
    return -1;
}

static int is_ours(const struct sigaction *cur)
{
    return slot_of(cur) >= 0;
}

static int is_default(const struct sigaction *cur)
{
    return !(cur->sa_flags & SA_SIGINFO) && cur->sa_handler == SIG_DFL;
}

/* The same handler, installed the same way (faulthandler puts one function,
 * with the same flags, on SIGSEGV, SIGBUS, SIGABRT, SIGILL and SIGFPE). */
static int same_handler(const struct sigaction *a, const struct sigaction *b)
{
    if (a->sa_flags != b->sa_flags)
        return 0;
    return (a->sa_flags & SA_SIGINFO) ? a->sa_sigaction == b->sa_sigaction : a->sa_handler == b->sa_handler;
}

static int is_a_handler(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) || (sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN);
}

static void our_action(struct sigaction *sa, unsigned slot)
{
    memset(sa, 0, sizeof *sa);
    sa->sa_sigaction = entry[slot];
    /* SA_NODEFER: a fault inside a handler we call must reach us again. */
    sa->sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa->sa_mask);
}

/* Fatal signals only (normal context): where ours was put, and where a
 * handler was then installed over it.  That handler may hold ours as the
 * disposition it puts back when switched off (faulthandler.disable()), and
 * ours would then chain to it if ours had taken its place: so such a
 * signal's crash handler is never taken again (for the process's life). */
static int placed[G_N], maybe_held[G_N];

/* Whether ours goes in front of cur for fatal signal i: where the default
 * action is (the program is about to die of it), or, at the run's start,
 * where the crash handler we chain to for SIGSEGV is (segv: what ours sits
 * in front of there).  Nowhere else: a handler of the program's own is
 * called by the kernel, with its flags and mask, as without us (and one
 * installed during the run may hold ours as its "previous": above); SIG_IGN
 * stays (an exec keeps SIG_IGN: ours would leave the new program SIG_DFL). */
static int take_fatal(int i, const struct sigaction *cur, const struct sigaction *segv, int starting)
{
    if (is_default(cur))
        return 1;
    return starting && !maybe_held[i] && is_a_handler(segv) && !is_ours(segv) && same_handler(cur, segv);
}

/* Puts ours in front of whatever is installed now for SIGSEGV and SIGBUS,
 * keeping what was there in a fresh slot, and in front of the fatal
 * signals' default action or crash handler (take_fatal); unchanged where
 * ours is in front already. */
static void put_in_front(int starting)
{
    struct sigaction cur[G_N];
    int take[G_N], any = 0;
    unsigned now = atomic_load(&below_current), next = (now + 1) % SLOTS;
    for (int i = 0; i < G_N; i++) {
        take[i] = 0;
        if (i >= G_FIRST_FATAL && !with_fatal)
            continue;
        if (sigaction(guarded_signal[i], NULL, &cur[i]) < 0) {
            if (i < G_FIRST_FATAL)
                return;
            continue;
        }
        if (is_ours(&cur[i]))
            continue;
        if (i < G_FIRST_FATAL) {
            take[i] = 1;
        } else {
            if (placed[i] && is_a_handler(&cur[i]))
                maybe_held[i] = 1;
            placed[i] = 0;
            /* (SIGSEGV's crash handler: the one ours chains to there, when
             * ours is in front of it already) */
            int held = slot_of(&cur[G_SEGV]);
            const struct sigaction *segv = held >= 0 ? &below[held][G_SEGV] : &cur[G_SEGV];
            take[i] = take_fatal(i, &cur[i], segv, starting);
        }
        any |= take[i];
    }
    if (!any)
        return;
    for (int i = 0; i < G_N; i++)
        below[next][i] = take[i] ? cur[i] : below[now][i];
    atomic_store_explicit(&below_current, next, memory_order_release);
    struct sigaction ours;
    our_action(&ours, next);
    for (int i = 0; i < G_N; i++)
        if (take[i] && sigaction(guarded_signal[i], &ours, NULL) == 0 && i >= G_FIRST_FATAL)
            placed[i] = 1;
}

void vmp_guard_install(int fatal_too)
{
    with_fatal = fatal_too;
    put_in_front(1);
    installed = 1;
}

void vmp_guard_keep_first(void)
{
    if (installed)
        put_in_front(0);
}

void vmp_guard_restore(void)
{
    if (!installed)
        return;
    installed = 0;
    /* Only where still ours: a handler installed after ours that we could
     * not get in front of again (the run ended first) chains to ours.  What
     * goes back is what the entry installed there chains to: after a
     * handler over ours put back an older entry of ours, the handler itself
     * is switched off and must not be installed again. */
    for (int i = 0; i < G_N; i++) {
        if (i >= G_FIRST_FATAL && !with_fatal)
            continue;
        struct sigaction cur;
        if (sigaction(guarded_signal[i], NULL, &cur) < 0)
            continue;
        int slot = slot_of(&cur);
        if (slot >= 0)
            sigaction(guarded_signal[i], &below[slot][i], NULL);
        else if (i >= G_FIRST_FATAL && placed[i] && is_a_handler(&cur))
            maybe_held[i] = 1;
        if (i >= G_FIRST_FATAL)
            placed[i] = 0;
    }
}
