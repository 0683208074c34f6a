"""Build of the extension module vmprof._core.

Every .c file under src/libvmprof, src/jitlog, src/sampler and src/module is compiled in, so
a new source file needs no change here.  The compiler flags and system
libraries live only in this file (the C test Makefile has its own for the
library alone).
"""
import glob
import platform

from setuptools import Extension, setup

SOURCE_DIRS = ["src/libvmprof", "src/jitlog", "src/sampler", "src/module"]
sources = sorted(f for d in SOURCE_DIRS for f in glob.glob(d + "/*.c"))

core = Extension(
    "vmprof._core",
    sources=sources,
    # the HTML export's page is embedded by the assembler (.incbin): a change
    # to it (or to the flame graph drawing it shares with the server UI) must
    # rebuild the extension too
    depends=sorted(glob.glob("src/libvmprof/*.html")) + ["web/src/flamegraph.js"],
    include_dirs=SOURCE_DIRS,
    define_macros=[("VMP_HAVE_SAMPLER", "1")],
    libraries=["z", "unwind", "dw", "elf", "dl"],  # unwind, dw, elf: native frames (src/sampler)
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
)

# PyPy brings its own sampler (_vmprof); the package uses it there.
is_pypy = platform.python_implementation() == "PyPy"
setup(ext_modules=[] if is_pypy else [core])
