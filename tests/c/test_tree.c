/* test_tree.c - the call tree of the query layer by address (the original
 * reader's Stats/Node view): merging of recursion, counts, lines, meta,
 * threads, the Python-only (flattened) view and per-function totals. */
#include <stdint.h>
#include <stdlib.h>

#include "vmp_profile.h"
#include "vmp_test.h"
#include "vmprof.h"

enum { A = 0x10, B = 0x20, C = 0x30, D = 0x40 };

#define BY_ADDRESS (VMP_Q_BY_ADDRESS | VMP_Q_MERGE_RECURSION | VMP_Q_KEEP_RUNNER)

static void add(vmp_profile *p, const uint64_t *addrs, uint32_t n, uint64_t thread, int times)
{
    vmp_frame f[16];
    for (uint32_t i = 0; i < n; i++)
        f[i] = (vmp_frame){addrs[i], 0, VMP_FRAME_PYTHON};
    for (int k = 0; k < times; k++)
        vmp_profile_add_sample(p, f, n, thread, 0);
}

static vmp_tree *build(const vmp_profile *p, int thread, unsigned flags, vmp_error *err)
{
    vmp_query q = {.frames = BY_ADDRESS | flags};
    if (thread >= 0) {
        q.thread_set = 1;
        q.thread = (uint32_t)thread;
    }
    return vmp_query_tree(p, &q, err);
}

static vmp_func_counts *functions(const vmp_profile *p, unsigned flags, vmp_error *err)
{
    vmp_query q = {.frames = BY_ADDRESS | flags};
    return vmp_query_functions(p, &q, err);
}

static const uint64_t zero_meta[VMP_FRAME_KIND_COUNT];
#define META(i) (t->nodes[i].meta != VMP_NONE ? t->meta[t->nodes[i].meta] : zero_meta)

static uint32_t find_child(const vmp_tree *t, uint32_t node, uint64_t addr, uint8_t kind)
{
    for (uint32_t c = t->nodes[node].first_child; c != VMP_NONE; c = t->nodes[c].next_sibling)
        if (t->nodes[c].addr == addr && t->nodes[c].kind == kind)
            return c;
    return VMP_NONE;
}

static uint32_t child(const vmp_tree *t, uint32_t node, uint64_t addr)
{
    return find_child(t, node, addr, VMP_FRAME_PYTHON);
}

static const vmp_func_count *func(const vmp_func_counts *fc, uint64_t addr)
{
    for (size_t i = 0; i < fc->n; i++)
        if (fc->items[i].addr == addr)
            return &fc->items[i];
    return NULL;
}

static vmp_profile *sample_profile(void)
{
    vmp_profile *p = vmp_profile_new();
    uint64_t abc[] = {A, B, C}, ab[] = {A, B}, abbc[] = {A, B, B, C}, ad[] = {A, D},
             abab[] = {A, B, A, B};
    add(p, abc, 3, 1, 2);
    add(p, ab, 2, 1, 1);
    add(p, abbc, 4, 1, 1);
    add(p, ad, 2, 2, 1);
    add(p, abab, 4, 1, 1);
    return p;
}

VMP_TEST(tree_counts_and_recursion_merge)
{
    vmp_profile *p = sample_profile();
    REQUIRE(p);
    vmp_error err;
    vmp_tree *t = build(p, -1, 0, &err);
    REQUIRE(t);
    size_t n = t->n_nodes;
    const vmp_tree_node *nodes = t->nodes;
    CHECK(nodes[0].total == 6 && nodes[0].parent == VMP_NONE);
    uint32_t a = child(t, 0, A);
    REQUIRE(a != VMP_NONE);
    CHECK(nodes[a].total == 6 && nodes[a].self == 0 && nodes[0].n_children == 1);
    uint32_t b = child(t, a, B);
    REQUIRE(b != VMP_NONE);
    CHECK(nodes[b].total == 5 && nodes[b].self == 1); /* ab; abbc merged B,B */
    uint32_t c = child(t, b, C);
    REQUIRE(c != VMP_NONE);
    CHECK(nodes[c].total == 3 && nodes[c].self == 3);
    CHECK(child(t, b, B) == VMP_NONE); /* consecutive B,B is one node */
    uint32_t ba = child(t, b, A); /* A,B,A,B is not consecutive: nested */
    REQUIRE(ba != VMP_NONE);
    CHECK(nodes[ba].total == 1 && child(t, ba, B) != VMP_NONE);
    uint32_t d = child(t, a, D);
    CHECK(d != VMP_NONE && nodes[d].total == 1);
    /* children ordered by count: B (5) before D (1) */
    CHECK(nodes[a].first_child == b && nodes[b].next_sibling == d);
    CHECK(nodes[d].next_sibling == VMP_NONE && nodes[a].n_children == 2);
    /* every node's count is its self count plus its children's counts */
    for (size_t i = 0; i < n; i++) {
        uint64_t sum = nodes[i].self;
        for (uint32_t k = nodes[i].first_child; k != VMP_NONE; k = nodes[k].next_sibling)
            sum += nodes[k].total;
        CHECK(sum == nodes[i].total);
    }

    /* functions: each counted once per sample, recursion included */
    vmp_func_counts *fs = functions(p, 0, &err);
    REQUIRE(fs);
    const vmp_func_count *fa = func(fs, A), *fb = func(fs, B), *fc = func(fs, C);
    REQUIRE(fa && fb && fc);
    CHECK(fa->total == 6 && fa->self == 0);
    CHECK(fb->total == 5 && fb->self == 2); /* ab and abab */
    CHECK(fc->total == 3 && fc->self == 3);
    CHECK(fs->n == 4 && fs->items[0].addr == A && fs->items[3].addr == D);
    vmp_result_free(fs);
    vmp_result_free(t);
    vmp_profile_free(p);
}

