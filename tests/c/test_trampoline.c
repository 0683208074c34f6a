/*
 * test_trampoline.c - the native walk through copies of CPython's perf
 * trampoline (vmp_trampoline.h): the template decoded into rules, copies
 * found only in anonymous executable mappings the maps list, and walks
 * through them from every instruction and from a return address.
 *
 * The arenas here are made as CPython makes them (an anonymous mapping
 * filled with copies, then made read+execute), from the two templates
 * CPython has used: 3.12/3.13's `sub $8,%rsp; call *%rcx; add $8,%rsp; ret`
 * (copies 11 bytes apart, as 3.12 packs them) and the frame-pointer one,
 * with endbr64, of later versions.  Libpython's own template is decoded too
 * when VMP_TEST_LIBPYTHON names a 3.12+ one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "vmp_native_unwind.h"
#include "vmp_trampoline.h"
#include "vmp_test.h"

static const unsigned char SUB_CALL[] = {0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0x48, 0x83, 0xc4, 0x08, 0xc3};
static const unsigned char FRAME_POINTER[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89,
                                              0xe5, 0xff, 0xd1, 0x5d, 0xc3};

/* Where the copies' frames are recorded (never run: any address will do). */
#define ORIGINAL ((uintptr_t)0x5000)

/* A function whose only rules are the ones a test teaches (see
 * native_test_made_up_rules in test_native_unwind.c). */
__asm__(".text\n"
        ".globl trampoline_test_caller\n"
        ".type trampoline_test_caller, @function\n"
        "trampoline_test_caller:\n"
        ".fill 16, 1, 0x90\n"
        "ret\n"
        ".size trampoline_test_caller, . - trampoline_test_caller\n");
void trampoline_test_caller(void);

/* An arena as CPython maps one: copies `stride` bytes apart from its start. */
static unsigned char *make_arena(const unsigned char *code, size_t len, size_t stride, size_t size)
{
    unsigned char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    for (size_t at = 0; at + len <= size; at += stride)
        memcpy(m + at, code, len);
    if (mprotect(m, size, PROT_READ | PROT_EXEC) < 0) {
        munmap(m, size);
        return NULL;
    }
    return m;
}

static vmp_native_walk walk;
static uint64_t frames[2 * 8];

static int walk_from(uintptr_t pc, uint64_t *sp, uint64_t rbp)
{
    ucontext_t uc;
    getcontext(&uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)pc;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)sp;
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)rbp;
    return vmp_native_unwind(&uc, frames, 8, &walk);
}

static int bells;
static void bell(void)
{
    bells++;
}

VMP_TEST(trampoline_templates_are_decoded_and_strangers_refused)
{
    CHECK(vmp_trampoline_set_template(SUB_CALL, sizeof SUB_CALL, ORIGINAL) == 0);
    CHECK(vmp_trampoline_set_template(FRAME_POINTER, sizeof FRAME_POINTER, ORIGINAL) == 0);
    CHECK(vmp_trampoline_set_template(FRAME_POINTER + 4, sizeof FRAME_POINTER - 4, ORIGINAL) == 0);
    /* an instruction the decoder does not know (mov %rdi,%rax) */
    static const unsigned char other[] = {0x48, 0x89, 0xf8, 0xff, 0xd1, 0xc3};
    /* no call: nothing says where a copy starts */
    static const unsigned char no_call[] = {0x48, 0x83, 0xec, 0x08, 0x48, 0x83, 0xc4, 0x08, 0xc3};
    /* returns with its frame still there */
    static const unsigned char unbalanced[] = {0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0xc3};
    /* pops what it did not push */
    static const unsigned char stray_pop[] = {0xff, 0xd1, 0x5d, 0xc3};
    /* two calls */
    static const unsigned char two_calls[] = {0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0xff, 0xd1,
                                              0x48, 0x83, 0xc4, 0x08, 0xc3};
    CHECK(vmp_trampoline_set_template(other, sizeof other, ORIGINAL) < 0);
    CHECK(vmp_trampoline_set_template(no_call, sizeof no_call, ORIGINAL) < 0);
    CHECK(vmp_trampoline_set_template(unbalanced, sizeof unbalanced, ORIGINAL) < 0);
    CHECK(vmp_trampoline_set_template(stray_pop, sizeof stray_pop, ORIGINAL) < 0);
    CHECK(vmp_trampoline_set_template(two_calls, sizeof two_calls, ORIGINAL) < 0);
    CHECK(!vmp_trampoline_have_template());
    CHECK(vmp_trampoline_scan() == 0); /* (without a template: nothing to look for) */
    vmp_trampoline_forget();
}

