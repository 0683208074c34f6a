/*
 * test_native_unwind.c - the native unwinder and its splice with Python frames.
 *
 * The unwinding tests interrupt a chain of named functions with a real timer
 * signal and walk the interrupted context from the handler, as the sampler
 * does; the names are then resolved by vmp_symbols outside the handler.
 */
#define _GNU_SOURCE
#include <link.h>
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
    const uint64_t py[] = {0xf0, 0xe0, 0xd0};
    const unsigned char last[] = {0, 1, 1};
    uint64_t out[16];
    int n = vmp_native_splice(pcs, 5, py, last, 3, 1, out, 16);
    const uint64_t want[] = {C_1 | 1, 0xf0, 0xe0, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1,
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
    const uint64_t py[] = {0xf0, 0xe0, 0xd0};
    const unsigned char last[] = {1, 1, 1};
    uint64_t out[16];
    int n = vmp_native_splice(pcs, 2, py, last, 3, 1, out, 16);
    const uint64_t want[] = {C_1 | 1, 0xf0, EVAL_A | 1, 0xe0, 0xd0};
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
    const uint64_t py[] = {7, 0xf0, 9, 0xe0}; /* [line, code] pairs */
    const unsigned char last[] = {1, 1};
    uint64_t out[16];
    int n = vmp_native_splice(pcs, 3, py, last, 2, 2, out, 16);
    const uint64_t want[] = {0, C_1 | 1, 7, 0xf0, 0, EVAL_A | 1, 0, C_2 | 1, 9, 0xe0};
    REQUIRE(n == 10);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == want[i]);
    /* A cap that falls inside a pair keeps whole pairs only. */
    n = vmp_native_splice(pcs, 3, py, last, 2, 2, out, 5);
    CHECK(n == 4);
    vmp_native_teardown();
}

VMP_TEST(native_splice_in_place_from_the_tail_of_one_buffer)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    /* As the sampler does it: Python frames walked into the tail of the slot,
     * the splice writing from its start. */
    const uintptr_t pcs[] = {C_1, EVAL_A, C_2, EVAL_B, C_3};
    uint64_t slot[16] = {0};
    uint64_t *py = slot + 16 - 3;
    py[0] = 0xf0, py[1] = 0xe0, py[2] = 0xd0;
    const unsigned char last[] = {0, 1, 1};
    int n = vmp_native_splice(pcs, 5, py, last, 3, 1, slot, 16);
    const uint64_t want[] = {C_1 | 1, 0xf0, 0xe0, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1,
                             C_3 | 1};
    REQUIRE(n == 8);
    for (int i = 0; i < n; i++)
        CHECK(slot[i] == want[i]);
    vmp_native_teardown();
}

/* The fast walk, once it has learned the rule of every pc the slow walk
 * reported, reports the very same frames. */
__attribute__((noinline)) static int fast_leaf(uintptr_t *slow, int *nslow, uintptr_t *fast,
                                               int *nfast, int *nfast_before)
{
    ucontext_t uc;
    getcontext(&uc);
    *nslow = vmp_native_unwind_slow(&uc, slow, 64);
    *nfast_before = vmp_native_unwind_fast(&uc, fast, 64);
    vmp_symbols *s = vmp_symbols_open();
    int learned = 0;
    for (int i = 0; s && i < *nslow; i++) {
        vmp_unwind_rule r, r1;
        uintptr_t even = slow[i] & ~(uintptr_t)1;
        if (vmp_symbols_unwind_rule(s, even, &r) == 0 &&
            vmp_symbols_unwind_rule(s, even + 1, &r1) == 0 && memcmp(&r, &r1, sizeof r) == 0 &&
            vmp_native_learn(even, &r) == 0)
            learned++;
    }
    vmp_symbols_close(s);
    *nfast = vmp_native_unwind_fast(&uc, fast, 64);
    return learned;
}

__attribute__((noinline)) static int fast_mid(uintptr_t *slow, int *nslow, uintptr_t *fast,
                                              int *nfast, int *nfast_before)
{
    int r = fast_leaf(slow, nslow, fast, nfast, nfast_before);
    __asm__ volatile("" ::: "memory");
    return r;
}

VMP_TEST(native_fast_walk_agrees_with_libunwind_once_learned)
{
    REQUIRE(vmp_native_setup() == 0);
    uintptr_t slow[64], fast[64];
    int nslow = 0, nfast = 0, nfast_before = 0;
    int learned = fast_mid(slow, &nslow, fast, &nfast, &nfast_before);
    CHECK(nfast_before == -1); /* nothing learned yet: the fast walk declines */
    REQUIRE(nslow > 4);
    CHECK(learned == nslow);
    REQUIRE(nfast == nslow);
    for (int i = 0; i < nslow; i++)
        CHECK(fast[i] == slow[i]);
    /* Teardown forgets what was learned. */
    vmp_native_teardown();
    REQUIRE(vmp_native_setup() == 0);
    fast_mid(slow, &nslow, fast, &nfast, &nfast_before);
    CHECK(nfast_before == -1);
    vmp_native_teardown();
}

VMP_TEST(native_rules_read_the_unwind_tables)
{
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    vmp_unwind_rule r;
    /* At a function's first instruction the return address is at the stack
     * pointer: CFA = rsp + 8, rbp untouched. */
    REQUIRE(vmp_symbols_unwind_rule(s, (uintptr_t)&native_test_middle, &r) == 0);
    CHECK(r.kind == VMP_RULE_STEP && r.cfa_reg == 7 && r.cfa_off == 8 && r.rbp_off == 0);
    CHECK(vmp_symbols_unwind_rule(s, 0x10, &r) == -1);
    vmp_symbols_close(s);
}

VMP_TEST(native_unwind_never_walks_a_thread_inside_the_loader_slowly)
{
    REQUIRE(vmp_native_setup() == 0);
    uintptr_t iter = (uintptr_t)&dl_iterate_phdr;
    CHECK(vmp_native_in_loader(iter));
    CHECK(vmp_native_in_loader(iter + 1));
    CHECK(!vmp_native_in_loader((uintptr_t)&native_test_middle));
    /* Interrupted in dl_iterate_phdr with no learned rule: libunwind would
     * look its tables up under the very lock the thread may hold. */
    ucontext_t uc;
    getcontext(&uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(iter + 1);
    uintptr_t pcs[8];
    CHECK(vmp_native_unwind(&uc, pcs, 8) == 1);
    CHECK(pcs[0] == iter + 1);
    vmp_native_teardown();
}
