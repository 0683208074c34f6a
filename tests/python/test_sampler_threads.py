"""The sampler among many threads and threads that are not Python's
(vmp_delivery.h): no thread limit; C library threads are not signalled
again and again; a thread that blocks the signal is left alone and neither
holds disable() up nor leaves our handler behind.  Counts, never timings."""
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import vmprof

from sampler_util import burn_cpu, cpu_time_events_open, profile, read_back, start_waiting_threads

C_THREADS_SOURCE = os.path.join(os.path.dirname(__file__), "c_threads", "vmp_c_threads.c")


@pytest.fixture(scope="module")
def c_threads(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("c_threads") / "libvmp_c_threads.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", path, C_THREADS_SOURCE, "-lpthread"],
                   check=True)
    lib = ctypes.CDLL(path)
    lib.ct_start_sleepers.argtypes = [ctypes.c_int, ctypes.c_long]
    lib.ct_start_blocker.argtypes = [ctypes.c_int]
    lib.ct_stop.restype = ctypes.c_long
    lib.ct_cpu_ns.restype = ctypes.c_longlong
    yield lib
    lib.ct_stop()


def busy_later(seconds):
    burn_cpu(seconds)


def test_a_thread_started_after_1100_others_is_sampled():
    # 1,100 waiting threads, then one that computes: with the old table of
    # 1,024 threads it was never sampled (0 samples, silently).
    stop = threading.Event()
    old_size = threading.stack_size(64 * 1024)
    try:
        waiters = [threading.Thread(target=stop.wait, daemon=True) for _ in range(1100)]
        for t in waiters:
            t.start()
    finally:
        threading.stack_size(old_size)
    try:
        def run():
            t = threading.Thread(target=busy_later, args=(0.3,))
            t.start()
            t.join()
            return t.ident

        p, ident, stats = profile(run, period=0.001)
    finally:
        stop.set()
        for t in waiters:
            t.join()
    busy = sum(1 for entries, tid, _ in p.stacks if tid == ident)
    # 0.3 s of CPU at 1 kHz: ~300
    assert busy >= 150, (busy, stats)
    assert stats["threads_max"] >= 1100, stats
    assert "threads_not_sampled" not in p.meta


@pytest.mark.parametrize("real_time", [True, False])
@pytest.mark.parametrize("started", ["before the run", "during the run"])
def test_sleeping_c_threads_are_not_signalled_again_and_again(c_threads, real_time, started):
    # Four C threads nap 10 ms at a time for the whole run (~40 naps each).
    # Before: on the wall clock each was signalled every period, so every
    # nap was cut short.  Now each is asked whether it runs Python, once more
    # 10 ms later, then only after 10 ms of its CPU time (naps hardly use any).
    # Threads there before the run are not asked at all: enable() reads which
    # threads are Python's (before: each of them had 2 naps cut short on the
    # wall clock, 8 in all; the pool bench 32 of 320 sleeps of 16 threads).
    # Threads started during the run are asked only while no signal would
    # end their sleep (a relative nanosleep: a signal would; before, 2-4 naps
    # of the 4 threads were cut short on the wall clock, 0 on the CPU clock).
    # The run lasts 0.4 s of wall time, not of the main thread's CPU time:
    # each thread is asked again once it used a stretch of CPU time (10 ms,
    # then 20, 40, ...: vmp_delivery.h, "Threads that are not Python's"), and
    # on a loaded machine 0.4 s of CPU took 20-30 s, 2,000-3,000 naps of
    # 10-15 us each: 9-11 answers in the runs whose threads used 23-32 ms
    # each, never in those below 23 ms.
    def run():
        if started == "during the run":
            assert c_threads.ct_start_sleepers(4, 10000000) == 0
        end = time.monotonic() + 0.4
        while time.monotonic() < end:
            burn_cpu(0.001)

    if started == "before the run":
        assert c_threads.ct_start_sleepers(4, 10000000) == 0
    try:
        _, _, stats = profile(run, period=0.001, real_time=real_time)
    finally:
        cut = c_threads.ct_stop()
    if started == "before the run":
        assert cut == 0, (cut, stats)
        assert stats["not_python_answers"] == 0, stats
    else:
        assert cut <= 1, (cut, stats)
        assert stats["not_python_answers"] <= 8, stats


