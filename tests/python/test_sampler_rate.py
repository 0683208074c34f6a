"""The rate asked is the rate delivered, on both clocks, and samples fall on
code in proportion to the time it takes.

Tolerances are generous (the machine is shared by many jobs); bench/ holds
the strict figures."""
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import vmprof

from sampler_util import burn_cpu, compute_then_sleep, profile, read_back


def cpu_part(seconds):
    t0 = time.thread_time()
    burn_cpu(seconds)
    return time.thread_time() - t0


def sleeping_part(seconds):
    t0 = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - t0


RATES = [0.01, 0.001, 0.0001]


def check_rate(got, expected, elapsed, period, stats):
    """got samples where `expected` were due.  Every period the sampler woke
    for must have given its sample; the rate itself is checked unless the
    machine is so overloaded that the sampler thread could not run on time
    (its thread only sleeps to deadlines: waking for fewer than 3 in 4 of
    them means the machine did not run it; then no timer-driven profiler can
    keep the rate, and the test says so)."""
    assert got <= 1.1 * expected, (got, expected, stats)
    woke = stats["periods"] / (elapsed / period)
    if got < 0.75 * expected and woke < 0.75:
        pytest.skip("machine overloaded (load %.1f on %d CPUs): the sampler thread woke for "
                    "only %d%% of its periods" % (os.getloadavg()[0], os.cpu_count(), 100 * woke))
    assert got >= 0.75 * expected, (got, expected, stats)


@pytest.mark.parametrize("period", RATES, ids=["100Hz", "1kHz", "10kHz"])
def test_cpu_clock_delivers_the_rate_asked(period):
    seconds = 0.5 if period >= 0.01 else 0.3
    t0 = time.monotonic()
    p, used, stats = profile(cpu_part, seconds, period=period)
    elapsed = time.monotonic() - t0
    check_rate(p.inclusive("cpu_part"), used / period, elapsed, period, stats)
    assert p.period_usec == round(period * 1e6)


@pytest.mark.parametrize("period", RATES, ids=["100Hz", "1kHz", "10kHz"])
def test_wall_clock_delivers_the_rate_asked(period):
    # The calling thread is counted from the start's clock reading inside
    # enable() to the stop inside disable(), and the sleep's stack is the
    # one it has in our rounds between them: when the sampler thread is kept
    # from a CPU, the periods of the rest of enable() are paid by the first
    # sample, taken in the sleep, and those of disable() up to the stop
    # repeat the sleep's last sample.  Both calls take under 0.5 ms on a
    # quiet machine, 20 ms to 1.5 s at load 20-35: the sleep's samples then
    # came to up to 1.63 times its own periods at 10 kHz (3.8, 3.13), never
    # to more than its, enable()'s and disable()'s together (a CI-like run
    # failed 3575 > 1.1 x 3119).  Past 1.1 times the sleep's periods, a run
    # whose enable() and disable() took more than a tenth of the sleep's
    # time cannot tell such periods from samples paid twice: it says so
    # (skipped), after checking the periods from enable() called to
    # disable() returned, all the thread can have been paid.
    seconds = 0.5 if period >= 0.01 else 0.3
    fd, path = tempfile.mkstemp(suffix=".prof")
    try:
        t0 = time.monotonic()
        vmprof.enable(fd, period=period, real_time=True, native=False)
        try:
            slept = sleeping_part(seconds)
        finally:
            vmprof.disable()
        lived = time.monotonic() - t0
        stats = vmprof.profiler.last_run_stats
        p = read_back(path)
    finally:
        os.close(fd)
        os.unlink(path)
    got = p.inclusive("sleeping_part")
    assert got <= 1.1 * lived / period, (got, slept / period, lived / period, stats)
    if got > 1.1 * slept / period and lived - slept > 0.1 * slept:
        pytest.skip("machine overloaded (load %.1f): enable() and disable() took %d ms, and %d samples "
                    "in the sleep where %d were due" % (os.getloadavg()[0], 1000 * (lived - slept), got,
                                                         slept / period))
    check_rate(got, slept / period, lived, period, stats)


