/*
 * test_native_unwind.c - the native unwinder and its splice with Python frames.
 *
 * The unwinding tests interrupt a chain of named functions with a real timer
 * signal and walk the interrupted context from the handler, as the sampler
 * does; the names are then resolved by vmp_symbols outside the handler.
 * libunwind, which the sampler no longer calls, is the tests' oracle.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <sched.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

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

/* What the writer does between samples: learns the rules of the pcs walks
 * stopped at.  Returns how many it learned. */
static int learn_pending(void)
{
    vmp_symbols *s = vmp_symbols_open();
    uintptr_t pcs[64];
    vmp_unwind_rule r[64];
    int n, learned = 0;
    while (s && (n = vmp_native_take_unknown(pcs, 64)) > 0) {
        for (int i = 0; i < n; i++)
            if (vmp_symbols_unwind_rule(s, pcs[i], &r[i]) < 0)
                r[i] = (vmp_unwind_rule){.lo = pcs[i], .hi = pcs[i] + 1, .kind = VMP_RULE_STOP};
        if (vmp_native_learn(r, n) == 0)
            learned += n;
    }
    vmp_symbols_close(s);
    return learned;
}

/* Setup with nothing learned (what earlier tests learned outlives their
 * teardown, as an earlier run's does). */
static int setup_cold(void)
{
    vmp_native_teardown();
    vmp_native_forget_rules();
    return vmp_native_setup();
}

VMP_TEST(native_unwind_walks_interrupted_chain_in_order_from_the_first_sample)
{
    REQUIRE(setup_cold() == 0);
    /* Nothing is learned yet: the walk reads each pc's rule from its
     * object's .eh_frame and reaches the thread's first frame at once. */
    sample_chain();
    REQUIRE(walked_info.complete);
    REQUIRE(walked_n > 3);
    /* It noted those pcs for the writer; once their functions are learned,
     * the same chain is walked from the learned rules alone. */
    CHECK(learn_pending() > 0);
    sample_chain();
    REQUIRE(walked_info.complete);
    CHECK(learn_pending() == 0);
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
    CHECK(!walked_info.cut);
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
    /* The stack goes on beyond that pc: cut, not taken for a whole stack
     * (it may be a library loaded since the table was made). */
    CHECK(walk.cut);
    CHECK(!vmp_native_is_known_code(0x10));
    CHECK(vmp_native_is_known_code((uintptr_t)&native_test_middle));
    uc.uc_mcontext.gregs[REG_RIP] = 0;
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 0);
    vmp_native_teardown();
}

static volatile int bells;
static void count_bell(void)
{
    bells++;
}

/* A stack whose innermost frame is at the entry of native_test_middle (CFA
 * = rsp + 8, whatever its prologue does next) and whose return address is
 * `ra`. */
static int walk_from_entry(uint64_t ra, uint64_t *frames, vmp_native_walk *walk)
{
    static uint64_t stack[4];
    stack[0] = ra;
    ucontext_t uc;
    getcontext(&uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)&native_test_middle;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)stack;
    return vmp_native_unwind(&uc, frames, 8, walk);
}

