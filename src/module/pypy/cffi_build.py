"""The cffi description of vmprof's C library for PyPy: vmprof._vmprof_cffi.

On PyPy the package reads, shows and exports profiles and JIT logs through
cffi rather than the C extension under PyPy's C-API emulation (cpyext): PyPy's
JIT turns cffi calls and struct reads into direct machine code, while every
cpyext call converts its arguments and results (bench/RESULTS.md, the pypy
section: a tree walked node by node takes 6-9x less).  src/module/pypy/_core.py,
installed as vmprof/_core.py on PyPy, is the module's Python side.

    python cffi_build.py SRC_ROOT OUT.c     writes the module's C source
                                            (meson.build compiles it with the
                                            libraries, like the extension)

The declarations are libvmprof's public header src/libvmprof/vmprof.h read as
it is, plus what the bindings also need from the internal headers (the same
functions src/module/*.c call), written below.  Structs ending in `...;` are
laid out by the compiler, so only the fields named here must exist.
"""
import os
import re
import sys

import cffi

# vmp_profile.h, vmp_name.h, vmp_export.h
LIBVMPROF_CDEF = """
typedef struct { int version; int word_size; unsigned mode; char interp[64];
    uint64_t period_usec; int has_start_time; int64_t start_sec; int64_t start_usec;
    int has_end_time; int64_t end_sec; int64_t end_usec; int complete;
    int64_t truncated_at; uint64_t n_samples; uint64_t max_rss_kib; int addr_size;
    char start_zone[9]; char end_zone[9]; ...; } vmp_profile_summary;
typedef struct { uint64_t addr; uint32_t line; uint8_t kind; ...; } vmp_frame;
typedef struct { const vmp_frame *frames; uint32_t depth; uint32_t thread_index;
    uint64_t count; ...; } vmp_stack;
const vmp_profile_summary *vmp_profile_get_summary(const vmp_profile *p);
const char *vmp_profile_name(const vmp_profile *p, uint64_t id, size_t *len);
size_t vmp_profile_name_count(const vmp_profile *p);
void vmp_profile_name_at(const vmp_profile *p, size_t i, uint64_t *id, const char **name,
                         size_t *len);
size_t vmp_profile_stack_count(const vmp_profile *p);
void vmp_profile_stack_at(const vmp_profile *p, size_t i, vmp_stack *out);
uint32_t vmp_profile_sample_stack(const vmp_profile *p, uint64_t i);
uint64_t vmp_profile_sample_rss(const vmp_profile *p, uint64_t i);
int vmp_profile_has_sample_times(const vmp_profile *p);
int64_t vmp_profile_sample_time(const vmp_profile *p, uint64_t i);

typedef enum { VMP_NAME_OTHER, VMP_NAME_PYTHON, VMP_NAME_NATIVE } vmp_name_lang;
typedef struct { vmp_name_lang lang; const char *func; size_t func_len; const char *file;
    size_t file_len; uint32_t line; ...; } vmp_name_parts;
void vmp_name_parse(const char *text, size_t len, vmp_name_parts *out);

typedef enum { VMP_EXPORT_COLLAPSED, VMP_EXPORT_SPEEDSCOPE, VMP_EXPORT_PPROF,
    VMP_EXPORT_FIREFOX, VMP_EXPORT_HTML, VMP_EXPORT_FORMAT_COUNT } vmp_export_format;
typedef struct { int has_thread; uint64_t thread_id; int lines; int no_native;
    const char *title; double html_min_fraction; ...; } vmp_export_options;
int vmp_export_format_from_name(const char *name);
const char *vmp_export_format_name(vmp_export_format format);
const char *vmp_export_format_list(void);
int vmp_export_write_fd(const vmp_profile *p, vmp_export_format format, int fd,
                        const vmp_export_options *options, vmp_error *err);
int vmp_export_write_path(const vmp_profile *p, vmp_export_format format, const char *path,
                          const vmp_export_options *options, vmp_error *err);

#define VMP_MODE_MEMORY ...
#define VMP_MODE_LINES ...
#define VMP_MODE_NATIVE ...
#define VMP_MODE_RPYTHON ...
#define VMP_MODE_REAL_TIME ...
"""

