"""Native mode: C frames interleaved with Python frames, named at the end.

A small C extension (native_ext/vmp_native_ext.c) is compiled for the running
interpreter into a temporary folder: it burns CPU in a named C function and
calls a Python callback from C.  The profiles are read back with the sampler
tests' strict decoder.
"""
import collections
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import zlib

import pytest

import vmprof
import sampler_util
from sampler_util import burn_cpu

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="native frames are recorded on Linux")

EXT_SOURCE = os.path.join(os.path.dirname(__file__), "native_ext", "vmp_native_ext.c")
EVAL = "_PyEval_EvalFrameDefault"


@pytest.fixture(scope="module")
def ext_path(tmp_path_factory):
    """Path of the compiled extension (not imported yet)."""
    out = tmp_path_factory.mktemp("native_ext")
    path = str(out / ("vmp_native_ext" + sysconfig.get_config_var("EXT_SUFFIX")))
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-I" + sysconfig.get_paths()["include"],
           "-o", path, EXT_SOURCE]
    subprocess.run(cmd, check=True)
    return path


def load_ext(path):
    spec = importlib.util.spec_from_file_location("vmp_native_ext", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ext(ext_path):
    return load_ext(ext_path)


def profile(fn, *args, **options):
    """sampler_util.profile in native mode unless told otherwise."""
    options.setdefault("native", True)
    return sampler_util.profile(fn, *args, **options)


def stack_names(p, entries):
    """Names innermost first (non-lines profiles)."""
    return [p.name(e) for e in entries]


def func(name):
    return name.split(":")[1]


def complete(names):
    """Whether the native walk of a sample (names innermost first) reached
    the thread's first function: its outermost entry is then native.  A walk
    cut short (a pc no unwind table covers) keeps its Python frames
    outside."""
    return names[-1].startswith("n:")


def first_py_outward(names, start):
    for n in names[start:]:
        if n.startswith("py:"):
            return func(n)
    return None


def test_native_is_the_default_and_no_native_turns_it_off():
    p, _, _ = profile(burn_cpu, 0.3, period=0.002, native=None)
    assert p.mode & 0x04
    assert any(e & 1 for entries, _, _ in p.stacks for e in entries)
    p, _, _ = profile(burn_cpu, 0.3, period=0.002, native=False)
    assert not p.mode & 0x04
    assert not any(e & 1 for entries, _, _ in p.stacks for e in entries)


def test_every_native_entry_is_named_as_a_native_symbol():
    p, _, _ = profile(burn_cpu, 0.3, period=0.002)
    natives = {e for entries, _, _ in p.stacks for e in entries if e & 1}
    assert natives, "no native frame in %d samples" % len(p.stacks)
    for e in natives:
        name = p.name(e)
        assert name.startswith("n:"), name
        parts = name.split(":")
        assert len(parts) >= 4 and parts[2].isdigit(), name
    # Function starts, not program counters: the evaluation loop is one entry.
    assert len({e for e in natives if func(p.name(e)) == EVAL}) == 1


def py_caller_of_burn(ext, seconds=0.3):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        ext.burn(100000)


def test_c_function_appears_under_its_python_caller(ext):
    p, _, _ = profile(py_caller_of_burn, ext, period=0.001)
    assert len(p.stacks) >= 20, "only %d samples of 0.3 s of CPU" % len(p.stacks)
    hits = 0
    for entries, _, _ in p.stacks:
        names = stack_names(p, entries)
        if func(names[0]) == "vmp_ext_burn_loop" and complete(names):
            # The C function, then the call machinery, then its Python caller;
            # the evaluation loop that runs the caller stands outside it.
            assert first_py_outward(names, 1) == "py_caller_of_burn", names
            py = next(i for i, n in enumerate(names) if n.startswith("py:"))
            assert any(func(n) == EVAL for n in names[py:]), names
            assert all(not n.startswith("py:") for n in names[:py]), names
            hits += 1
    assert hits >= len(p.stacks) // 2, (hits, len(p.stacks))
    name = next(p.name(e) for entries, _, _ in p.stacks for e in entries
                if e & 1 and func(p.name(e)) == "vmp_ext_burn_loop")
    # Built with -g: the file and line of the definition are known.
    assert name.endswith("vmp_native_ext.c") and int(name.split(":")[2]) > 0, name


def python_callback():
    burn_cpu(0.004)


def py_caller_of_call_back(ext):
    ext.call_back(python_callback, 60)


def test_python_callback_appears_under_the_c_function_under_python(ext):
    p, _, _ = profile(py_caller_of_call_back, ext, period=0.001)
    hits = 0
    for entries, _, _ in p.stacks:
        full = stack_names(p, entries)
        names = [func(n) for n in full]
        if "python_callback" not in names or not complete(full):
            continue
        cb = names.index("python_callback")
        c = names.index("vmp_ext_call_back")
        caller = names.index("py_caller_of_call_back")
        assert cb < c < caller, names
        # Each Python layer sits on its own activation of the evaluation loop.
        assert EVAL in names[cb:c] and EVAL in names[c:], names
        hits += 1
    assert hits >= len(p.stacks) // 2, (hits, len(p.stacks))


def compress_loop(data):
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        zlib.compress(data, 9)


def hash_loop(data):
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        hashlib.sha256(data).digest()


@pytest.mark.parametrize("work,library", [(compress_loop, "libz"), (hash_loop, None)])
def test_time_in_a_c_library_lands_on_native_symbols_under_the_python_caller(work, library):
    data = os.urandom(1 << 15) * 8
    p, _, _ = profile(work, data, period=0.001)
    in_work = in_native = 0
    for entries, _, _ in p.stacks:
        names = stack_names(p, entries)
        if not any(func(n) == work.__name__ for n in names):
            continue  # e.g. a sample of disable() itself
        in_work += 1
        if not names[0].startswith("n:") or (library and library not in names[0]):
            continue
        # Only native frames between the library and the Python caller.
        assert first_py_outward(names, 0) == work.__name__, names
        in_native += 1
    # The C library does nearly all the work.
    assert in_work and in_native >= 0.6 * in_work, (in_native, in_work)


def test_extension_loaded_during_the_run_is_named(ext_path, tmp_path):
    # A copy at a new path is a new object for the dynamic loader: it is
    # mapped only after profiling started.
    late = str(tmp_path / os.path.basename(ext_path))
    shutil.copy(ext_path, late)

    def load_and_burn():
        mod = load_ext(late)
        py_caller_of_burn(mod)

    p, _, _ = profile(load_and_burn, period=0.001)
    leaves = [p.name(entries[0]) for entries, _, _ in p.stacks]
    assert any(func(n) == "vmp_ext_burn_loop" and n.endswith("vmp_native_ext.c")
               for n in leaves), leaves[:5]


def test_lines_mode_writes_native_frames_as_zero_line_pairs(ext):
    p, _, _ = profile(py_caller_of_burn, ext, period=0.002, lines=True)
    assert p.mode & 0x06 == 0x06
    natives = 0
    for entries, _, _ in p.stacks:
        assert len(entries) % 2 == 0
        for line, ident in zip(entries[::2], entries[1::2]):
            if ident & 1:
                assert line == 0
                natives += 1
            else:
                assert p.name(ident).startswith("py:")
    assert natives > 0


def test_stacks_are_complete_from_the_first_sample(ext):
    # The handler walks with the rules the writer learned, else with the rule
    # it reads from the object's .eh_frame: every sample reaches the thread's
    # first function, the first ones too (before, the first samples of each
    # new path were cut where the rules learned so far ended).  The C
    # extension's own frames (built -O1 -g) are walked the same way.
    p, _, _ = profile(py_caller_of_call_back, ext, period=0.001)
    names = [stack_names(p, entries) for entries, tid, _ in p.stacks if tid == threading.get_ident()]
    assert len(names) >= 100, len(names)
    cut = [n for n in names if not complete(n)]
    assert not cut, (len(cut), len(names), cut[:2])
    # (the test runs in the main thread: the program's entry is its root)
    assert all(func(n[-1]) == "_start" for n in names), {n[-1] for n in names}


def spin_without_cfi(ext, seconds=0.3):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        ext.spin_without_cfi(200000)


@pytest.mark.skipif(platform.machine() != "x86_64",
                    reason="the native walk steps with unwind rules on x86-64 only")
@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_samples_cut_for_want_of_an_unwind_rule_are_counted(ext, real_time):
    # vmp_ext_spin_without_cfi has no unwind information: every sample
    # interrupted in it is cut there (its callers are never walked), and the
    # profile says how many samples are so (META samples_cut, and disable()'s
    # stats), so that a user can tell a short stack from a cut one.
    p, _, stats = profile(spin_without_cfi, ext, period=0.001, real_time=real_time)
    inside = [stack_names(p, e) for e, _, _ in p.stacks
              if func(p.name(e[0])) == "vmp_ext_spin_without_cfi"]
    assert len(inside) >= 30, (len(inside), len(p.stacks), stats)
    for names in inside:
        # cut: no C frame of its callers, the Python frames outermost
        assert not complete(names) and names[1].startswith("py:"), names
    cut = stats["samples_cut"]
    assert len(inside) <= cut <= stats["samples"], (len(inside), stats)
    assert p.meta.get("samples_cut") == str(cut), p.meta


def py_caller_of_odd_start(ext, seconds=0.3):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        ext.spin_at_odd_start(300000)


@pytest.mark.skipif(platform.machine() != "x86_64",
                    reason="the functions at odd addresses are x86-64 assembly")
@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_a_function_at_an_odd_address_is_named_at_its_first_byte_and_as_a_caller(ext, real_time):
    # vmp_ext_odd_spin starts at an odd address and spins on its first
    # byte; vmp_ext_odd_caller (odd too) calls it as its last instruction,
    # and vmp_ext_after_odd_caller starts at that call's return address.  A
    # native frame's word in a sample was pc | 1: a pc at an odd start read
    # as the byte before it, and every sample in the function was named
    # after that byte ("vmp_native_ext...+0x..."), its id too.  A caller is
    # named from its call (return address - 1), not after the function
    # that starts where the call returns.
    spin, caller, after = ext.odd_start_addresses()[:3]
    assert spin & 1 and caller & 1 and not after & 1, (hex(spin), hex(caller), hex(after))
    p, _, stats = profile(py_caller_of_odd_start, ext, period=0.001, real_time=real_time)
    mine = [stack_names(p, e) for e, _, _ in p.stacks
            if any(func(n) == "py_caller_of_odd_start" for n in stack_names(p, e))]
    inside = [names for names in mine if func(names[0]) == "vmp_ext_odd_spin"]
    # (nearly all of the function's time is at its first byte: `loop`)
    assert len(inside) >= 30, (len(inside), len(mine), stats, [n[:3] for n in mine[:5]])
    unnamed = [names[0] for names in mine if "+0x" in func(names[0])]
    assert not unnamed, (len(unnamed), len(mine), unnamed[:3])
    # (a sample at the spin's last two instructions, after it dropped its
    # caller's return address, has the C wrapper for its caller: rare, but
    # a wall-clock sample that stood for several periods is several records)
    callers = collections.Counter(func(names[1]) for names in inside)
    assert set(callers) <= {"vmp_ext_odd_caller", "spin_at_odd_start"}, callers
    assert callers["vmp_ext_odd_caller"] >= 0.9 * len(inside), callers
    for names in inside:
        assert complete(names), names
        assert first_py_outward(names, 1) == "py_caller_of_odd_start", names


def py_even_caller_of_odd_start(ext, seconds=0.3):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        ext.spin_at_odd_start(300000, True)


@pytest.mark.skipif(platform.machine() != "x86_64",
                    reason="the functions at odd addresses are x86-64 assembly")
def test_out_of_memory_ids_are_no_functions_ids(ext):
    # When the writer cannot remember a pc (its map of the pcs met cannot
    # grow: out of memory), the frame gets a fallback id made of its pc.
    # vmp_ext_even_caller's frame has an even pc (its call, the last
    # instruction, ends at an odd address), and vmp_ext_after_even_caller
    # starts right after it: a fallback of pc | 1 was that function's id,
    # and its name would have stood for the caller's frame wherever it was
    # named.  A fallback id is no function's id: its generation is one no
    # function gets (the top 16 bits all set).
    from vmprof import _core
    spin, caller, after, even_caller, after_even = ext.odd_start_addresses()
    assert not even_caller & 1 and after_even & 1, (hex(even_caller), hex(after_even))
    functions = {spin, caller, after, even_caller | 1, after_even}
    _core._native_starts_fail(True)
    try:
        p, _, stats = profile(py_even_caller_of_odd_start, ext, period=0.001)
    finally:
        _core._native_starts_fail(False)
    low = (1 << 48) - 1
    natives = {e for entries, _, _ in p.stacks for e in entries if e & 1}
    assert natives, (len(p.stacks), stats)
    # (no pc was remembered: every native frame has the fallback, unnamed)
    assert not natives & set(p.names), sorted(hex(e) for e in natives & set(p.names))[:5]
    inside = [entries for entries, _, _ in p.stacks
              if entries[0] & 1 and spin <= entries[0] & low < spin + 8]
    assert len(inside) >= 30, (len(inside), len(p.stacks), stats)
    callers = collections.Counter(entries[1] for entries in inside)
    # (the rare sample after the spin dropped its caller's return address
    # has the C wrapper for its caller)
    from_even = {e: n for e, n in callers.items() if e & low | 1 == after_even}
    assert sum(from_even.values()) >= 0.9 * len(inside), [(hex(e), n) for e, n in callers.items()]
    assert not natives & functions, sorted(hex(e) for e in natives & functions)
    assert all(e >> 48 == 0xffff for e in natives), sorted(hex(e) for e in natives)[:5]


def test_no_sample_cut_means_no_meta_record(ext):
    p, _, stats = profile(py_caller_of_burn, ext, 0.1, period=0.001)
    if stats["samples_cut"] == 0:
        assert "samples_cut" not in p.meta, p.meta
    else:
        assert p.meta.get("samples_cut") == str(stats["samples_cut"]), p.meta


RUN_TWICE = r"""
import json, os, sys, time, zlib
import vmprof

def work():
    data = os.urandom(1 << 14) * 8
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        zlib.compress(data, 6)
        json.dumps(sorted((i % 7, str(i)) for i in range(2000)))

runs = []
for i in range(2):
    with open(sys.argv[1], "wb") as f:
        vmprof.enable(f.fileno(), period=0.001, native=True)
        work()
        vmprof.disable()
    runs.append(vmprof.profiler.last_run_stats)
print(json.dumps(runs))
"""


def run_twice(tmp_path):
    """The stats of RUN_TWICE's two runs, in a fresh interpreter."""
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", RUN_TWICE, str(tmp_path / "p.prof")], env=env,
                       cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_a_second_run_of_the_same_work_walks_with_what_the_first_learned(tmp_path):
    # The unwind rules the writer learns outlive disable(): a program that
    # profiles the same work again does not learn it all again (before,
    # every run started cold, and its first samples on each path were cut
    # until the writer had learned them anew).
    first, second = run_twice(tmp_path)
    # (measured on 3.8 and 3.11: 89-112 learned in the first run, 15-27 in
    # the second, rows of functions the symbol table does not bound; with the
    # rules dropped at disable() the second learned as many as the first)
    assert first["unwind_pcs_learned"] >= 20, first
    assert second["unwind_pcs_learned"] <= first["unwind_pcs_learned"] // 2, (first, second)
    assert second["samples_cut"] <= first["samples_cut"], (first, second)


def test_the_writer_learns_what_walks_got_past_from_their_tables_not_libdw(tmp_path):
    # A walk gets past a pc it has no learned rule for by reading the
    # object's .eh_frame in the handler; the writer then learns that pc's
    # function from the same tables.  Before, it asked libdw about every
    # such pc (the first run below: 150-190; ~8-12 ms of the writer's CPU in
    # a 3-s run).  libdw is left for the pcs a walk was cut at (no FDE the
    # handler could follow), one per cut walk at most.
    runs = run_twice(tmp_path)
    for stats in runs:
        assert stats["unwind_pcs_libdw"] <= stats["samples_cut"], stats
    assert runs[0]["unwind_pcs_learned"] >= 20, runs[0]  # (not vacuous: the walks met new code)


def test_native_mode_loads_no_library_into_the_program(tmp_path):
    # libdwfl's standard search for a separate debug file asks debuginfod
    # last, and making its client dlopen()ed libdebuginfod with curl and a
    # dozen libraries into the program (5-8 ms of CPU at the first
    # enable(), and a socket pair among its descriptors), whatever
    # DEBUGINFOD_URLS said; enable() made one in each session.  Now the
    # writer's and enable()'s lookups stay on disk, and the program's
    # libraries are the same after a native run as before it.
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("DEBUGINFOD_URLS", None)
    r = subprocess.run([sys.executable, "-c", r"""
import sys, zlib, json, time, vmprof
def objects():
    with open("/proc/self/maps") as f:
        return {l.split()[-1] for l in f if len(l.split()) > 5 and ".so" in l.split()[-1]}
before = objects()
with open(sys.argv[1], "wb") as f:
    vmprof.enable(f.fileno(), period=0.001, native=True)
    end = time.thread_time() + 0.2
    while time.thread_time() < end:
        zlib.compress(json.dumps(sorted(str(i) for i in range(3000))).encode())
    stats = vmprof.disable()
print(json.dumps(sorted(objects() - before)))
""", str(tmp_path / "p.prof")], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == [], r.stdout


def test_the_object_files_named_are_not_mapped_where_tools_look_for_the_libraries(tmp_path):
    # libelf mapped each object file libdw read whole (ELF_C_READ_MMAP_PRIVATE),
    # and the kernel placed the copy below the loader's mappings: the first
    # /proc/self/maps line of libpython (or of the executable) was then the
    # file's image, not the library.  Tools that take a library's first
    # mapping as its load address read the wrong memory: CPython 3.13's
    # test_external_inspection.test_self_trace found "No interpreter state"
    # under the profiler (session 17's wider suite).  The loader maps each
    # object once at offset 0; the profiler's reads must add no such mapping,
    # while it runs (the writer names during the run) nor after disable().
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", r"""
import sys, zlib, json, time, vmprof
def first_pages():
    seen = {}
    with open("/proc/self/maps") as f:
        for line in f:
            w = line.split()
            if len(w) > 5 and w[5].startswith("/") and int(w[2], 16) == 0:
                seen.setdefault(w[5], []).append(w[0] + " " + w[1])
    return seen
with open(sys.argv[1], "wb") as f:
    vmprof.enable(f.fileno(), period=0.001, native=True)
    end = time.thread_time() + 0.5
    while time.thread_time() < end:
        zlib.compress(json.dumps(sorted(str(i) for i in range(3000))).encode())
    time.sleep(0.3)
    during = first_pages()
    stats = vmprof.disable()
after = first_pages()
print(json.dumps([during, after]))
""", str(tmp_path / "p.prof")], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for when, seen in zip(("during the run", "after disable()"), json.loads(r.stdout)):
        assert any(os.path.realpath(sys.executable) == p or "libpython" in p for p in seen), seen
        twice = {p: m for p, m in seen.items() if len(m) > 1}
        assert not twice, (when, twice)


def test_a_stripped_library_is_named_from_its_debuglink_file(ext_path, tmp_path, monkeypatch):
    # The writer looks for separate debug files on disk only (never through
    # debuginfod): the build-id folder, then, when a file it would find is
    # there, libdwfl's standard debuglink search.  A copy of the extension
    # stripped of its symbol table names its static function `burn` only
    # through the debug file its .gnu_debuglink names, next to it.
    monkeypatch.setenv("VMPROF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    names_of_burns_caller = {}
    for case in ("without", "with"):
        folder = tmp_path / case
        folder.mkdir()
        lib = str(folder / os.path.basename(ext_path))
        subprocess.run(["objcopy", "--only-keep-debug", ext_path, lib + ".debug"], check=True)
        subprocess.run(["objcopy", "--strip-all", ext_path, lib], check=True)
        if case == "with":
            subprocess.run(["objcopy", "--add-gnu-debuglink=" + lib + ".debug", lib], check=True, cwd=str(folder))
        else:
            os.unlink(lib + ".debug")
        mod = load_ext(lib)
        p, _, _ = profile(py_caller_of_burn, mod, 0.2, period=0.001)
        callers = set()
        for entries, _, _ in p.stacks:
            names = stack_names(p, entries)
            if len(names) > 1 and func(names[0]) == "vmp_ext_burn_loop" and names[1].startswith("n:"):
                callers.add(func(names[1]))
        names_of_burns_caller[case] = callers
    assert names_of_burns_caller["with"] == {"burn"}, names_of_burns_caller
    assert "burn" not in names_of_burns_caller["without"], names_of_burns_caller


def test_libunwind_is_never_called_in_the_signal_handler(ext_path, tmp_path):
    # libunwind's lookups take the loader's lock and its cache's lock, which
    # can deadlock two sampled threads.  A stand-in for its walking entry
    # points ends the process when called with the profiling signal blocked
    # (as it is inside the handler) and forwards every other call.
    poison = tmp_path / "poison.c"
    poison.write_text(POISON_SOURCE)
    lib = str(tmp_path / "libpoison.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", lib, str(poison), "-ldl"], check=True)
    script = (
        "import importlib.util, sys, time, vmprof\n"
        "spec = importlib.util.spec_from_file_location('vmp_native_ext', sys.argv[1])\n"
        "ext = importlib.util.module_from_spec(spec); spec.loader.exec_module(ext)\n"
        "with open(sys.argv[2], 'wb') as f:\n"
        "    vmprof.enable(f.fileno(), period=0.0005, native=True)\n"
        "    end = time.thread_time() + 0.5\n"
        "    while time.thread_time() < end:\n"
        "        ext.call_back(lambda: ext.burn(20000), 5)\n"
        "    vmprof.disable()\n")
    out = str(tmp_path / "p.prof")
    env = dict(os.environ, LD_PRELOAD=lib)
    # (cwd: `python -c` puts it first on sys.path; the repository's source
    # folder has no built _core)
    r = subprocess.run([sys.executable, "-c", script, ext_path, out], env=env, cwd=str(tmp_path),
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(out, "rb") as f:
        prof = sampler_util.decode(f.read())
    assert sum(complete(stack_names(prof, e)) for e, _, _ in prof.stacks) > 100


POISON_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The real function (libunwind is loaded in the extension's local scope,
 * which RTLD_NEXT does not see). */
static void *real(const char *name)
{
    void *lib = dlopen("libunwind.so.8", RTLD_NOW | RTLD_NOLOAD);
    return lib ? dlsym(lib, name) : NULL;
}

static void check(const char *what)
{
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    if (sigismember(&now, SIGURG) == 1 || sigismember(&now, SIGPROF) == 1) {
        static const char msg[] = "libunwind called in the profiling signal's handler: ";
        write(2, msg, sizeof msg - 1);
        write(2, what, strlen(what));
        _exit(86);
    }
}

int _ULx86_64_init_local(void *cursor, void *uc)
{
    check("unw_init_local");
    int (*f)(void *, void *) = (int (*)(void *, void *))real("_ULx86_64_init_local");
    return f(cursor, uc);
}

int _ULx86_64_init_local2(void *cursor, void *uc, int flag)
{
    check("unw_init_local2");
    int (*f)(void *, void *, int) = (int (*)(void *, void *, int))real("_ULx86_64_init_local2");
    return f(cursor, uc, flag);
}

int _ULx86_64_step(void *cursor)
{
    check("unw_step");
    int (*f)(void *) = (int (*)(void *))real("_ULx86_64_step");
    return f(cursor);
}
"""


def test_native_names_are_kept_across_runs_by_build_id(ext, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VMPROF_CACHE_DIR", str(cache))

    def leaves():
        p, _, _ = profile(py_caller_of_burn, ext, period=0.001)
        return {func(stack_names(p, e)[0]) for e, _, _ in p.stacks}

    assert "vmp_ext_burn_loop" in leaves()
    ours = [f for f in cache.glob("*.names") if "n:vmp_ext_burn_loop:" in f.read_text()]
    assert len(ours) == 1, sorted(f.name for f in cache.iterdir())
    text = ours[0].read_text()
    # The next run reads its names from the file of the object's build id,
    # not from the object's tables: a name changed there is the name it writes.
    ours[0].write_text(text.replace("n:vmp_ext_burn_loop:", "n:vmp_ext_burn_loop_cached:"))
    assert "vmp_ext_burn_loop_cached" in leaves()
    # A damaged file is read up to the damage; the rest is computed again.
    ours[0].write_text("not a name\n" + text)
    assert "vmp_ext_burn_loop" in leaves()
    # No cache at all when the folder is empty.
    monkeypatch.setenv("VMPROF_CACHE_DIR", "")
    for f in cache.iterdir():
        f.unlink()
    assert "vmp_ext_burn_loop" in leaves()
    assert not list(cache.iterdir())


def test_threads_carry_their_own_native_stacks(ext):
    import threading

    def worker():
        py_caller_of_burn(ext)

    def run():
        t = threading.Thread(target=worker)
        t.start()
        t.join()

    p, _, _ = profile(run, period=0.001)
    worker_stacks = [stack_names(p, e) for e, _, _ in p.stacks
                     if any(func(p.name(x)) == "worker" for x in e)]
    assert worker_stacks
    assert sum(func(s[0]) == "vmp_ext_burn_loop" for s in worker_stacks) >= len(worker_stacks) // 2
    # A thread's C stack ends in the thread start routine, not in main().
    assert not any(func(n) == "main" for s in worker_stacks for n in s)


def burn_for(ext, seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        ext.burn(100000)


def test_ten_kilohertz_never_stalls_and_counts_drops(ext):
    p, _, stats = profile(burn_for, ext, 0.3, period=0.0001)
    assert p.trailer
    assert int(p.meta["samples_dropped"]) == stats["dropped"]
    assert len(p.stacks) == stats["samples"] > 0


def test_resolve_addr_names_native_functions():
    p, _, _ = profile(burn_cpu, 0.3, period=0.002)
    e = next(e for entries, _, _ in p.stacks for e in entries
             if e & 1 and func(p.name(e)) == EVAL)
    name, line, filename = vmprof.resolve_addr(e)
    assert name == EVAL


def test_left_out_native_falls_back_to_python_frames_where_native_cannot_work(monkeypatch):
    real = vmprof.profiler._core
    asked = []

    class CoreWithoutNative:
        def __getattr__(self, name):
            return getattr(real, name)

        def enable(self, *args):
            asked.append(args[-1])
            if args[-1]:
                raise vmprof.VMProfError("native profiling needs the interpreter's symbol "
                                         "_PyEval_EvalFrameDefault: profile with native=False")
            return real.enable(*args)

    monkeypatch.setattr(vmprof.profiler, "_core", CoreWithoutNative())
    with tempfile.TemporaryFile() as f:
        vmprof.enable(f.fileno(), period=0.002)  # native left out: falls back
        assert vmprof.is_enabled()
        vmprof.disable()
        with pytest.raises(vmprof.VMProfError, match="native profiling"):
            vmprof.enable(f.fileno(), period=0.002, native=True)  # asked for: says why
    assert not vmprof.is_enabled()
    assert asked == [True, False, True]


def test_views_can_hide_the_interpreter_machinery(ext, tmp_path):
    path = str(tmp_path / "cb.prof")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    vmprof.enable(fd, period=0.001, native=True)
    py_caller_of_call_back(ext)
    vmprof.disable()
    os.close(fd)

    def tree(*extra):
        return subprocess.run([sys.executable, "-m", "vmprof.show", path, "tree", "--color",
                               "never"] + list(extra), cwd=str(tmp_path), check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout

    full, folded = tree(), tree("--hide-interpreter")
    assert EVAL in full and EVAL not in folded
    # The program's own layers stay, in order: caller, C function, callback.
    # Each is looked for below the one before: a sample whose walk stopped
    # short (3.8-3.10, before the writer learned the rules) keeps the Python
    # frames without the C one, so the callback may also stand in a sibling
    # branch printed earlier.
    for text in (full, folded):
        at = 0
        for f in ("py_caller_of_call_back", "vmp_ext_call_back", "python_callback"):
            found = text.find(" %s " % f, at)
            assert found >= 0, (f, text)
            at = found
    # With the machinery gone, the C function stands right under its caller.
    lines = folded.splitlines()
    caller = next(i for i, l in enumerate(lines) if " py_caller_of_call_back " in l)
    assert " vmp_ext_call_back " in lines[caller + 1] or " call_back " in lines[caller + 1], \
        lines[caller:caller + 3]
