"""Native stacks are complete from a thread's first sample: every sample of a
thread is rooted at that thread's first function.

The handler's walk finds each frame's unwind rule in the rules the writer
learned, else in the object's own .eh_frame (src/sampler/vmp_cfi.c), so no
sample waits for the writer to learn a function.  Before that, the first
samples of each new call chain were cut at the first function not learned
yet, and on the wall clock an idle thread's cut first sample stood for its
whole wait: one sleeping thread showed under five or six different roots
(3.8: 308 of 308 samples rooted at `_bootstrap`).

Each case runs a fresh interpreter (nothing learned by earlier runs) and reads
the profile with the tests' own decoder.
"""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

import sampler_util

pytestmark = [
    pytest.mark.cpython_only,
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                       reason="the native walk is x86-64 Linux's; elsewhere a sample keeps "
                              "the interrupted frame only"),
]

HERE = os.path.dirname(os.path.abspath(__file__))

# The main thread computes (recursion: new C leaf functions met all the time
# at first), then joins three threads: one sleeping, one waiting on an event
# (a lock wait), one computing something else (sorting, json).  Each thread
# prints its ident so that the test knows whose samples are whose.
PROGRAM = """
    import json, sys, threading, time, vmprof

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def other_work():
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            rows = sorted((i % 7, str(i), i * 0.5) for i in range(2000))
            json.dumps(rows)

    f = open(sys.argv[1], "wb")
    vmprof.enable(f.fileno(), period=0.001, native=True, real_time=sys.argv[2] == "wall")
    threads = {
        "sleeper": threading.Thread(target=time.sleep, args=(0.3,)),
        "waiter": threading.Thread(target=threading.Event().wait, args=(0.3,)),
        "worker": threading.Thread(target=other_work),
    }
    for t in threads.values():
        t.start()
    end = time.thread_time() + 0.25
    while time.thread_time() < end:
        fib(22)
    for t in threads.values():
        t.join()
    vmprof.disable()
    print("main", threading.main_thread().ident)
    for name, t in threads.items():
        print(name, t.ident)
"""


def run_program(tmp_path, clock):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\n" % HERE + textwrap.dedent(PROGRAM))
    out = tmp_path / "p.prof"
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(script), str(out), clock], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    idents = {}
    for line in done.stdout.splitlines():
        name, ident = line.split()
        idents[name] = int(ident)
    return sampler_util.read_back(str(out)), idents


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_every_sample_of_a_thread_has_its_first_function_outermost(tmp_path, clock):
    p, idents = run_program(tmp_path, clock)
    # One known limitation cuts walks: a sample taken while the dynamic
    # loader binds a function lazily (its first call through a PLT) inside
    # ld.so's trampoline _dl_runtime_resolve_*, whose rule is CFA = rbx + 32
    # (it realigns rsp); the walk follows rules on rsp and rbp only, so it is
    # cut there.  The sample keeps its C frames up to the trampoline (never a
    # thread's first function), then its Python frames outermost, and META
    # samples_cut counts it.  (Seen on 3.8 in the main thread's first join,
    # ~1 run in 12; on 3.11 a worker's sample under `_bootstrap`.)  So the
    # samples off their thread's root must be exactly those: each ends its C
    # frames in the trampoline, and together they are samples_cut.  Anything
    # else cut, or a sample off its root not counted as cut, fails.
    roots = {}  # tid -> {outermost entry: samples}
    lazily_bound = 0
    for entries, tid, _ in p.stacks:
        native = [e for e in entries if p.name(e).startswith("n:")]
        if native and p.func(native[-1]).startswith("_dl_runtime_resolve"):
            lazily_bound += 1
            continue
        outer = entries[-1]
        roots.setdefault(tid, {}).setdefault(outer, 0)
        roots[tid][outer] += 1

    def described(tid):
        return ", ".join("%s %d" % (p.name(e), n)
                         for e, n in sorted(roots[tid].items(), key=lambda kv: -kv[1]))

    # Not vacuous: the threads that ran (or waited, on the wall clock) were
    # sampled many times.
    counts = {name: sum(roots.get(tid, {}).values()) for name, tid in idents.items()}
    assert counts["main"] >= 50, counts
    assert counts["worker"] >= 30, counts
    if clock == "wall":
        assert counts["sleeper"] >= 100 and counts["waiter"] >= 100, counts
    for tid in roots:
        # One root per thread, and it is a C function (the program's entry
        # for the main thread, the clone child for the others): no sample
        # was cut short, whatever function it met first.
        assert len(roots[tid]) == 1, (clock, tid, described(tid), counts)
        (root,) = roots[tid]
        assert p.name(root).startswith("n:"), (clock, described(tid))
    # What the main thread's root is (not a name hard-coded per glibc: the
    # same as every other sample of it says), and the others share theirs.
    others = {next(iter(roots[idents[n]])) for n in ("sleeper", "waiter", "worker")
              if idents[n] in roots}
    assert len(others) == 1, [described(idents[n]) for n in ("sleeper", "waiter", "worker")]
    assert int(p.meta.get("samples_cut", "0")) == lazily_bound, (p.meta, lazily_bound)