/* CPython's own template, when the tests know a libpython that has one. */
VMP_TEST(trampoline_template_of_libpython_is_decoded)
{
    const char *path = getenv("VMP_TEST_LIBPYTHON");
    void *lib = path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    const unsigned char *start = lib ? dlsym(lib, "_Py_trampoline_func_start") : NULL;
    const unsigned char *end = lib ? dlsym(lib, "_Py_trampoline_func_end") : NULL;
    if (!start || !end) {
        fprintf(stderr, "test_trampoline: no libpython with perf trampolines (VMP_TEST_LIBPYTHON): not decoded\n");
    } else {
        CHECK(vmp_trampoline_set_template(start, (size_t)(end - start), (uintptr_t)start) == 0);
        vmp_trampoline_forget();
    }
    if (lib)
        dlclose(lib);
}

/* Walks through copies of the 3.12/3.13 template: known only once the maps
 * were read (before: cut, and the writer rung), then from each of its
 * instructions and from a return address into one, as the template's start;
 * bytes that are no copy's (mid-instruction, a return address elsewhere)
 * are still cut. */
VMP_TEST(native_walk_goes_through_trampoline_copies)
{
    vmp_native_teardown();
    vmp_native_forget_rules();
    REQUIRE(vmp_native_setup() == 0);
    REQUIRE(vmp_trampoline_set_template(SUB_CALL, sizeof SUB_CALL, ORIGINAL) == 0);
    unsigned char *arena = make_arena(SUB_CALL, sizeof SUB_CALL, 11, 65536);
    REQUIRE(arena);
    uintptr_t copy = (uintptr_t)arena + 11 * 300; /* some copy inside */
    static uint64_t stack[64];
    uintptr_t s = (uintptr_t)stack;
    bells = 0;
    vmp_native_when_unknown(bell);
    vmp_native_refresh_answered(1);

    /* Interrupted in the copy at its call (CFA = rsp + 16), the return
     * address at stack[1] zero: the stack's end. */
    memset(stack, 0, sizeof stack);
    CHECK(walk_from(copy + 4, stack, 0) == 1);
    CHECK(walk.cut && frames[0] == copy + 4); /* (the arena is not known yet) */
    CHECK(bells == 1 && vmp_native_refresh_asked() == 1);
    uint64_t gen = vmp_native_rules_generation();
    CHECK(vmp_native_look_for_trampolines() == 1);
    CHECK(vmp_native_rules_generation() > gen);
    CHECK(vmp_native_look_for_trampolines() == 0); /* (nothing new) */
    vmp_native_refresh_answered(1);

    CHECK(walk_from(copy + 4, stack, 0) == 1);
    CHECK(!walk.cut && frames[0] == ORIGINAL && frames[1] == s && walk.top == s + 16);
    /* each instruction: sub (CFA = rsp + 8), call and add (+ 16), ret (+ 8) */
    static const unsigned at[] = {0, 4, 6, 10}, cfa[] = {8, 16, 16, 8};
    for (int i = 0; i < 4; i++) {
        CHECK(walk_from(copy + at[i], stack, 0) == 1);
        CHECK(!walk.cut && frames[0] == ORIGINAL && walk.top == s + cfa[i]);
    }
    /* the first copy of the arena and its last whole one */
    CHECK(walk_from((uintptr_t)arena, stack, 0) == 1 && !walk.cut && walk.top == s + 8);
    uintptr_t last = (uintptr_t)arena + 11 * (65536 / 11 - 1);
    CHECK(walk_from(last + 10, stack, 0) == 1 && !walk.cut && walk.top == s + 8);

    /* A return address into the copy (just after its call), under a frame
     * of a function at its entry (CFA = rsp + 8): the copy's frame is
     * stepped (CFA = its rsp + 16), and its own return address, into a
     * caller whose rule is CFA = rsp + 8, leads to the stack's end. */
    uintptr_t f = (uintptr_t)&trampoline_test_caller;
    vmp_unwind_rule entry = {.lo = f, .hi = f + 16, .kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RSP, .cfa_off = 8};
    REQUIRE(vmp_native_learn(&entry, 1) == 0);
    memset(stack, 0, sizeof stack);
    stack[0] = copy + 6;  /* the callee's return address */
    stack[2] = f + 9;     /* the copy's: its rsp is &stack[1], its CFA &stack[3] */
    CHECK(walk_from(f, stack, 0) == 3);
    CHECK(frames[2] == ORIGINAL && frames[3] == s + 8);
    CHECK(frames[4] == f + 8 && frames[5] == s + 3 * 8);
    CHECK(!walk.cut && walk.top == s + 4 * 8);

    /* Not a copy's instruction boundary, nor a return address after its
     * call: cut, as any code no rule covers. */
    memset(stack, 0, sizeof stack);
    CHECK(walk_from(copy + 5, stack, 0) == 1 && walk.cut);
    stack[0] = copy + 4;
    CHECK(walk_from(f, stack, 0) == 1 && walk.cut);
    /* and an anonymous mapping that is not executable is never read */
    unsigned char *data = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(data != MAP_FAILED);
    memcpy(data, SUB_CALL, sizeof SUB_CALL);
    vmp_trampoline_scan();
    CHECK(!vmp_trampoline_in_mapping((uintptr_t)data) && vmp_trampoline_in_mapping(copy));
    CHECK(walk_from((uintptr_t)data + 4, stack, 0) == 1 && walk.cut);
    munmap(data, 4096);

    vmp_native_when_unknown(NULL);
    vmp_native_teardown();
    vmp_native_forget_rules();
    CHECK(!vmp_trampoline_have_template()); /* (teardown forgets it) */
    munmap(arena, 65536);
    uintptr_t pcs[8];
    while (vmp_native_take_unknown(pcs, 8) > 0)
        ;
}

