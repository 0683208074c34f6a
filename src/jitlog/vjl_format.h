/*
 * vjl_format.h - the facts of PyPy's JIT log format (spec: jitlog-format.md):
 * marks, versions, merge-point field types.  The only file that knows them;
 * the decoder, the encoder and the bindings take them from here.
 */
#ifndef VJL_FORMAT_H
#define VJL_FORMAT_H

enum {
    VJL_MARK_START = 0x10, /* range sentinel, never written */
    VJL_MARK_INPUT_ARGS = 0x11,
    VJL_MARK_RESOP_META = 0x12,
    VJL_MARK_RESOP = 0x13,
    VJL_MARK_RESOP_DESCR = 0x14,
    VJL_MARK_ASM_ADDR = 0x15,
    VJL_MARK_ASM = 0x16,
    VJL_MARK_TRACE = 0x17,
    VJL_MARK_TRACE_OPT = 0x18,
    VJL_MARK_TRACE_ASM = 0x19,
    VJL_MARK_STITCH_BRIDGE = 0x1a,
    VJL_MARK_START_TRACE = 0x1b,
    VJL_MARK_COUNTER = 0x1c,
    VJL_MARK_INIT_MERGE_POINT = 0x1d,
    VJL_MARK_HEADER = 0x1e,
    VJL_MARK_MERGE_POINT = 0x1f,
    VJL_MARK_COMMON_PREFIX = 0x20,
    VJL_MARK_ABORT_TRACE = 0x21,
    VJL_MARK_SOURCE_CODE = 0x22,
    VJL_MARK_REDIRECT_ASSEMBLER = 0x23,
    VJL_MARK_TMP_CALLBACK = 0x24,
    VJL_MARK_END = 0x25, /* range sentinel */
};

/* Versions this reader knows: 2 added fail args (RESOP, RESOP_DESCR) and the
 * jit driver name (START_TRACE); 3 REDIRECT_ASSEMBLER; 4 TMP_CALLBACK. */
#define VJL_VERSION_MIN 1
#define VJL_VERSION_MAX 4

/* Merge-point semantic types (a bit each). */
enum {
    VJL_MP_FILENAME = 0x1,
    VJL_MP_LINENO = 0x2,
    VJL_MP_INDEX = 0x4,
    VJL_MP_SCOPE = 0x8,
    VJL_MP_OPCODE = 0x10,
};
#define VJL_MP_KINDS 5 /* slot i of a merge point holds semantic type 1 << i */

/* How a string field of MERGE_POINT is written. */
enum {
    VJL_MP_STR_SUFFIX = 0x00, /* str appended to the field's common prefix */
    VJL_MP_STR_PREFIX = 0xef, /* nothing follows: the value is the prefix */
    VJL_MP_STR_WHOLE = 0xff,  /* str, the whole value */
};
#define VJL_MP_INT 0x00 /* an int field: this byte, then u64 */

/* JITLOG_COUNTER types. */
#define VJL_COUNTER_ENTRY 'e'
#define VJL_COUNTER_BRIDGE 'b'
#define VJL_COUNTER_LABEL 'l'

#endif
