"""Native stacks are whole under CPython's perf trampolines (3.12+ `-X perf`,
PYTHONPERFSUPPORT=1, sys.activate_stack_trampoline("perf"), 3.13 `-X
perf_jit`).

There CPython runs every call of Python code through its own copy of a small
function (`_Py_trampoline_func_start`) in anonymous executable memory, which
no loaded object describes.  The walk met a return address there at the first
Python call of every stack: before session 11 it stopped as if at the
thread's root (every sample rooted at a Python function), since then every
sample was counted cut (META samples_cut = all of them), and on the wall
clock an idle thread's cut sample was never repeated (its probes waited for
the rules to move).  Now the walk steps through the copies with rules decoded
from the interpreter's own template (src/sampler/vmp_trampoline.c), and every
copy is recorded as the template, one function, `_Py_trampoline_func_start`.

Checked in every sample, with the tests' own decoder: the thread's root is
its first C function; the program's Python frames follow its call graph, each
just inside its own activation of the evaluation loop, which the trampoline
called, which `py_trampoline_evaluator` called; `builtin_sorted` stands
between `leaf` and `key`.  Each case runs a fresh interpreter.
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
    pytest.mark.skipif(sys.version_info < (3, 12), reason="perf trampolines are CPython 3.12+"),
]

HERE = os.path.dirname(os.path.abspath(__file__))


def trampolines_here():
    if not hasattr(sys, "activate_stack_trampoline"):
        return False
    done = subprocess.run([sys.executable, "-X", "perf", "-c",
                           "import sys; print(sys.is_stack_trampoline_active())"],
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0 and done.stdout.strip() == "True"


@pytest.fixture(scope="module")
def have_trampolines():
    if not trampolines_here():
        pytest.skip("this CPython has no perf trampolines (built without them, or not on this machine)")


# The main thread and a worker recurse (rec: 12 Python calls deep, each
# through its own trampoline under -X perf) down to a C function calling
# Python back (sorted with a key); a sleeper and a waiter sit in nested
# Python calls for the whole run (on the wall clock they are sampled idle).
PROGRAM = """
    import os, sys, threading, time, vmprof

    def key(v):
        return -v

    def leaf():
        end = time.thread_time() + 0.001
        while time.thread_time() < end:
            sorted(range(40), key=key)

    def rec(n):
        if n == 0:
            return leaf()
        return rec(n - 1)

    def busy(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            rec(12)

    def nap():
        time.sleep(0.4)

    def idle_sleep():
        nap()

    def idle_wait(ev):
        ev.wait(0.4)

    out, clock, how = sys.argv[1:4]
    f = open(out, "wb")
    if how == "activate":
        sys.activate_stack_trampoline("perf")
    vmprof.enable(f.fileno(), period=0.001, native=True, real_time=clock == "wall")
    if how == "activate-late":
        sys.activate_stack_trampoline("perf")
    threads = {
        "worker": threading.Thread(target=busy, args=(0.25,)),
        "sleeper": threading.Thread(target=idle_sleep),
        "waiter": threading.Thread(target=idle_wait, args=(threading.Event(),)),
    }
    for t in threads.values():
        t.start()
    busy(0.25)
    for t in threads.values():
        t.join()
    vmprof.disable()
    print("active", int(sys.is_stack_trampoline_active()))
    print("pid", os.getpid())
    print("main", threading.main_thread().ident)
    for name, t in threads.items():
        print(name, t.ident)
"""

# Python caller -> Python callees among the program's own functions.
CALLS = {
    "<module>": {"busy"},
    "busy": {"rec"},
    "rec": {"rec", "leaf"},
    "leaf": {"key"},
    "idle_sleep": {"nap"},
}

TRAMPOLINE = "_Py_trampoline_func_start"
EVALUATOR = "py_trampoline_evaluator"
EVAL = "_PyEval_EvalFrameDefault"


def run_program(tmp_path, clock, how):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\n" % HERE + textwrap.dedent(PROGRAM))
    out = tmp_path / "p.prof"
    env = dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYTHONPERFSUPPORT", None)
    args = [sys.executable]
    if how in ("X-perf", "X-perf_jit"):
        args += ["-X", how[2:]]
    if how == "env":
        env["PYTHONPERFSUPPORT"] = "1"
    done = subprocess.run(args + [str(script), str(out), clock, how], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120, env=env)
    facts = dict(line.split() for line in done.stdout.splitlines())
    # CPython writes the trampolines' names for perf: not ours to leave.
    for left in ("/tmp/perf-%s.map", "/tmp/jit-%s.dump"):
        if "pid" in facts and os.path.exists(left % facts["pid"]):
            os.unlink(left % facts["pid"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert facts["active"] == "1", "the trampolines were not on: %s" % how
    idents = {name: int(v) for name, v in facts.items() if name not in ("active", "pid")}
    return sampler_util.read_back(str(out)), idents


def names_of(p, entries):
    """(kind, function, from the program) outermost first."""
    out = []
    for e, _ in p.frames(entries)[::-1]:
        parts = p.name(e).split(":")
        out.append((parts[0], parts[1], parts[0] == "py" and parts[-1].endswith("prog.py")))
    return out


def misplaced(frames):
    """Why a sample (names_of) is wrong, or None."""
    ours = [(i, f) for i, (k, f, mine) in enumerate(frames) if mine]
    for (_, caller), (_, callee) in zip(ours, ours[1:]):
        if callee not in CALLS.get(caller, ()):
            return "%s called by %s" % (callee, caller)
    for i, (kind, func, mine) in enumerate(frames):
        # Each of the program's Python frames runs in its own activation of
        # the evaluation loop, which a trampoline called for it.
        if mine and func != "<module>":
            outer = [f for _, f, _ in frames[max(0, i - 3):i]]
            if outer != [EVALUATOR, TRAMPOLINE, EVAL]:
                return "%s under %s" % (func, outer)
        # The trampoline between its caller and the evaluation loop.
        if kind == "n" and func == TRAMPOLINE:
            if i == 0 or frames[i - 1][1] != EVALUATOR:
                return "trampoline under %s" % (frames[i - 1][1] if i else None)
            if i + 1 < len(frames) and frames[i + 1][1] != EVAL:
                return "trampoline over %s" % frames[i + 1][1]
        if kind == "n" and func.startswith("builtin_sorted"):
            py = [(j, f) for j, f in ours]
            outer = next((f for j, f in reversed(py) if j < i), None)
            inner = next((f for j, f in py if j > i), None)
            if outer != "leaf" or inner not in (None, "key"):
                return "builtin_sorted between %s and %s" % (outer, inner)
    return None


def check(p, idents, clock):
    roots = {}
    bad = []
    deep = 0
    for entries, tid, _ in p.stacks:
        frames = names_of(p, entries)
        roots.setdefault(tid, {}).setdefault(p.name(entries[-1]), 0)
        roots[tid][p.name(entries[-1])] += 1
        deep += sum(f == TRAMPOLINE for _, f, _ in frames) >= 12
        why = misplaced(frames)
        if why:
            bad.append((why, [f for _, f, _ in frames]))
    counts = {name: sum(roots.get(tid, {}).values()) for name, tid in idents.items()}
    cut = int(p.meta.get("samples_cut", "0"))
    # Not vacuous: the recursion was sampled through its trampolines.
    assert deep >= 50, (deep, counts, cut)
    assert counts["main"] >= 50 and counts["worker"] >= 50, (counts, cut)
    if clock == "wall":
        # Idle threads are sampled for their whole wait, not once (a cut
        # sample is never repeated for an idle thread).
        assert counts["sleeper"] >= 100 and counts["waiter"] >= 100, (counts, cut)
    assert cut == 0, (p.meta, counts)
    for tid, r in roots.items():
        # One root per thread, a C function: the program's entry for the
        # main thread, the clone child for the others.
        assert len(r) == 1 and next(iter(r)).startswith("n:"), (tid, r, counts, cut)
    others = {next(iter(roots[idents[n]])) for n in ("worker", "sleeper", "waiter")
              if idents[n] in roots}
    assert len(others) == 1, others
    assert not bad, "%d of %d samples misplaced; first: %s" % (len(bad), len(p.stacks), bad[:2])


HOWS = ["X-perf", "env", "activate"] + (["X-perf_jit"] if sys.version_info >= (3, 13) else [])


@pytest.mark.parametrize("how", HOWS)
def test_native_stacks_are_whole_through_perf_trampolines(tmp_path, have_trampolines, how):
    p, idents = run_program(tmp_path, "cpu", how)
    check(p, idents, "cpu")


@pytest.mark.parametrize("how", ["X-perf", "activate"])
def test_idle_threads_under_perf_trampolines_are_sampled_whole_on_the_wall_clock(tmp_path, have_trampolines, how):
    p, idents = run_program(tmp_path, "wall", how)
    check(p, idents, "wall")


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_trampolines_turned_on_while_profiling_cut_only_until_the_writer_looks(tmp_path, have_trampolines, clock):
    # The first arena of copies is mapped after enable(): the walks that meet
    # it before the writer has read the maps again are cut (and ring it), and
    # none passes for a whole stack; then every walk goes through.  Measured:
    # 1-5 of ~500 samples cut on the CPU clock, 10-28 of 2,000-5,000 on the
    # wall clock (four threads); the bound is loose for a loaded machine,
    # where the writer may wait tens of ms for a CPU after the ring.
    p, idents = run_program(tmp_path, clock, "activate-late")
    cut = int(p.meta.get("samples_cut", "0"))
    off_root = sum(not p.name(entries[-1]).startswith("n:") for entries, _, _ in p.stacks)
    assert off_root <= cut, (off_root, cut)
    assert cut * 4 <= len(p.stacks), (cut, len(p.stacks))
    deep = sum(sum(f == TRAMPOLINE for _, f, _ in names_of(p, entries)) >= 12
               for entries, _, _ in p.stacks)
    assert deep >= 50, (deep, cut)
