"""A program that dies of a signal of its own making - abort() (a C
extension's assert, os.abort, CPython's Py_FatalError), an illegal
instruction, a division by zero, a breakpoint, a system call a seccomp
filter refuses - lets the writer write what the ring holds first, as a
segfault does (test_sampler_crash.py): the samples of its last ~100 ms are
in the profile.  And it dies as it would without the profiler: the same
exit status, the same report from faulthandler (enabled before or after
profiling began, or not at all), its own handlers for these signals called
as before, and the dispositions it reads back and leaves to an exec'd
program unchanged."""
import ast
import os
import platform
import re
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

X86_64 = sys.platform.startswith("linux") and platform.machine() == "x86_64"

# argv: faulthandler (off / before / after vmprof.enable), profiled (0/1),
# clock (cpu/wall), native (0/1), the ending, seconds before the end.
#
# The last moments begin just after a writer round (the profile's size has
# just changed): the writer naps ~100 ms after a round at this rate, so
# without a last round at the signal none of the last 40 ms is written.
#
# The program burns its CPU time in the interpreter, reading the clock only
# now and then (spin): a thread's CPU-time event signals it only when it
# fires while the thread runs its own code, not the kernel's
# (exclude_kernel: what perf_event_paranoid 2 allows, and a signal made
# inside a system call could end it early), and each sample pays the
# thread's CPU time since the one before.  A loop that does nothing but read
# a CPU-time clock (a system call each time) is in the kernel most of the
# time: its samples came 5-25 ms apart at load 12, and what it burnt after
# the last of them was never sampled, up to 26 of the last 40 ms (CI's
# stop 26: 14 and 17 samples of them; here 12 of 330 runs at load 8-20
# below 30, one at 15; spinning in the interpreter, 240 runs at load 20-38
# gave 36-44).
PROGRAM = r'''
import ctypes, faulthandler, mmap, os, signal, sys, time
import vmprof
fh, profiled, clock, native, ending, seconds = sys.argv[1:7]
if fh == "before":
    faulthandler.enable()
fd = None
if profiled == "1":
    fd = os.open("out.prof", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    vmprof.enable(fd, period=0.001, real_time=(clock == "wall"), native=(native == "1"))
if fh == "after":
    faulthandler.enable()
now = time.monotonic if clock == "wall" else time.process_time
libc = ctypes.CDLL(None)

def spin(clock, end):
    while clock() < end:
        for _ in range(1000):
            pass

def burn(seconds):
    spin(now, now() + seconds)

def machine_code(code):
    """A function of x86-64 code, in memory of its own."""
    m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return m, ctypes.CFUNCTYPE(None)(address)

KEEP = {}
if ending.startswith("code_"):
    KEEP["code"] = machine_code({
        "code_ud2": b"\x0f\x0b\xc3",                     # ud2: SIGILL
        "code_div0": b"\x31\xc9\x31\xc0\x31\xd2\xf7\xf1\xc3",  # div by 0: SIGFPE
        "code_int3": b"\xcc\xc3",                        # int3: SIGTRAP
    }[ending])

def before_the_end():
    burn(float(seconds))

def wait_for_a_round():
    if fd is None:
        return
    size = os.fstat(fd).st_size
    deadline = time.monotonic() + 2
    while os.fstat(fd).st_size == size and time.monotonic() < deadline:
        pass

def the_last_moments():
    # 40 ms of this thread's CPU time on both clocks: on the wall clock, the
    # periods a loaded machine keeps it from a CPU are repeats the sampler
    # thread hands over later, not samples in the ring a flush writes.
    # A loaded machine also stretches them past the writer's nap: the
    # rounds that come meanwhile are noted (the profile's size, and this
    # thread's CPU time when it saw it change), since only what came after
    # the last of them is the flush's to write.
    seen = os.fstat(fd).st_size if fd is not None else 0
    since = time.thread_time()
    end = since + 0.04
    while time.thread_time() < end:
        spin(time.thread_time, min(end, time.thread_time() + 0.0005))
        if fd is not None and os.fstat(fd).st_size != seen:
            seen, since = os.fstat(fd).st_size, time.thread_time()
    with open("ending_at", "w") as f:
        f.write(repr((time.monotonic(), seen, time.thread_time() - since)))
    if ending == "os_abort":
        os.abort()
    elif ending == "libc_abort":
        libc.abort()
    elif ending == "fatal_error":
        ctypes.pythonapi.Py_FatalError(b"the end")
    elif ending.startswith("code_"):
        KEEP["code"][1]()
    elif ending.startswith("kill_"):
        os.kill(os.getpid(), getattr(signal, ending[5:]))
    elif ending == "segfault":
        ctypes.string_at(0)

before_the_end()
wait_for_a_round()
the_last_moments()
print("not reached")
'''

