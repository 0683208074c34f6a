/* test_profile.c - the in-memory profile: interning, names, threads, samples. */
#include <stdint.h>
#include <stdlib.h>

#include "vmp_profile.h"
#include "vmp_test.h"

static vmp_frame py(uint64_t addr)
{
    return (vmp_frame){addr, 0, VMP_FRAME_PYTHON};
}

VMP_TEST(profile_new_is_empty)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    const vmp_profile_summary *s = vmp_profile_get_summary(p);
    CHECK(s->n_samples == 0 && s->truncated_at == -1 && s->max_rss_kib == 0);
    CHECK(vmp_profile_stack_count(p) == 0 && vmp_profile_thread_count(p) == 0);
    CHECK(vmp_profile_name_count(p) == 0 && vmp_profile_meta_count(p) == 0);
    CHECK(vmp_profile_name(p, 4, NULL) == NULL);
    vmp_profile_free(p);
    vmp_profile_free(NULL);
}

VMP_TEST(profile_interns_identical_stacks_per_thread)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    vmp_frame a[3] = {py(10), py(20), py(30)};
    vmp_frame b[3] = {py(10), py(20), py(40)};
    vmp_frame a_line[3] = {py(10), py(20), {30, 7, VMP_FRAME_PYTHON}};
    CHECK(vmp_profile_add_sample(p, a, 3, 1, 0) == 0);
    CHECK(vmp_profile_add_sample(p, b, 3, 1, 0) == 0);
    CHECK(vmp_profile_add_sample(p, a, 3, 1, 0) == 0);
    CHECK(vmp_profile_add_sample(p, a, 3, 2, 0) == 0); /* other thread: other stack */
    CHECK(vmp_profile_add_sample(p, a, 2, 1, 0) == 0); /* prefix: other stack */
    CHECK(vmp_profile_add_sample(p, a_line, 3, 1, 0) == 0); /* other line: other stack */
    CHECK(vmp_profile_add_sample(p, NULL, 0, 1, 0) == 0); /* empty stack is a stack */
    CHECK(vmp_profile_get_summary(p)->n_samples == 7);
    CHECK(vmp_profile_stack_count(p) == 6);
    CHECK(vmp_profile_thread_count(p) == 2);
    CHECK(vmp_profile_thread_id(p, 0) == 1 && vmp_profile_thread_id(p, 1) == 2);

    uint32_t want_seq[7] = {0, 1, 0, 2, 3, 4, 5};
    for (int i = 0; i < 7; i++)
        CHECK(vmp_profile_sample_stack(p, i) == want_seq[i]);
    vmp_stack st;
    vmp_profile_stack_at(p, 0, &st);
    CHECK(st.count == 2 && st.depth == 3 && st.thread_index == 0);
    CHECK(st.frames[0].addr == 10 && st.frames[2].addr == 30 && st.frames[2].line == 0);
    CHECK(st.frames != a); /* the profile owns a copy */
    vmp_profile_stack_at(p, 2, &st);
    CHECK(st.count == 1 && st.thread_index == 1);
    vmp_profile_stack_at(p, 4, &st);
    CHECK(st.frames[2].line == 7);
    vmp_profile_stack_at(p, 5, &st);
    CHECK(st.depth == 0 && st.count == 1);
    vmp_profile_free(p);
}

VMP_TEST(profile_many_stacks_survive_rehashing)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    enum { N = 5000, DEPTH = 40 };
    vmp_frame f[DEPTH];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            for (int d = 0; d < DEPTH; d++)
                f[d] = py((uint64_t)(d * 2 + (d == DEPTH - 1 ? i * 1000 : 0)));
            REQUIRE(vmp_profile_add_sample(p, f, DEPTH, (uint64_t)(i % 3), 0) == 0);
        }
    }
    CHECK(vmp_profile_stack_count(p) == N);
    CHECK(vmp_profile_thread_count(p) == 3);
    uint64_t total = 0;
    for (size_t i = 0; i < vmp_profile_stack_count(p); i++) {
        vmp_stack st;
        vmp_profile_stack_at(p, i, &st);
        CHECK(st.count == 2);
        CHECK(st.frames[DEPTH - 1].addr == (uint64_t)(DEPTH - 1) * 2 + i * 1000);
        CHECK(st.thread_index == i % 3);
        total += st.count;
    }
    CHECK(total == 2 * N);
    for (uint64_t i = 0; i < 2 * N; i++)
        CHECK(vmp_profile_sample_stack(p, i) == i % N);
    vmp_profile_free(p);
}

