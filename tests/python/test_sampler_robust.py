"""The profiler never crashes, hangs or changes what the program does: fork,
the program's own signal handlers, deep recursion, generators and asyncio,
exceptions, C code calling back into Python, threads that come and go,
os._exit and interpreter shutdown with the profiler on."""
import asyncio
import collections
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import vmprof
from sampler_util import burn_cpu, profile, read_back

HERE = os.path.dirname(os.path.abspath(__file__))


def run_script(tmp_path, body, timeout=60):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nsys.path.insert(0, %r)\n" % HERE + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=timeout)


def test_fork_child_leaves_the_parents_profile_alone_and_may_profile_itself(tmp_path):
    done = run_script(tmp_path, """
        import os, vmprof
        from sampler_util import burn_cpu, read_back
        parent = open("parent.prof", "wb")
        vmprof.enable(parent.fileno(), period=0.001)
        burn_cpu(0.1)
        pid = os.fork()
        if pid == 0:
            ok = not vmprof.is_enabled()
            child = open("child.prof", "wb")
            vmprof.enable(child.fileno(), period=0.001)
            burn_cpu(0.15)
            vmprof.disable()
            child.close()
            os._exit(0 if ok else 3)
        burn_cpu(0.1)
        _, status = os.waitpid(pid, 0)
        vmprof.disable()
        parent.close()
        print("child status", status, vmprof.profiler.last_run_stats)
        p = read_back("parent.prof")
        c = read_back("child.prof")
        print("parent pids", {tid for _, tid, _ in p.stacks} and p.meta["pid"], "child", c.meta["pid"])
        assert p.trailer and c.trailer
        assert p.meta["pid"] != c.meta["pid"]
        assert p.inclusive("burn_cpu") > 100, (p.inclusive("burn_cpu"), vmprof.profiler.last_run_stats)
        assert c.inclusive("burn_cpu") > 60, c.inclusive("burn_cpu")
        print("OK")
    """)
    assert done.returncode == 0, done.stderr
    assert "child status 0" in done.stdout and "OK" in done.stdout


def test_the_programs_own_signal_handlers_keep_working():
    got = []
    old_urg = signal.signal(signal.SIGURG, lambda s, f: got.append("urg"))
    old_prof = signal.signal(signal.SIGPROF, lambda s, f: got.append("prof"))
    old_usr1 = signal.signal(signal.SIGUSR1, lambda s, f: got.append("usr1"))
    try:
        def run():
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGPROF)
            os.kill(os.getpid(), signal.SIGURG)
            burn_cpu(0.15)

        p, _, stats = profile(run, period=0.001)
        # SIGURG and SIGPROF are the program's: the sampler took another signal
        assert stats["signal"] not in (signal.SIGURG, signal.SIGPROF)
        assert sorted(got) == ["prof", "urg", "usr1"]
        assert p.inclusive("burn_cpu") > 50
        assert signal.getsignal(signal.SIGPROF) is not old_prof  # still the program's
        got.clear()
        os.kill(os.getpid(), signal.SIGPROF)
        os.kill(os.getpid(), signal.SIGURG)
        assert got == ["prof", "urg"]
    finally:
        signal.signal(signal.SIGURG, old_urg)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGUSR1, old_usr1)


@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_a_program_taking_the_signal_over_keeps_it_and_the_profile_says_when(real_time):
    # The program installs its own handler for the signal the profiler uses
    # (SIGURG, free when profiling began).  The sampler stops sending it, so
    # that the handler is not run for every sample; but the profile then
    # just ended there, with nothing to say why (a program that set up its
    # handlers after `python -m vmprof` started it showed "0 samples").
    # META and disable()'s figures now say when it happened.
    got = []

    def run():
        burn_cpu(0.1)
        old = signal.signal(signal.SIGURG, lambda s, f: got.append(1))
        try:
            burn_cpu(0.2)
            sent = len(got)
            os.kill(os.getpid(), signal.SIGURG)
            return sent
        finally:
            signal.signal(signal.SIGURG, old)

    p, ours_met, stats = profile(run, period=0.001, real_time=real_time)
    assert stats["signal"] == signal.SIGURG
    taken = stats["signal_taken_over_ms"]
    assert taken is not None and taken >= 50, stats
    assert p.meta.get("signal_taken_over_ms") == str(taken)
    assert len(got) == ours_met + 1                   # the program's own signal reached it
    assert p.inclusive("burn_cpu") > 30
    # nothing of ours arrives later either
    burn_cpu(0.05)
    # a later run is not told the same
    _, _, stats = profile(burn_cpu, 0.05, period=0.001)
    assert stats["signal_taken_over_ms"] is None


