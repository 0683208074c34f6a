"""os.fork under the profiler prints what it prints without it.

CPython 3.12+ counts the process's threads when os.fork (os.forkpty)
returns in the parent and warns "This process (pid=N) is multi-threaded,
use of fork() may lead to deadlocks in the child." when there are more than
one: our sampler and writer threads made every single-threaded program that
forks print it (and a program run with -W error::DeprecationWarning, or
recording its warnings, see one).  The profiler stops them from the os.fork
audit event until os.fork has returned (vmp_sampler.c); a program with a
thread of its own still gets its warning, word for word.  3.8-3.11 never
warn: the tests pass there as they do without the profiler."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTS = sys.version_info >= (3, 12)  # CPython counts the threads at a fork

# The program: computes, forks (the child computes and leaves), computes
# again.  PROFILE is how it is profiled: nothing, enable() in the program,
# or `python -m vmprof`.  Its stdout ends with the parent's profile's path.
PROGRAM = """
import os, sys, time
sys.path.insert(0, {here!r})
MODE = {mode!r}
NATIVE = {native!r}
REAL_TIME = {real_time!r}

def before_the_fork(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1000))

def after_the_fork(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1000))

if MODE == "enable":
    import vmprof
    out = open("parent.prof", "wb")
    vmprof.enable(out.fileno(), period=0.001, real_time=REAL_TIME, native=NATIVE)
{setup}
before_the_fork(0.15)
pid = {fork}
if pid == 0:
{child}
    os._exit(0)
after_the_fork(0.15)
os.waitpid(pid, 0)
if MODE == "enable":
    from vmprof import _core
    stops = _core._fork_stops() if hasattr(_core, "_fork_stops") else None
    vmprof.disable()
    out.close()
    print("stops", stops)
    print("stats", vmprof.profiler.last_run_stats)  # (in failure messages)
print("parent done")
"""

CHILD_EXITS = "    pass"


def run(tmp_path, mode, native=False, real_time=False, flags=(), setup="", fork="os.fork()",
        child=CHILD_EXITS):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM.format(here=HERE, mode=mode, native=native, real_time=real_time,
                                     setup=textwrap.dedent(setup), fork=fork, child=child))
    cmd = [sys.executable] + list(flags)
    if mode == "cli":
        cmd += ["-m", "vmprof", "-o", "parent.prof"] + (["--real-time"] if real_time else []) + \
               ([] if native else ["-n"]) + [str(script)]
    else:
        cmd += [str(script)]
    done = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def program_stderr(done):
    """stderr without vmprof's own line (python -m vmprof says where the profile went)."""
    return "".join(line for line in done.stderr.splitlines(True) if not line.startswith("vmprof: "))


def samples_of(path, function):
    import vmprof
    stats = vmprof.read_profile(str(path))
    ids = {addr for addr, name in stats.adr_dict.items()
           if isinstance(name, str) and name.startswith("py:%s:" % function)}
    return sum(entry[1] for entry in stats.profiles if ids.intersection(entry[0]))


# A program that records its warnings sees what it saw without the profiler
# (with -W error::DeprecationWarning os.fork swallows the error: nothing is
# printed either way).
RECORDS = """
import warnings
def forked():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pid = os.fork()
    if pid:
        for w in seen:
            print("recorded:", w.category.__name__, w.message, file=sys.stderr)
    return pid
"""


@pytest.mark.cpython_only
@pytest.mark.parametrize("flags", [(), ("-W", "always"), ("-W", "error::DeprecationWarning"), "record"],
                         ids=["default", "always", "error", "record"])
@pytest.mark.parametrize("mode", ["enable", "cli"])
@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_a_single_threaded_program_that_forks_prints_what_it_prints_without_the_profiler(
        tmp_path, flags, mode, real_time, native):
    how = dict(setup=RECORDS, fork="forked()") if flags == "record" else dict(flags=flags)
    plain = run(tmp_path, "none", **how)
    profiled = run(tmp_path, mode, native=native, real_time=real_time, **how)
    assert plain.stderr == ""  # (the program itself warns of nothing)
    assert program_stderr(profiled) == plain.stderr, profiled.stdout
    assert profiled.stdout.endswith("parent done\n")
    if mode == "enable" and COUNTS:
        # our threads were stopped for that fork, and started again
        assert profiled.stdout.startswith("stops (1, 0, "), profiled.stdout
    # the profile is whole: samples before and after the fork
    assert samples_of(tmp_path / "parent.prof", "before_the_fork") > 30
    assert samples_of(tmp_path / "parent.prof", "after_the_fork") > 30


THREAD_OF_ITS_OWN = """
import threading
stop = threading.Event()
waiter = threading.Thread(target=stop.wait, daemon=True)
waiter.start()
"""


