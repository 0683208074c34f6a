/*
 * jitlog_sample.h - a small JIT log with every mark, for the decoder's tests
 * and the fuzzer's seeds: built by vjl_encode for any version (1-4) and word
 * size, with the offset of each record's first byte noted.
 *
 * Its content (what the tests check):
 *   trace 0x11 loop "pypyjit": noopt = 3 ops (label, guard_true descr 0x100,
 *     int_add; written as two TRACE marks), 2 merge points; opt = 2 ops, 1 merge
 *     point; asm = 2 ops (label, guard_true descr 0x100 with machine code
 *     "\x90\x90"), addresses 0x1000-0x1100.
 *   trace 0x22 bridge for descr 0x100: asm = 1 op (jump), 0x2000-0x2040,
 *     stitched to descr 0x100.
 *   counters: 'e' 0x11 = 10, 'b' 0x100 = 7; ABORT_TRACE 0x33; a SOURCE_CODE of
 *     /src/mod.py lines 3 and 4; REDIRECT_ASSEMBLER (v3+), TMP_CALLBACK (v4).
 *   merge points: file "/src/" + "mod.py" (common prefix), line 3, scope
 *     "compute", index 7, opcode "LOAD_FAST"; the opt stage's one has the
 *     file equal to the prefix (0xef) and scope "helper".
 */
#ifndef JITLOG_SAMPLE_H
#define JITLOG_SAMPLE_H

#include <string.h>

#include "vjl_encode.h"
#include "vjl_format.h"

#define SAMPLE_MAX_RECORDS 64

typedef struct sample_log {
    vjl_writer w;
    size_t record[SAMPLE_MAX_RECORDS]; /* offset of each record's mark */
    size_t n_records;
    size_t header_len;
    int version;
} sample_log;

static inline void sample_mark(sample_log *s, unsigned mark)
{
    if (s->n_records < SAMPLE_MAX_RECORDS)
        s->record[s->n_records++] = s->w.len;
    vjl_put_u8(&s->w, mark);
}

enum { OP_JUMP = 1, OP_FINISH = 2, OP_LABEL = 4, OP_GUARD_TRUE = 7, OP_INT_ADD = 40 };

static inline void sample_op(sample_log *s, unsigned opnum, const char *args, const char *fail)
{
    sample_mark(s, VJL_MARK_RESOP);
    vjl_put_u16(&s->w, opnum);
    vjl_put_cstr(&s->w, args);
    if (s->version >= 2)
        vjl_put_cstr(&s->w, fail);
}

static inline void sample_op_descr(sample_log *s, unsigned opnum, const char *args, uint64_t descr,
                                   const char *fail)
{
    sample_mark(s, VJL_MARK_RESOP_DESCR);
    vjl_put_u16(&s->w, opnum);
    vjl_put_cstr(&s->w, args);
    vjl_put_addr(&s->w, descr);
    if (s->version >= 2)
        vjl_put_cstr(&s->w, fail);
}

static inline void sample_stage(sample_log *s, unsigned mark, uint64_t id)
{
    sample_mark(s, mark);
    vjl_put_addr(&s->w, id);
}

static inline void sample_start_trace(sample_log *s, uint64_t id, const char *type, uint64_t number)
{
    sample_mark(s, VJL_MARK_START_TRACE);
    vjl_put_addr(&s->w, id);
    vjl_put_cstr(&s->w, type);
    vjl_put_addr(&s->w, number);
    if (s->version >= 2)
        vjl_put_cstr(&s->w, "pypyjit");
}

/* fields as PyPy declares them: file, line, scope, index, opcode */
static inline void sample_merge_point(sample_log *s, unsigned file_how, const char *file,
                                      const char *scope)
{
    sample_mark(s, VJL_MARK_MERGE_POINT);
    vjl_put_u8(&s->w, file_how);
    if (file_how != VJL_MP_STR_PREFIX)
        vjl_put_cstr(&s->w, file);
    vjl_put_u8(&s->w, VJL_MP_INT);
    vjl_put_u64(&s->w, 3);
    vjl_put_u8(&s->w, VJL_MP_STR_WHOLE);
    vjl_put_cstr(&s->w, scope);
    vjl_put_u8(&s->w, VJL_MP_INT);
    vjl_put_u64(&s->w, 7);
    vjl_put_u8(&s->w, VJL_MP_STR_WHOLE);
    vjl_put_cstr(&s->w, "LOAD_FAST");
}

