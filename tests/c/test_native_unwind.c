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

static uint64_t walked[2 * VMP_NATIVE_MAX_DEPTH]; /* (pc, sp) pairs */
static vmp_native_walk walked_info;
static volatile int walked_n = -1;
static volatile sig_atomic_t fired;

static void on_prof(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info;
    if (!fired)
        walked_n = vmp_native_unwind(uc, walked, VMP_NATIVE_MAX_DEPTH, &walked_info);
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
        vmp_symbols_name(s, vmp_symbols_function_start(s, walked[2 * i]), name, sizeof name);
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
    CHECK(walked_info.complete && walked_info.n == walked_n && walked_info.top == UINTPTR_MAX);
    /* Each frame's stack pointer lies above its callee's. */
    for (int i = 1; i < walked_n; i++)
        CHECK(walked[2 * i + 1] > walked[2 * i - 1]);
    vmp_symbols_close(s);
    vmp_native_teardown();
}

VMP_TEST(native_unwind_is_zero_without_setup_or_context)
{
    uint64_t frames[8];
    vmp_native_teardown();
    ucontext_t uc;
    getcontext(&uc);
    vmp_native_walk walk;
    CHECK(vmp_native_unwind(&uc, frames, 4, &walk) == 0 && walk.n == 0);
    REQUIRE(vmp_native_setup() == 0);
    CHECK(vmp_native_unwind(NULL, frames, 4, &walk) == 0);
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
    uint64_t frames[16];
    vmp_native_walk walk;
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 1);
    CHECK(frames[0] == 0x10 && frames[1] == 0x20);
    CHECK(!walk.complete && walk.top == 0);
    CHECK(!vmp_native_is_known_code(0x10));
    CHECK(vmp_native_is_known_code((uintptr_t)&native_test_middle));
    uc.uc_mcontext.gregs[REG_RIP] = 0;
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 0);
    vmp_native_teardown();
}

VMP_TEST(native_unwind_caps_depth)
{
    REQUIRE(vmp_native_setup() == 0);
    ucontext_t uc;
    getcontext(&uc);
    uint64_t frames[4] = {0, 0, 0, 0};
    /* getcontext's context is a plain one, not a signal frame, but its pc is
     * exact: the walk must honour the cap whatever the depth. */
    vmp_native_walk walk;
    int n = vmp_native_unwind(&uc, frames, 1, &walk);
    CHECK(n == 1);
    CHECK(frames[2] == 0 && frames[3] == 0);
    /* Capped, not complete; the capped frame's range is still known. */
    CHECK(!walk.complete && walk.top > frames[1]);
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
#define EVAL_C 0x1300
#define C_1 0x5000
#define C_2 0x6000
#define C_3 0x7000

/* Python groups as vmp_frames hands them out: an anchor and frames. */
struct fake_group {
    uintptr_t anchor;
    int n;
    uint64_t words[4];
};

struct fake_groups {
    const struct fake_group *g;
    int n, next;
};

static int fake_next(void *ctx, uintptr_t *anchor)
{
    struct fake_groups *f = ctx;
    if (f->next == f->n)
        return 0;
    *anchor = f->g[f->next].anchor;
    return 1;
}

static int fake_emit(void *ctx, uint64_t *out, int max, int *cut)
{
    struct fake_groups *f = ctx;
    const struct fake_group *g = &f->g[f->next++];
    *cut = g->n > max;
    int n = g->n > max ? max : g->n;
    for (int i = 0; i < n; i++)
        out[i] = g->words[i];
    return n;
}

/* Splices `frames` ((pc, sp) pairs) with the groups; returns the words. */
static int splice(const uint64_t *frames, int n, int complete, uintptr_t top,
                  const struct fake_group *g, int ng, int count_mode, int width, uint64_t *out,
                  int max)
{
    struct fake_groups f = {g, ng, 0};
    vmp_native_groups groups = {fake_next, fake_emit, count_mode ? ng : -1, &f};
    vmp_native_walk walk = {n, complete, top};
    return vmp_native_splice(frames, &walk, &groups, width, out, max);
}

static int same(const uint64_t *got, int n, const uint64_t *want, int nwant)
{
    if (n != nwant)
        return 0;
    for (int i = 0; i < n; i++)
        if (got[i] != want[i])
            return 0;
    return 1;
}
#define SAME(got, n, ...)                                                                    \
    same(got, n, (const uint64_t[]){__VA_ARGS__},                                           \
         (int)(sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)))