@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_a_program_taking_the_signal_over_just_before_the_stop_is_told_too(real_time):
    # The sampler thread looks at the signal's handler at its rounds (10 to
    # 40 ms apart, later on a loaded machine): a program that took the
    # signal over after its last look and then stopped (`python -m vmprof`
    # running a program that installs its handler near its end; CI: a rerun
    # of test_cli_run's test of that, at load 15-30) had its profile end
    # with nothing to say why.  disable() looks itself now.
    def run():
        burn_cpu(0.05)
        old = signal.signal(signal.SIGURG, lambda s, f: None)
        restore.append(old)

    restore = []
    try:
        p, _, stats = profile(run, period=0.001, real_time=real_time)
    finally:
        for old in restore:
            signal.signal(signal.SIGURG, old)
    assert stats["signal"] == signal.SIGURG
    taken = stats["signal_taken_over_ms"]
    assert taken is not None and taken >= 40, stats
    assert p.meta.get("signal_taken_over_ms") == str(taken)
    # a later run is not told the same
    _, _, stats = profile(burn_cpu, 0.05, period=0.001)
    assert stats["signal_taken_over_ms"] is None


def c_disposition(signo):
    """The handler address the kernel has for signo (signal.getsignal only
    knows what Python itself installed)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)  # larger than struct sigaction
    assert libc.sigaction(signo, None, buf) == 0
    return ctypes.c_void_p.from_buffer(buf).value


def test_disable_leaves_the_signal_disposition_as_it_was():
    before = c_disposition(signal.SIGURG)
    for real_time in (False, True):
        _, _, stats = profile(sleeping_and_burning, period=0.0005, real_time=real_time)
        assert stats["signal"] == signal.SIGURG  # its default action is to do nothing
        assert c_disposition(signal.SIGURG) == before
    # and no signal arrives later (with SIG_DFL it would end the process)
    burn_cpu(0.05)


def sleeping_and_burning():
    t = threading.Thread(target=time.sleep, args=(0.05,))
    t.start()
    burn_cpu(0.05)
    t.join()


def recurse(n):
    if n == 0:
        return burn_cpu(0.2)
    return recurse(n - 1)


def test_deep_recursion_is_capped_not_crashed():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)
    try:
        p, _, _ = profile(recurse, 2500, period=0.001)
    finally:
        sys.setrecursionlimit(limit)
    depths = [len(e) for e, _, _ in p.stacks if p.func(e[0]) == "burn_cpu"]
    assert depths and max(depths) <= 1000
    assert max(depths) == 1000  # cut at the cap: the innermost frames are kept


def recurse_at(n, depth):
    if n == 0:
        depth.append(len(inspect.stack(0)))
        return burn_cpu(0.05)
    return recurse_at(n - 1, depth)


@pytest.mark.parametrize("lines", [False, True])
def test_stacks_as_deep_as_a_ring_slots_head_and_one_frame_deeper_are_whole(lines):
    # A slot keeps its first 53 words in its head, and a handler whose walk
    # fills the head walks again into the slot's room (vmp_ring.h): stacks
    # around that edge (53 frames, 26 with lines) come out whole.  In a
    # thread: its stack is a few frames deep, pytest's is not.
    head = 53 // 2 if lines else 53
    depths = {}

    def run():
        for total in (head - 2, head - 1, head, head + 1):
            depth = []
            t = threading.Thread(target=lambda: recurse_at(total - base[0], depth))
            t.start()
            t.join()
            depths[total] = depth[0]

    base = []
    probe = threading.Thread(target=lambda: base.append(len(inspect.stack(0)) + 1))
    probe.start()
    probe.join()  # (frames of a thread's target + recurse_at, n = 0)
    p, _, stats = profile(run, period=0.001, lines=lines)
    seen = collections.Counter()
    for e, _, _ in p.stacks:
        funcs = [p.func(c) for c, _ in p.frames(e)] if lines else [p.func(c) for c in e]
        if funcs[0] == "burn_cpu":
            seen[len(funcs)] += 1
    for total, depth in depths.items():
        # (burn_cpu's frame on top of the recursion's)
        assert seen[depth + 1] > 10, (total, depth, seen, stats)
    assert set(seen) == {d + 1 for d in depths.values()}, (depths, seen)


def gen_hot():
    for i in range(3):
        yield burn_cpu(0.05)


async def coro_hot():
    await asyncio.sleep(0)
    return burn_cpu(0.1)


async def coro_main():
    return await asyncio.gather(coro_hot(), coro_hot())


def test_generators_and_coroutines_appear_in_the_stack():
    def run():
        list(gen_hot())
        asyncio.run(coro_main())

    p, _, _ = profile(run, period=0.001)
    gen = [e for e, _, _ in p.stacks if "gen_hot" in [p.func(c) for c in e]]
    assert len(gen) > 40
    assert all("run" in [p.func(c) for c in e] for e in gen)
    assert p.inclusive("coro_hot") > 80


def raising(n):
    for _ in range(n):
        try:
            raise ValueError("x")
        except ValueError:
            burn_cpu(0.001)


def test_exceptions_are_profiled_like_any_code():
    p, _, _ = profile(raising, 150, period=0.001)
    assert p.inclusive("raising") > 60


def key_fn(x):
    burn_cpu(0.0005)
    return -x


def test_c_code_calling_back_into_python_keeps_the_callers():
    def run():
        return sorted(range(300), key=key_fn)

    p, _, _ = profile(run, period=0.001)
    stacks = [[p.func(c) for c in e] for e, _, _ in p.stacks]
    inside = [s for s in stacks if "key_fn" in s]
    assert len(inside) > 50
    assert all(s.index("key_fn") < s.index("run") for s in inside)


def test_threads_that_come_and_go_while_sampled():
    def short():
        burn_cpu(0.002)

    def run():
        for _ in range(30):
            ts = [threading.Thread(target=short) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

    p, _, stats = profile(run, period=0.0005, real_time=True)
    # A full ring drops samples by design (the writer thread starved for
    # ~0.1 s on a busy machine at this rate); a sample lost to a thread that
    # ended would be lost every time, and most would be.
    assert p.trailer and stats["dropped"] < stats["samples"] // 4, stats
    # threads living a few milliseconds are found and sampled (~500 unloaded)
    assert p.inclusive("short") > 30, stats


def test_os_exit_keeps_what_was_written(tmp_path):
    done = run_script(tmp_path, """
        import os, vmprof
        from sampler_util import burn_cpu
        f = open("out.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001)
        burn_cpu(0.2)
        import time; time.sleep(0.05)  # the writer drains every few ms
        os._exit(0)
    """)
    assert done.returncode == 0, done.stderr
    stats = vmprof.read_profile(str(tmp_path / "out.prof"))
    assert len(stats.profiles) > 50


def test_interpreter_shutdown_while_enabled_finishes_the_profile(tmp_path):
    done = run_script(tmp_path, """
        import threading, vmprof
        from sampler_util import burn_cpu
        f = open("out.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001, real_time=True)
        threading.Thread(target=burn_cpu, args=(5,), daemon=True).start()
        burn_cpu(0.15)
        # exits with the profiler on and a daemon thread still running
    """)
    assert done.returncode == 0, done.stderr
    p = read_back(str(tmp_path / "out.prof"))
    assert p.trailer
    assert p.inclusive("burn_cpu") > 50
    for entries, _, _ in p.stacks:
        for c in entries:
            assert c in p.names


def test_enable_disable_many_times():
    for _ in range(20):
        p, _, _ = profile(burn_cpu, 0.01, period=0.0005)
        assert p.trailer
    assert not vmprof.is_enabled()


def test_profile_read_back_by_read_profile(tmp_path):
    path = str(tmp_path / "r.prof")
    with open(path, "wb") as f:
        vmprof.enable(f.fileno(), period=0.001, lines=True, memory=True)
        burn_cpu(0.1)
        vmprof.disable()
    stats = vmprof.read_profile(path)
    mine = read_back(path)
    assert len(stats.profiles) == len(mine.stacks)
    assert stats.profile_lines and stats.profile_memory
    named = {a for a, n in stats.adr_dict.items() if str(n).startswith("py:burn_cpu:")}
    assert named, (len(mine.stacks), vmprof.profiler.last_run_stats)


def test_a_closed_pipe_at_enable_is_refused():
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(vmprof.VMProfError, match="cannot write the profile"):
            vmprof.enable(w, period=0.001)
        assert not vmprof.is_enabled()
    finally:
        os.close(w)


def test_a_write_failure_is_reported_at_disable_and_profiling_can_start_again():
    r, w = os.pipe()
    vmprof.enable(w, period=0.0005)
    os.read(r, 65536)          # the header arrived
    os.close(r)                # then the reader goes away
    burn_cpu(0.1)
    with pytest.raises(vmprof.VMProfError, match="writing the profile failed"):
        vmprof.disable()
    os.close(w)
    assert not vmprof.is_enabled()
    p, _, _ = profile(burn_cpu, 0.05, period=0.001)
    assert p.trailer


def test_a_fault_during_a_walk_drops_the_sample_not_the_process():
    # 3.11/3.12 publish a new frame before writing it: the walk may follow a
    # garbage pointer, and the guard must turn the fault into a lost sample.
    from vmprof import _core
    assert _core._guard_selftest() == -1  # only armed while enabled
    with open(os.devnull, "wb") as f:
        vmprof.enable(f.fileno(), period=0.001)
        try:
            assert _core._guard_selftest() == 1
            assert _core._guard_selftest() == 1  # and again: the fault signal was unblocked
            burn_cpu(0.02)
        finally:
            vmprof.disable()
    assert vmprof.profiler.last_run_stats["walk_faults"] == 2


def test_a_real_crash_still_reaches_the_programs_handler(tmp_path):
    done = run_script(tmp_path, """
        import ctypes, faulthandler, vmprof
        faulthandler.enable()
        f = open("out.prof", "wb")
        vmprof.enable(f.fileno(), period=0.001)
        ctypes.string_at(16)  # a crash outside the sampler
    """)
    assert done.returncode != 0
    assert "Fatal Python error" in done.stderr  # faulthandler ran, as without vmprof


def test_a_child_forked_between_runs_profiles_at_the_full_rate(tmp_path):
    done = run_script(tmp_path, """
        import os, vmprof
        from sampler_util import burn_cpu, read_back
        with open("first.prof", "wb") as f:   # a run before the fork
            vmprof.enable(f.fileno(), period=0.001)
            burn_cpu(0.05)
            vmprof.disable()
        pid = os.fork()
        if pid == 0:
            with open("child.prof", "wb") as f:
                vmprof.enable(f.fileno(), period=0.001)
                burn_cpu(0.2)
                vmprof.disable()
            os._exit(0)
        os.waitpid(pid, 0)
        c = read_back("child.prof")
        print("child samples", c.inclusive("burn_cpu"), vmprof.profiler.last_run_stats)
        assert c.inclusive("burn_cpu") > 100
        print("OK")
    """)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
