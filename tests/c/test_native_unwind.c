/*
 * test_native_unwind.c - the native unwinder and its splice with Python frames.
 *
 * The unwinding tests interrupt a chain of named functions with a real timer
 * signal and walk the interrupted context from the handler, as the sampler
 * does; the names are then resolved by vmp_symbols outside the handler.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>

#include "vmp_native_unwind.h"
#include "vmp_symbols.h"
#include "vmp_test.h"

static uintptr_t walked[VMP_NATIVE_MAX_DEPTH];
static volatile int walked_n = -1;
static volatile sig_atomic_t fired;

static void on_prof(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info;
    if (!fired)
        walked_n = vmp_native_unwind(uc, walked, VMP_NATIVE_MAX_DEPTH);
    fired = 1;
}

/* The chain the signal interrupts: outer -> middle -> inner, which burns CPU
 * until the CPU timer fires. */
__attribute__((noinline)) static void native_test_inner(void)
{
    while (!fired)
        __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void native_test_middle(void)
{
    native_test_inner();
    __asm__ volatile("" ::: "memory"); /* keeps the call from being a tail call */
}

__attribute__((noinline)) static void native_test_outer(void)
{
    native_test_middle();
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void sample_chain(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_prof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPROF, &sa, &old);
    fired = 0;
    walked_n = -1;
    struct itimerval it = {{0, 0}, {0, 2000}};
    setitimer(ITIMER_PROF, &it, NULL);
    native_test_outer();
    sigaction(SIGPROF, &old, NULL);
}

/* Index of the first walked frame whose name contains `what`, or -1. */
static int find_frame(vmp_symbols *s, const char *what)
{
    char name[1100];
    for (int i = 0; i < walked_n; i++) {
        vmp_symbols_name(s, vmp_symbols_function_start(s, walked[i]), name, sizeof name);
        if (strstr(name, what))
            return i;
    }
    return -1;
}

VMP_TEST(native_unwind_walks_interrupted_chain_in_order)
{
    REQUIRE(vmp_native_setup() == 0);
    sample_chain();
    REQUIRE(walked_n > 3);
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    int inner = find_frame(s, "n:native_test_inner:");
    int middle = find_frame(s, "n:native_test_middle:");
    int outer = find_frame(s, "n:native_test_outer:");
    int test = find_frame(s, "n:sample_chain:");
    /* The signal landed inside inner: it is the innermost frame. */
    CHECK(inner == 0);
    CHECK(middle == inner + 1);
    CHECK(outer == middle + 1);
    CHECK(test == outer + 1);
    /* The walk reaches the program's entry, past main. */
    CHECK(find_frame(s, "n:main:") > test);
    vmp_symbols_close(s);
    vmp_native_teardown();
}

VMP_TEST(native_unwind_is_zero_without_setup_or_context)
{
    uintptr_t pcs[4];
    vmp_native_teardown();
    ucontext_t uc;
    getcontext(&uc);
    CHECK(vmp_native_unwind(&uc, pcs, 4) == 0);
    REQUIRE(vmp_native_setup() == 0);
    CHECK(vmp_native_unwind(NULL, pcs, 4) == 0);
    vmp_native_teardown();
}

VMP_TEST(native_unwind_stops_at_unknown_code)
{
    REQUIRE(vmp_native_setup() == 0);
    ucontext_t uc;
    getcontext(&uc);
    /* As if the thread were interrupted in JIT code with a garbage frame:
     * the interrupted pc is kept, nothing beyond it is walked. */
    uc.uc_mcontext.gregs[REG_RIP] = 0x10;
    uc.uc_mcontext.gregs[REG_RSP] = 0x20;
    uc.uc_mcontext.gregs[REG_RBP] = 0x30;
    uintptr_t pcs[8];
    CHECK(vmp_native_unwind(&uc, pcs, 8) == 1);
    CHECK(pcs[0] == 0x10);
    CHECK(!vmp_native_is_known_code(0x10));
    CHECK(vmp_native_is_known_code((uintptr_t)&native_test_middle));
    uc.uc_mcontext.gregs[REG_RIP] = 0;
    CHECK(vmp_native_unwind(&uc, pcs, 8) == 0);
    vmp_native_teardown();
}

VMP_TEST(native_unwind_caps_depth)
{
    REQUIRE(vmp_native_setup() == 0);
    ucontext_t uc;
    getcontext(&uc);
    uintptr_t pcs[2] = {0, 0};
    /* getcontext's context is a plain one, not a signal frame, but its pc is
     * exact: the walk must honour the cap whatever the depth. */
    int n = vmp_native_unwind(&uc, pcs, 1);
    CHECK(n == 1);
    CHECK(pcs[1] == 0);
    vmp_native_teardown();
}

VMP_TEST(native_eval_function_ranges_come_from_the_symbol_table)
{
    /* native_test_middle stands in for _PyEval_EvalFrameDefault. */
    REQUIRE(vmp_native_add_eval_function("native_test_middle") == 1);
    uintptr_t mid = (uintptr_t)&native_test_middle;
    CHECK(vmp_native_is_eval(mid));
    CHECK(vmp_native_is_eval(mid + 1));
    CHECK(!vmp_native_is_eval((uintptr_t)&native_test_outer));
    CHECK(vmp_native_add_eval_function("no_such_function_anywhere") == 0);
    vmp_native_teardown();
    CHECK(!vmp_native_is_eval(mid));
}

/* A fake evaluation loop at [0x1000, 0x2000) for the pure splice tests. */
#define EVAL_A 0x1100
#define EVAL_B 0x1200
#define C_1 0x5000
#define C_2 0x6000
#define C_3 0x7000

VMP_TEST(native_splice_places_each_activation_at_its_eval_frame)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    /* Python g (innermost) called C_2 through the C API, which called back
     * into Python f; f's activation ran f and its caller e (3.11+: one C
     * frame, several Python frames; e is the entry frame). */
    const uintptr_t pcs[] = {C_1, EVAL_A, C_2, EVAL_B, C_3};
    const uintptr_t py[] = {0xf0, 0xe0, 0xd0};
    const unsigned char last[] = {0, 1, 1};
    uintptr_t out[16];
    int n = vmp_native_splice(pcs, 5, py, last, 3, 1, out, 16);
    const uintptr_t want[] = {C_1 | 1, 0xf0, 0xe0, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1,
                              C_3 | 1};
    REQUIRE(n == 8);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == want[i]);
    vmp_native_teardown();
}

