"""The profiler never hurts the program it profiles (issue 9): exec while
profiling, faults and the program's own fault handlers, fork, writing to a
pipe the program reads itself, names of dying code, sub-interpreters.

Each test failed before the fix it guards."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def run_script(tmp_path, body, *args, timeout=60, env=None):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\n" % HERE + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)] + list(args), cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=timeout, env=env)


# ---- exec ------------------------------------------------------------------

EXEC_PROGRAM = """
    import ctypes, os, signal, sys, time, vmprof
    how = sys.argv[1]
    if how == "audited-sigprof":
        # The program handles SIGURG itself, so the sampler takes SIGPROF, whose
        # default action ends the new program if one is still pending at exec.
        signal.signal(signal.SIGURG, lambda s, f: None)
    f = open("p.prof", "wb")
    vmprof.enable(f.fileno(), period=0.0002, real_time=True, native=False)
    t = time.time()
    while time.time() - t < 0.05:
        pass
    new = [sys.executable, "-c", "import time; time.sleep(0.02); print('alive')"]
    if how == "libc":  # no audit event: only the signal's default action protects
        libc = ctypes.CDLL(None, use_errno=True)
        argv = (ctypes.c_char_p * (len(new) + 1))(*[a.encode() for a in new], None)
        libc.execv(sys.executable.encode(), argv)
    os.execv(sys.executable, new)
"""


@pytest.mark.parametrize("how", ["audited", "audited-sigprof", "libc"])
def test_exec_while_profiling_at_5khz_never_kills_the_new_program(tmp_path, how):
    # Before: a profiling signal sent while the thread was in execve stayed
    # pending and SIGPROF's default action ended the new program (10 of 20).
    outcomes = []
    for _ in range(20):
        done = run_script(tmp_path, EXEC_PROGRAM, how)
        outcomes.append((done.returncode, done.stdout.strip()))
    assert outcomes == [(0, "alive")] * 20, outcomes


def test_exec_finishes_the_profile_first(tmp_path):
    done = run_script(tmp_path, EXEC_PROGRAM, "audited")
    assert done.stdout.strip() == "alive", done.stderr
    sys.path.insert(0, HERE)
    from sampler_util import read_back
    p = read_back(str(tmp_path / "p.prof"))
    assert p.trailer  # names and trailer written before the exec
    assert p.stacks and all(p.names.get(e) for entries, _, _ in p.stacks for e in entries)


# ---- faults and the program's own fault handlers ---------------------------

def small_stack():
    import resource
    resource.setrlimit(resource.RLIMIT_STACK, (512 * 1024, 512 * 1024))


# C recursion through ctypes callbacks uses C stack on every CPython (3.11+
# no longer recurses in C for Python calls); with a 512 KiB main stack it
# overflows before any recursion limit.
STACK_OVERFLOW = """
    import ctypes, faulthandler, sys
    sys.setrecursionlimit(1000000)
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    def down(n):
        return cb(n + 1)
    cb = CB(down)
    cb(0)
"""


@pytest.mark.parametrize("native", [False, True])
def test_a_stack_overflow_is_still_reported_by_faulthandler_enabled_before(tmp_path, native):
    # Before: our fault handler ran on the overflowed stack (no SA_ONSTACK),
    # so the kernel killed the process before faulthandler could report.
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import faulthandler, vmprof
        faulthandler.enable()
        f = open("p.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001, native=%r)
    """ % native) + textwrap.dedent(STACK_OVERFLOW))
    done = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=60, preexec_fn=small_stack)
    assert done.returncode == -signal.SIGSEGV, done.stderr[-2000:]
    assert "Fatal Python error: Segmentation fault" in done.stderr


