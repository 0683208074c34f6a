"""The sampler: what vmprof.enable()/disable() write, for every thread, on both
clocks.  Workloads are short (tenths of a second) and tolerances generous: the
machine is shared; strict figures are the bench's job."""
import os
import sys
import tempfile
import threading
import time

import pytest

import vmprof
from sampler_util import burn_cpu, profile, read_back


def hot_a(seconds):
    return burn_cpu(seconds)


def test_profile_has_the_format_of_the_original():
    p, _, _ = profile(hot_a, 0.2, period=0.001)
    assert p.version == 6
    assert p.interp == "cpython"
    assert p.mode == 0
    assert p.period_usec == 1000
    assert p.meta["os"] == "linux" and p.meta["bits"] == "64"
    assert p.meta["python"].endswith(".".join(map(str, sys.version_info[:2])) + "." + str(sys.version_info[2]))
    assert p.trailer
    assert p.stacks
    # every id in every stack has a name, and it is a Python one
    for entries, _, _ in p.stacks:
        for e in entries:
            assert e % 2 == 0
            assert p.name(e).startswith("py:")


def test_default_period_is_written_in_the_header():
    p, _, _ = profile(hot_a, 0.05)
    assert p.period_usec == 990


def test_hot_function_and_its_callers_are_named_with_file_and_line():
    p, _, _ = profile(hot_a, 0.3, period=0.001)
    assert p.inclusive("hot_a") >= 0.5 * len(p.stacks)
    names = {n[-1] for n in p.names.values()}
    line = hot_a.__code__.co_firstlineno
    assert "py:hot_a:%d:%s" % (line, hot_a.__code__.co_filename) in names


def test_stacks_are_innermost_first():
    p, _, _ = profile(hot_a, 0.2, period=0.001)
    leaf_funcs = p.leaf_counts()
    assert leaf_funcs.most_common(1)[0][0] == "burn_cpu"
    for entries, _, _ in p.stacks:
        funcs = [p.func(e) for e in entries]
        if "burn_cpu" in funcs and "hot_a" in funcs:
            assert funcs.index("burn_cpu") < funcs.index("hot_a")


def test_every_thread_is_sampled_under_its_own_id():
    n = 3
    started = threading.Barrier(n + 1)
    idents = {}

    def worker(k):
        idents[k] = threading.get_ident()
        started.wait()
        globals()["spin_%d" % k](0.25)

    def run():
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        started.wait()
        for t in threads:
            t.join()

    p, _, _ = profile(run, period=0.002)
    for k in range(n):
        threads = p.threads_of("spin_%d" % k)
        assert threads == {idents[k]}, (k, threads, idents)


def spin_0(s):
    return burn_cpu(s)


def spin_1(s):
    return burn_cpu(s)


def spin_2(s):
    return burn_cpu(s)


def sleeper(seconds):
    time.sleep(seconds)


def sleeping_and_spinning():
    t = threading.Thread(target=sleeper, args=(0.4,))
    t.start()
    hot_a(0.2)
    t.join()


def test_wall_clock_shows_a_sleeping_thread_cpu_time_does_not():
    wall, _, wstats = profile(sleeping_and_spinning, period=0.002, real_time=True)
    cpu, _, cstats = profile(sleeping_and_spinning, period=0.002)
    assert wall.mode & 0x10 and not cpu.mode & 0x10
    assert wall.meta["clock"] == "wall" and cpu.meta["clock"] == "cpu"
    # On the wall clock every live thread is owed a sample each period: the
    # sleeper (alive ~0.4 s) gets samples in proportion to the main thread's
    # (alive 0.4 s or longer when hot_a's CPU time stretches on a busy
    # machine; a late sampler thread costs both alike).  ~200 each unloaded.
    # (Main's share grows with its lifetime: the periods it waits for a CPU
    # are sampled too, so compare with the sleeper's 0.4 s at most.)
    slept, main = wall.inclusive("sleeper"), wall.inclusive("sleeping_and_spinning")
    assert slept > 20 and slept > 0.25 * min(main, 200), (slept, main, wstats)
    assert cpu.inclusive("sleeper") <= 3, cstats
    assert cpu.inclusive("hot_a") > 30, cstats