ENDINGS = {
    # the ending: the signal it dies of
    "os_abort": signal.SIGABRT,
    "libc_abort": signal.SIGABRT,
    "fatal_error": signal.SIGABRT,
    "code_ud2": signal.SIGILL,
    "code_div0": signal.SIGFPE,
    "code_int3": signal.SIGTRAP,
    "kill_SIGSYS": signal.SIGSYS,
    "kill_SIGILL": signal.SIGILL,
    "kill_SIGBUS": signal.SIGBUS,
    "segfault": signal.SIGSEGV,
}


def run(tmp_path, fh, profiled, clock="cpu", native=False, ending="os_abort", seconds=0.3):
    if ending.startswith("code_") and not X86_64:
        pytest.skip("x86-64 machine code")
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    argv = [sys.executable, str(prog), fh, "1" if profiled else "0", clock, "1" if native else "0", ending, str(seconds)]
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def last_moments(tmp_path, fh, clock="cpu", native=False, ending="os_abort"):
    """(the profiled run, samples in the_last_moments, in before_the_end,
    those of the_last_moments written after the last writer round the
    program saw, the periods of its CPU time after that round).
    Run once more when the last moments are short and the program took the
    flush's whole bound to die: a loaded machine kept the writer from a CPU
    that long (2 of 240 wall-clock aborts at load 14), and the bound is what
    keeps a dying program from hanging; a flush that never happens, or never
    in time, fails both runs."""
    for attempt in range(2):
        done = run(tmp_path, fh, True, clock, native, ending)
        died = time.monotonic()
        out = tmp_path / "out.prof"
        last, before = counts(out)
        ending_at, seen, since = ast.literal_eval((tmp_path / "ending_at").read_text())
        cut = tmp_path / "seen.prof"
        cut.write_bytes(out.read_bytes()[:seen])
        flushed, owed = last - counts(cut)[0], since / PERIOD_S
        if (last >= 20 and flushed_enough(flushed, owed)) or died - ending_at < FLUSH_BOUND_S:
            break
    return done, last, before, flushed, owed


PERIOD_S = 0.001  # PROGRAM's


def flushed_enough(flushed, owed):
    """Whether the samples written after the last round the program saw
    stand for the CPU time it burnt after it.  Only the flush writes them
    (a round racing with the death aside): without it there were none, and
    on a loaded machine the writer's rounds during the last moments wrote
    most of them (a median 37 of 40 at load 33-36, in a build that skips
    the flush).
    With ~10 periods or fewer after that round the run cannot tell; with
    more, at least half of them: every sample is paid by the thread's CPU
    time, and with the interpreter's loop sampled every period or so only
    the last period or two before the ending is not paid."""
    return owed < 10 or flushed >= owed / 2


