/*
 * fuzz_decode.c - libFuzzer target for the decoder: any bytes, plain or gzip,
 * lenient and strict, must give a profile or a one-line error, never a crash,
 * hang or unbounded allocation; a profile read must also build its trees.
 * The same bytes read through a file descriptor (the windowed streaming path
 * that files and pipes take) must give the same result as from memory.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_fd.h"

#include "vmp_profile.h"
#include "vmprof.h"

static void exercise(const vmp_profile *p)
{
    const vmp_profile_summary *s = vmp_profile_get_summary(p);
    uint64_t total = 0;
    for (size_t i = 0; i < vmp_profile_stack_count(p); i++) {
        vmp_stack st;
        vmp_profile_stack_at(p, i, &st);
        total += st.count;
        if (st.thread_index >= vmp_profile_thread_count(p))
            __builtin_trap();
    }
    if (total != s->n_samples)
        __builtin_trap();
    for (uint64_t i = 0; i < s->n_samples; i++)
        if (vmp_profile_sample_stack(p, i) >= vmp_profile_stack_count(p))
            __builtin_trap();
    /* every frame option, alone and with recursion merged */
    for (unsigned flags = 0; flags <= 0x7f; flags = flags ? flags << 1 : 1) {
        vmp_query q = {.frames = flags | VMP_Q_MERGE_RECURSION};
        vmp_error err;
        vmp_tree *t = vmp_query_tree(p, &q, &err);
        if (!t)
            continue;
        if (t->nodes[0].total != s->n_samples)
            __builtin_trap();
        vmp_result_free(t);
        vmp_func_counts *fc = vmp_query_functions(p, &q, &err);
        if (fc && fc->samples != s->n_samples)
            __builtin_trap();
        vmp_result_free(fc);
    }
}

/* The profile read through a file descriptor holding the same bytes. */
static vmp_profile *read_via_fd(const uint8_t *data, size_t size, const vmp_read_options *o,
                                vmp_error *err)
{
    return vmp_profile_read_fd(fuzz_fd_of(data, size), o, err);
}

static void same(const vmp_profile *a, const vmp_profile *b)
{
    const vmp_profile_summary *x = vmp_profile_get_summary(a), *y = vmp_profile_get_summary(b);
    if (x->n_samples != y->n_samples || x->truncated_at != y->truncated_at ||
        x->complete != y->complete || x->mode != y->mode ||
        vmp_profile_stack_count(a) != vmp_profile_stack_count(b) ||
        vmp_profile_name_count(a) != vmp_profile_name_count(b))
        __builtin_trap();
    for (uint64_t i = 0; i < x->n_samples; i++)
        if (vmp_profile_sample_stack(a, i) != vmp_profile_sample_stack(b, i))
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int strict = 0; strict <= 1; strict++) {
        vmp_read_options o = {strict};
        vmp_error err, err2;
        vmp_profile *p = vmp_profile_read_memory(data, size, &o, &err);
        vmp_profile *q = read_via_fd(data, size, &o, &err2);
        if (!p != !q)
            __builtin_trap(); /* memory and streaming disagree */
        if (p) {
            exercise(p);
            same(p, q);
        } else if (!err.message[0] || strchr(err.message, '\n') ||
                   strcmp(err.message, err2.message) != 0) {
            __builtin_trap(); /* one line, saying something, the same both ways */
        }
        vmp_profile_free(p);
        vmp_profile_free(q);
    }
    return 0;
}
