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

static TLS guard_frame *guard_top;
/* Where on this thread's stack our handler called the handler below; a
 * deeper entry of ours is that handler calling us back.  (A position, not a
 * flag: a handler below that leaves by longjmp must not mark the thread for
 * good, and a later fault enters at or above it.) */
static TLS uintptr_t chaining_from;
static TLS uintptr_t last_fault_addr; /* the last fault we passed on, and when it returned */
static TLS int64_t last_return_ns;
static TLS int repeats;

/* A fault at the same address within this long after the handler below
 * returned, this many times in a row, is a loop nobody resolves. */
#define REPEAT_WINDOW_NS 1000000LL
#define REPEATS_MAX 8

#define SLOTS 8
static struct sigaction below_segv[SLOTS], below_bus[SLOTS];
static _Atomic unsigned below_current; /* slot index in use */
static int installed;
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

/* What the kernel would do with no handler: a fault re-runs the faulting
 * instruction once we return, a sent signal is sent again. */
static void default_action(int sig, const siginfo_t *info)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (!info || info->si_code <= 0)
        raise(sig);
}

static void on_fault(int sig, siginfo_t *info, void *ucontext)
{
    int from_kernel = info && info->si_code > 0;
    guard_frame *g = guard_top;
    if (g && from_kernel) {
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
    char here;
    if (chaining_from && (uintptr_t)&here < chaining_from) { /* the handler below called ours back */
        default_action(sig, info);
        return;
    }
    chaining_from = 0;
    if (from_kernel) {
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
    unsigned slot = atomic_load_explicit(&below_current, memory_order_acquire);
    const struct sigaction *below = sig == SIGSEGV ? &below_segv[slot] : &below_bus[slot];
    if (below->sa_flags & SA_SIGINFO) {
        chaining_from = (uintptr_t)&here;
        below->sa_sigaction(sig, info, ucontext);
        chaining_from = 0;
    } else if (below->sa_handler == SIG_IGN) {
        if (from_kernel) /* the kernel does not let a fault be ignored */
            default_action(sig, info);
    } else if (below->sa_handler == SIG_DFL) {
        default_action(sig, info);
    } else {
        chaining_from = (uintptr_t)&here;
        below->sa_handler(sig);
        chaining_from = 0;
    }
    if (from_kernel)
        last_return_ns = mono_ns();
}

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

static int is_ours(const struct sigaction *cur)
{
    return (cur->sa_flags & SA_SIGINFO) && cur->sa_sigaction == on_fault;
}

static void our_action(struct sigaction *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sa_sigaction = on_fault;
    /* SA_NODEFER: a fault inside a handler we call must reach us again. */
    sa->sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa->sa_mask);
}

/* Puts ours in front of whatever is installed now for SIGSEGV and SIGBUS,
 * keeping what was there in a fresh slot; unchanged when ours is in front
 * of both already. */
static void put_in_front(void)
{
    struct sigaction segv, bus, ours;
    if (sigaction(SIGSEGV, NULL, &segv) < 0 || sigaction(SIGBUS, NULL, &bus) < 0)
        return;
    if (is_ours(&segv) && is_ours(&bus))
        return;
    unsigned cur = atomic_load(&below_current), next = (cur + 1) % SLOTS;
    below_segv[next] = is_ours(&segv) ? below_segv[cur] : segv;
    below_bus[next] = is_ours(&bus) ? below_bus[cur] : bus;
    atomic_store_explicit(&below_current, next, memory_order_release);
    our_action(&ours);
    sigaction(SIGSEGV, &ours, NULL);
    sigaction(SIGBUS, &ours, NULL);
}

void vmp_guard_install(void)
{
    put_in_front();
    installed = 1;
}

void vmp_guard_keep_first(void)
{
    if (installed)
        put_in_front();
}

void vmp_guard_restore(void)
{
    if (!installed)
        return;
    installed = 0;
    /* Only where still ours: a handler installed after ours that we could
     * not get in front of again (the run ended first) chains to ours. */
    unsigned slot = atomic_load(&below_current);
    struct sigaction cur;
    if (sigaction(SIGSEGV, NULL, &cur) == 0 && is_ours(&cur))
        sigaction(SIGSEGV, &below_segv[slot], NULL);
    if (sigaction(SIGBUS, NULL, &cur) == 0 && is_ours(&cur))
        sigaction(SIGBUS, &below_bus[slot], NULL);
}
