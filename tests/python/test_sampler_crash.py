"""A program that dies without reaching disable() - SIGKILL (the OOM killer), a
segfault in a C extension, os._exit - keeps the profile written so far, and
that profile is named as far as it goes: the writer names the code objects
and native functions it meets during the run, in the same writes as their
first samples.  Before, every name was written at the stop: such a profile
showed addresses only.  (A SIGKILL cannot be caught: what the writer had
written before it, up to ~100 ms of samples short of the end, is the
profile.)"""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import vmprof
from sampler_util import FLUSH_BOUND_S, NATIVE_WALK_HERE, NO_NATIVE_WALK

pytestmark = [
    pytest.mark.cpython_only,
    pytest.mark.skipif(not hasattr(vmprof, "enable"), reason="the sampler (vmprof.enable) is not built in"),
]

# outer_part -> burn_until_the_end, then the ending: the function names the
# profile must show, in samples that stop ~100 ms or less before the end.
PROGRAM = '''
import ctypes, faulthandler, os, signal, time
faulthandler.enable()

def burn_until_the_end(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n

def outer_part():
    burn_until_the_end(0.8)
    {ending}

outer_part()
print("not reached")
'''

ENDINGS = {
    # (the statement, the exit status as without the profiler)
    "sigkill": ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
    "segfault": ("ctypes.string_at(0)", -signal.SIGSEGV),
    "os_exit": ("os._exit(3)", 3),
}


def run(tmp_path, ending, vmprof_args=(), profiled=True):
    return run_program(tmp_path, textwrap.dedent(PROGRAM.format(ending=ENDINGS[ending][0])), vmprof_args, profiled)


