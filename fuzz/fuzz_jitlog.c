/*
 * fuzz_jitlog.c - libFuzzer target for the JIT log decoder: any bytes, plain
 * or gzip, give a forest or a one-line error, never a crash, hang or
 * unbounded allocation.  Every string of the forest lies inside its buffer,
 * every link names a trace and op that exist, a query runs over it, and the
 * same bytes read through a file descriptor give the same forest.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fd.h"

#include "vjl_forest.h"
#include "vjl_query.h"

static size_t size_of_input;

static void check_str(vjl_str s)
{
    if ((uint64_t)s.off + s.len > size_of_input)
        __builtin_trap();
}

static void exercise(const vjl_forest *f)
{
    size_of_input = vjl_forest_size(f);
    check_str(vjl_forest_machine(f));
    size_t nt = vjl_forest_trace_count(f);
    for (size_t i = 0; i < nt; i++) {
        const vjl_trace *t = vjl_forest_trace(f, i);
        check_str(t->jd_name);
        check_str(t->inputargs);
        if (t->parent != VJL_NONE) {
            if (t->parent >= nt)
                __builtin_trap();
            const vjl_trace *p = vjl_forest_trace(f, t->parent);
            const vjl_stage *ps = &p->stage[p->stage[VJL_STAGE_ASM].present ? VJL_STAGE_ASM : VJL_STAGE_OPT];
            if (t->parent_op >= ps->n_ops)
                __builtin_trap();
        }
        for (int s = 0; s < VJL_STAGES; s++) {
            const vjl_stage *st = &t->stage[s];
            for (size_t k = 0; k < st->n_ops; k++) {
                const vjl_op *op = &st->ops[k];
                vjl_op_parts parts;
                vjl_op_get(f, op, &parts);
                check_str(parts.args);
                check_str(parts.failargs);
                check_str(parts.code);
                check_str(vjl_op_descr_text(f, op));
                check_str(vjl_op_result(f, op));
                check_str(vjl_forest_opname(f, op->opnum));
                if (parts.descr != vjl_op_descr(f, op))
                    __builtin_trap();
                uint32_t bridge = vjl_forest_bridge_of(f, parts.descr);
                if (bridge != VJL_NONE && bridge >= nt)
                    __builtin_trap();
            }
            for (size_t k = 0; k < st->n_mps; k++) {
                const vjl_merge_point *mp = &st->mps[k];
                if (mp->op_index > st->n_ops)
                    __builtin_trap();
                for (int v = 0; v < VJL_MP_KINDS; v++)
                    if (mp->kind[v] == 's') {
                        check_str(mp->value[v].u.s.prefix);
                        check_str(mp->value[v].u.s.str);
                    }
            }
        }
    }
    size_t n;
    const vjl_stitch *st = vjl_forest_stitches(f, &n);
    for (size_t i = 0; i < n; i++)
        if (st[i].bridge != VJL_NONE && st[i].bridge >= nt)
            __builtin_trap();
    const vjl_source_line *lines = vjl_forest_source_lines(f, &n);
    for (size_t i = 0; i < n; i++) {
        check_str(lines[i].file);
        check_str(lines[i].text);
    }
    static const char q[] = "(loops | op(\"guard\")) & ~func(\"a\")";
    vmp_error err;
    vjl_query *query = vjl_query_parse(q, sizeof q - 1, &err);
    if (!query)
        __builtin_trap();
    uint32_t *out = malloc((nt + 1) * sizeof *out);
    if (out) {
        size_t sel = vjl_query_select(query, f, out);
        for (size_t i = 0; i < sel; i++)
            if (!vjl_query_match(query, f, out[i]))
                __builtin_trap();
    }
    free(out);
    vjl_query_free(query);
}

static vjl_forest *read_via_fd(const uint8_t *data, size_t size, vmp_error *err)
{
    return vjl_forest_read_fd(fuzz_fd_of(data, size), err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmp_error err, err2;
    vjl_forest *f = vjl_forest_read_memory(data, size, &err);
    vjl_forest *g = read_via_fd(data, size, &err2);
    if (!f != !g)
        __builtin_trap(); /* memory and descriptor disagree */
    if (f) {
        exercise(f);
        const vmp_error *w = vjl_forest_warning(f), *w2 = vjl_forest_warning(g);
        if (!w != !w2 || vjl_forest_trace_count(f) != vjl_forest_trace_count(g))
            __builtin_trap();
        if (w && (!w->message[0] || strchr(w->message, '\n') || strcmp(w->message, w2->message)))
            __builtin_trap();
    } else if (!err.message[0] || strchr(err.message, '\n') || strcmp(err.message, err2.message)) {
        __builtin_trap();
    }
    vjl_forest_free(f);
    vjl_forest_free(g);
    return 0;
}