VMP_TEST(native_walk_is_cut_at_a_return_address_outside_every_object)
{
    REQUIRE(vmp_native_setup() == 0);
    uint64_t frames[16];
    vmp_native_walk walk;
    bells = 0;
    vmp_native_when_unknown(count_bell);
    vmp_native_refresh_answered(1);
    /* A return address no object holds (a library loaded since the table
     * was made, JIT code): the frame before it is kept, with its range, and
     * the walk says it stopped short.  Before, such a stack passed for a
     * whole one (an extension's init function made the thread's root). */
    CHECK(walk_from_entry(0x10, frames, &walk) == 1);
    CHECK(frames[0] == (uintptr_t)&native_test_middle);
    CHECK(walk.cut && !walk.complete && walk.top == frames[1] + 8);
    /* The writer is rung to look for new objects, once until it answers. */
    CHECK(bells == 1 && vmp_native_refresh_asked() == 1);
    CHECK(walk_from_entry(0x10, frames, &walk) == 1 && walk.cut);
    CHECK(bells == 1);
    vmp_native_refresh_answered(0); /* looked, found none: not re-armed */
    CHECK(walk_from_entry(0x10, frames, &walk) == 1 && walk.cut);
    CHECK(bells == 1 && vmp_native_refresh_asked() == 2);
    vmp_native_refresh_answered(1);
    CHECK(walk_from_entry(0x10, frames, &walk) == 1 && walk.cut);
    CHECK(bells == 2);
    /* A zero return address is the stack's real end: not cut, no bell. */
    vmp_native_refresh_answered(1);
    CHECK(walk_from_entry(0, frames, &walk) == 1);
    CHECK(!walk.cut && walk.top == frames[1] + 8);
    CHECK(bells == 2 && vmp_native_refresh_asked() == 0);
    vmp_native_when_unknown(NULL);
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
    /* Capped, not complete; its rule known (read from .eh_frame, then
     * learned), the capped frame's range is too. */
    CHECK(!walk.complete && walk.top > frames[1]);
    learn_pending();
    CHECK(vmp_native_unwind(&uc, frames, 1, &walk) == 1);
    CHECK(!walk.complete && walk.top > frames[1]);
    CHECK(!walk.cut); /* (the cap, not a missing rule) */
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
    vmp_native_walk walk = {.n = n, .complete = complete, .top = top};
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

/* A native frame's word, as the splice writes it. */
#define NW(pc) vmp_native_word(pc)

/* A native word holds the whole pc, bit 0 too: `pc | 1` read a pc at a
 * function starting at an odd address as the byte before it (named after
 * whatever held that byte, and its id with it).  Marked by bit 0, as code
 * objects' pointers (even) are not. */
VMP_TEST(native_word_keeps_every_bit_of_the_pc)
{
    const uintptr_t pcs[] = {0, 1, 0x5000, 0x11d1, 0x11d0, 0x7f12345678ff, 0x7fffffffffff, 0x7ffffffffffe,
                             (uintptr_t)0xffffffffff600000ull, (uintptr_t)0xffffffffff600401ull,
                             (uintptr_t)UINTPTR_MAX};
    for (size_t i = 0; i < sizeof pcs / sizeof pcs[0]; i++) {
        uint64_t w = vmp_native_word(pcs[i]);
        CHECK(vmp_native_word_is(w));
        CHECK(vmp_native_word_pc(w) == pcs[i]);
    }
    /* an odd pc and the byte before it are two words */
    CHECK(vmp_native_word(0x11d1) != vmp_native_word(0x11d0));
    CHECK(!vmp_native_word_is(0x7f1234567890) && !vmp_native_word_is(0));
}

VMP_TEST(native_splice_keeps_an_odd_pc_whole)
{
    /* The interrupted pc at an odd function start, its caller's call (a
     * return address - 1) at an odd address too. */
    const uint64_t frames[] = {0x5001, 0x100, 0x6003, 0x200};
    uint64_t out[8];
    int n = splice(frames, 2, 1, UINTPTR_MAX, NULL, 0, 0, 1, out, 8);
    CHECK(n == 2 && vmp_native_word_pc(out[0]) == 0x5001 && vmp_native_word_pc(out[1]) == 0x6003);
    n = splice(frames, 2, 1, UINTPTR_MAX, NULL, 0, 0, 2, out, 8);
    CHECK(n == 4 && out[0] == 0 && vmp_native_word_pc(out[1]) == 0x5001 && out[2] == 0 &&
          vmp_native_word_pc(out[3]) == 0x6003);
}

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
    CHECK(SAME(out, n, NW(C_1), 0xf0, 0xe0, NW(EVAL_A), NW(C_2), 0xd0, NW(EVAL_B), NW(C_3)));
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
    CHECK(SAME(out, n, NW(C_1), NW(EVAL_A), NW(C_2), 0xd0, NW(EVAL_B), NW(C_3)));
    /* No group anchored in EVAL_A at all (entering, before its mark). */
    n = splice(chain, 5, 1, UINTPTR_MAX, g + 1, 1, 0, 1, out, 16);
    CHECK(SAME(out, n, NW(C_1), NW(EVAL_A), NW(C_2), 0xd0, NW(EVAL_B), NW(C_3)));
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
    CHECK(SAME(out, n, NW(C_1), NW(EVAL_A), NW(C_2), 0xd0, NW(EVAL_B), NW(C_3)));
    /* As many frames as activations: one each, innermost first. */
    const struct fake_group g2[] = {{0, 1, {0xe0}}, {0, 1, {0xd0}}};
    n = splice(chain, 5, 1, UINTPTR_MAX, g2, 2, 1, 1, out, 16);
    CHECK(SAME(out, n, NW(C_1), 0xe0, NW(EVAL_A), NW(C_2), 0xd0, NW(EVAL_B), NW(C_3)));
    /* A walk that stopped short cannot tell whether EVAL_A runs a frame:
     * the C frames inside it, then the Python frames. */
    n = splice(chain, 4, 0, 0x500, g2, 2, 1, 1, out, 16);
    CHECK(SAME(out, n, NW(C_1), 0xe0, 0xd0));
    vmp_native_teardown();
}

