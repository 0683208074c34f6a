/*
 * gen_jitlog.c - a large JIT log for the decoding bench, made of a real one.
 *
 *   gen_jitlog SEED.jitlog OUT.jitlog MEGABYTES
 *
 * The seed (PyPy's log of workloads/calc.py) is decoded with our decoder and
 * written again with vjl_encode, copy after copy, until the output reaches
 * the size asked: every copy gets its own trace ids, descr numbers and
 * machine-code addresses (so the copies are distinct traces with their own
 * links, as a long program's log would hold), merge points are written with
 * PyPy's common-prefix encoding, and the counters come at the end as PyPy
 * writes them at disable.  The record mix is the seed's: mostly RESOP_DESCR.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vjl_encode.h"
#include "vjl_forest.h"

static const vjl_forest *f;

static void put_vstr(vjl_writer *w, vjl_str s)
{
    vjl_put_str(w, vjl_str_ptr(f, s), s.len);
}

/* PyPy's declaration order: file, line, scope, index, opcode */
static const unsigned char decl[5][3] = {
    /* semantic type, 's'/'i', slot in vjl_merge_point */
    {VJL_MP_FILENAME, 's', 0}, {VJL_MP_LINENO, 'i', 1}, {VJL_MP_SCOPE, 's', 3},
    {VJL_MP_INDEX, 'i', 2},    {VJL_MP_OPCODE, 's', 4},
};

static void put_merge_point(vjl_writer *w, const vjl_merge_point *mp, vjl_str *file_prefix)
{
    vjl_put_u8(w, VJL_MARK_MERGE_POINT);
    for (int i = 0; i < 5; i++) {
        int slot = decl[i][2];
        const vjl_value *v = &mp->value[slot];
        if (decl[i][1] == 'i') {
            vjl_put_u8(w, VJL_MP_INT);
            vjl_put_u64(w, mp->kind[slot] == 'i' ? v->u.num : 0);
            continue;
        }
        if (mp->kind[slot] != 's') {
            vjl_put_u8(w, VJL_MP_STR_WHOLE);
            vjl_put_str(w, "", 0);
            continue;
        }
        if (slot == 0 && file_prefix->len) { /* the file name: as a suffix of the prefix */
            vjl_put_u8(w, v->u.s.str.len ? VJL_MP_STR_SUFFIX : VJL_MP_STR_PREFIX);
            if (v->u.s.str.len)
                put_vstr(w, v->u.s.str);
            continue;
        }
        vjl_put_u8(w, VJL_MP_STR_WHOLE); /* the seed's prefix + rest, as one string */
        size_t n = (size_t)v->u.s.prefix.len + v->u.s.str.len;
        char *buf = malloc(n + 1);
        memcpy(buf, vjl_str_ptr(f, v->u.s.prefix), v->u.s.prefix.len);
        memcpy(buf + v->u.s.prefix.len, vjl_str_ptr(f, v->u.s.str), v->u.s.str.len);
        vjl_put_str(w, buf, n);
        free(buf);
    }
}