def counts(path):
    """(samples in the_last_moments, in before_the_end) of a profile cut
    short."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = vmprof.read_profile(str(path))

    def inside(func):
        addrs = {a for a, n in stats.adr_dict.items() if isinstance(n, str) and n.startswith("py:%s:" % func)}
        return sum(e[1] for e in stats.profiles if addrs.intersection(e[0]))

    return inside("the_last_moments"), inside("before_the_end")


def normalized(stderr):
    # thread ids differ from run to run
    return re.sub(r"0x[0-9a-f]+", "0x...", stderr)


CLOCKS_AND_MODES = [("cpu", False), ("wall", False), ("cpu", True), ("wall", True)]


@pytest.mark.parametrize("ending", ["os_abort", "libc_abort", "fatal_error"])
@pytest.mark.parametrize("clock,native", CLOCKS_AND_MODES, ids=["cpu", "wall", "cpu-native", "wall-native"])
def test_the_last_moments_before_abort_are_in_the_profile(tmp_path, ending, clock, native):
    if native and not NATIVE_WALK_HERE:
        pytest.skip(NO_NATIVE_WALK)
    done, last, before, flushed, owed = last_moments(tmp_path, "after", clock, native, ending)
    assert done.returncode == -signal.SIGABRT, done.stderr
    # 0.3 s, then 40 ms, at 1 kHz; without a round at the signal the last
    # moments were lost (the writer's next round was ~100 ms away)
    assert before >= 150, (last, before)
    assert last >= 20, (last, before, done.stderr)
    assert flushed_enough(flushed, owed), (flushed, owed, last, done.stderr)


@pytest.mark.parametrize("ending", ["code_ud2", "code_div0", "code_int3", "kill_SIGSYS", "kill_SIGILL", "kill_SIGBUS"])
def test_the_last_moments_before_a_fatal_signal_are_in_the_profile(tmp_path, ending):
    done, last, before, flushed, owed = last_moments(tmp_path, "off", ending=ending)
    assert done.returncode == -ENDINGS[ending], done.stderr
    assert before >= 150, (last, before)
    assert last >= 20, (last, before, done.stderr)
    assert flushed_enough(flushed, owed), (flushed, owed, last, done.stderr)


@pytest.mark.parametrize("fh", ["off", "before"])
def test_abort_is_flushed_whenever_faulthandler_was_enabled(tmp_path, fh):
    # before: on 3.12+ faulthandler is switched off and on again around
    # ours going in, so it calls ours after its report, as when enabled
    # after; before 3.12 ours takes the place of faulthandler's handler (the
    # one ours chains to for SIGSEGV), and calls it after the flush
    done, last, before, flushed, owed = last_moments(tmp_path, fh, ending="libc_abort")
    assert done.returncode == -signal.SIGABRT, done.stderr
    assert ("Fatal Python error: Aborted" in done.stderr) == (fh != "off"), done.stderr
    assert last >= 20, (last, before, done.stderr)
    assert flushed_enough(flushed, owed), (flushed, owed, last, done.stderr)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="before 3.12 faulthandler's settings are private to "
                    "faulthandler.c: it cannot be switched on again as it was (docs/architecture.md)")
@pytest.mark.parametrize("ending", ["fatal_error", "libc_abort", "segfault", "kill_SIGBUS", "code_ud2"])
@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_a_fatal_error_is_flushed_with_faulthandler_enabled_before(tmp_path, clock, ending):
    # Py_FatalError switches faulthandler off just before its abort(), which
    # puts back what faulthandler found when it was enabled: SIG_DFL, had
    # it been enabled before profiling, and no handler of ours ran (none of
    # the last moments were written).  faulthandler is switched off and on
    # again around ours going in, so what it puts back is ours.
    done, last, before, flushed, owed = last_moments(tmp_path, "before", clock, ending=ending)
    assert done.returncode == -ENDINGS[ending], done.stderr
    assert "Fatal Python error" in done.stderr, done.stderr
    assert before >= 150, (last, before)
    assert last >= 20, (last, before, done.stderr)
    assert flushed_enough(flushed, owed), (flushed, owed, last, done.stderr)


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("fh", ["off", "before", "after"])
def test_a_fatal_signal_ends_the_program_as_without_the_profiler(tmp_path, fh, ending):
    alone = run(tmp_path, fh, False, ending=ending, seconds=0.05)
    profiled = run(tmp_path, fh, True, ending=ending, seconds=0.05)
    assert alone.returncode == profiled.returncode == -ENDINGS[ending], (alone.stderr, profiled.stderr)
    assert normalized(profiled.stderr) == normalized(alone.stderr)
    assert "not reached" not in profiled.stdout
    if fh != "off" and ENDINGS[ending] in (signal.SIGABRT, signal.SIGILL, signal.SIGFPE, signal.SIGBUS):
        assert "Fatal Python error" in profiled.stderr, profiled.stderr


# The program's own handlers, installed before or after profiling began,
# and the dispositions it reads back (Python's table) or leaves to a program
# it execs (SIG_IGN is kept across exec, a handler is not).
OWN_HANDLERS = r'''
import os, signal, subprocess, sys
import vmprof
profiled, when = sys.argv[1:3]
SIGNALS = [signal.SIGABRT, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP, signal.SIGSYS, signal.SIGSEGV, signal.SIGBUS]
calls = []

def own(signum, frame):
    calls.append(signal.Signals(signum).name)

def install():
    signal.signal(signal.SIGILL, own)
    signal.signal(signal.SIGFPE, own)
    signal.signal(signal.SIGTRAP, own)
    signal.signal(signal.SIGSYS, signal.SIG_IGN)

if when == "before":
    install()
if profiled == "1":
    fd = os.open("out.prof", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    vmprof.enable(fd, period=0.001)
if when == "after":
    install()
print([getattr(signal.getsignal(s), "__name__", str(signal.getsignal(s))) for s in SIGNALS])
for s in (signal.SIGILL, signal.SIGFPE, signal.SIGTRAP, signal.SIGSYS):
    os.kill(os.getpid(), s)
print(calls)
child = "import re; print(re.search(r'SigIgn:.*', open('/proc/self/status').read()).group())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout.strip())
if profiled == "1":
    vmprof.disable()
print("done")
'''


@pytest.mark.parametrize("when", ["before", "after"])
def test_the_programs_own_handlers_and_dispositions_are_as_without_the_profiler(tmp_path, when):
    prog = tmp_path / "own.py"
    prog.write_text(OWN_HANDLERS)
    outs = []
    for profiled in ("0", "1"):
        done = subprocess.run([sys.executable, str(prog), profiled, when], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout)
    assert outs[0] == outs[1]
    assert "['SIGILL', 'SIGFPE', 'SIGTRAP']" in outs[1]
    assert outs[1].endswith("done\n")


def core_dumped(tmp_path, profiled, ending):
    """Whether the program dumped core (the core-size limit lifted), and
    its signal."""
    import resource

    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    argv = [sys.executable, str(prog), "after", "1" if profiled else "0", "cpu", "0", ending, "0.05"]

    def lift():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    p = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lift)
    _, status = os.waitpid(p.pid, 0)
    p.returncode = 0  # (reaped here)
    for f in tmp_path.iterdir():
        if f.name.startswith("core"):
            f.unlink()
    return os.WCOREDUMP(status), os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


@pytest.mark.parametrize("ending", ["os_abort", "code_ud2", "code_int3", "kill_SIGSYS"])
def test_the_core_is_dumped_as_without_the_profiler(tmp_path, ending):
    # (ours raises a trap, an abort or a sent signal again, with the default
    # action back: the kernel dumps core for it as for the first)
    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            if f.read().startswith("|"):
                pytest.skip("cores go to a program here (core_pattern)")
    except OSError:
        pass
    if ending.startswith("code_") and not X86_64:
        pytest.skip("x86-64 machine code")
    alone = core_dumped(tmp_path, False, ending)
    profiled = core_dumped(tmp_path, True, ending)
    assert alone == profiled == (True, ENDINGS[ending])