VMP_TEST(native_splice_keeps_python_frames_a_short_walk_missed)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0x280, 1, {0xf0}}, {0x480, 1, {0xe0}}, {0x700, 1, {0xd0}}};
    uint64_t out[16];
    int n = splice(chain, 2, 0, 0x300, g, 3, 0, 1, out, 16);
    CHECK(SAME(out, n, NW(C_1), 0xf0, NW(EVAL_A), 0xe0, 0xd0));
    /* The walk stopped at an evaluation loop it could not step past: it
     * runs the nearest group, the others stay outside. */
    n = splice(chain, 2, 0, 0, g, 3, 0, 1, out, 16);
    CHECK(SAME(out, n, NW(C_1), 0xf0, NW(EVAL_A), 0xe0, 0xd0));
    /* An eval frame with no Python frame left is still a native frame. */
    n = splice(chain, 2, 0, 0x300, g, 0, 0, 1, out, 16);
    CHECK(SAME(out, n, NW(C_1), NW(EVAL_A)));
    vmp_native_teardown();
}

VMP_TEST(native_splice_writes_line_pairs_and_respects_max)
{
    REQUIRE(vmp_native_add_eval_range(0x1000, 0x2000) == 0);
    const struct fake_group g[] = {{0x280, 2, {7, 0xf0}}, {0x380, 2, {9, 0xe0}}};
    uint64_t out[16];
    int n = splice(chain, 3, 0, 0x400, g, 2, 0, 2, out, 16);
    CHECK(SAME(out, n, 0, NW(C_1), 7, 0xf0, 0, NW(EVAL_A), 9, 0xe0, 0, NW(C_2)));
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
    CHECK(SAME(slot, n, NW(C_1), 0xf0, 0xe0, NW(EVAL_A), NW(C_2), 0xd0, NW(EVAL_B), NW(C_3)));
    /* Where the output would overtake a frame not yet read, it stops. */
    uint64_t small[12] = {0};
    memcpy(small + 2, chain, sizeof chain);
    const struct fake_group big[] = {{0x180, 4, {0xa0, 0xb0, 0xc0, 0xd0}}};
    n = splice(small + 2, 5, 1, UINTPTR_MAX, big, 1, 0, 1, small, 12);
    CHECK(n <= 4);
    vmp_native_teardown();
}

/* The oracle: libunwind's own walk of a context, outside signal context, as
 * (pc, sp) pairs the way vmp_native_unwind reports them. */
static int libunwind_walk(ucontext_t *uc, uint64_t *frames, int max)
{
    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, (unw_context_t *)uc, 0) < 0)
        return 0;
    int n = 0;
    do {
        unw_word_t ip, sp;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0 ||
            unw_get_reg(&cursor, UNW_REG_SP, &sp) < 0)
            break;
        frames[2 * n] = n == 0 ? ip : ip - 1;
        frames[2 * n + 1] = sp;
        n++;
    } while (n < max && unw_step(&cursor) > 0);
    return n;
}

/* The walk reports the very frames libunwind reports, with the same stack
 * pointers: the first time (rules read from .eh_frame) and once the writer
 * has learned them (rules from the learned table). */
struct agreement {
    uint64_t oracle[128], first[128], learned[128];
    int noracle, nfirst, nlearned;
    int complete_first, complete_learned;
    int noted_first, noted_learned; /* pcs the writer was left to learn */
};

__attribute__((noinline)) static void walk_leaf(struct agreement *a)
{
    ucontext_t uc;
    getcontext(&uc);
    a->noracle = libunwind_walk(&uc, a->oracle, 64);
    vmp_native_walk walk;
    a->nfirst = vmp_native_unwind(&uc, a->first, 64, &walk);
    a->complete_first = walk.complete;
    a->noted_first = learn_pending();
    a->nlearned = vmp_native_unwind(&uc, a->learned, 64, &walk);
    a->complete_learned = walk.complete;
    a->noted_learned = learn_pending();
}

__attribute__((noinline)) static void walk_mid(struct agreement *a)
{
    walk_leaf(a);
    __asm__ volatile("" ::: "memory");
}

