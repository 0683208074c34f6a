/* test_tree.c - call tree: merging of recursion, counts, lines, meta, threads,
 * the Python-only (flattened) view and per-function totals. */
#include <stdint.h>
#include <stdlib.h>

#include "vmp_profile.h"
#include "vmp_test.h"
#include "vmp_atree.h"

enum { A = 0x10, B = 0x20, C = 0x30, D = 0x40 };

static void add(vmp_profile *p, const uint64_t *addrs, uint32_t n, uint64_t thread, int times)
{
    vmp_frame f[16];
    for (uint32_t i = 0; i < n; i++)
        f[i] = (vmp_frame){addrs[i], 0, VMP_FRAME_PYTHON};
    for (int k = 0; k < times; k++)
        vmp_profile_add_sample(p, f, n, thread, 0);
}

static const uint64_t zero_meta[VMP_FRAME_KIND_COUNT];
#define META(i) (vmp_atree_meta(t, (i)) ? vmp_atree_meta(t, (i)) : zero_meta)

static uint32_t child(const vmp_atree *t, uint32_t node, uint64_t addr)
{
    return vmp_atree_find_child(t, node, addr, VMP_FRAME_PYTHON);
}

static const vmp_afunc_stat *func(const vmp_atree *t, uint64_t addr)
{
    size_t n;
    const vmp_afunc_stat *f = vmp_atree_functions(t, &n);
    for (size_t i = 0; i < n; i++)
        if (f[i].addr == addr)
            return &f[i];
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
    vmp_atree *t = vmp_atree_build(p, NULL, &err);
    REQUIRE(t);
    size_t n;
    const vmp_atree_node *nodes = vmp_atree_nodes(t, &n);
    CHECK(nodes[0].count == 6 && nodes[0].parent == VMP_ATREE_NONE);
    uint32_t a = child(t, 0, A);
    REQUIRE(a != VMP_ATREE_NONE);
    CHECK(nodes[a].count == 6 && nodes[a].self_count == 0 && nodes[0].n_children == 1);
    uint32_t b = child(t, a, B);
    REQUIRE(b != VMP_ATREE_NONE);
    CHECK(nodes[b].count == 5 && nodes[b].self_count == 1); /* ab; abbc merged B,B */
    uint32_t c = child(t, b, C);
    REQUIRE(c != VMP_ATREE_NONE);
    CHECK(nodes[c].count == 3 && nodes[c].self_count == 3);
    CHECK(child(t, b, B) == VMP_ATREE_NONE); /* consecutive B,B is one node */
    uint32_t ba = child(t, b, A); /* A,B,A,B is not consecutive: nested */
    REQUIRE(ba != VMP_ATREE_NONE);
    CHECK(nodes[ba].count == 1 && child(t, ba, B) != VMP_ATREE_NONE);
    uint32_t d = child(t, a, D);
    CHECK(d != VMP_ATREE_NONE && nodes[d].count == 1);
    /* children ordered by count: B (5) before D (1) */
    CHECK(nodes[a].first_child == b && nodes[b].next_sibling == d);
    CHECK(nodes[d].next_sibling == VMP_ATREE_NONE && nodes[a].n_children == 2);
    /* every node's count is its self count plus its children's counts */
    for (size_t i = 0; i < n; i++) {
        uint64_t sum = nodes[i].self_count;
        for (uint32_t k = nodes[i].first_child; k != VMP_ATREE_NONE; k = nodes[k].next_sibling)
            sum += nodes[k].count;
        CHECK(sum == nodes[i].count);
    }

    /* functions: each counted once per sample, recursion included */
    const vmp_afunc_stat *fa = func(t, A), *fb = func(t, B), *fc = func(t, C);
    REQUIRE(fa && fb && fc);
    CHECK(fa->inclusive == 6 && fa->self == 0);
    CHECK(fb->inclusive == 5 && fb->self == 2); /* ab and abab */
    CHECK(fc->inclusive == 3 && fc->self == 3);
    size_t nf;
    const vmp_afunc_stat *fs = vmp_atree_functions(t, &nf);
    CHECK(nf == 4 && fs[0].addr == A && fs[3].addr == D);
    vmp_atree_free(t);
    vmp_profile_free(p);
}