@pytest.mark.cpython_only
@pytest.mark.parametrize("mode", ["enable", "cli"])
def test_a_program_with_a_thread_of_its_own_still_gets_its_warning_word_for_word(tmp_path, mode):
    setup = THREAD_OF_ITS_OWN
    plain = run(tmp_path, "none", setup=setup)
    profiled = run(tmp_path, mode, setup=setup)
    pid = re.compile(r"pid=\d+")
    if COUNTS:
        assert "is multi-threaded, use of fork() may lead to deadlocks in the child." in plain.stderr
    assert pid.sub("pid=N", program_stderr(profiled)) == pid.sub("pid=N", plain.stderr)
    if mode == "enable" and COUNTS:
        assert profiled.stdout.startswith("stops (0, 0, 0)"), profiled.stdout  # (ours left alone)


@pytest.mark.cpython_only
@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_the_threads_start_again_only_once_the_fork_has_returned_whatever_the_hooks_run(tmp_path, real_time):
    # 3.13.0 counts the threads after the os.register_at_fork after_in_parent
    # hooks, 3.12.1 before them: hooks written in Python (logging registers
    # some) run the pending call that starts our threads again inside
    # os.fork; it must wait until os.fork has returned.
    setup = """
    import logging
    def busy_hook():
        total = 0
        for i in range(20000):
            total += i
    for _ in range(3):
        os.register_at_fork(before=busy_hook, after_in_parent=busy_hook, after_in_child=busy_hook)
    """
    plain = run(tmp_path, "none", flags=("-W", "always"), setup=setup)
    profiled = run(tmp_path, "enable", real_time=real_time, flags=("-W", "always"), setup=setup)
    assert program_stderr(profiled) == plain.stderr == ""
    if COUNTS:
        assert profiled.stdout.startswith("stops (1, 0, "), profiled.stdout
    assert samples_of(tmp_path / "parent.prof", "after_the_fork") > 30


@pytest.mark.cpython_only
def test_forkpty_prints_what_it_prints_without_the_profiler(tmp_path):
    plain = run(tmp_path, "none", flags=("-W", "always"), fork="os.forkpty()[0]")
    profiled = run(tmp_path, "enable", flags=("-W", "always"), fork="os.forkpty()[0]")
    assert program_stderr(profiled) == plain.stderr == ""
    if COUNTS:
        assert profiled.stdout.startswith("stops (1, 0, "), profiled.stdout


CHILD_PROFILES = """
    import vmprof as child_vmprof
    ok = not child_vmprof.is_enabled()
    mine = open("child.prof", "wb")
    child_vmprof.enable(mine.fileno(), period=0.001, real_time=REAL_TIME, native=NATIVE)
    after_the_fork(0.15)
    child_vmprof.disable()
    mine.close()
    os._exit(0 if ok else 3)"""


@pytest.mark.cpython_only
@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_a_child_that_profiles_itself_and_its_parent_both_get_whole_profiles(tmp_path, native):
    profiled = run(tmp_path, "enable", native=native, flags=("-W", "always"), child=CHILD_PROFILES)
    assert program_stderr(profiled) == "", profiled.stdout
    import vmprof
    parent = vmprof.read_profile(str(tmp_path / "parent.prof"))
    child = vmprof.read_profile(str(tmp_path / "child.prof"))
    assert parent.meta["pid"] != child.meta["pid"]
    assert samples_of(tmp_path / "parent.prof", "before_the_fork") > 30
    assert samples_of(tmp_path / "parent.prof", "after_the_fork") > 30
    assert samples_of(tmp_path / "child.prof", "after_the_fork") > 30
    assert samples_of(tmp_path / "child.prof", "before_the_fork") == 0  # (the parent's run, not the child's)


# An audit hook of the program's, after ours, refuses the first os.fork;
# the program computes, runs a subprocess with a preexec_fn (which runs
# os.register_at_fork's hooks, not os.fork's audit event), and forks.
REFUSED_ONCE = """
import subprocess
refuse = [True]
def no_fork_once(event, args):
    if event == "os.fork" and refuse:
        refuse.pop()
        raise PermissionError("not this time")
sys.addaudithook(no_fork_once)

def between_the_forks(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1000))

def refused_then_forked():
    try:
        os.fork()
        raise SystemExit("the fork was not refused")
    except PermissionError:
        pass
    between_the_forks(0.15)
    subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True)
    return os.fork()
"""