def test_a_thread_started_after_enable_is_sampled():
    def run():
        t = threading.Thread(target=spin_1, args=(0.2,))
        t.start()
        t.join()

    p, _, _ = profile(run, period=0.001)
    assert p.inclusive("spin_1") > 40


def test_is_enabled_and_profile_path():
    assert not vmprof.is_enabled()
    assert vmprof.get_profile_path() is None
    with tempfile.NamedTemporaryFile(suffix=".prof") as f:
        vmprof.enable(f.fileno())
        try:
            assert vmprof.is_enabled()
            assert vmprof.get_profile_path() == os.path.realpath(f.name)
        finally:
            vmprof.disable()
        assert not vmprof.is_enabled()


def test_stop_and_start_sampling_nest():
    def run():
        vmprof.stop_sampling()
        vmprof.stop_sampling()
        spin_0(0.1)
        vmprof.start_sampling()
        spin_1(0.1)          # still paused: one stop is left
        vmprof.start_sampling()
        spin_2(0.15)

    p, _, _ = profile(run, period=0.001)
    assert p.inclusive("spin_0") == 0
    assert p.inclusive("spin_1") == 0
    assert p.inclusive("spin_2") > 30


def test_sample_stack_now_lists_the_callers():
    def inner():
        return vmprof.sample_stack_now()

    def outer():
        return inner()

    def skipping():
        return vmprof.sample_stack_now(skip=1)

    stack = outer()
    assert stack[0] == id(inner.__code__)
    assert stack[1] == id(outer.__code__)
    assert stack[2] == id(test_sample_stack_now_lists_the_callers.__code__)
    assert skipping()[0] == id(test_sample_stack_now_lists_the_callers.__code__)


def test_profile_can_go_to_a_pipe():
    r, w = os.pipe()
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 65536), b"")))
    reader.start()
    vmprof.enable(w, period=0.001)
    hot_a(0.15)
    vmprof.disable()
    os.close(w)
    reader.join()
    os.close(r)
    from sampler_util import decode
    p = decode(b"".join(chunks))
    assert p.trailer and p.inclusive("hot_a") > 20


# ---- bad arguments -----------------------------------------------------------

@pytest.mark.parametrize("period", [0, -0.01, 1, 2.5, float("nan")])
def test_bad_period_is_refused_with_advice(period):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(vmprof.VMProfError, match="period must be above 0 and below 1 second"):
            vmprof.enable(f.fileno(), period=period)
    assert not vmprof.is_enabled()


def test_closed_fd_is_refused():
    fd, path = tempfile.mkstemp()
    os.close(fd)
    os.unlink(path)
    with pytest.raises(vmprof.VMProfError, match="is not open"):
        vmprof.enable(fd)
    assert not vmprof.is_enabled()


def test_read_only_fd_is_refused():
    with tempfile.NamedTemporaryFile() as f:
        with open(f.name, "rb") as ro:
            with pytest.raises(vmprof.VMProfError, match="reading only.*writing"):
                vmprof.enable(ro.fileno())
    assert not vmprof.is_enabled()


def test_enabling_twice_is_refused_and_the_first_run_goes_on():
    with tempfile.NamedTemporaryFile(suffix=".prof") as f:
        vmprof.enable(f.fileno(), period=0.001)
        try:
            with pytest.raises(vmprof.VMProfError, match="already enabled.*disable"):
                vmprof.enable(f.fileno())
            hot_a(0.1)
        finally:
            vmprof.disable()
        p = read_back(f.name)
        assert p.trailer and p.inclusive("hot_a") > 10


def test_disable_when_not_enabled_says_so():
    with pytest.raises(vmprof.VMProfError, match="not enabled"):
        vmprof.disable()



def test_non_int_fileno_is_refused():
    with pytest.raises(vmprof.VMProfError, match="fileno"):
        vmprof.enable("profile.prof")


def test_compatibility_calls_exist():
    assert vmprof.insert_real_time_thread() == 0
    assert vmprof.remove_real_time_thread() == 0
    assert vmprof.resolve_addr(0) is None