static inline void sample_build(sample_log *s, int version, int word_size)
{
    memset(s, 0, sizeof *s);
    s->version = version;
    vjl_writer_init(&s->w, word_size);
    sample_mark(s, VJL_MARK_HEADER);
    s->w.len = 0;
    vjl_put_header(&s->w, (unsigned)version, word_size == 4, "x86_64");
    s->header_len = s->w.len;

    static const struct { unsigned opnum; const char *name; } ops[] = {
        {OP_JUMP, "jump"}, {OP_FINISH, "finish"}, {OP_LABEL, "label"},
        {OP_GUARD_TRUE, "guard_true"}, {OP_INT_ADD, "int_add"},
    };
    sample_mark(s, VJL_MARK_RESOP_META);
    vjl_put_u16(&s->w, 5);
    for (int i = 0; i < 5; i++) {
        vjl_put_u16(&s->w, ops[i].opnum);
        vjl_put_cstr(&s->w, ops[i].name);
    }

    sample_start_trace(s, 0x11, "loop", 0);
    sample_stage(s, VJL_MARK_TRACE, 0x11);
    sample_mark(s, VJL_MARK_INPUT_ARGS);
    vjl_put_cstr(&s->w, "p0,i1");
    sample_mark(s, VJL_MARK_INIT_MERGE_POINT);
    vjl_put_u16(&s->w, 5);
    static const unsigned char decl[5][2] = {
        {VJL_MP_FILENAME, 's'}, {VJL_MP_LINENO, 'i'}, {VJL_MP_SCOPE, 's'},
        {VJL_MP_INDEX, 'i'}, {VJL_MP_OPCODE, 's'},
    };
    for (int i = 0; i < 5; i++) {
        vjl_put_u8(&s->w, decl[i][0]);
        vjl_put_u8(&s->w, decl[i][1]);
    }
    sample_mark(s, VJL_MARK_COMMON_PREFIX);
    vjl_put_u8(&s->w, 0);
    vjl_put_cstr(&s->w, "/src/");
    sample_merge_point(s, VJL_MP_STR_SUFFIX, "mod.py", "compute");
    sample_op_descr(s, OP_LABEL, "?,p0,i1,TargetToken(1)", 0x200, "");
    sample_op_descr(s, OP_GUARD_TRUE, "?,i1,<Guard0x100>", 0x100, "p0,i1");
    sample_stage(s, VJL_MARK_TRACE, 0x11); /* the peeled loop continues noopt */
    sample_merge_point(s, VJL_MP_STR_WHOLE, "/src/mod.py", "compute");
    sample_op(s, OP_INT_ADD, "i2,i1,1", "");

    sample_stage(s, VJL_MARK_TRACE_OPT, 0x11);
    sample_merge_point(s, VJL_MP_STR_PREFIX, NULL, "helper");
    sample_op_descr(s, OP_LABEL, "?,p0,i1,TargetToken(1)", 0x200, "");
    sample_op_descr(s, OP_GUARD_TRUE, "?,i1,<Guard0x100>", 0x100, "p0,i1");

    sample_stage(s, VJL_MARK_TRACE_ASM, 0x11);
    sample_mark(s, VJL_MARK_ASM_ADDR);
    vjl_put_addr(&s->w, 0x1000);
    vjl_put_addr(&s->w, 0x1100);
    sample_op_descr(s, OP_LABEL, "?,p0,i1,TargetToken(1)", 0x200, "");
    sample_op_descr(s, OP_GUARD_TRUE, "?,i1,<Guard0x100>", 0x100, "p0,i1");
    sample_mark(s, VJL_MARK_ASM);
    vjl_put_u16(&s->w, 0x10);
    vjl_put_str(&s->w, "\x90\x90", 2);

    sample_start_trace(s, 0x22, "bridge", 0x100);
    sample_stage(s, VJL_MARK_TRACE_ASM, 0x22);
    sample_mark(s, VJL_MARK_ASM_ADDR);
    vjl_put_addr(&s->w, 0x2000);
    vjl_put_addr(&s->w, 0x2040);
    sample_op_descr(s, OP_JUMP, "?,p0,i1,TargetToken(1)", 0x200, "");
    sample_mark(s, VJL_MARK_STITCH_BRIDGE);
    vjl_put_addr(&s->w, 0x100);
    vjl_put_addr(&s->w, 0x2000);

    sample_mark(s, VJL_MARK_ABORT_TRACE);
    vjl_put_addr(&s->w, 0x33);
    sample_mark(s, VJL_MARK_COUNTER);
    vjl_put_addr(&s->w, 0x11);
    vjl_put_u8(&s->w, 'e');
    vjl_put_u64(&s->w, 10);
    sample_mark(s, VJL_MARK_COUNTER);
    vjl_put_addr(&s->w, 0x100);
    vjl_put_u8(&s->w, 'b');
    vjl_put_u64(&s->w, 7);
    if (version >= 3) {
        sample_mark(s, VJL_MARK_REDIRECT_ASSEMBLER);
        vjl_put_addr(&s->w, 0x200);
        vjl_put_addr(&s->w, 0x300);
        vjl_put_addr(&s->w, 0x11);
    }
    if (version >= 4) {
        sample_mark(s, VJL_MARK_TMP_CALLBACK);
        vjl_put_addr(&s->w, 0x400);
        vjl_put_u64(&s->w, 5);
    }
    static const vjl_line_in lines[] = {{3, 4, "x = y + 1", 9}, {4, 4, "return x", 8}};
    if (s->n_records < SAMPLE_MAX_RECORDS)
        s->record[s->n_records++] = s->w.len;
    vjl_put_source_code(&s->w, "/src/mod.py", 11, lines, 2);
}

#endif