VMP_TEST(native_walk_agrees_with_libunwind_before_and_after_learning)
{
    REQUIRE(setup_cold() == 0);
    static struct agreement a;
    walk_mid(&a);
    REQUIRE(a.noracle > 4);
    CHECK(a.complete_first && a.complete_learned);
    REQUIRE(a.nfirst == a.noracle && a.nlearned == a.noracle);
    for (int i = 0; i < 2 * a.noracle; i++)
        CHECK(a.first[i] == a.oracle[i] && a.learned[i] == a.oracle[i]); /* pcs and stack pointers */
    CHECK(a.noted_first > 0 && a.noted_learned == 0);
    /* Teardown keeps what was learned: the next run's first walk leaves to
     * learn only the pcs the first run did not walk (this test's second
     * call site). */
    uint64_t before[128];
    int nbefore = a.nfirst;
    memcpy(before, a.first, sizeof before);
    vmp_native_teardown();
    REQUIRE(vmp_native_setup() == 0);
    walk_mid(&a);
    CHECK(a.complete_first && a.nfirst == a.noracle);
    for (int i = 0; i < 2 * a.noracle; i++)
        CHECK(a.first[i] == a.oracle[i]);
    int unseen = 0;
    for (int i = 0; i < a.nfirst; i++) {
        int seen = 0;
        for (int j = 0; j < nbefore; j++)
            seen |= before[2 * j] == a.first[2 * i];
        unseen += !seen;
    }
    CHECK(unseen > 0 && unseen < a.nfirst && a.noted_first == unseen);
    vmp_native_teardown();
}

/* A pc of this program's code that no FDE covers (the padding between two
 * functions), found with libdw; 0 when there is none nearby. */
__attribute__((noinline)) static uintptr_t pc_without_rule(void)
{
    vmp_symbols *s = vmp_symbols_open();
    uintptr_t found = 0;
    for (uintptr_t pc = (uintptr_t)&native_test_middle; s && !found && pc < (uintptr_t)&native_test_middle + 65536; pc++) {
        vmp_unwind_rule r;
        if (vmp_native_is_known_code(pc) && vmp_symbols_unwind_rule(s, pc, &r) < 0)
            found = pc;
    }
    vmp_symbols_close(s);
    return found;
}

VMP_TEST(native_walk_stops_at_a_pc_no_rule_can_follow_and_asks_once)
{
    REQUIRE(setup_cold() == 0);
    uintptr_t gap = pc_without_rule();
    REQUIRE(gap != 0);
    ucontext_t uc;
    getcontext(&uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)gap;
    uint64_t frames[16];
    vmp_native_walk walk;
    uintptr_t pcs[4];
    uint64_t generation = vmp_native_rules_generation();
    bells = 0;
    vmp_native_when_unknown(count_bell);
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 1 && !walk.complete);
    CHECK(walk.cut && walk.generation == generation); /* no rule: cut */
    CHECK(bells == 1); /* the writer is woken: the walk was cut there */
    CHECK(vmp_native_take_unknown(pcs, 4) == 1 && pcs[0] == gap);
    CHECK(vmp_native_take_unknown(pcs, 4) == 0); /* taken */
    /* Noted once however many walks stop there before it is learned. */
    vmp_native_unwind(&uc, frames, 8, &walk);
    vmp_native_unwind(&uc, frames, 8, &walk);
    CHECK(vmp_native_take_unknown(pcs, 4) == 1);
    CHECK(bells == 2);
    vmp_unwind_rule stop = {.lo = pcs[0], .hi = pcs[0] + 1, .kind = VMP_RULE_STOP};
    REQUIRE(vmp_native_learn(&stop, 1) == 0);
    CHECK(vmp_native_rules_generation() > generation); /* (a publication) */
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 1 && !walk.complete && walk.top == 0);
    CHECK(walk.cut && walk.generation == vmp_native_rules_generation()); /* a rule no walk can follow */
    CHECK(vmp_native_take_unknown(pcs, 4) == 0); /* known: not asked again */
    CHECK(bells == 2);
    vmp_native_when_unknown(NULL);
    vmp_native_teardown();
}

VMP_TEST(native_walk_wakes_the_writer_only_for_a_pc_it_could_not_get_past)
{
    REQUIRE(setup_cold() == 0);
    ucontext_t uc;
    getcontext(&uc);
    uint64_t frames[2 * 64];
    vmp_native_walk walk;
    bells = 0;
    vmp_native_when_unknown(count_bell);
    /* Every pc of this walk is new and read from .eh_frame: all noted for
     * the writer's next round, none worth a wake-up. */
    CHECK(vmp_native_unwind(&uc, frames, 64, &walk) > 3 && walk.complete);
    CHECK(bells == 0);
    CHECK(learn_pending() == walk.n);
    vmp_native_when_unknown(NULL);
    vmp_native_teardown();
}