VMP_TEST(tree_one_thread)
{
    vmp_profile *p = sample_profile();
    REQUIRE(p);
    vmp_error err;
    vmp_tree *t = build(p, 1, 0, &err); /* thread index 1 = thread id 2 */
    REQUIRE(t);
    size_t n = t->n_nodes;
    const vmp_tree_node *nodes = t->nodes;
    CHECK(nodes[0].total == 1 && n == 3);
    uint32_t a = child(t, 0, A);
    CHECK(a != VMP_NONE && child(t, a, D) != VMP_NONE && child(t, a, B) == VMP_NONE);
    vmp_result_free(t);
    vmp_profile_free(p);
}

VMP_TEST(tree_lines_per_node)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    vmp_frame s1[2] = {{A, 5, 0}, {B, 10, 0}};
    vmp_frame s2[2] = {{A, 5, 0}, {B, 11, 0}};
    vmp_frame s3[3] = {{A, 6, 0}, {B, 12, 0}, {B, 11, 0}}; /* run B,B: innermost line */
    vmp_profile_add_sample(p, s1, 2, 1, 0);
    vmp_profile_add_sample(p, s1, 2, 1, 0);
    vmp_profile_add_sample(p, s2, 2, 1, 0);
    vmp_profile_add_sample(p, s3, 3, 1, 0);
    vmp_error err;
    vmp_tree *t = build(p, -1, 0, &err);
    REQUIRE(t);
    size_t n = t->n_nodes;
    const vmp_tree_node *nodes = t->nodes;
    uint32_t a = child(t, 0, A), b = child(t, a, B);
    REQUIRE(a != VMP_NONE && b != VMP_NONE);
    CHECK(nodes[b].total == 4 && n == 3);
    size_t nb, na;
    const vmp_line_count *bl = vmp_tree_lines(t, b, &nb), *al = vmp_tree_lines(t, a, &na);
    REQUIRE(nb == 2 && na == 2);
    CHECK(bl[0].line == 10 && bl[0].count == 2);
    CHECK(bl[1].line == 11 && bl[1].count == 2);
    CHECK(al[0].line == 5 && al[0].count == 3 && al[1].line == 6 && al[1].count == 1);
    vmp_result_free(t);
    vmp_profile_free(p);
}

