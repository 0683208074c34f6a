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