/* A walk given fewer frames than the stack has (deep recursion: the sample's
 * room is what its Python frames leave) says the stack goes on (capped),
 * without taking it for a want of rules (cut); one given room for all does
 * not.  Before, a capped walk passed for a whole one. */
VMP_TEST(native_walk_stopped_by_its_frame_budget_is_capped_not_whole)
{
    REQUIRE(setup_cold() == 0);
    ucontext_t uc;
    getcontext(&uc);
    uint64_t frames[2 * 64];
    vmp_native_walk walk;
    int n = vmp_native_unwind(&uc, frames, 64, &walk);
    REQUIRE(n > 3 && walk.complete);
    CHECK(!walk.capped && !walk.cut);
    CHECK(vmp_native_unwind(&uc, frames, n, &walk) == n && walk.complete && !walk.capped);
    CHECK(vmp_native_unwind(&uc, frames, n - 1, &walk) == n - 1);
    CHECK(walk.capped && !walk.cut && !walk.complete && walk.top != 0);
    vmp_native_teardown();
}

/* What the writer learns a complete walk's pcs from: their functions' rows
 * in the objects' own .eh_frame, no libdw asked. */
VMP_TEST(native_rules_from_tables_teach_every_pc_a_complete_walk_noted)
{
    REQUIRE(setup_cold() == 0);
    ucontext_t uc;
    getcontext(&uc);
    static uint64_t first[2 * 64], again[2 * 64];
    vmp_native_walk walk;
    int n = vmp_native_unwind(&uc, first, 64, &walk);
    REQUIRE(n > 3 && walk.complete && !walk.cut);
    uintptr_t pcs[64];
    int noted = vmp_native_take_unknown(pcs, 64);
    CHECK(noted == n);
    static vmp_unwind_rule rules[1024];
    unsigned char done[64];
    int k = vmp_native_rules_from_tables(pcs, noted, rules, 1024, done);
    int all = 1;
    for (int i = 0; i < noted; i++) {
        int in = 0;
        for (int j = 0; j < k && !in; j++)
            in = rules[j].lo <= pcs[i] && pcs[i] < rules[j].hi;
        all &= done[i] && in;
    }
    CHECK(all);
    /* Whole functions, not one row a pc. */
    CHECK(k > noted);
    REQUIRE(vmp_native_learn(rules, k) == 0);
    /* The same walk now finds every rule learned: the same frames, nothing
     * left to learn. */
    CHECK(vmp_native_unwind(&uc, again, 64, &walk) == n && walk.complete);
    CHECK(memcmp(first, again, 2 * (size_t)n * sizeof *first) == 0);
    CHECK(vmp_native_take_unknown(pcs, 64) == 0);
    /* A pc no FDE covers is left for libdw. */
    uintptr_t gap = pc_without_rule();
    REQUIRE(gap != 0);
    CHECK(vmp_native_rules_from_tables(&gap, 1, rules, 1024, done) == 0 && done[0] == 0);
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
    /* The rule holds from the first instruction up to the first push. */
    CHECK(r.lo == (uintptr_t)&native_test_middle && r.hi > r.lo);
    CHECK(vmp_symbols_unwind_rule(s, 0x10, &r) == -1);
    vmp_symbols_close(s);
}

/* Calls of libdwfl's .debug_frame lookup, counted by standing in front of
 * it (this executable's definition is the one vmp_symbols.c links to). */
static int dwarf_cfi_asked;

Dwarf_CFI *dwfl_module_dwarf_cfi(Dwfl_Module *mod, Dwarf_Addr *bias)
{
    static Dwarf_CFI *(*real)(Dwfl_Module *, Dwarf_Addr *);
    dwarf_cfi_asked++;
    if (!real)
        real = (Dwarf_CFI * (*)(Dwfl_Module *, Dwarf_Addr *)) dlsym(RTLD_NEXT, "dwfl_module_dwarf_cfi");
    return real ? real(mod, bias) : NULL;
}