VMP_TEST(tree_meta_and_python_only)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    /* PyPy-like: python A, jitted B, then gc / blackhole / assembler below */
    vmp_frame gc[3] = {{A, 0, VMP_FRAME_PYTHON}, {B, 0, VMP_FRAME_JIT}, {0, 0, VMP_FRAME_GC}};
    vmp_frame bh[3] = {{A, 0, VMP_FRAME_PYTHON}, {B, 0, VMP_FRAME_JIT},
                       {0, 0, VMP_FRAME_BLACKHOLE}};
    vmp_frame asm2[4] = {{A, 0, VMP_FRAME_PYTHON}, {B, 0, VMP_FRAME_JIT},
                         {0x99, 0, VMP_FRAME_ASSEMBLER}, {0x98, 0, VMP_FRAME_ASSEMBLER}};
    /* CPython native mode: natives between and below Python frames */
    vmp_frame nat[4] = {{A, 0, VMP_FRAME_PYTHON}, {0x501, 0, VMP_FRAME_NATIVE},
                        {B, 0, VMP_FRAME_PYTHON}, {0x601, 0, VMP_FRAME_NATIVE}};
    vmp_profile_add_sample(p, gc, 3, 1, 0);
    vmp_profile_add_sample(p, bh, 3, 1, 0);
    vmp_profile_add_sample(p, asm2, 4, 1, 0);
    vmp_profile_add_sample(p, nat, 4, 1, 0);
    vmp_error err;

    vmp_tree *t = build(p, -1, 0, &err);
    REQUIRE(t);
    size_t n;
    const vmp_tree_node *nodes = t->nodes;
    uint32_t a = child(t, 0, A);
    uint32_t bj = find_child(t, a, B, VMP_FRAME_JIT);
    REQUIRE(a != VMP_NONE && bj != VMP_NONE);
    CHECK(nodes[bj].total == 3 && nodes[bj].self == 0);
    CHECK(META(bj)[VMP_FRAME_GC] == 1 && META(bj)[VMP_FRAME_BLACKHOLE] == 1);
    CHECK(META(bj)[VMP_FRAME_ASSEMBLER] == 1); /* once per sample */
    CHECK(META(bj)[VMP_FRAME_JIT] == 2);       /* not while in the blackhole */
    CHECK(find_child(t, bj, 0, VMP_FRAME_GC) != VMP_NONE);
    uint32_t n5 = find_child(t, a, 0x501, VMP_FRAME_NATIVE);
    REQUIRE(n5 != VMP_NONE);
    uint32_t bp = child(t, n5, B);
    REQUIRE(bp != VMP_NONE);
    CHECK(META(bp)[VMP_FRAME_NATIVE] == 1 && nodes[bp].self == 0);
    vmp_result_free(t);

    t = build(p, -1, VMP_Q_PYTHON_ONLY, &err);
    REQUIRE(t);
    nodes = t->nodes;
    n = t->n_nodes;
    CHECK(n == 3); /* root, A, B: everything else folded */
    a = child(t, 0, A);
    uint32_t b = child(t, a, B);
    REQUIRE(a != VMP_NONE && b != VMP_NONE);
    CHECK(nodes[b].total == 4 && nodes[b].self == 4);
    CHECK(META(b)[VMP_FRAME_GC] == 1 && META(b)[VMP_FRAME_NATIVE] == 1);
    CHECK(META(b)[VMP_FRAME_JIT] == 2);
    vmp_func_counts *fs = functions(p, VMP_Q_PYTHON_ONLY, &err);
    REQUIRE(fs);
    const vmp_func_count *fb = func(fs, B);
    CHECK(fb && fb->self == 4 && fb->total == 4 && fb->kind == VMP_FRAME_PYTHON);
    vmp_result_free(fs);
    vmp_result_free(t);
    vmp_profile_free(p);
}

VMP_TEST(tree_empty_profile_and_empty_stacks)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    vmp_error err;
    vmp_tree *t = build(p, -1, 0, &err);
    REQUIRE(t);
    CHECK(t->nodes[0].total == 0 && t->n_nodes == 1);
    vmp_result_free(t);
    vmp_profile_add_sample(p, NULL, 0, 1, 0);
    t = build(p, -1, 0, &err);
    REQUIRE(t);
    CHECK(t->n_nodes == 1 && t->nodes[0].total == 1 && t->nodes[0].self == 1);
    vmp_result_free(t);
    vmp_profile_free(p);
}

/* The fixtures' Python-only function totals agree with the stacks. */
VMP_TEST(tree_fixture_totals_consistent)
{
    vmp_error err;
    vmp_profile *p = vmp_profile_read_file(vmp_fixture("calc_pypy.prof"), NULL, &err);
    REQUIRE(p);
    vmp_tree *t = build(p, -1, VMP_Q_PYTHON_ONLY, &err);
    REQUIRE(t);
    const vmp_tree_node *nodes = t->nodes;
    CHECK(nodes[0].total == vmp_profile_get_summary(p)->n_samples);
    vmp_func_counts *fs = functions(p, VMP_Q_PYTHON_ONLY, &err);
    REQUIRE(fs);
    uint64_t self_sum = 0;
    for (size_t i = 0; i < fs->n; i++) {
        CHECK(fs->items[i].self <= fs->items[i].total && fs->items[i].total <= nodes[0].total);
        self_sum += fs->items[i].self;
    }
    CHECK(self_sum + nodes[0].self == nodes[0].total);
    vmp_result_free(fs);
    vmp_result_free(t);
    vmp_profile_free(p);
}
