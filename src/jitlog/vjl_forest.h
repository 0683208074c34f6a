/*
 * vjl_forest.h - a PyPy JIT log read into a trace forest.
 *
 * Contract:
 *   - vjl_forest_read_* read a whole log (plain or gzip; file, descriptor or
 *     memory, through libvmprof's vmp_source) and return the forest, or NULL
 *     with err set only when the header is bad (not a JIT log, an unknown
 *     version, a cut header) or the input cannot be read at all.
 *   - A log cut short or damaged after the header is read up to the damage:
 *     the forest holds every record before it and vjl_forest_warning() says,
 *     in one line, at which byte and what was wrong.
 *   - The forest owns one byte buffer, the decoded input; every string in the
 *     structures below is a vjl_str into it, valid while the forest lives.
 *     Input above 4 GiB is refused (offsets are 32-bit).
 *   - Sizes read from the input never size an allocation beyond what the
 *     input holds: a string's length is checked against the bytes present.
 *   - Links are resolved once the whole log is read: a stitched guard
 *     (STITCH_BRIDGE) names its bridge, a bridge its parent trace and guard,
 *     counters their trace (and op).  A link the log does not support (an
 *     address no trace has) is left unset, not an error.
 */
#ifndef VJL_FOREST_H
#define VJL_FOREST_H

#include <stddef.h>
#include <stdint.h>

#include "vjl_format.h"
#include "vmp_error.h"

#define VJL_NONE UINT32_MAX /* no trace / no op */

typedef struct vjl_str {
    uint32_t off, len; /* bytes [off, off+len) of vjl_forest_bytes() */
} vjl_str;

enum { VJL_STAGE_NOOPT, VJL_STAGE_OPT, VJL_STAGE_ASM, VJL_STAGES };

typedef struct vjl_op {
    uint32_t record;     /* offset of its RESOP / RESOP_DESCR record in the bytes */
    uint32_t asm_record; /* offset of its ASM record (machine code), 0 if none */
    uint16_t opnum;
    uint8_t has_descr;
    uint8_t pad;
} vjl_op; /* 12 bytes: a large log holds millions of ops, so an op points at
           * its record and its parts are read from there (vjl_op_get); what
           * few ops have (a bridge, a counter) is kept by descr number */

/* An op's parts, read from its records. */
typedef struct vjl_op_parts {
    vjl_str args;     /* "res,arg0,arg1,..." (RESOP_DESCR: then ",descr repr") */
    vjl_str failargs; /* version >= 2; empty before */
    vjl_str code;     /* machine code of this op (ASM), empty if none */
    uint64_t descr;   /* descr number (RESOP_DESCR), 0 if none */
    uint16_t code_offset; /* ASM: offset from the trace's machine-code start */
} vjl_op_parts;

/* A merge-point value.  A string is prefix + str: the field's common prefix
 * (COMMON_PREFIX, possibly empty) and the rest as written, so that no string
 * has to be assembled. */
typedef struct vjl_value {
    union {
        uint64_t num;
        struct {
            vjl_str prefix, str;
        } s;
    } u;
} vjl_value;

typedef struct vjl_merge_point {
    uint32_t op_index;             /* the number of ops before it in its stage */
    uint8_t kind[VJL_MP_KINDS];    /* 0 absent, 'i' int, 's' string */
    vjl_value value[VJL_MP_KINDS]; /* slot i: semantic type 1 << i (vjl_format.h) */
} vjl_merge_point;

typedef struct vjl_stage {
    int present;
    vjl_op *ops;
    size_t n_ops, cap_ops;
    vjl_merge_point *mps;
    size_t n_mps, cap_mps;
} vjl_stage;

typedef struct vjl_trace {
    uint64_t id;
    int is_bridge;
    vjl_str jd_name;       /* version >= 2 */
    vjl_str inputargs;     /* INPUT_ARGS, comma-separated */
    uint64_t start_number; /* START_TRACE's third field: bridge: fail descr; loop: entry-bridge flag */
    uint64_t addr_start, addr_end; /* ASM_ADDR, 0 if never assembled */
    int has_addr;
    uint64_t entry_count;  /* 'e' counters of this trace's id, plus 'b' of its guard */
    uint32_t parent;       /* bridge: the trace holding its guard, else VJL_NONE */
    uint32_t parent_op;    /* that guard's op index in the parent's asm stage */
    uint64_t stitched_descr; /* bridge: the guard descr STITCH_BRIDGE joined it to, 0 if none */
    int aborted;           /* ABORT_TRACE named it */
    vjl_stage stage[VJL_STAGES];
} vjl_trace;