# vjl_forest.h, vjl_query.h, vjl_encode.h
JITLOG_CDEF = """
#define VJL_NONE ...
typedef struct { uint32_t off, len; } vjl_str;
typedef struct { uint32_t record; uint32_t asm_record; uint16_t opnum; uint8_t has_descr;
    ...; } vjl_op;
typedef struct { vjl_str args; vjl_str failargs; vjl_str code; uint64_t descr;
    uint16_t code_offset; ...; } vjl_op_parts;
typedef struct { union { uint64_t num; struct { vjl_str prefix, str; } s; } u; } vjl_value;
typedef struct { uint32_t op_index; uint8_t kind[5]; vjl_value value[5]; } vjl_merge_point;
typedef struct { int present; vjl_op *ops; size_t n_ops; vjl_merge_point *mps; size_t n_mps;
    ...; } vjl_stage;
typedef struct { uint64_t id; int is_bridge; vjl_str jd_name; vjl_str inputargs;
    uint64_t start_number; uint64_t addr_start, addr_end; int has_addr; uint64_t entry_count;
    uint32_t parent; uint32_t parent_op; uint64_t stitched_descr; int aborted;
    vjl_stage stage[3]; ...; } vjl_trace;
typedef struct { uint64_t descr; uint64_t addr; uint32_t bridge; ...; } vjl_stitch;
typedef struct { uint64_t addr, count; uint8_t type; uint32_t trace; ...; } vjl_counter;
typedef struct { vjl_str file, text; uint16_t line; uint8_t indent; ...; } vjl_source_line;
typedef struct vjl_forest vjl_forest;

vjl_forest *vjl_forest_read_file(const char *path, vmp_error *err);
vjl_forest *vjl_forest_read_memory(const void *data, size_t len, vmp_error *err);
void vjl_forest_free(vjl_forest *f);
int vjl_forest_version(const vjl_forest *f);
int vjl_forest_word_size(const vjl_forest *f);
vjl_str vjl_forest_machine(const vjl_forest *f);
const vmp_error *vjl_forest_warning(const vjl_forest *f);
const unsigned char *vjl_forest_bytes(const vjl_forest *f);
size_t vjl_forest_resop_count(const vjl_forest *f);
void vjl_forest_resop_at(const vjl_forest *f, size_t i, unsigned *opnum, vjl_str *name);
size_t vjl_forest_trace_count(const vjl_forest *f);
const vjl_trace *vjl_forest_trace(const vjl_forest *f, size_t i);
const vjl_stitch *vjl_forest_stitches(const vjl_forest *f, size_t *n);
const vjl_counter *vjl_forest_counters(const vjl_forest *f, size_t *n);
const vjl_source_line *vjl_forest_source_lines(const vjl_forest *f, size_t *n);
uint32_t vjl_forest_bridge_of(const vjl_forest *f, uint64_t descr);
uint64_t vjl_forest_descr_count(const vjl_forest *f, uint64_t descr);
void vjl_op_get(const vjl_forest *f, const vjl_op *op, vjl_op_parts *out);

typedef struct vjl_query vjl_query;
vjl_query *vjl_query_parse(const char *text, size_t len, vmp_error *err);
void vjl_query_free(vjl_query *q);
size_t vjl_query_select(const vjl_query *q, const vjl_forest *f, uint32_t *out);

typedef struct { unsigned char *buf; size_t len; int failed; ...; } vjl_writer;
typedef struct { unsigned line; unsigned indent; const char *text; size_t len; ...; } vjl_line_in;
void vjl_writer_init(vjl_writer *w, int word_size);
void vjl_writer_free(vjl_writer *w);
void vjl_put_source_code(vjl_writer *w, const char *file, size_t file_len,
                         const vjl_line_in *lines, size_t n);
"""

SOURCE = """
#include "vmprof.h"
#include "vmp_export.h"
#include "vmp_format.h"
#include "vmp_name.h"
#include "vmp_profile.h"
#include "vjl_encode.h"
#include "vjl_forest.h"
#include "vjl_query.h"
_Static_assert(VMP_FRAME_KIND_COUNT == 7, "cffi_build.py: vmp_tree.meta rows of 7");
_Static_assert(VJL_STAGES == 3 && VJL_MP_KINDS == 5, "cffi_build.py: stages and slots");
"""


def public_cdef(src_root):
    """vmprof.h as cdef takes it: comments, the include guard, includes and the
    C++ block out; each #define's value is read from C (`#define NAME ...`)."""
    with open(os.path.join(src_root, "src", "libvmprof", "vmprof.h")) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # a comment may follow a #define
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        m = re.match(r"#define\s+(VMP_\w+)\s+\S", line)
        if m:
            out.append("#define %s ..." % m.group(1))
        elif not line.startswith("#"):
            out.append(line)
    return "\n".join(out).replace("(*meta)[VMP_FRAME_KIND_COUNT]", "(*meta)[7]")


def make_ffi(src_root, module="vmprof._vmprof_cffi", **build_args):
    ffi = cffi.FFI()
    ffi.cdef(public_cdef(src_root) + LIBVMPROF_CDEF + JITLOG_CDEF)
    ffi.set_source(module, SOURCE,
                   include_dirs=[os.path.join(src_root, "src", d) for d in ("libvmprof", "jitlog")],
                   **build_args)
    return ffi


def main():
    src_root, out = sys.argv[1], sys.argv[2]
    make_ffi(src_root).emit_c_code(out)


if __name__ == "__main__":
    main()