VMP_TEST(native_splice_keeps_python_frames_a_short_walk_missed)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const uintptr_t pcs[] = {C_1, EVAL_A};
    const uintptr_t py[] = {0xf0, 0xe0, 0xd0};
    const unsigned char last[] = {1, 1, 1};
    uintptr_t out[16];
    int n = vmp_native_splice(pcs, 2, py, last, 3, 1, out, 16);
    const uintptr_t want[] = {C_1 | 1, 0xf0, EVAL_A | 1, 0xe0, 0xd0};
    REQUIRE(n == 5);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == want[i]);
    /* An eval frame with no Python frame left is still a native frame. */
    n = vmp_native_splice(pcs, 2, py, last, 0, 1, out, 16);
    CHECK(n == 2 && out[0] == (C_1 | 1) && out[1] == (EVAL_A | 1));
    vmp_native_teardown();
}

VMP_TEST(native_splice_writes_line_pairs_and_respects_max)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const uintptr_t pcs[] = {C_1, EVAL_A, C_2};
    const uintptr_t py[] = {7, 0xf0, 9, 0xe0}; /* [line, code] pairs */
    const unsigned char last[] = {1, 1};
    uintptr_t out[16];
    int n = vmp_native_splice(pcs, 3, py, last, 2, 2, out, 16);
    const uintptr_t want[] = {0, C_1 | 1, 7, 0xf0, 0, EVAL_A | 1, 0, C_2 | 1, 9, 0xe0};
    REQUIRE(n == 10);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == want[i]);
    /* A cap that falls inside a pair keeps whole pairs only. */
    n = vmp_native_splice(pcs, 3, py, last, 2, 2, out, 5);
    CHECK(n == 4);
    vmp_native_teardown();
}