/* A pc in a gap of an object's .eh_frame (padding between functions, code
 * without CFI) has no rule.  Learning that must not ask for the object's
 * .debug_frame when the object has an .eh_frame and no .debug_frame of its
 * own: libdwfl would open the DWARF of its separate debug file (libc6-dbg's:
 * ~50 ms of CPU inflating its sections in every native run, for a file
 * that has no .debug_frame anyway). */
VMP_TEST(native_rule_gaps_of_an_eh_frame_object_never_open_its_dwarf)
{
    vmp_symbols *s = vmp_symbols_open();
    REQUIRE(s);
    /* Every byte of some libc functions (libc has an .eh_frame and no
     * .debug_frame of its own).  clone's child part after the system call
     * has no CFI on purpose (it is a new thread's outermost frame): every
     * native walk of a thread ends in such a gap of clone or clone3. */
    uintptr_t fns[] = {(uintptr_t)&clone, (uintptr_t)&getenv, (uintptr_t)&qsort, (uintptr_t)&fclose};
    vmp_unwind_rule rules[256];
    int rows = 0;
    dwarf_cfi_asked = 0;
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        rows += vmp_symbols_unwind_rules(s, fns[i], rules, 256);
    CHECK(rows > 0);
    CHECK(dwarf_cfi_asked == 0);
    vmp_symbols_close(s);
}

/* A function for the rules the next test makes up: nothing calls it, and
 * it has no unwind information (written without .cfi directives), so that
 * the only rules a walk finds there are the ones the test teaches (the
 * walk would read a compiled function's own from its .eh_frame). */
__asm__(".text\n"
        ".globl native_test_made_up_rules\n"
        ".type native_test_made_up_rules, @function\n"
        "native_test_made_up_rules:\n"
        ".fill 32, 1, 0x90\n"
        "ret\n"
        ".size native_test_made_up_rules, . - native_test_made_up_rules\n");
void native_test_made_up_rules(void);

/* The top of the single frame walked from pc with rsp = stack (a made-up
 * frame whose return address is 0: the walk ends after one step, its top
 * then the CFA the rule gave), or 0 when the walk had no rule there. */
static uintptr_t top_at(uintptr_t pc, uint64_t *stack)
{
    ucontext_t uc;
    getcontext(&uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)pc;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)stack;
    uc.uc_mcontext.gregs[REG_RBP] = 0;
    uint64_t frames[8];
    vmp_native_walk walk;
    vmp_native_unwind(&uc, frames, 4, &walk);
    return walk.cut ? 0 : walk.top;
}

/* Rules learned for overlapping ranges: the known rule stays where both
 * say something, and the new one holds where only it does.  Before, a
 * range that overlapped a known one was dropped whole: its pcs beyond the
 * overlap had no rule, the walk was cut there, and learning the same
 * function again dropped it again (s8-roots, open question 3). */
VMP_TEST(native_rules_that_overlap_known_ones_are_trimmed_not_dropped)
{
    REQUIRE(setup_cold() == 0);
    uintptr_t f = (uintptr_t)&native_test_made_up_rules;
    REQUIRE(vmp_native_is_known_code(f) && vmp_native_is_known_code(f + 15));
    /* CFA = rsp + 8, rsp + 16, rsp + 24: each rule tells by the top it gives */
    vmp_unwind_rule first = {.lo = f, .hi = f + 6, .kind = VMP_RULE_STEP, .cfa_reg = 7, .cfa_off = 8};
    REQUIRE(vmp_native_learn(&first, 1) == 0);
    vmp_unwind_rule later[2] = {
        {.lo = f + 4, .hi = f + 10, .kind = VMP_RULE_STEP, .cfa_reg = 7, .cfa_off = 16},
        /* (overlaps the one before it in the same learning: trimmed too) */
        {.lo = f + 8, .hi = f + 14, .kind = VMP_RULE_STEP, .cfa_reg = 7, .cfa_off = 24},
    };
    REQUIRE(vmp_native_learn(later, 2) == 0);
    uint64_t stack[8] = {0};
    uintptr_t sp = (uintptr_t)stack;
    CHECK(top_at(f + 1, stack) == sp + 8);
    CHECK(top_at(f + 5, stack) == sp + 8);  /* both: the known one stays */
    CHECK(top_at(f + 6, stack) == sp + 16); /* the new one only: before, no rule */
    CHECK(top_at(f + 9, stack) == sp + 16);
    CHECK(top_at(f + 10, stack) == sp + 24); /* before, no rule either */
    CHECK(top_at(f + 13, stack) == sp + 24);
    CHECK(top_at(f + 14, stack) == 0);
    /* A range inside a known one adds nothing; one around a known one adds
     * its two sides. */
    vmp_unwind_rule around = {.lo = f + 12, .hi = f + 17, .kind = VMP_RULE_STEP, .cfa_reg = 7, .cfa_off = 32};
    vmp_unwind_rule inside = {.lo = f + 2, .hi = f + 3, .kind = VMP_RULE_STEP, .cfa_reg = 7, .cfa_off = 40};
    REQUIRE(vmp_native_learn(&inside, 1) == 0);
    REQUIRE(vmp_native_learn(&around, 1) == 0);
    CHECK(top_at(f + 2, stack) == sp + 8);
    CHECK(top_at(f + 13, stack) == sp + 24);
    CHECK(top_at(f + 14, stack) == sp + 32);
    CHECK(top_at(f + 16, stack) == sp + 32);
    CHECK(top_at(f + 17, stack) == 0);
    vmp_native_teardown();
    vmp_native_forget_rules(); /* (made up: no later test may walk with them) */
    uintptr_t pcs[8];
    while (vmp_native_take_unknown(pcs, 8) > 0) /* (the pcs the made-up walks noted) */
        ;
}

