"""A function of a stripped library that no symbol names (a static one: a
stripped library keeps only its exported symbols, in .dynsym) is named by
the library and the function's offset in it, `libname+0x<offset>`, the
library's path as the file part.

Before, it was `<native symbol 0x7f...>`: an absolute address that the
loader's randomisation moves every run, so two profiles of one program could
not be compared, and a reader could not tell which library the function was
in (43% of a zlib/hashlib program's samples in libz, 15% in libcrypto).  The
offset is the function's link-time address (where its FDE starts it), the
same in every run and what nm/objdump show for it in the unstripped build.

Each run is a fresh interpreter, so that the library lands somewhere else.
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

import sampler_util

pytestmark = [
    pytest.mark.cpython_only,
    pytest.mark.skipif(not sampler_util.NATIVE_WALK_HERE, reason=sampler_util.NO_NATIVE_WALK),
]

# spin_inner is static and never inlined: only the unstripped build's .symtab
# names it.  Its bound comes from a volatile global so that the compiler makes
# no specialised clone of it.
LIB_SOURCE = """
    #include <time.h>

    volatile unsigned long vmp_spin_rounds = 200000;

    static __attribute__((noinline)) unsigned long spin_inner(unsigned long n)
    {
        volatile unsigned long x = 0;
        for (unsigned long i = 0; i < n; i++)
            x += i;
        return x;
    }

    static double cpu_now(void)
    {
        struct timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
    }

    unsigned long vmp_spin(double seconds)
    {
        unsigned long sum = 0;
        double end = cpu_now() + seconds;
        while (cpu_now() < end)
            sum += spin_inner(vmp_spin_rounds);
        return sum;
    }
"""

PROGRAM = """
    import ctypes, os, sys, vmprof

    lib = ctypes.CDLL(sys.argv[2])
    lib.vmp_spin.argtypes = [ctypes.c_double]
    lib.vmp_spin.restype = ctypes.c_ulong
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    vmprof.enable(fd, period=0.001, native=True)
    lib.vmp_spin(0.3)
    vmprof.disable()
    os.close(fd)
    print(lib._handle)
"""


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """(stripped library, the same library unstripped)."""
    out = tmp_path_factory.mktemp("stripped")
    source = out / "spin.c"
    source.write_text(textwrap.dedent(LIB_SOURCE))
    full = str(out / "libvmp_spin_full.so")
    stripped = str(out / "libvmp_spin.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", full, str(source)], check=True)
    subprocess.run(["strip", "--strip-all", "-o", stripped, full], check=True)
    return stripped, full


def symbol_offset(path, name):
    """The link-time address nm gives the function `name` in the object."""
    listed = subprocess.run(["nm", "--defined-only", path], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout
    for line in listed.splitlines():
        fields = line.split()
        if fields[-1] == name and fields[-2] in "tT":
            return int(fields[0], 16)
    raise AssertionError("%s not in %s" % (name, listed))


def run(tmp_path, lib, n):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(PROGRAM))
    out = str(tmp_path / ("p%d.prof" % n))
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(script), out, lib], cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return sampler_util.read_back(out), out


def leaf_names(p):
    return [p.name(entries[0]) for entries, _, _ in p.stacks if entries]


def test_a_static_function_of_a_stripped_library_is_named_by_library_and_offset(libs, tmp_path):
    stripped, full = libs
    # (the stripped build really has no name for it)
    assert "spin_inner" not in subprocess.run(["nm", "-D", stripped], stdout=subprocess.PIPE,
                                              universal_newlines=True, check=True).stdout
    want = "n:libvmp_spin.so+0x%x:0:%s" % (symbol_offset(full, "spin_inner"), stripped)
    # (cpu_now, static too, is sampled now and then)
    others = {"n:vmp_spin:0:" + stripped,
              "n:libvmp_spin.so+0x%x:0:%s" % (symbol_offset(full, "cpu_now"), stripped)}
    seen = []
    for n in range(2):
        p, _ = run(tmp_path, stripped, n)
        leaves = leaf_names(p)
        in_lib = [name for name in leaves if "libvmp_spin.so" in name]
        # Nearly all the time is spent in spin_inner, every sample of it one
        # name: its start's offset, not an absolute address.
        assert in_lib, leaves[:10]
        assert not [name for name in in_lib if "<native symbol" in name], in_lib[:5]
        assert in_lib.count(want) >= 0.5 * len(leaves), (want, sorted(set(in_lib)), len(leaves))
        assert set(in_lib) - {want} <= others, sorted(set(in_lib))
        seen.append(p)
    # The same name in both runs, though the library lay elsewhere (the
    # loader randomises where; the profile's pcs say where).
    starts = [{e for entries, _, _ in p.stacks for e in entries if p.name(e) == want} for p in seen]
    assert all(len(s) == 1 for s in starts), starts


def test_views_show_the_offset_name_with_and_without_the_interpreter(libs, tmp_path):
    stripped, full = libs
    _, path = run(tmp_path, stripped, 0)
    symbol = "libvmp_spin.so+0x%x" % symbol_offset(full, "spin_inner")

    def tree(*extra):
        return subprocess.run([sys.executable, "-m", "vmprof.show", path, "tree", "--color",
                               "never"] + list(extra), cwd=str(tmp_path), check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout

    for text in (tree(), tree("--hide-interpreter")):
        assert re.search(r" %s\b" % re.escape(symbol), text), text
        # Right under the exported function that called it.
        lines = text.splitlines()
        at = next(i for i, l in enumerate(lines) if " %s" % symbol in l)
        assert " vmp_spin " in lines[at - 1], lines[at - 3:at + 1]