/* The frame-pointer template: the caller's rbp is where the copy pushed
 * it, from the push on, and in rbp again after the pop. */
VMP_TEST(native_walk_through_a_frame_pointer_trampoline_reloads_rbp)
{
    vmp_native_teardown();
    vmp_native_forget_rules();
    REQUIRE(vmp_native_setup() == 0);
    REQUIRE(vmp_trampoline_set_template(FRAME_POINTER, sizeof FRAME_POINTER, ORIGINAL) == 0);
    unsigned char *arena = make_arena(FRAME_POINTER, sizeof FRAME_POINTER, 16, 65536);
    REQUIRE(arena);
    REQUIRE(vmp_native_look_for_trampolines() == 1);
    uintptr_t copy = (uintptr_t)arena + 16 * 7;
    /* The caller keeps its frame on rbp: CFA = rbp + 16, so its top says
     * which rbp the walk gave it. */
    uintptr_t f = (uintptr_t)&trampoline_test_caller;
    vmp_unwind_rule on_rbp = {.lo = f, .hi = f + 16, .kind = VMP_RULE_STEP, .cfa_reg = VMP_REG_RBP, .cfa_off = 16};
    REQUIRE(vmp_native_learn(&on_rbp, 1) == 0);
    static uint64_t stack[64];
    uintptr_t s = (uintptr_t)stack;
    uint64_t caller_rbp = s + 30 * 8; /* the caller's CFA: &stack[32] */

    /* endbr64 and push: CFA = rsp + 8, rbp still the caller's */
    static const unsigned before[] = {0, 4};
    for (int i = 0; i < 2; i++) {
        memset(stack, 0, sizeof stack);
        stack[0] = f + 9;
        CHECK(walk_from(copy + before[i], stack, caller_rbp) == 2);
        CHECK(frames[0] == ORIGINAL && frames[2] == f + 8 && frames[3] == s + 8);
        CHECK(!walk.cut && walk.top == s + 32 * 8);
    }
    /* mov, call, pop: CFA = rsp + 16, the caller's rbp at CFA - 16 (rbp
     * itself holds the copy's frame, or garbage at the mov) */
    static const unsigned pushed[] = {5, 8, 10};
    for (int i = 0; i < 3; i++) {
        memset(stack, 0, sizeof stack);
        stack[0] = caller_rbp;
        stack[1] = f + 9;
        CHECK(walk_from(copy + pushed[i], stack, 0xdead0) == 2);
        CHECK(frames[2] == f + 8 && frames[3] == s + 16);
        CHECK(!walk.cut && walk.top == s + 32 * 8);
    }
    /* ret: CFA = rsp + 8, rbp the caller's again */
    memset(stack, 0, sizeof stack);
    stack[0] = f + 9;
    CHECK(walk_from(copy + 11, stack, caller_rbp) == 2 && !walk.cut && walk.top == s + 32 * 8);

    vmp_native_teardown();
    vmp_native_forget_rules();
    munmap(arena, 65536);
    uintptr_t pcs[8];
    while (vmp_native_take_unknown(pcs, 8) > 0)
        ;
}