VMP_TEST(profile_name_precedence)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    size_t len;
    CHECK(vmp_profile_add_name(p, 8, "py:f:1:a.py", 11) == 0);
    CHECK(vmp_profile_add_name(p, 9, "n:sym:0:-", 9) == 0);
    CHECK(vmp_profile_add_name(p, 8, "py:g:2:b.py", 11) == 0); /* last py: wins */
    CHECK(vmp_profile_add_name(p, 8, "n:other:0:-", 11) == 0); /* native never replaces */
    CHECK(vmp_profile_add_name(p, 9, "py:h:3:c.py", 11) == 0); /* py: replaces native */
    const char *n = vmp_profile_name(p, 8, &len);
    REQUIRE(n);
    CHECK(len == 11 && strcmp(n, "py:g:2:b.py") == 0);
    n = vmp_profile_name(p, 9, &len);
    REQUIRE(n);
    CHECK(strcmp(n, "py:h:3:c.py") == 0);
    CHECK(vmp_profile_name_count(p) == 2);
    uint64_t id;
    vmp_profile_name_at(p, 0, &id, &n, &len);
    CHECK(id == 8 && strcmp(n, "py:g:2:b.py") == 0);
    vmp_profile_name_at(p, 1, &id, &n, &len);
    CHECK(id == 9);
    /* names may hold any byte, including NUL */
    CHECK(vmp_profile_add_name(p, 100, "py:\0x", 5) == 0);
    n = vmp_profile_name(p, 100, &len);
    CHECK(n && len == 5 && n[4] == 'x' && n[5] == '\0');
    vmp_profile_free(p);
}

VMP_TEST(profile_meta_in_order)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    CHECK(vmp_profile_add_meta(p, "os", 2, "linux", 5) == 0);
    CHECK(vmp_profile_add_meta(p, "bits", 4, "64", 2) == 0);
    CHECK(vmp_profile_meta_count(p) == 2);
    const char *k, *v;
    size_t kl, vl;
    vmp_profile_meta_at(p, 1, &k, &kl, &v, &vl);
    CHECK(kl == 4 && vl == 2 && strcmp(k, "bits") == 0 && strcmp(v, "64") == 0);
    vmp_profile_free(p);
}

VMP_TEST(profile_rss_per_sample_and_max)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    vmp_frame a[1] = {py(2)};
    for (uint64_t i = 0; i < 100; i++)
        REQUIRE(vmp_profile_add_sample(p, a, 1, 7, i < 50 ? 0 : 1000 + (i * 37) % 101) == 0);
    uint64_t max = 0;
    for (uint64_t i = 0; i < 100; i++) {
        uint64_t want = i < 50 ? 0 : 1000 + (i * 37) % 101;
        CHECK(vmp_profile_sample_rss(p, i) == want);
        if (want > max)
            max = want;
    }
    CHECK(vmp_profile_get_summary(p)->max_rss_kib == max);
    CHECK(vmp_profile_stack_count(p) == 1);
    vmp_profile_free(p);
}

VMP_TEST(profile_add_sample_at_known_stack)
{
    vmp_profile *p = vmp_profile_new();
    REQUIRE(p);
    vmp_frame a[2] = {py(2), py(4)};
    REQUIRE(vmp_profile_add_sample(p, a, 2, 1, 10) == 0);
    CHECK(vmp_profile_add_sample_at(p, 0, 30) == 0);
    CHECK(vmp_profile_add_sample_at(p, 1, 0) == -1); /* no such stack */
    vmp_stack st;
    vmp_profile_stack_at(p, 0, &st);
    CHECK(st.count == 2 && vmp_profile_get_summary(p)->n_samples == 2);
    CHECK(vmp_profile_sample_stack(p, 1) == 0 && vmp_profile_sample_rss(p, 1) == 30);
    CHECK(vmp_profile_get_summary(p)->max_rss_kib == 30);
    vmp_profile_free(p);
}