@pytest.mark.parametrize("period", RATES[1:], ids=["1kHz", "10kHz"])
def test_wall_clock_keeps_the_rate_for_threads_sharing_the_gil(period):
    # Four threads take turns on the GIL, so most of the time three of them
    # wait; each must still be sampled at the rate asked over its own life
    # (the bench saw the sampler thread itself kept waiting 1-3 ms by such a
    # program: what it owes then is sent late, not lost).
    # What is counted is the time inside live_a_while() and its samples: a
    # thread may wait for the GIL on entering a function (before its first
    # line runs) and while leaving it, so both ends of the measured span lie
    # in the caller.  None ends before all have started, so no two share a
    # thread id.
    lifetimes = {}
    all_started = threading.Event()

    def live_a_while():
        # long enough that samples the sampler sends late after a stall (up
        # to 20 ms of them, vmp_delivery.h), owed from just before this span,
        # are a small part of it
        burn_cpu(0.15)
        all_started.wait()

    def worker():
        ident = threading.get_ident()
        t0 = time.monotonic()
        live_a_while()
        lifetimes[ident] = time.monotonic() - t0

    def run():
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        all_started.set()
        for t in ts:
            t.join()

    t0 = time.monotonic()
    p, _, stats = profile(run, period=period, real_time=True)
    elapsed = time.monotonic() - t0
    per_thread = {}
    for entries, tid, _ in p.stacks:
        if "live_a_while" in [p.func(c) for c in entries]:
            per_thread[tid] = per_thread.get(tid, 0) + 1
    assert set(lifetimes) <= set(per_thread), (lifetimes, per_thread)
    for tid, lived in lifetimes.items():
        check_rate(per_thread[tid], lived / period, elapsed, period, stats)



@pytest.mark.parametrize("events", [True, False], ids=["events", "per-period"])
def test_wall_clock_pays_a_thread_started_late_nothing_from_before_it_existed(monkeypatch, events):
    # A thread started 1 s into the run, no other one having come or gone
    # before (so the last listing of the threads was at the start): its
    # periods count from when the sampler found it, less the CPU time it had
    # used by then, never from before it existed.  Before, with events, from
    # halfway between that listing and the one that found it: ~500 periods
    # from before its birth, all with the stack of its first sample (1,634
    # samples in late_part where ~1,150 were due, 3 runs in 3).
    if not events:
        monkeypatch.setenv("VMPROF_NO_PERF_EVENTS", "1")
    lifetimes = {}

    def late_part():
        burn_cpu(0.1)

    def late_worker():
        # (measured around the call: a thread may wait for the GIL entering
        # or leaving late_part, with it on its stack)
        t0 = time.monotonic()
        late_part()
        lifetimes[threading.get_ident()] = time.monotonic() - t0

    def run():
        time.sleep(1.0)
        t = threading.Thread(target=late_worker)
        t.start()
        t.join()

    t0 = time.monotonic()
    p, _, stats = profile(run, period=0.001, real_time=True)
    elapsed = time.monotonic() - t0
    (tid, lived), = lifetimes.items()
    check_rate(p.inclusive("late_part", thread=tid), lived / 0.001, elapsed, 0.001, stats)