/* A walk through frames whose CFA is on rbx, as in ld.so's lazy-binding
 * trampoline (CFA = rbx + 32, the caller's rbx saved at CFA - 32): rbx is
 * taken from the interrupted context for the innermost frame, reloaded from
 * a frame's save slot for its caller, and kept through a frame that does not
 * save it.  Before, a CFA on rbx had no rule (the walk was cut there, in
 * every sample taken while a function was bound lazily). */
VMP_TEST(native_walk_follows_a_cfa_on_rbx_and_reloads_rbx_from_its_slot)
{
    REQUIRE(setup_cold() == 0);
    uintptr_t f = (uintptr_t)&native_test_made_up_rules;
    vmp_unwind_rule made[] = {
        /* the trampoline */
        {.lo = f, .hi = f + 8, .kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RBX, .cfa_off = 32, .rbx_off = -32},
        /* a caller with its CFA on rbx too, rbx unchanged: right only with
         * the rbx the walk reloaded from the trampoline's slot */
        {.lo = f + 8, .hi = f + 16, .kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RBX, .cfa_off = 16},
        /* an ordinary frame that saves rbx where a rule cannot say */
        {.lo = f + 16, .hi = f + 24, .kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RSP, .cfa_off = 8,
         .rbx_off = VMP_RBX_LOST},
        /* an ordinary frame that keeps rbx */
        {.lo = f + 24, .hi = f + 32, .kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RSP, .cfa_off = 8},
    };
    REQUIRE(vmp_native_learn(made, (int)(sizeof made / sizeof *made)) == 0);
    static uint64_t stack[64];
    uintptr_t s = (uintptr_t)stack;
    ucontext_t uc;
    getcontext(&uc);
    uint64_t frames[2 * 8];
    vmp_native_walk walk;

    /* Interrupted in the trampoline at f + 1 with rsp realigned below its
     * frame: rbx = &stack[4] (where it pushed the caller's rbx), so CFA =
     * &stack[8], the return address at stack[7] (into the caller, f + 9);
     * the caller's rbx &stack[30], so the caller's CFA &stack[32], whose
     * return address 0 ends the walk. */
    memset(stack, 0, sizeof stack);
    stack[4] = (uint64_t)(s + 30 * 8);
    stack[7] = (uint64_t)(f + 9);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(f + 1);
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)s;
    uc.uc_mcontext.gregs[REG_RBP] = 0;
    uc.uc_mcontext.gregs[REG_RBX] = (greg_t)(s + 4 * 8);
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 2);
    CHECK(frames[0] == f + 1 && frames[1] == s);
    CHECK(frames[2] == f + 8 && frames[3] == s + 8 * 8);
    CHECK(!walk.cut && walk.top == s + 32 * 8);

    /* The same caller under a frame that keeps rbx: the context's rbx holds
     * for it (CFA = rbx + 16 = &stack[42]). */
    memset(stack, 0, sizeof stack);
    stack[40] = (uint64_t)(f + 9); /* the keeping frame's return address */
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(f + 25);
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(s + 40 * 8);
    uc.uc_mcontext.gregs[REG_RBX] = (greg_t)(s + 40 * 8);
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 2);
    CHECK(frames[2] == f + 8 && frames[3] == s + 41 * 8);
    CHECK(!walk.cut && walk.top == s + 42 * 8);

    /* Under a frame that lost rbx: the caller is kept, not stepped (its CFA
     * would be a guess), and the walk says it was cut. */
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(f + 17);
    CHECK(vmp_native_unwind(&uc, frames, 8, &walk) == 2);
    CHECK(frames[2] == f + 8);
    CHECK(walk.cut && !walk.complete);

    vmp_native_teardown();
    vmp_native_forget_rules(); /* (made up: no later test may walk with them) */
    uintptr_t pcs[8];
    while (vmp_native_take_unknown(pcs, 8) > 0)
        ;
}

