"""Workloads for the whole-process bench (bench/process_bench.py): what the
profiler costs the process beyond the sampled thread, and how it copes with
many threads.

    python bench/process_workload.py SCENARIO --result FILE [--tool none|vmprof|empty-perf|c-writer]
        [--period S] [--real-time] [--native on|off] [--profile FILE]
        [--seconds S] [--work N] [--idle N] [--c-idle N] [--threads N]
        [--run-ms MS --sleep-ms MS] [--mark S] [--rounds N]

Scenarios:
  busy    one Python thread computes for --seconds (or, with --work N, N
          rounds of fixed work: the pinned comparison times the whole process)
  pool    --idle Python threads wait on an Event (and --c-idle threads of the
          C library sleep in sleep(), as a C pool or watchdog would) while one
          more thread computes for --seconds
  late    --idle threads wait (Python ones), then a busy thread is started:
          with more threads than the sampler can hold, is it still sampled?
  gil     --threads Python threads compute for --seconds together: each
          waits for the GIL now and then (the wall clock's short rounds)
  alternate  one thread computes --run-ms, then sleeps --sleep-ms, for
          --seconds (waits now and then, the same)
  floors  no profiler: --rounds rounds of --work rounds of fixed work in this
          one thread, under each delivery of an empty handler in turn (none;
          today's: es_start's delivery 3; armed by the thread on itself: the
          perf event's O_ASYNC signal, perf's SIGTRAP, a CLOCK_MONOTONIC POSIX
          timer; bench/empty_signal.c), each round starting one delivery
          further on, and reports each one's process CPU time and signals
          per round (bench/process_bench.py's floors section)
  write   no profiler: one thread writes --bytes to --profile over --seconds,
          a slice every 10 ms, as iovecs pointing at one 2 KiB block (as the
          profiler's writer writes repeats), and reports
          its CPU time as profiler_cpu: the floor under the writer; with
          --allocate-ahead, once 8 MiB are written the blocks the next writes
          need are allocated 8 MiB ahead (fallocate, the size kept) and what
          lies past the end is given back at the end, as the writer does on
          ext4 (the same floor written the writer's way)

--tool empty-perf: no profiler, but an empty signal handler delivered as the
sampler's CPU clock delivers (each thread's own CPU-time event, the sender's
10 ms rounds; bench/empty_signal.c, built by bench/run.sh): the floor.

--tool c-writer (pool): no profiler, but a thread of the C library
(bench/c_sleepers.c) writes --bytes to --profile over --seconds, started
where enable() would be, as the writer writes the wall clock's repeats
(a round every 70 ms, writevs of 1,024 iovecs pointing at one block of 28
records of 73 bytes, blocks allocated 8 MiB ahead); its CPU time is reported
as profiler_cpu: the floor under the writer's share in the same process,
among the same threads (give it the profile_bytes_before_disable of a
profiled run: what the writer wrote before its CPU time was read).

Writes one JSON line to FILE: the busy thread's CPU time, lifetime and
thread id (the id a profile carries); the CPU time the profiler's own threads
used (every thread of the process that is not the program's, read from its
CPU clock just before disable()); disable()'s wall and CPU time; how many of
the C threads' sleeps a signal cut short; the whole process's CPU time from
its start (getrusage: every thread, user + system).
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import sys
import threading
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def compute_for(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        fib(15)
        n += 1
    return n


def compute_rounds(rounds):
    for _ in range(rounds):
        fib(15)
    return rounds


def alternate_for(seconds, run_ms, sleep_ms):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        stop = time.perf_counter() + run_ms / 1000
        while time.perf_counter() < stop:
            fib(12)
        time.sleep(sleep_ms / 1000)
    return 0


# The floors scenario's deliveries: (name, how): None no signal, 3 es_start's
# (today's), 4-6 es_arm_self's
FLOOR_DELIVERIES = [("none", None), ("today", 3), ("signal", 4), ("sigtrap", 5), ("posix", 6)]


def floors(args):
    """The floors scenario: the deliveries alternating in one process, so that
    each is compared with no signal within a second or two of it."""
    here = os.path.dirname(os.path.abspath(__file__))
    lib = ctypes.CDLL(os.path.join(here, "out", "libempty_signal.so"), use_errno=True)
    lib.es_stop.restype = lib.es_disarm_self.restype = ctypes.c_long
    period = ctypes.c_long(int(args.period * 1e9))
    out = {name: [] for name, how in FLOOR_DELIVERIES}
    compute_rounds(args.work // 10)  # warm
    n = len(FLOOR_DELIVERIES)
    for r in range(args.rounds):
        for name, how in FLOOR_DELIVERIES[r % n:] + FLOOR_DELIVERIES[:r % n]:
            c0 = time.process_time()
            if how == 3:
                ok = lib.es_start(period, how) == 0
            elif how:
                ok = lib.es_arm_self(period, how) == 0
            else:
                ok = True
            if not ok:
                raise SystemExit("empty_signal: %s failed: %s" % (name, os.strerror(ctypes.get_errno())))
            compute_rounds(args.work)
            signals = lib.es_stop() if how == 3 else lib.es_disarm_self() if how else 0
            out[name].append({"cpu": time.process_time() - c0, "signals": signals})
    with open(args.result, "a") as f:
        f.write(json.dumps({"floors": out, "python": sys.version.split()[0]}) + "\n")


def write_floor(args):
    """The write scenario: --bytes to --profile over --seconds in slices
    every 10 ms, from a thread of its own, whose CPU time is reported."""
    ticks = max(1, int(args.seconds / 0.01))
    # (as the writer writes repeats: iovecs pointing at one block of 28
    # records of 73 bytes, so that the kernel copies from a block in cache)
    block = bytes(range(73)) * 28
    per_tick = args.bytes // ticks
    iov = [block] * (per_tick // len(block)) + [block[:per_tick % len(block)]]
    out = {}

    fallocate = None
    if args.allocate_ahead:
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    ahead = {"end": 0, "bytes": 0}

    def allocate(fd, at, n):
        # (vmp_writer.c's allocate_ahead; FALLOC_FL_KEEP_SIZE is 1)
        if at + n > ahead["end"] and at + n >= 8 << 20:
            start, to = max(at, ahead["end"]), at + n + (8 << 20)
            if fallocate(fd, 1, start, to - start) == 0:
                ahead["bytes"] += to - start
            ahead["end"] = to

    def writer():
        fd = os.open(args.profile, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        c0, start = time.thread_time(), time.perf_counter()
        at = 0
        for i in range(ticks):
            for k in range(0, len(iov), 1024):
                part = iov[k:k + 1024]
                left = sum(map(len, part))
                if fallocate:
                    allocate(fd, at, left)
                at += left
                while left:  # (a short write: the rest as bytes)
                    n = os.writev(fd, part)
                    left -= n
                    if left:
                        part = [b"".join(part)[-left:]]
            pause = start + (i + 1) * 0.01 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        if ahead["end"] > at:
            os.ftruncate(fd, at)  # (gives back what lies past the end)
        out["cpu"] = time.thread_time() - c0
        out["wall"] = time.perf_counter() - start
        os.close(fd)

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    with open(args.result, "a") as f:
        f.write(json.dumps({"wall": out["wall"], "profiler_cpu": out["cpu"],
                            "written": per_tick * ticks, "allocated_ahead": ahead["bytes"]}) + "\n")


def thread_cpu_ns(tid):
    """Another thread's CPU clock (Linux's per-thread clock id, as
    pthread_getcpuclockid builds it); None when the thread is gone."""
    try:
        return time.clock_gettime_ns((~tid << 3) | 6)
    except OSError:
        return None


def thread_minflt(tid):
    """Another thread's minor page faults so far (/proc/self/task/TID/stat,
    field 10); None when the thread is gone."""
    try:
        with open("/proc/self/task/%d/stat" % tid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return None


def process_tids():
    return {int(t) for t in os.listdir("/proc/self/task")}


class CSleepers:
    """Threads of the C library (no Python thread state) sleeping in a loop,
    counting the sleeps a signal cut short: a C pool's or a watchdog's idle
    thread (bench/c_sleepers.c, built by bench/run.sh)."""

    def __init__(self, n):
        self.n = n
        self.threads = []
        if not n:
            return
        here = os.path.dirname(os.path.abspath(__file__))
        lib = os.path.join(here, "out", "libc_sleepers.so")
        self.lib = ctypes.CDLL(lib)
        self.lib.cs_start.argtypes = [ctypes.c_int]
        self.lib.cs_start.restype = ctypes.c_int
        self.lib.cs_stop.restype = ctypes.c_long
        self.lib.cs_tids.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.lib.cs_tids.restype = ctypes.c_int
        if self.lib.cs_start(n) != n:
            raise SystemExit("could not start %d C threads" % n)

    def tids(self):
        if not self.n:
            return set()
        buf = (ctypes.c_int * self.n)()
        k = self.lib.cs_tids(buf, self.n)
        return set(buf[:k])

    def stop(self):
        """Returns the sleep() calls cut short, over all C threads."""
        return self.lib.cs_stop() if self.n else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["busy", "pool", "late", "gil", "alternate", "write",
                                             "floors"])
    ap.add_argument("--result", required=True)
    ap.add_argument("--tool", default="none", choices=["none", "vmprof", "empty-perf", "c-writer"])
    ap.add_argument("--period", type=float, default=0.001)
    ap.add_argument("--real-time", action="store_true")
    ap.add_argument("--native", choices=["on", "off"], default="off")
    ap.add_argument("--profile")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--work", type=int, default=0)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--c-idle", type=int, default=0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--run-ms", type=float, default=3)
    ap.add_argument("--sleep-ms", type=float, default=7)
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--allocate-ahead", action="store_true",
                    help="write: allocate blocks ahead as the writer does on ext4")
    ap.add_argument("--rounds", type=int, default=5, help="floors: rounds of every delivery")
    ap.add_argument("--mark", type=float, default=0,
                    help="profiled: also read the profiler threads' CPU time this many seconds "
                         "into the run (profiler_cpu_each_since_mark: their cost from there on)")
    args = ap.parse_args()
    if args.scenario == "write":
        return write_floor(args)
    if args.scenario == "floors":
        return floors(args)

    threading.stack_size(256 * 1024)  # a thousand threads need no 8 MiB stacks each
    mine = {threading.get_native_id()}
    stop = threading.Event()
    ready = threading.Semaphore(0)

    def wait():
        mine.add(threading.get_native_id())
        ready.release()
        stop.wait()

    waiters = []

    def start_waiters():
        for _ in range(args.idle):
            t = threading.Thread(target=wait, daemon=True)
            t.start()
            waiters.append(t)
        for _ in range(args.idle):
            ready.acquire()

    c_sleepers = CSleepers(args.c_idle)
    mine |= c_sleepers.tids()
    if args.scenario == "pool":
        start_waiters()

    prof = None
    if args.tool == "vmprof":
        import vmprof
        fd = os.open(args.profile, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        vmprof.enable(fd, period=args.period, real_time=args.real_time,
                      native=args.native == "on")
        prof = (vmprof, fd)
    empty = None
    if args.tool == "empty-perf":
        here = os.path.dirname(os.path.abspath(__file__))
        empty = ctypes.CDLL(os.path.join(here, "out", "libempty_signal.so"))
        empty.es_stop.restype = ctypes.c_long
        if empty.es_start(ctypes.c_long(int(args.period * 1e9)), 3):
            raise SystemExit("empty_signal: es_start failed")
    c_writer = None
    if args.tool == "c-writer":
        here = os.path.dirname(os.path.abspath(__file__))
        c_writer = ctypes.CDLL(os.path.join(here, "out", "libc_sleepers.so"))
        c_writer.cs_write_start.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong,
                                            ctypes.c_longlong]
        c_writer.cs_write_join.restype = ctypes.c_longlong
        c_writer_fd = os.open(args.profile, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        if c_writer.cs_write_start(c_writer_fd, args.bytes, int(args.seconds * 1e9), 70000000):
            raise SystemExit("c_sleepers: cs_write_start failed")
    if args.scenario == "late":
        start_waiters()

    workers = [{} for _ in range(args.threads if args.scenario == "gil" else 1)]

    def busy_thread(busy):
        busy["native_id"] = threading.get_native_id()
        mine.add(busy["native_id"])
        busy["ident"] = threading.get_ident()
        t0, c0 = time.perf_counter(), time.thread_time()
        if args.scenario == "alternate":
            busy["rounds"] = alternate_for(args.seconds, args.run_ms, args.sleep_ms)
        else:
            busy["rounds"] = compute_rounds(args.work) if args.work else compute_for(args.seconds)
        busy["lifetime"] = time.perf_counter() - t0
        busy["cpu"] = time.thread_time() - c0

    # (the profiler's threads, listed before the run: at the mark only
    # their clocks are read, microseconds with the GIL; listing 1,000
    # threads there held it for milliseconds, and the busy thread, probed
    # while it waited for it, set the sampler thread's short rounds going)
    ours = process_tids() - mine if args.mark and prof else set()
    w0 = time.perf_counter()
    ts = [threading.Thread(target=busy_thread, args=(w,)) for w in workers]
    for t in ts:
        t.start()
    mark = None
    if args.mark and prof:
        # the profiler threads' CPU time so far: what they use from here to
        # the end is their steady cost, without the start's (the first
        # samples of every thread already there)
        time.sleep(max(0.0, w0 + args.mark - time.perf_counter()))
        mark = (time.perf_counter() - w0, {tid: thread_cpu_ns(tid) or 0 for tid in ours},
                {tid: thread_minflt(tid) or 0 for tid in ours})
    for t in ts:
        t.join()
    wall = time.perf_counter() - w0

    busy = workers[0]
    rec = {"wall": wall, "busy_cpu": busy["cpu"], "busy_lifetime": busy["lifetime"],
           "busy_ident": busy["ident"], "process_threads": len(process_tids()),
           "python": sys.version.split()[0],
           "workers": [{"ident": w["ident"], "cpu": w["cpu"], "lifetime": w["lifetime"]}
                       for w in workers]}
    if prof:
        vmprof, fd = prof
        others = process_tids() - mine
        rec["profiler_threads"] = len(others)
        rec["profiler_cpu"] = sum(thread_cpu_ns(tid) or 0 for tid in others) / 1e9
        # each, by tid: the writer starts first, then the sampler thread
        rec["profiler_cpu_each"] = [(thread_cpu_ns(tid) or 0) / 1e9 for tid in sorted(others)]
        # ... and their minor page faults (first touches of the ring's and
        # the tables' pages), each, by tid
        rec["profiler_minflt_each"] = [thread_minflt(tid) or 0 for tid in sorted(others)]
        # what the writer had written by then (disable() writes the repeats
        # still owed after it): the bytes a floor under the writer's share
        # above must write
        rec["profile_bytes_before_disable"] = os.fstat(fd).st_size
        if mark:
            # ... and their CPU time from the mark to here, each, by tid
            rec["mark"] = mark[0]
            rec["profiler_cpu_each_since_mark"] = [
                ((thread_cpu_ns(tid) or 0) - mark[1].get(tid, 0)) / 1e9 for tid in sorted(others)]
            rec["profiler_minflt_each_since_mark"] = [
                (thread_minflt(tid) or 0) - mark[2].get(tid, 0) for tid in sorted(others)]
        d0, c0 = time.perf_counter(), time.thread_time()
        p0 = time.clock_gettime(time.CLOCK_PROCESS_CPUTIME_ID)
        vmprof.disable()
        rec["disable_wall"] = time.perf_counter() - d0
        # the sampler thread's figures (clock reads, polls, listings, visits)
        rec["run_stats"] = getattr(vmprof.profiler, "last_run_stats", None)
        rec["disable_cpu"] = time.thread_time() - c0
        # ... and what the profiler's threads did until disable() had them
        # end (the repeats still owed are written then): the process's CPU
        # time during disable() beyond this thread's (the others wait)
        rec["profiler_cpu_through_disable"] = (rec["profiler_cpu"] + time.clock_gettime(
            time.CLOCK_PROCESS_CPUTIME_ID) - p0 - rec["disable_cpu"])
        os.close(fd)
    if c_writer:
        cpu = c_writer.cs_write_join()
        if cpu < 0:
            raise SystemExit("c_sleepers: a write failed")
        rec["profiler_cpu"] = cpu / 1e9
        rec["profiler_cpu_each"] = [cpu / 1e9]
        rec["profile_bytes"] = os.fstat(c_writer_fd).st_size
        os.close(c_writer_fd)
    if empty:
        others = process_tids() - mine
        rec["profiler_cpu"] = sum(thread_cpu_ns(tid) or 0 for tid in others) / 1e9
        rec["signals"] = empty.es_stop()
    stop.set()
    for w in waiters:
        w.join()
    rec["c_sleeps_cut_short"] = c_sleepers.stop()
    # the process's CPU time from its start: every thread, user + system
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rec["process_cpu"] = ru.ru_utime + ru.ru_stime
    with open(args.result, "a") as f:
        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
