"""Native stacks are complete from a thread's first sample: every sample of a
thread is rooted at that thread's first function.

The handler's walk finds each frame's unwind rule in the rules the writer
learned, else in the object's own .eh_frame (src/sampler/vmp_cfi.c), so no
sample waits for the writer to learn a function.  Before that, the first
samples of each new call chain were cut at the first function not learned
yet, and on the wall clock an idle thread's cut first sample stood for its
whole wait: one sleeping thread showed under five or six different roots
(3.8: 308 of 308 samples rooted at `_bootstrap`).

A walk also follows the frames of ld.so's lazy-binding trampolines
(_dl_runtime_resolve_*, CFA = rbx + 32), where a program is on the first call
of each function it binds lazily.  Before, a sample taken there was cut at
the trampoline (3.8: the main thread's first join, ~1 run in 12; with
LD_BIND_NOT=1, where every call through a PLT binds, most samples).

Each case runs a fresh interpreter (nothing learned by earlier runs) and reads
the profile with the tests' own decoder.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import sampler_util

pytestmark = [
    pytest.mark.cpython_only,
    pytest.mark.skipif(not sampler_util.NATIVE_WALK_HERE, reason=sampler_util.NO_NATIVE_WALK),
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


def run_program(tmp_path, clock, program=PROGRAM, **env_extra):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\n" % HERE + textwrap.dedent(program))
    out = tmp_path / "p.prof"
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"), **env_extra)
    done = subprocess.run([sys.executable, str(script), str(out), clock], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    idents = {}
    for line in done.stdout.splitlines():
        name, ident = line.split()
        idents[name] = int(ident)
    return sampler_util.read_back(str(out)), idents


def roots_by_thread(p):
    """{tid: {outermost entry: samples}}"""
    roots = {}
    for entries, tid, _ in p.stacks:
        outer = entries[-1]
        roots.setdefault(tid, {}).setdefault(outer, 0)
        roots[tid][outer] += 1
    return roots


def described(p, roots, tid):
    return ", ".join("%s %d" % (p.name(e), n)
                     for e, n in sorted(roots[tid].items(), key=lambda kv: -kv[1]))


def in_trampoline(p, entries):
    return any(p.name(e).startswith("n:_dl_runtime_resolve") for e in entries)


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_every_sample_of_a_thread_has_its_first_function_outermost(tmp_path, clock):
    p, idents = run_program(tmp_path, clock)
    roots = roots_by_thread(p)
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
        # was cut short, whatever function it met first (a function bound
        # lazily included: ld.so's trampoline is walked through).
        assert len(roots[tid]) == 1, (clock, tid, described(p, roots, tid), counts)
        (root,) = roots[tid]
        assert p.name(root).startswith("n:"), (clock, described(p, roots, tid))
    # What the main thread's root is (not a name hard-coded per glibc: the
    # same as every other sample of it says), and the others share theirs.
    others = {next(iter(roots[idents[n]])) for n in ("sleeper", "waiter", "worker")
              if idents[n] in roots}
    assert len(others) == 1, [described(p, roots, idents[n]) for n in ("sleeper", "waiter", "worker")]
    assert int(p.meta.get("samples_cut", "0")) == 0, p.meta


# Every call through a PLT binds with LD_BIND_NOT=1 (the loader never writes
# the GOT), so the threads spend much of their time under ld.so's trampoline:
# the JSON and sorting code of libpython calls memcpy, malloc, strlen... of
# libc through its PLT.  Before the trampoline's frames were followed, 1,000+
# of ~1,500 samples were cut there (3.11; 3.8 and 3.13 alike).
BINDING_PROGRAM = """
    import json, sys, threading, time, vmprof

    def work():
        end = time.thread_time() + 0.15
        while time.thread_time() < end:
            rows = sorted((i % 7, str(i), i * 0.5) for i in range(500))
            json.loads(json.dumps(rows))

    f = open(sys.argv[1], "wb")
    vmprof.enable(f.fileno(), period=0.0002, native=True, real_time=sys.argv[2] == "wall")
    t = threading.Thread(target=work)
    t.start()
    work()
    t.join()
    vmprof.disable()
    print("main", threading.main_thread().ident)
    print("worker", t.ident)
"""


def test_samples_taken_while_a_function_binds_lazily_reach_their_root(tmp_path):
    p, idents = run_program(tmp_path, "cpu", BINDING_PROGRAM, LD_BIND_NOT="1")
    roots = roots_by_thread(p)
    bound = sum(in_trampoline(p, entries) for entries, _, _ in p.stacks)
    if bound == 0 and not any(n[-1].startswith("n:_dl_") for n in p.names.values()):
        pytest.skip("ld.so's functions have no names here: the trampoline is not told")
    # Not vacuous: many samples were taken under the trampoline.
    assert bound >= 50, (bound, len(p.stacks))
    for name, tid in idents.items():
        assert tid in roots, (name, idents)
        assert len(roots[tid]) == 1, (name, described(p, roots, tid), bound)
        (root,) = roots[tid]
        assert p.name(root).startswith("n:"), (name, described(p, roots, tid))
    assert int(p.meta.get("samples_cut", "0")) == 0, (p.meta, bound, len(p.stacks))