def run_program(tmp_path, text, vmprof_args=(), profiled=True):
    """Runs text as prog.py in tmp_path (under python -m vmprof with
    vmprof_args, when profiled): the finished process and the profile's
    path."""
    (tmp_path / "prog.py").write_text(text)
    out = tmp_path / "out.prof"
    argv = [sys.executable] + (["-m", "vmprof"] + list(vmprof_args) + ["-o", str(out)] if profiled else [])
    done = subprocess.run(argv + ["prog.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done, out


def read_unfinished(path):
    """The reader keeps every complete sample of a profile without a trailer
    (it warns that the program did not stop profiling)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vmprof.read_profile(str(path))


def named_share(stats, native):
    """(samples, share of their Python frames named, share of their native
    frames named, samples whose stack holds burn_until_the_end by name)."""
    names = stats.adr_dict
    py = py_named = nat = nat_named = burn = 0
    for entry in stats.profiles:
        stack, count = entry[0], entry[1]
        for addr in stack:
            is_native = native and addr & 1
            named = isinstance(names.get(addr), str)
            if is_native:
                nat += count
                nat_named += count * named
            else:
                py += count
                py_named += count * named
        if any(isinstance(names.get(a), str) and names[a].startswith("py:burn_until_the_end:") for a in stack):
            burn += count
    samples = sum(e[1] for e in stats.profiles)
    return samples, py_named / max(py, 1), nat_named / max(nat, 1), burn


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_a_profile_cut_short_by_the_programs_death_is_named(tmp_path, ending, native):
    if native and not NATIVE_WALK_HERE:
        pytest.skip(NO_NATIVE_WALK)
    done, out = run(tmp_path, ending, [] if native else ["-n"])
    assert done.returncode == ENDINGS[ending][1], done.stderr
    assert "not reached" not in done.stdout
    stats = read_unfinished(out)
    samples, py_named, native_named, burn = named_share(stats, native)
    # 0.8 s at the default ~1 kHz: what the writer wrote before the end
    assert samples >= 300, samples
    assert py_named >= 0.95, (py_named, samples)
    assert burn >= 0.5 * samples, (burn, samples)
    names = [n for n in stats.adr_dict.values() if isinstance(n, str)]
    assert any(n.startswith("py:outer_part:") for n in names)
    if native:
        assert native_named >= 0.95, (native_named, samples)
        assert any(n.startswith("n:_PyEval_EvalFrameDefault:") for n in names), names[:20]


def test_a_segfault_is_reported_as_without_the_profiler(tmp_path):
    # faulthandler's report and the exit status are the program's own: the
    # fault is not ours (it is outside every guarded read), so it reaches
    # faulthandler and then the default action, as without vmprof.
    alone, _ = run(tmp_path, "segfault", profiled=False)
    profiled, _ = run(tmp_path, "segfault")
    assert alone.returncode == profiled.returncode == -signal.SIGSEGV
    for done in (alone, profiled):
        assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr
        assert 'prog.py", line 8 in outer_part' in done.stderr or "in outer_part" in done.stderr, done.stderr


def test_names_written_during_the_run_are_not_written_again_at_the_stop(tmp_path):
    # A run that ends normally: each id is named once (names written during
    # the run are not repeated at the stop), and every sampled id is named.
    from sampler_util import burn_cpu, profile, read_back

    def named_once_here():
        return burn_cpu(0.3)

    p, _, _ = profile(named_once_here, period=0.001)
    assert p.trailer
    assert p.inclusive("named_once_here") > 0
    for entries, _, _ in p.stacks:
        for e in entries:
            assert e in p.names
    assert all(len(v) == 1 for v in p.names.values()), {k: v for k, v in p.names.items() if len(v) > 1}


# Code objects that live long enough to be named during the run (25 ms
# each: a writer round or more), then die, their addresses taken by the next
# ones; the program is killed at the end.
CHURN = '''
import collections, os, signal, time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

addresses = collections.Counter()
for i in range(48):
    ns = {}
    exec("def made_%d(burn):\\n    return burn(0.025)\\n" % i, {}, ns)
    f = ns["made_%d" % i]
    addresses[id(f.__code__)] += 1
    f(burn)
    del f, ns  # the code object dies here; the next one may take its address
print("reused", addresses.most_common(1)[0][1], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''


def test_names_written_during_the_run_never_lie_when_addresses_are_reused(tmp_path):
    from sampler_util import read_back

    done, out = run_program(tmp_path, CHURN, ["-n"])
    assert done.returncode == -signal.SIGKILL, done.stderr
    if int(done.stdout.split()[1]) < 3:
        pytest.skip("no address was reused: nothing to tell apart (%s)" % done.stdout)
    p = read_back(out, partial=True)
    assert not p.trailer
    # one id, one function
    for code_id, names in p.names.items():
        assert len(set(names)) == 1, (hex(code_id), names)
    # samples inside made_<i> name made_<i>: the functions ran in order, so
    # the indexes along the samples never go down
    made = []
    unnamed = 0
    for entries, _, _ in p.stacks:
        for e in entries:
            if e not in p.names:
                unnamed += 1
                continue
            f = p.func(e)
            if f.startswith("made_"):
                made.append(int(f.split("_")[1]))
    assert made == sorted(made)
    assert len(set(made)) > 30, sorted(set(made))
    assert unnamed <= 0.05 * sum(len(e) for e, _, _ in p.stacks), unnamed


# The thread's CPU time, burnt in the interpreter, reading the clock only
# now and then: its CPU-time event signals it only when it fires outside the
# kernel, and each sample pays the CPU time since the one before; a loop
# that only read a CPU-time clock (a system call) was in the kernel most of
# the time, and what it burnt after its last sample, up to ~25 of these
# 40 ms under load, was never sampled (test_sampler_fatal.py).
LAST_MOMENTS = '''
import ctypes, faulthandler, time
faulthandler.enable()

def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        for _ in range(1000):
            pass

def before_the_end():
    burn(0.5)

def the_last_moments():
    burn(0.04)
    with open("ending_at", "w") as f:
        f.write(repr(time.monotonic()))
    ctypes.string_at(0)

before_the_end()
the_last_moments()
'''


def test_a_segfault_lets_the_writer_write_what_the_ring_holds(tmp_path):
    # The writer writes every 2-100 ms: without a last round at the fault,
    # the last 40 ms before it were in the profile only when a round
    # happened to come late enough (most runs: none of them).
    # Run once more when the last moments are short and the program took
    # the flush's whole bound to die (test_sampler_fatal.py's last_moments):
    # a loaded machine kept the writer from a CPU that long.
    for attempt in range(2):
        done, out = run_program(tmp_path, LAST_MOMENTS, ["-n"])
        died = time.monotonic()
        stats = read_unfinished(out)
        last = {a for a, n in stats.adr_dict.items() if isinstance(n, str) and n.startswith("py:the_last_moments:")}
        in_last = sum(e[1] for e in stats.profiles if last.intersection(e[0]))
        if in_last >= 20 or died - float((tmp_path / "ending_at").read_text()) < FLUSH_BOUND_S:
            break
    assert done.returncode == -signal.SIGSEGV, done.stderr
    assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr
    # ~40 samples at 1 kHz of CPU time
    assert in_last >= 20, (in_last, done.stderr)
