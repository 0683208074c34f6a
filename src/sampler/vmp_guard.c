/*
 * vmp_guard.c - the fault guard (contract in vmp_guard.h).
 *
 * Each guarded call leaves a sigjmp_buf in a thread-local pointer
 * (initial-exec TLS: reading it in a signal handler never allocates).  Our
 * SIGSEGV/SIGBUS handler jumps back there when it is set, and otherwise does
 * what the program's previous disposition would have done.
 */
#include "vmp_guard.h"

#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

static __thread sigjmp_buf *walk_guard __attribute__((tls_model("initial-exec")));
static struct sigaction old_segv, old_bus;
static int fault_handler_installed;
static _Atomic uint64_t faults;

static void on_fault(int sig, siginfo_t *info, void *ucontext)
{
    sigjmp_buf *guard = walk_guard;
    if (guard) {
        walk_guard = NULL;
        sigset_t unblock;
        sigemptyset(&unblock);
        sigaddset(&unblock, sig);
        pthread_sigmask(SIG_UNBLOCK, &unblock, NULL); /* we leave without sigreturn */
        siglongjmp(*guard, 1);
    }
    const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, info, ucontext);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        /* Default action: put it back; the faulting instruction runs again
         * and the kernel ends the process as it would have without us. */
        signal(sig, SIG_DFL);
    }
}

int vmp_guard_run(void (*fn)(void *), void *arg)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) {
        atomic_fetch_add_explicit(&faults, 1, memory_order_relaxed);
        return -1;
    }
    walk_guard = &env;
    fn(arg);
    walk_guard = NULL;
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

static int is_ours(int sig)
{
    struct sigaction cur;
    return sigaction(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault;
}

void vmp_guard_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    /* (Left installed by a run whose last signal never arrived: the
     * program's handlers are already in old_segv and old_bus.) */
    if (is_ours(SIGSEGV))
        return;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    fault_handler_installed = 1;
}

void vmp_guard_restore(void)
{
    if (!fault_handler_installed)
        return;
    /* Only when still ours: a handler installed after ours (faulthandler)
     * chains to ours and must keep working. */
    if (is_ours(SIGSEGV))
        sigaction(SIGSEGV, &old_segv, NULL);
    if (is_ours(SIGBUS))
        sigaction(SIGBUS, &old_bus, NULL);
    fault_handler_installed = 0;
}