typedef struct vjl_stitch {
    uint64_t descr;     /* the guard's descr number */
    uint64_t addr;      /* the bridge's machine-code start */
    uint32_t bridge;    /* trace index, VJL_NONE if no trace starts there */
} vjl_stitch;

typedef struct vjl_counter {
    uint64_t addr, count;
    uint8_t type;       /* 'e', 'b', 'l' */
    uint32_t trace;     /* resolved trace index or VJL_NONE */
} vjl_counter;

typedef struct vjl_source_line {
    vjl_str file, text;
    uint16_t line;
    uint8_t indent;
} vjl_source_line;

typedef struct vjl_redirect {
    uint64_t old_descr, new_descr, target;
} vjl_redirect;

typedef struct vjl_forest vjl_forest;

vjl_forest *vjl_forest_read_file(const char *path, vmp_error *err);
vjl_forest *vjl_forest_read_fd(int fd, vmp_error *err);
/* vjl_forest_read_file without the copy, for a file the caller owns: a plain
 * regular file is mapped and the forest's bytes are the page cache's pages,
 * which costs neither a copy nor fresh memory (a copy of a 100 MB log alone
 * costs about as much as its whole decode; bench/RESULTS.md).  Anything else
 * (gzip, a pipe, an empty file) is read as vjl_forest_read_file reads it.
 * The file must not shrink while the forest lives: the kernel signals
 * (SIGBUS) a read of a mapped page past a file's new end.  So only for files
 * nothing else truncates (a server's own store); a path a user gives, which
 * a new run may overwrite, is read with vjl_forest_read_file. */
vjl_forest *vjl_forest_map_file(const char *path, vmp_error *err);
/* The bytes are copied; the caller may free them afterwards. */
vjl_forest *vjl_forest_read_memory(const void *data, size_t len, vmp_error *err);
void vjl_forest_free(vjl_forest *f);

/* Header facts. */
int vjl_forest_version(const vjl_forest *f);
int vjl_forest_word_size(const vjl_forest *f); /* 4 or 8 */
vjl_str vjl_forest_machine(const vjl_forest *f);

/* NULL when the whole log was read; else the damage, e.g. "at byte 123: ...". */
const vmp_error *vjl_forest_warning(const vjl_forest *f);

const unsigned char *vjl_forest_bytes(const vjl_forest *f);
size_t vjl_forest_size(const vjl_forest *f); /* of that buffer: the decoded input */
/* Pointer to a string's bytes (not NUL-terminated). */
static inline const char *vjl_str_ptr(const vjl_forest *f, vjl_str s)
{
    return (const char *)vjl_forest_bytes(f) + s.off;
}

/* RESOP_META: the name of opnum, or an empty string when the log did not name it. */
vjl_str vjl_forest_opname(const vjl_forest *f, unsigned opnum);
/* opnums named, in the order of RESOP_META */
size_t vjl_forest_resop_count(const vjl_forest *f);
void vjl_forest_resop_at(const vjl_forest *f, size_t i, unsigned *opnum, vjl_str *name);

/* Traces in the order their START_TRACE appeared. */
size_t vjl_forest_trace_count(const vjl_forest *f);
const vjl_trace *vjl_forest_trace(const vjl_forest *f, size_t i);
/* The index of the trace with this id, or VJL_NONE. */
uint32_t vjl_forest_find_trace(const vjl_forest *f, uint64_t id);

const vjl_stitch *vjl_forest_stitches(const vjl_forest *f, size_t *n);
const vjl_counter *vjl_forest_counters(const vjl_forest *f, size_t *n);
const vjl_source_line *vjl_forest_source_lines(const vjl_forest *f, size_t *n);
const vjl_redirect *vjl_forest_redirects(const vjl_forest *f, size_t *n);

/* By descr number (a guard's, a label's; the same op has it in every stage):
 * the bridge attached to that guard (trace index, VJL_NONE if none), and the
 * sum of the 'b' and 'l' counters naming it (0 if none). */
uint32_t vjl_forest_bridge_of(const vjl_forest *f, uint64_t descr);
uint64_t vjl_forest_descr_count(const vjl_forest *f, uint64_t descr);

void vjl_op_get(const vjl_forest *f, const vjl_op *op, vjl_op_parts *out);
/* Its descr number alone (0 if none). */
uint64_t vjl_op_descr(const vjl_forest *f, const vjl_op *op);
/* The descriptor text of an op with one: after the last comma of args. */
vjl_str vjl_op_descr_text(const vjl_forest *f, const vjl_op *op);
/* Its result (before the first comma of args). */
vjl_str vjl_op_result(const vjl_forest *f, const vjl_op *op);
/* The first merge point of a trace's opt stage (as the original tools take
 * it), or NULL. */
const vjl_merge_point *vjl_trace_first_merge_point(const vjl_trace *t);

#endif