static void put_stage(vjl_writer *w, const vjl_trace *t, int s, uint64_t id, uint64_t shift)
{
    static const unsigned marks[VJL_STAGES] = {VJL_MARK_TRACE, VJL_MARK_TRACE_OPT,
                                               VJL_MARK_TRACE_ASM};
    const vjl_stage *st = &t->stage[s];
    vjl_put_u8(w, marks[s]);
    vjl_put_addr(w, id);
    if (s == VJL_STAGE_ASM && t->has_addr) {
        vjl_put_u8(w, VJL_MARK_ASM_ADDR);
        vjl_put_addr(w, t->addr_start + shift);
        vjl_put_addr(w, t->addr_end + shift);
    }
    if (s == VJL_STAGE_NOOPT && t->inputargs.len) {
        vjl_put_u8(w, VJL_MARK_INPUT_ARGS);
        put_vstr(w, t->inputargs);
    }
    vjl_str prefix = {0, 0};
    if (st->n_mps) {
        vjl_put_u8(w, VJL_MARK_INIT_MERGE_POINT);
        vjl_put_u16(w, 5);
        for (int i = 0; i < 5; i++) {
            vjl_put_u8(w, decl[i][0]);
            vjl_put_u8(w, decl[i][1]);
        }
        /* the first file name's directory as the common prefix, as PyPy does */
        const vjl_value *v = &st->mps[0].value[0];
        if (st->mps[0].kind[0] == 's' && !v->u.s.prefix.len) {
            const char *s0 = vjl_str_ptr(f, v->u.s.str);
            const char *slash = memrchr(s0, '/', v->u.s.str.len);
            if (slash) {
                prefix = (vjl_str){v->u.s.str.off, (uint32_t)(slash - s0 + 1)};
                vjl_put_u8(w, VJL_MARK_COMMON_PREFIX);
                vjl_put_u8(w, 0);
                put_vstr(w, prefix);
            }
        }
    }
    size_t m = 0;
    for (size_t i = 0; i <= st->n_ops; i++) {
        while (m < st->n_mps && st->mps[m].op_index <= i) {
            const vjl_merge_point *mp = &st->mps[m++];
            /* a file name outside the prefix is written whole */
            vjl_str file_prefix = prefix;
            const vjl_value *v = &mp->value[0];
            if (mp->kind[0] == 's' && (v->u.s.prefix.len || v->u.s.str.len < prefix.len ||
                                       memcmp(vjl_str_ptr(f, v->u.s.str), vjl_str_ptr(f, prefix),
                                              prefix.len) != 0))
                file_prefix.len = 0;
            vjl_merge_point copy = *mp;
            if (file_prefix.len) {
                copy.value[0].u.s.str.off += prefix.len;
                copy.value[0].u.s.str.len -= prefix.len;
            }
            put_merge_point(w, &copy, &file_prefix);
        }
        if (i == st->n_ops)
            break;
        const vjl_op *op = &st->ops[i];
        vjl_op_parts parts;
        vjl_op_get(f, op, &parts);
        vjl_put_u8(w, op->has_descr ? VJL_MARK_RESOP_DESCR : VJL_MARK_RESOP);
        vjl_put_u16(w, op->opnum);
        put_vstr(w, parts.args);
        if (op->has_descr)
            vjl_put_addr(w, parts.descr ? parts.descr + shift : 0);
        if (vjl_forest_version(f) >= 2)
            put_vstr(w, parts.failargs);
        if (op->asm_record) {
            vjl_put_u8(w, VJL_MARK_ASM);
            vjl_put_u16(w, parts.code_offset);
            put_vstr(w, parts.code);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: gen_jitlog SEED.jitlog OUT.jitlog MEGABYTES\n");
        return 2;
    }
    vmp_error err;
    vjl_forest *seed = vjl_forest_read_file(argv[1], &err);
    if (!seed) {
        fprintf(stderr, "gen_jitlog: %s\n", err.message);
        return 1;
    }
    f = seed;
    size_t target = (size_t)atol(argv[3]) << 20;
    FILE *out = fopen(argv[2], "wb");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    vjl_writer w;
    vjl_writer_init(&w, vjl_forest_word_size(f));
    vjl_put_header(&w, (unsigned)vjl_forest_version(f), vjl_forest_word_size(f) == 4, "x86_64");
    vjl_put_u8(&w, VJL_MARK_RESOP_META);
    vjl_put_u16(&w, (unsigned)vjl_forest_resop_count(f));
    for (size_t i = 0; i < vjl_forest_resop_count(f); i++) {
        unsigned opnum;
        vjl_str name;
        vjl_forest_resop_at(f, i, &opnum, &name);
        vjl_put_u16(&w, opnum);
        put_vstr(&w, name);
    }
    size_t written = 0, copies = 0, n_stitches, n_counters;
    const vjl_stitch *stitches = vjl_forest_stitches(f, &n_stitches);
    const vjl_counter *counters = vjl_forest_counters(f, &n_counters);
    size_t nt = vjl_forest_trace_count(f);
    /* ids step past the seed's; descrs and addresses by more than the seed spans */
    const uint64_t id_step = 0x10000, shift_step = 0x100000000ULL;
    while (written + w.len < target) {
        uint64_t shift = copies * shift_step, id_base = copies * id_step;
        for (size_t i = 0; i < nt; i++) {
            const vjl_trace *t = vjl_forest_trace(f, i);
            vjl_put_u8(&w, VJL_MARK_START_TRACE);
            vjl_put_addr(&w, t->id + id_base);
            vjl_put_cstr(&w, t->is_bridge ? "bridge" : "loop");
            vjl_put_addr(&w, t->is_bridge ? t->start_number + shift : t->start_number);
            if (vjl_forest_version(f) >= 2)
                put_vstr(&w, t->jd_name);
            for (int s = 0; s < VJL_STAGES; s++)
                if (t->stage[s].present)
                    put_stage(&w, t, s, t->id + id_base, shift);
        }
        for (size_t i = 0; i < n_stitches; i++) {
            vjl_put_u8(&w, VJL_MARK_STITCH_BRIDGE);
            vjl_put_addr(&w, stitches[i].descr + shift);
            vjl_put_addr(&w, stitches[i].addr + shift);
        }
        copies++;
        if (w.failed || fwrite(w.buf, 1, w.len, out) != w.len) {
            fprintf(stderr, "gen_jitlog: cannot write %s\n", argv[2]);
            return 1;
        }
        written += w.len;
        w.len = 0;
    }
    for (size_t c = 0; c < copies; c++)
        for (size_t i = 0; i < n_counters; i++) {
            const vjl_counter *k = &counters[i];
            vjl_put_u8(&w, VJL_MARK_COUNTER);
            vjl_put_addr(&w, k->type == 'e' ? k->addr + c * id_step : k->addr + c * shift_step);
            vjl_put_u8(&w, k->type);
            vjl_put_u64(&w, k->count);
        }
    if (w.failed || fwrite(w.buf, 1, w.len, out) != w.len || fclose(out) != 0) {
        fprintf(stderr, "gen_jitlog: cannot write %s\n", argv[2]);
        return 1;
    }
    written += w.len;
    fprintf(stderr, "gen_jitlog: %zu copies of %zu traces, %.1f MB\n", copies, nt,
            written / 1048576.0);
    vjl_writer_free(&w);
    vjl_forest_free(seed);
    return 0;
}
