/*
 * fuzz_decode.c - libFuzzer target for the decoder: any bytes, plain or gzip,
 * lenient and strict, must give a profile or a one-line error, never a crash,
 * hang or unbounded allocation; a profile read must also build its trees.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmp_profile.h"
#include "vmp_tree.h"

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
    for (unsigned flags = 0; flags <= VMP_TREE_PYTHON_ONLY; flags++) {
        vmp_tree_options o = {VMP_TREE_ALL_THREADS, flags};
        vmp_error err;
        vmp_tree *t = vmp_tree_build(p, &o, &err);
        if (!t)
            continue;
        size_t n;
        const vmp_tree_node *nodes = vmp_tree_nodes(t, &n);
        if (nodes[0].count != s->n_samples)
            __builtin_trap();
        vmp_tree_free(t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int strict = 0; strict <= 1; strict++) {
        vmp_read_options o = {strict};
        vmp_error err;
        vmp_profile *p = vmp_profile_read_memory(data, size, &o, &err);
        if (p) {
            exercise(p);
            vmp_profile_free(p);
        } else if (!err.message[0] || strchr(err.message, '\n')) {
            __builtin_trap(); /* an error must say something, on one line */
        }
    }
    return 0;
}