/* Python g (innermost) called C_2 through the C API, which called back into
 * Python f; f's activation (EVAL_A) runs f and its caller e (3.11+: one C
 * frame, several Python frames), d runs in EVAL_B.  Stack ranges:
 * C_1 [0x100, 0x200), EVAL_A [0x200, 0x300), C_2 [0x300, 0x400), EVAL_B
 * [0x400, 0x500), C_3 [0x500, 0x600). */
static const uint64_t chain[] = {C_1, 0x100, EVAL_A, 0x200, C_2, 0x300, EVAL_B, 0x400, C_3, 0x500};

VMP_TEST(native_splice_places_each_group_at_the_frame_holding_its_anchor)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0x280, 2, {0xf0, 0xe0}}, {0x480, 1, {0xd0}}};
    uint64_t out[16];
    int n = splice(chain, 5, 1, UINTPTR_MAX, g, 2, 0, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, 0xf0, 0xe0, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1, C_3 | 1));
    vmp_native_teardown();
}

VMP_TEST(native_splice_gives_an_activation_without_frames_nobody_elses)
{
    /* Issue 9: the inner activation is clearing a finished frame (3.12+: its
     * shim is the current frame), so its group is empty.  Counting paired
     * EVAL_A with d and put C_2 outside d's caller. */
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0x2f0, 0, {0}}, {0x4f0, 1, {0xd0}}};
    uint64_t out[16];
    int n = splice(chain, 5, 1, UINTPTR_MAX, g, 2, 0, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1, C_3 | 1));
    /* No group anchored in EVAL_A at all (entering, before its mark). */
    n = splice(chain, 5, 1, UINTPTR_MAX, g + 1, 1, 0, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1, C_3 | 1));
    vmp_native_teardown();
}

VMP_TEST(native_splice_without_anchors_leaves_the_innermost_extra_activation_empty)
{
    /* Before 3.11: one frame per activation, no anchor.  A complete walk
     * with one evaluation-loop frame more than frames: the innermost is
     * entering or leaving and runs none. */
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0, 1, {0xd0}}};
    uint64_t out[16];
    int n = splice(chain, 5, 1, UINTPTR_MAX, g, 1, 1, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1, C_3 | 1));
    /* As many frames as activations: one each, innermost first. */
    const struct fake_group g2[] = {{0, 1, {0xe0}}, {0, 1, {0xd0}}};
    n = splice(chain, 5, 1, UINTPTR_MAX, g2, 2, 1, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, 0xe0, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1, C_3 | 1));
    /* A walk that stopped short cannot tell: innermost first, the rest
     * outside. */
    n = splice(chain, 2, 0, 0x300, g2, 2, 1, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, 0xe0, EVAL_A | 1, 0xd0));
    vmp_native_teardown();
}

VMP_TEST(native_splice_keeps_python_frames_a_short_walk_missed)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0x280, 1, {0xf0}}, {0x480, 1, {0xe0}}, {0x700, 1, {0xd0}}};
    uint64_t out[16];
    int n = splice(chain, 2, 0, 0x300, g, 3, 0, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, 0xf0, EVAL_A | 1, 0xe0, 0xd0));
    /* The walk stopped at an evaluation loop it could not step past: it
     * runs the nearest group, the others stay outside. */
    n = splice(chain, 2, 0, 0, g, 3, 0, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, 0xf0, EVAL_A | 1, 0xe0, 0xd0));
    /* An eval frame with no Python frame left is still a native frame. */
    n = splice(chain, 2, 0, 0x300, g, 0, 0, 1, out, 16);
    CHECK(SAME(out, n, C_1 | 1, EVAL_A | 1));
    vmp_native_teardown();
}