VMP_TEST(tree_one_thread)
{
    vmp_profile *p = sample_profile();
    REQUIRE(p);
    vmp_atree_options o = {1, 0}; /* thread index 1 = thread id 2 */
    vmp_error err;
    vmp_atree *t = vmp_atree_build(p, &o, &err);
    REQUIRE(t);
    size_t n;
    const vmp_atree_node *nodes = vmp_atree_nodes(t, &n);
    CHECK(nodes[0].count == 1 && n == 3);
    uint32_t a = child(t, 0, A);
    CHECK(a != VMP_ATREE_NONE && child(t, a, D) != VMP_ATREE_NONE && child(t, a, B) == VMP_ATREE_NONE);
    vmp_atree_free(t);
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
    vmp_atree *t = vmp_atree_build(p, NULL, &err);
    REQUIRE(t);
    size_t n, nl;
    const vmp_atree_node *nodes = vmp_atree_nodes(t, &n);
    const vmp_atree_line *lines = vmp_atree_lines(t, &nl);
    uint32_t a = child(t, 0, A), b = child(t, a, B);
    REQUIRE(a != VMP_ATREE_NONE && b != VMP_ATREE_NONE);
    CHECK(nodes[b].count == 4 && n == 3);
    REQUIRE(nodes[b].n_lines == 2);
    const vmp_atree_line *bl = lines + nodes[b].lines_off;
    CHECK(bl[0].line == 10 && bl[0].count == 2);
    CHECK(bl[1].line == 11 && bl[1].count == 2);
    REQUIRE(nodes[a].n_lines == 2);
    const vmp_atree_line *al = lines + nodes[a].lines_off;
    CHECK(al[0].line == 5 && al[0].count == 3 && al[1].line == 6 && al[1].count == 1);
    vmp_atree_free(t);
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

    vmp_atree *t = vmp_atree_build(p, NULL, &err);
    REQUIRE(t);
    size_t n;
    const vmp_atree_node *nodes = vmp_atree_nodes(t, &n);
    uint32_t a = child(t, 0, A);
    uint32_t bj = vmp_atree_find_child(t, a, B, VMP_FRAME_JIT);
    REQUIRE(a != VMP_ATREE_NONE && bj != VMP_ATREE_NONE);
    CHECK(nodes[bj].count == 3 && nodes[bj].self_count == 0);
    CHECK(META(bj)[VMP_FRAME_GC] == 1 && META(bj)[VMP_FRAME_BLACKHOLE] == 1);
    CHECK(META(bj)[VMP_FRAME_ASSEMBLER] == 1); /* once per sample */
    CHECK(META(bj)[VMP_FRAME_JIT] == 2);       /* not while in the blackhole */
    CHECK(vmp_atree_find_child(t, bj, 0, VMP_FRAME_GC) != VMP_ATREE_NONE);
    uint32_t n5 = vmp_atree_find_child(t, a, 0x501, VMP_FRAME_NATIVE);
    REQUIRE(n5 != VMP_ATREE_NONE);
    uint32_t bp = child(t, n5, B);
    REQUIRE(bp != VMP_ATREE_NONE);
    CHECK(META(bp)[VMP_FRAME_NATIVE] == 1 && nodes[bp].self_count == 0);
    vmp_atree_free(t);

    vmp_atree_options o = {VMP_ATREE_ALL_THREADS, VMP_ATREE_PYTHON_ONLY};
    t = vmp_atree_build(p, &o, &err);
    REQUIRE(t);
    nodes = vmp_atree_nodes(t, &n);
    CHECK(n == 3); /* root, A, B: everything else folded */
    a = child(t, 0, A);
    uint32_t b = child(t, a, B);
    REQUIRE(a != VMP_ATREE_NONE && b != VMP_ATREE_NONE);
    CHECK(nodes[b].count == 4 && nodes[b].self_count == 4);
    CHECK(META(b)[VMP_FRAME_GC] == 1 && META(b)[VMP_FRAME_NATIVE] == 1);
    CHECK(META(b)[VMP_FRAME_JIT] == 2);
    const vmp_afunc_stat *fb = func(t, B);
    CHECK(fb && fb->self == 4 && fb->inclusive == 4 && fb->kind == VMP_FRAME_PYTHON);
    vmp_atree_free(t);
    vmp_profile_free(p);
}

VMP_TEST(tree_empty_profile_and_empty_stacks)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    vmp_error err;
    vmp_atree *t = vmp_atree_build(p, NULL, &err);
    REQUIRE(t);
    size_t n;
    CHECK(vmp_atree_nodes(t, &n)[0].count == 0 && n == 1);
    vmp_atree_free(t);
    vmp_profile_add_sample(p, NULL, 0, 1, 0);
    t = vmp_atree_build(p, NULL, &err);
    REQUIRE(t);
    const vmp_atree_node *nodes = vmp_atree_nodes(t, &n);
    CHECK(n == 1 && nodes[0].count == 1 && nodes[0].self_count == 1);
    vmp_atree_free(t);
    vmp_profile_free(p);
}

/* The fixtures' Python-only function totals agree with the stacks. */
VMP_TEST(tree_fixture_totals_consistent)
{
    vmp_error err;
    vmp_profile *p = vmp_profile_read_file(vmp_fixture("calc_pypy.prof"), NULL, &err);
    REQUIRE(p);
    vmp_atree_options o = {VMP_ATREE_ALL_THREADS, VMP_ATREE_PYTHON_ONLY};
    vmp_atree *t = vmp_atree_build(p, &o, &err);
    REQUIRE(t);
    size_t n, nf;
    const vmp_atree_node *nodes = vmp_atree_nodes(t, &n);
    CHECK(nodes[0].count == vmp_profile_get_summary(p)->n_samples);
    const vmp_afunc_stat *fs = vmp_atree_functions(t, &nf);
    uint64_t self_sum = 0;
    for (size_t i = 0; i < nf; i++) {
        CHECK(fs[i].self <= fs[i].inclusive && fs[i].inclusive <= nodes[0].count);
        self_sum += fs[i].self;
    }
    CHECK(self_sum + nodes[0].self_count == nodes[0].count);
    vmp_atree_free(t);
    vmp_profile_free(p);
}
