"""Builds _vmprof_cffi: a cffi (API mode) binding of libvmprof's reading path,
for measuring it against the extension under PyPy's C-API emulation (cpyext).

    pypy3 bench/cffi_binding/build.py LIBVMPROF_A OUTDIR

LIBVMPROF_A is the static library meson builds (build/bench/libvmprof_c.a,
compiled with -fPIC); the module is written into OUTDIR.  The declarations
come from libvmprof's public header src/libvmprof/vmprof.h, read as it is,
plus the few internal ones the cpyext binding (src/module/module_reader.c,
module_export.c) calls as well, so that both bindings run the same C.

This is a benchmark tool, not the package: bench/RESULTS.md says why.
"""
import os
import re
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIB_DIR = os.path.join(ROOT, "src", "libvmprof")

# What module_reader.c / module_export.c take from the internal headers
# (vmp_profile.h, vmp_export.h), declared as those headers do.
INTERNAL_CDEF = """
typedef struct vmp_profile_summary {
    int version;
    int word_size;
    unsigned mode;
    char interp[64];
    uint64_t period_usec;
    int has_start_time;
    int64_t start_sec, start_usec;
    int has_end_time;
    int64_t end_sec, end_usec;
    int complete;
    int64_t truncated_at;
    uint64_t n_samples;
    uint64_t max_rss_kib;
    int addr_size;
    char start_zone[9];
    char end_zone[9];
} vmp_profile_summary;
const vmp_profile_summary *vmp_profile_get_summary(const vmp_profile *p);
const char *vmp_profile_name(const vmp_profile *p, uint64_t id, size_t *len);

typedef struct vmp_export_options {
    int has_thread;
    uint64_t thread_id;
    int lines;
    int no_native;
    const char *title;
    double html_min_fraction;
} vmp_export_options;
int vmp_export_format_from_name(const char *name);
const char *vmp_export_format_list(void);
int vmp_export_write_fd(const vmp_profile *p, int format, int fd,
                        const vmp_export_options *options, vmp_error *err);

#define VMP_MODE_MEMORY ...
#define VMP_MODE_LINES ...
#define VMP_MODE_NATIVE ...
#define VMP_MODE_RPYTHON ...
#define VMP_MODE_REAL_TIME ...
"""


def public_cdef():
    """vmprof.h as cffi's cdef takes it: no include guard, includes or C++
    block; each #define becomes `#define NAME ...` (its value read from C);
    the meta array's length, a C constant, is left to the compiler."""
    with open(os.path.join(LIB_DIR, "vmprof.h")) as f:
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
    text = "\n".join(out)
    return text.replace("(*meta)[VMP_FRAME_KIND_COUNT]", "(*meta)[7]")


def main():
    lib_a, outdir = sys.argv[1], sys.argv[2]
    ffi = cffi.FFI()
    ffi.cdef(public_cdef() + INTERNAL_CDEF)
    ffi.set_source(
        "_vmprof_cffi",
        '#include "vmprof.h"\n#include "vmp_profile.h"\n#include "vmp_export.h"\n'
        '#include "vmp_format.h"\n'
        "_Static_assert(VMP_FRAME_KIND_COUNT == 7, \"the cdef's meta row length\");\n",
        include_dirs=[LIB_DIR],
        extra_objects=[os.path.abspath(lib_a)],
        libraries=["z", "m"],
        extra_compile_args=["-O2"],
    )
    os.makedirs(outdir, exist_ok=True)
    print(ffi.compile(tmpdir=outdir, verbose=False))


if __name__ == "__main__":
    main()