@pytest.mark.cpython_only
@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_a_fork_an_audit_hook_refused_leaves_sampling_on(tmp_path, real_time, native):
    # Before, the os.fork audit event stopped our threads and a later audit
    # hook of the program's could still refuse the fork: they stayed stopped
    # (no samples) until the next fork.  Now the stop comes from a before
    # hook, once the fork goes ahead; a subprocess's preexec_fn, which runs
    # the before hooks too, stops nothing.
    how = dict(flags=("-W", "always"), setup=REFUSED_ONCE, fork="refused_then_forked()")
    plain = run(tmp_path, "none", **how)
    profiled = run(tmp_path, "enable", native=native, real_time=real_time, **how)
    assert program_stderr(profiled) == plain.stderr == "", profiled.stdout
    assert samples_of(tmp_path / "parent.prof", "between_the_forks") > 30, profiled.stdout
    if COUNTS:
        assert profiled.stdout.startswith("stops (1, 0, "), profiled.stdout  # (the fork that happened)
    # (0 once in session 19, at load ~20, not seen again in 150 runs at load
    # 12-24: the run's figures, should it come back)
    assert samples_of(tmp_path / "parent.prof", "after_the_fork") > 30, profiled.stdout


SESSIONS = """
import os, sys, time, vmprof
from vmprof import _core
sys.path.insert(0, {here!r})
from sampler_util import burn_cpu
out = open("p.prof", "wb")
vmprof.enable(out.fileno(), period=0.001, native=True)
burn_cpu(0.1)
for i in range(30):
    time.sleep(0.002)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
burn_cpu(0.1)
print("sessions", _core._writer_sessions(), "stops", _core._fork_stops())
vmprof.disable()
"""


@pytest.mark.cpython_only
@pytest.mark.skipif(not COUNTS, reason="3.8-3.11 count no threads at a fork: the writer is never paused")
def test_native_modes_writer_opens_its_libdw_session_again_only_when_it_needs_it(tmp_path):
    # Each fork pauses the writer, whose thread ends with its descriptor
    # table and its libdw session.  Before, the next thread opened the
    # session again at its first round (reading the maps, reporting every
    # object, sorting their symbols again at the first name): 2.5-3.5 ms
    # more per fork in a fork loop (bench/fork_bench.py).  Now only a pc
    # not met before, a rule or a name only libdw has, or a library loaded
    # or unloaded meanwhile opens it.  30 forks of a program that meets
    # hardly any new code between them: a few opens, not 31.
    script = tmp_path / "prog.py"
    script.write_text(SESSIONS.format(here=HERE))
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", str(script)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sessions = int(done.stdout.split("sessions")[1].split()[0])
    assert done.stdout.split("stops")[1].startswith(" (30, 0, "), done.stdout
    assert 1 <= sessions <= 10, done.stdout
    assert samples_of(tmp_path / "p.prof", "burn_cpu") > 100


FORKS_IN_A_THREAD = """
import threading
def fork_here():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    result.append(pid)
def forked_in_a_thread():
    t = threading.Thread(target=fork_here)
    t.start()
    t.join()
    return result[0]
result = []
"""


@pytest.mark.cpython_only
def test_a_fork_from_a_thread_other_than_the_main_one_warns_as_it_does_without_the_profiler(tmp_path):
    # Our threads are stopped only for a fork from the main thread (the
    # pending call that starts them again runs there).  A fork from another
    # thread is always one of a process the kernel counts two threads of at
    # least: the main thread waits (here in join), and even one that ended
    # (pthread_exit) stays counted while the process lives.  So the warning
    # is the program's own, word for word, and ours run on.
    how = dict(setup=FORKS_IN_A_THREAD, fork="forked_in_a_thread()")
    plain = run(tmp_path, "none", **how)
    profiled = run(tmp_path, "enable", **how)
    pid = re.compile(r"pid=\d+")
    if COUNTS:
        assert "is multi-threaded, use of fork() may lead to deadlocks in the child." in plain.stderr
    assert pid.sub("pid=N", program_stderr(profiled)) == pid.sub("pid=N", plain.stderr)
    if COUNTS:
        assert profiled.stdout.startswith("stops (0, 0, 0)"), profiled.stdout
    assert samples_of(tmp_path / "parent.prof", "after_the_fork") > 30


LEFT_IN_LISTS = """
import gc, os, sys, vmprof
out = open("p.prof", "wb")
vmprof.enable(out.fileno(), period=0.001)
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
ours = [f.__name__ for l in gc.get_objects() if type(l) is list
        for f in l if type(f) is type(len) and f.__name__.startswith("_vmprof_")]
print("left", sorted(ours))
vmprof.disable()
"""


@pytest.mark.cpython_only
def test_our_fork_hooks_take_themselves_out_of_cpythons_lists(tmp_path):
    # Our before and after_in_parent hooks (3.12+) are put into CPython's
    # lists of os.register_at_fork hooks for one fork and take themselves
    # out when called.  Before, they passed their m_self (NULL) for
    # themselves: the after hook stayed in the list, and ran at every later
    # fork of the process (a subprocess's preexec_fn too).
    script = tmp_path / "prog.py"
    script.write_text(LEFT_IN_LISTS)
    done = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left []" in done.stdout, done.stdout