VMP_TEST(native_splice_writes_line_pairs_and_respects_max)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0x280, 2, {7, 0xf0}}, {0x380, 2, {9, 0xe0}}};
    uint64_t out[16];
    int n = splice(chain, 3, 0, 0x400, g, 2, 0, 2, out, 16);
    CHECK(SAME(out, n, 0, C_1 | 1, 7, 0xf0, 0, EVAL_A | 1, 9, 0xe0, 0, C_2 | 1));
    /* A cap that falls inside a pair keeps whole pairs only. */
    n = splice(chain, 3, 0, 0x400, g, 2, 0, 2, out, 5);
    CHECK(n == 4);
    vmp_native_teardown();
}

VMP_TEST(native_splice_in_place_from_the_tail_of_one_buffer)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    /* As the sampler does it: native frames walked into the tail of the
     * slot, the splice writing from its start. */
    uint64_t slot[16] = {0};
    uint64_t *frames = slot + 16 - 10;
    memcpy(frames, chain, sizeof chain);
    const struct fake_group g[] = {{0x280, 2, {0xf0, 0xe0}}, {0x480, 1, {0xd0}}};
    int n = splice(frames, 5, 1, UINTPTR_MAX, g, 2, 0, 1, slot, 16);
    CHECK(SAME(slot, n, C_1 | 1, 0xf0, 0xe0, EVAL_A | 1, C_2 | 1, 0xd0, EVAL_B | 1, C_3 | 1));
    /* Where the output would overtake a frame not yet read, it stops. */
    uint64_t small[12] = {0};
    memcpy(small + 2, chain, sizeof chain);
    const struct fake_group big[] = {{0x180, 4, {0xa0, 0xb0, 0xc0, 0xd0}}};
    n = splice(small + 2, 5, 1, UINTPTR_MAX, big, 1, 0, 1, small, 12);
    CHECK(n <= 4);
    vmp_native_teardown();
}

/* The fast walk, once it has learned the rule of every pc the slow walk
 * reported, reports the very same frames. */
__attribute__((noinline)) static int fast_leaf(uint64_t *slow, int *nslow, uint64_t *fast,
                                               int *nfast, int *nfast_before)
{
    ucontext_t uc;
    getcontext(&uc);
    *nslow = vmp_native_unwind_slow(&uc, slow, 64, NULL);
    *nfast_before = vmp_native_unwind_fast(&uc, fast, 64, NULL);
    vmp_symbols *s = vmp_symbols_open();
    int learned = 0;
    for (int i = 0; s && i < *nslow; i++) {
        vmp_unwind_rule r, r1;
        uintptr_t even = slow[2 * i] & ~(uintptr_t)1;
        if (vmp_symbols_unwind_rule(s, even, &r) == 0 &&
            vmp_symbols_unwind_rule(s, even + 1, &r1) == 0 && memcmp(&r, &r1, sizeof r) == 0 &&
            vmp_native_learn(even, &r) == 0)
            learned++;
    }
    vmp_symbols_close(s);
    *nfast = vmp_native_unwind_fast(&uc, fast, 64, NULL);
    return learned;
}

__attribute__((noinline)) static int fast_mid(uint64_t *slow, int *nslow, uint64_t *fast,
                                              int *nfast, int *nfast_before)
{
    int r = fast_leaf(slow, nslow, fast, nfast, nfast_before);
    __asm__ volatile("" ::: "memory");
    return r;
}

VMP_TEST(native_fast_walk_agrees_with_libunwind_once_learned)
{
    REQUIRE(vmp_native_setup() == 0);
    uint64_t slow[128], fast[128];
    int nslow = 0, nfast = 0, nfast_before = 0;
    int learned = fast_mid(slow, &nslow, fast, &nfast, &nfast_before);
    CHECK(nfast_before == -1); /* nothing learned yet: the fast walk declines */
    REQUIRE(nslow > 4);
    CHECK(learned == nslow);
    REQUIRE(nfast == nslow);
    for (int i = 0; i < 2 * nslow; i++)
        CHECK(fast[i] == slow[i]); /* pcs and stack pointers */
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
    uint64_t frames[16];
    CHECK(vmp_native_unwind(&uc, frames, 8, NULL) == 1);
    CHECK(frames[0] == iter + 1);
    vmp_native_teardown();
}