def test_a_walk_fault_after_faulthandler_was_enabled_stays_ours(tmp_path):
    # Before: faulthandler, installed over our handler, took the walk's fault
    # first: it printed a false "Fatal Python error" and switched itself off.
    done = run_script(tmp_path, """
        import ctypes, faulthandler, sys, vmprof
        from vmprof import _core
        f = open("p.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001)
        faulthandler.enable()
        assert _core._guard_selftest() == 1
        assert _core._guard_selftest() == 1
        assert faulthandler.is_enabled()
        print("survived", file=sys.stderr, flush=True)
        ctypes.string_at(16)  # a real crash: faulthandler must still report it
    """)
    assert done.returncode == -signal.SIGSEGV
    before, _, after = done.stderr.partition("survived\n")
    assert "Fatal Python error" not in before, done.stderr
    assert "Fatal Python error: Segmentation fault" in after, done.stderr


def test_enabling_twice_around_faulthandler_never_loops_between_handlers(tmp_path):
    # enable, faulthandler.enable (it keeps ours as the one before it),
    # disable, enable: before, ours then called faulthandler's, which had
    # switched itself off and returned, and the fault came back forever.
    done = run_script(tmp_path, """
        import ctypes, faulthandler, time, vmprof
        from sampler_util import burn_cpu
        f = open("p.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001)
        faulthandler.enable()
        burn_cpu(0.05)
        vmprof.disable()
        vmprof.enable(f.fileno(), period=0.001)
        burn_cpu(0.05)
        ctypes.string_at(16)
    """, timeout=30)
    assert done.returncode == -signal.SIGSEGV, done.stderr[-2000:]
    assert done.stderr.count("Fatal Python error: Segmentation fault") == 1, done.stderr


def test_faulthandler_disabled_after_we_got_in_front_never_loops(tmp_path):
    done = run_script(tmp_path, """
        import ctypes, faulthandler, time, vmprof
        from sampler_util import burn_cpu
        f = open("p.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001)
        faulthandler.enable()
        burn_cpu(0.05)  # the writer gets our handler back in front
        faulthandler.disable()
        ctypes.string_at(16)
    """, timeout=30)
    assert done.returncode == -signal.SIGSEGV, done.stderr[-2000:]
    assert "Fatal Python error" not in done.stderr


@pytest.mark.parametrize("handler", ["none", "python"])
def test_a_sigsegv_sent_with_kill_does_what_it_did_without_the_profiler(tmp_path, handler):
    body = """
        import os, signal, sys, vmprof
        from sampler_util import burn_cpu
        got = []
        if sys.argv[1] == "python":
            signal.signal(signal.SIGSEGV, lambda s, f: got.append(s))
        if sys.argv[2] == "profiled":
            f = open("p.prof", "wb")
            vmprof.enable(f.fileno(), period=0.001)
            burn_cpu(0.02)
        os.kill(os.getpid(), signal.SIGSEGV)
        burn_cpu(0.02)
        print("alive", got, flush=True)
    """
    plain = run_script(tmp_path, body, handler, "plain")
    profiled = run_script(tmp_path, body, handler, "profiled")
    # Before: with no handler of the program's, the process went on.
    assert (profiled.returncode, profiled.stdout) == (plain.returncode, plain.stdout), profiled.stderr


def test_the_walk_guard_nests(tmp_path):
    # A guarded call inside a guarded call used to clear the outer one's
    # guard: the outer call's fault then ended the process.
    done = run_script(tmp_path, """
        import vmprof
        from vmprof import _core
        f = open("p.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001)
        print(_core._guard_selftest(True), flush=True)
        vmprof.disable()
        print(vmprof.profiler.last_run_stats["walk_faults"])
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]


def test_the_fault_handler_runs_on_the_alternate_stack():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)  # larger than struct sigaction
    SA_ONSTACK = 0x08000000
    sys.path.insert(0, HERE)
    from sampler_util import burn_cpu
    import vmprof
    with open(os.devnull, "wb") as f:
        vmprof.enable(f.fileno(), period=0.001)
        try:
            burn_cpu(0.01)
            assert libc.sigaction(signal.SIGSEGV, None, buf) == 0
            flags = ctypes.c_ulong.from_buffer(buf, 8 + 128).value  # handler, sa_mask (x86-64, aarch64)
        finally:
            vmprof.disable()
    assert flags & SA_ONSTACK