def waits_here(event):
    event.wait()


def test_polls_that_waking_c_threads_explain_leave_the_threads_waiting_since_the_start_unread(c_threads):
    # The threads waiting when the run starts (their stacks handed over by
    # enable(), idle from then on) are read by a poll only when the other
    # still threads leave CPU time unexplained (vmp_delivery.c, poll_still):
    # each wake-up of a C thread that naps made a poll read every waiting
    # thread too (the pool bench: 16 C threads, 1,000 waiting ones, 3-5
    # polls a run, a third of the sampler thread's clock readings).  Naps of
    # 0.3 s: a thread a poll found is kept active as many rounds as the poll
    # read threads per thread found (here ~24 / 1, ~5 / 1 now) or twice as
    # many as the last time, then still again, so the first naps' ends make
    # polls (4-5 now, 2-3 reading the waiting threads when each did).
    n_idle = 20
    ts, stop = start_waiting_threads(n_idle, waits_here)
    assert c_threads.ct_start_sleepers(4, 300000000) == 0
    try:
        _, _, stats = profile(lambda: time.sleep(1.5), period=0.001, real_time=True)
    finally:
        c_threads.ct_stop()
        stop.set()
        for t in ts:
            t.join()
    if stats["sources_opened"] == 0:
        pytest.skip("the kernel gives no per-thread CPU-time events here (per-period schedule)")
    assert stats["first_samples"] >= n_idle - 5, stats
    assert stats["polls"] >= 2, stats  # (the naps' ends)
    # (one that ran after enable() read its stack is found by a poll of them)
    missed = n_idle - stats["first_samples"]
    assert stats["cold_polls"] <= 1 + missed, stats


@pytest.mark.parametrize("real_time", [False, True], ids=["cpu", "wall"])
def test_c_threads_that_wake_now_and_then_leave_the_sampler_threads_rounds_long(c_threads, real_time):
    # Four C threads nap 100 ms at a time (the pool bench has 16): each
    # wake-up is CPU time a poll finds, and a thread found is read each
    # round for a while.  Known not to be Python's from the start, they are
    # asked nothing until a stretch of their CPU time: the rounds have
    # nothing to do for them, and after 0.5 s come every 40 ms.  Before,
    # such a thread found running, or among the active ones, kept them
    # 10 ms long on both clocks (~150 rounds here, ~25 less 40 ms ones).
    assert c_threads.ct_start_sleepers(4, 100000000) == 0
    try:
        t0 = time.monotonic()
        _, _, stats = profile(time.sleep, 1.5, period=0.001, real_time=real_time)
        elapsed = time.monotonic() - t0
    finally:
        c_threads.ct_stop()
    if stats["sources_opened"] == 0 and stats["signals_sent"] > 20:
        pytest.skip("the kernel gives no per-thread CPU-time events here (per-period schedule)")
    assert stats["polls"] >= 1, stats  # (their wake-ups were found)
    assert stats["not_python_answers"] == 0, stats
    assert stats["sampler_rounds"] <= 50 * elapsed + 40, (elapsed, stats)


def test_a_computing_c_thread_is_asked_ever_more_rarely(c_threads):
    # A C thread that computes (a BLAS worker) has CPU time to sample on the
    # CPU clock, but no Python stack: it is asked again after 10, 20, 40, ...
    # ms of its CPU time, not every period.
    assert c_threads.ct_start_spinner() == 0
    try:
        _, _, stats = profile(burn_cpu, 0.4, period=0.001)
    finally:
        c_threads.ct_stop()
    # at most 6 answers in ~0.4 s of its CPU time (before: one a period),
    # and at least the second, 10 ms after the first (a Python thread
    # answers so too before it binds its thread state).  With the thread's
    # own CPU-time event, that second question never came: the sampler read
    # the event's signals as its own never handled.
    assert 2 <= stats["not_python_answers"] <= 8, stats