/* What a run learned outlives it, unless an object is unloaded before the
 * next one (its addresses may hold another object then). */
VMP_TEST(native_rules_outlive_teardown_unless_an_object_was_unloaded)
{
    REQUIRE(setup_cold() == 0);
    ucontext_t uc;
    getcontext(&uc);
    uint64_t frames[2 * 64];
    vmp_native_walk walk;
    /* (complete at once through .eh_frame: what tells a rule was learned is
     * that the walk leaves no pc for the writer) */
    CHECK(vmp_native_unwind(&uc, frames, 64, &walk) > 1 && walk.complete);
    REQUIRE(learn_pending() > 0);
    vmp_native_teardown();
    REQUIRE(vmp_native_setup() == 0);
    CHECK(vmp_native_unwind(&uc, frames, 64, &walk) > 1 && walk.complete);
    CHECK(learn_pending() == 0); /* kept */
    vmp_native_teardown();
    void *h = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        h = dlopen("libuuid.so.1", RTLD_NOW | RTLD_LOCAL);
    REQUIRE(h); /* (one of them is on every Debian with CPython) */
    REQUIRE(dlclose(h) == 0);
    REQUIRE(vmp_native_setup() == 0);
    CHECK(vmp_native_unwind(&uc, frames, 64, &walk) > 1 && walk.complete);
    CHECK(learn_pending() > 0); /* learned afresh */
    vmp_native_teardown();
}

/* ---- a walk that outlives its run ------------------------------------------ */

/* A handler held inside its walk (a thread stopped there by a debugger, or
 * starved) past the stop's bound: the sampler ends the run without it
 * through vmp_native_abandon, and a next run may start, learn and retire
 * rule tables, while that walk still holds the tables it loaded.  Run
 * under ASan (make test-c-sanitize), teardown in abandon's place reads freed
 * memory: the late walk's code table, and (walkers reset) the rule table
 * the next run's publication retired and freed. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static _Atomic int late_phase; /* 1 the late walk is held, 2 released */
static __thread int late_here;
static _Atomic int late_n = -1;

static void hold_late_walk(void)
{
    if (!late_here || atomic_load(&late_phase) != 0)
        return;
    atomic_store(&late_phase, 1);
    struct timespec ms = {0, 1000000};
    while (atomic_load(&late_phase) == 1)
        nanosleep(&ms, NULL);
}

static void *late_walker(void *arg)
{
    (void)arg;
    late_here = 1;
    ucontext_t uc;
    getcontext(&uc);
    uint64_t frames[2 * 16];
    vmp_native_walk walk;
    atomic_store(&late_n, vmp_native_unwind(&uc, frames, 16, &walk));
    return NULL;
}

VMP_TEST(native_walk_outliving_its_run_reads_no_freed_table)
{
    REQUIRE(vmp_native_setup() == 0);
    atomic_store(&late_phase, 0);
    atomic_store(&late_n, -1);
    vmp_native_test_hook = hold_late_walk;
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, late_walker, NULL) == 0);
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 10000 && atomic_load(&late_phase) != 1; i++)
        nanosleep(&ms, NULL);
    CHECK(atomic_load(&late_phase) == 1);
    vmp_native_abandon(); /* (the run's stop, the walk still inside) */
    /* The next run: its own tables, and a rule learned, which retires the
     * rule table the late walk holds. */
    REQUIRE(vmp_native_setup() == 0);
    vmp_unwind_rule stop = {.lo = 0x1000, .hi = 0x1001, .kind = VMP_RULE_STOP};
    CHECK(vmp_native_learn(&stop, 1) == 0);
    atomic_store(&late_phase, 2);
    pthread_join(th, NULL);
    vmp_native_test_hook = NULL;
    CHECK(atomic_load(&late_n) >= 1); /* (its pc at least: the tables it read were whole) */
    vmp_native_teardown(); /* (no walk left: the abandoned and retired tables go now) */
}