def part_small(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def part_medium(n):
    return sum([i * 3 for i in range(n)]) + part_small(n // 4)


def part_large(n):
    d = {}
    for i in range(n):
        d[i & 1023] = str(i)
    return len(d)


def attribution_workload():
    """Runs three parts in interleaved rounds and measures each one's CPU
    time itself, so the true shares come from this very run."""
    spent = {"part_small": 0.0, "part_medium": 0.0, "part_large": 0.0}
    for _ in range(12):
        for fn, n in ((part_small, 200000), (part_medium, 300000), (part_large, 250000)):
            t0 = time.thread_time()
            fn(n)
            spent[fn.__name__] += time.thread_time() - t0
    return spent


def test_samples_fall_on_each_part_in_proportion_to_its_time():
    p, spent, _ = profile(attribution_workload, period=0.0005)
    total_time = sum(spent.values())
    counts = {}
    for entries, _, _ in p.stacks:
        funcs = [p.func(c) for c in entries]
        # a sample belongs to the outermost part on its stack (part_medium
        # calls part_small: that time is part_medium's, as it was measured)
        parts = [f for f in funcs if f in spent]
        if parts:
            counts[parts[-1]] = counts.get(parts[-1], 0) + 1
    total_samples = sum(counts.values())
    assert total_samples > 300, counts
    for name, t in spent.items():
        true_share = 100.0 * t / total_time
        measured = 100.0 * counts.get(name, 0) / total_samples
        assert abs(measured - true_share) <= 5, (name, measured, true_share, spent, counts)


def test_cpu_clock_follows_cpu_used_by_each_thread():
    # Two threads burn different amounts of CPU at the same time: the sample
    # counts follow each one's CPU time, not the wall-clock time they shared.
    used = {}

    def worker(name, seconds):
        used[name] = cpu_part(seconds)

    def run():
        ts = [threading.Thread(target=worker, args=("a", 0.1)),
              threading.Thread(target=worker, args=("b", 0.3))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    t0 = time.monotonic()
    p, _, stats = profile(run, period=0.001)
    elapsed = time.monotonic() - t0
    threads = {}
    for entries, tid, _ in p.stacks:
        if "cpu_part" in [p.func(c) for c in entries]:
            threads[tid] = threads.get(tid, 0) + 1
    woke = stats["periods"] / (elapsed / 0.001)
    if woke < 0.75:
        pytest.skip("machine overloaded: the sampler thread woke for only %d%% of its periods"
                    % (100 * woke))
    assert len(threads) == 2, (threads, used, stats)
    small, big = sorted(threads.values())
    ratio = big / small
    true_ratio = max(used.values()) / min(used.values())
    assert 0.7 * true_ratio <= ratio <= 1.3 * true_ratio, (threads, used)


@pytest.mark.parametrize("compute_ms,sleep_ms,period,tolerance", [(0.5, 1.5, 0.0001, 0.25), (3, 7, 0.001, 0.12)],
                         ids=["0.5-1.5ms-10kHz", "3-7ms-1kHz"])
def test_wall_clock_shows_short_sleeps_where_the_thread_sleeps(compute_ms, sleep_ms, period, tolerance):
    # A thread that sleeps a few milliseconds between short computations:
    # each period goes to the stack the thread had then.  Before, the probe
    # that found it asleep was forgotten among the samples of its own event
    # (it runs again before the sampler reads the answer), the sampler's
    # rounds stayed 10 ms long and most sleeps went unseen, their time given
    # to the computing stack: 74-85% of the samples computing where 20-24%
    # was true (0.5/1.5 ms at 10 kHz, loaded or not), 47-55% where 30% was
    # true (3/7 ms at 1 kHz on a quiet machine).  Now within 2 points on a
    # quiet machine; at load 25-35 on 2 cores, or beside 3 busy loops (the
    # sampler thread, which finds the waits, then misses its 1 ms rounds),
    # up to 16 and 6 points off: the tolerances (bench/wall_attribution.py
    # measures it).
    p, (true_share, _), stats = profile(compute_then_sleep, compute_ms / 1e3, sleep_ms / 1e3, 1.5,
                                        period=period, real_time=True)
    comp, slept = p.inclusive("computing"), p.inclusive("sleeping")
    assert comp + slept > 0.5 * 1.5 / period, (comp, slept, stats)
    share = comp / (comp + slept)
    assert abs(share - true_share) <= tolerance, (share, true_share, comp, slept, stats)


def test_wall_clock_gives_a_threads_wait_for_a_cpu_to_what_it_computes():
    # The thread of the test above (3 ms computing, 7 ms asleep) shares its
    # CPU with a busy loop (both pinned there, the thread at nice 10): it
    # waits for the CPU most of the time it computes.  That wait is not a
    # sleep.  Before, the sample after one taken in the sleep split its
    # periods by the thread's CPU time, and gave the rest (the waits for a
    # CPU inside computing()) to the sleep: up to 22 points less computing
    # than the thread's own measure, more than 8 in 17 of 23 runs (3.8 and
    # 3.13, load 7-24).  Now a probe of the thread after it left the sleep
    # first hands the sleep's repeats over up to where it left it
    # (vmp_delivery.c wall_pay_left): within 6 points in 21 of 21 runs.
    cpu = max(os.sched_getaffinity(0))
    loop = subprocess.Popen([sys.executable, "-c",
                             "import os\nos.sched_setaffinity(0, {%d})\nwhile True: pass" % cpu])
    result = {}

    def schedstat():
        # (on-CPU ns, run-queue wait ns) of the calling thread
        with open("/proc/thread-self/schedstat") as f:
            return [int(x) for x in f.read().split()[:2]]

    def worker():
        # (this thread only: nice and affinity are per thread, and end with it;
        # the profiler's threads, started by enable(), run anywhere)
        os.sched_setaffinity(0, {cpu})
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        a = schedstat()
        result["share"] = compute_then_sleep(0.003, 0.007, 1.5)
        b = schedstat()
        result["waited"] = (b[1] - a[1]) / 1e9
        result["ran"] = (b[0] - a[0]) / 1e9  # (its CPU time: for the failure's message)

    def run():
        t = threading.Thread(target=worker)
        t.start()
        t.join()

    try:
        p, _, stats = profile(run, period=0.001, real_time=True)
    finally:
        loop.kill()
        loop.wait()
    true_share, wall = result["share"]
    # the premise: the thread waited for its CPU a good part of the time it
    # computed (a third to all of it in the runs above)
    assert result["waited"] > 0.25 * true_share * wall, (result, stats)
    comp, slept = p.inclusive("computing"), p.inclusive("sleeping")
    assert comp + slept > 0.5 * 1.5 / 0.001, (comp, slept, stats)
    share = comp / (comp + slept)
    assert abs(share - true_share) <= 0.08, (share, true_share, result, comp, slept, stats)


def computes_then_returns(seconds):
    t0 = time.monotonic()
    burn_cpu(seconds)
    return time.monotonic() - t0


@pytest.mark.parametrize("events", [True, False], ids=["events", "per-period"])
def test_the_waits_of_enable_and_disable_for_the_sampler_thread_are_theirs(monkeypatch, events):
    # enable() waits for the sampler thread's start (its CPU-time baseline),
    # disable() for its stop (the stop's reading): a loaded machine that
    # keeps the sampler thread from a CPU there makes both wait, 20 ms-1.5 s
    # (here a nap of the sampler thread's, 200 ms each).  Those periods are
    # enable()'s and disable()'s, or counted lost; never the program's.
    # Before, with per-thread events, they went to the thread's first sample
    # after enable() and its last before disable(): ~400 samples more in
    # what it computed.
    if not events:
        monkeypatch.setenv("VMPROF_NO_PERF_EVENTS", "1")
    from vmprof import _core
    nap = 0.2
    _core._sampler_naps(nap, nap)
    try:
        p, spent, stats = profile(computes_then_returns, 0.2, period=0.001, real_time=True)
    finally:
        _core._sampler_naps(0, 0)
    leaves = p.leaf_counts()
    computing = p.inclusive("computes_then_returns")
    waits = {f: leaves.get(f, 0) for f in ("enable", "disable")}
    # (its wall time in there, and the periods its first and last sample may
    # take from the calls around it: the naps are 200 periods each)
    assert computing <= spent / 0.001 + 20, (computing, spent, waits, stats)
    if events:
        assert waits["enable"] >= 0.75 * nap / 0.001, (computing, spent, waits, stats)
        assert waits["disable"] >= 0.75 * nap / 0.001, (computing, spent, waits, stats)