@pytest.mark.parametrize("schedule", ["events", "per-period"])
@pytest.mark.parametrize("real_time", [True, False])
def test_a_thread_blocking_the_signal_is_left_alone(c_threads, monkeypatch, real_time, schedule):
    if schedule == "per-period":
        monkeypatch.setenv("VMPROF_NO_PERF_EVENTS", "1")
    assert c_threads.ct_start_blocker(1) == 0

    def clock():
        # the blocker's periods: its wall time, or its own CPU time
        return time.monotonic() if real_time else c_threads.ct_cpu_ns() / 1e9

    fd, path = tempfile.mkstemp(suffix=".prof")
    try:
        # Its periods are those of the run, from enable() to disable(): at
        # least those of burn_cpu() inside it, at most those from before
        # enable() to after disable().  (They were taken around profile(),
        # which also reads the profile back: at load ~14, with the main
        # thread getting ~1% of a CPU, the run lasted 28.8 s, every period
        # of it counted blocked, 28,826, while reading 28,000 samples back
        # took 47 s more: "due" 76.2 s, and blocked "under half" of it.  In
        # session 12's sweep, likewise, blocked 33,676, due 75.9 s: its
        # 67,352 samples, 33,677 of them repeats, fit a run of 33.7 s with a
        # second thread left waiting, repeated once a period, as a run
        # beside such a thread at load 31 gave: 60,405 blocked of a 60.4-s
        # run, 120,810 samples, 60,408 repeats, 124.4 s around profile().)
        outer = [clock()]
        vmprof.enable(fd, period=0.001, real_time=real_time, native=False)
        try:
            inner = [clock()]
            burn_cpu(0.3)
            inner.append(clock())
            events = cpu_time_events_open()
        finally:
            vmprof.disable()
        outer.append(clock())
        stats = vmprof.profiler.last_run_stats
        p = read_back(path)
        # The program's disposition is back (before: ours stayed installed,
        # since the signal pending for that thread never arrived) ...
        assert signal.getsignal(stats["signal"]) == signal.SIG_DFL
    finally:
        os.close(fd)
        os.unlink(path)
        # ... and when the thread unblocks its signals nothing is pending
        # any more: SIGPROF's default action would end this process here.
        c_threads.ct_stop()
    assert schedule == "events" or not events  # (the per-period schedule ran)
    assert stats["threads_blocking_signal"] == 1, stats
    assert p.meta.get("threads_blocking_signal") == "1", p.meta
    # Its periods are counted apart, not sampled (before: counted nowhere),
    # every one of the run's on either schedule.  With CPU-time events its
    # paid mark stands at the start until the sender counts them; per
    # period, a thread that is not Python's is asked again only after 10 ms
    # of its CPU time (wall time without bound on a loaded machine), and
    # its periods until then count once it is found blocking, and the stop
    # counts those after the sender's last round.  (Before, per period they
    # counted from that question, 12,988 of a 13,504-ms run at load 25, and
    # ended at the last round, which a sender kept from a CPU at the end
    # left early.)
    blocked = stats["samples_blocking_signal"]
    least, most = 1000 * (inner[1] - inner[0]), 1000 * (outer[1] - outer[0])
    assert least - 2 <= blocked <= most + 2, (least, most, events, stats)
    assert p.meta.get("samples_blocking_signal") == str(blocked), p.meta
    assert stats["signals_sent"] <= stats["samples"] + 2, stats
    # the Python thread was sampled as usual
    assert p.inclusive("burn_cpu") >= 150, stats


def test_idle_threads_cost_the_program_few_descriptors():
    # Each thread's CPU-time event is a file descriptor of the program's
    # process: 300 waiting threads must not take 300 of them (before: up to
    # 256, a quarter of a 1,024 limit, so a program near its limit failed
    # to open files only while profiled).
    import time
    stop = threading.Event()
    ts = [threading.Thread(target=stop.wait) for _ in range(300)]
    for t in ts:
        t.start()
    try:
        before = len(os.listdir("/proc/self/fd"))
        most = [0]

        def run():
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                most[0] = max(most[0], len(os.listdir("/proc/self/fd")))
                burn_cpu(0.01)

        _, _, stats = profile(run, period=0.001)
    finally:
        stop.set()
        for t in ts:
            t.join()
    # the profile's own file and /proc descriptors, plus at most 64 events
    assert most[0] - before <= 64 + 8, (before, most[0], stats)
