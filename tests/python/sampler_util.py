"""Helpers for the sampler tests: profile a callable and read the result back.

read_back() decodes a profile with a small decoder of its own (the sampler's
tests must not depend on the reader's views); it checks the structure strictly
so that a malformed record fails the test that wrote it.
"""
import collections
import os
import platform
import struct
import sys
import tempfile
import threading
import time
import types

import vmprof


class Profile:
    def __init__(self):
        self.period_usec = None
        self.version = None
        self.mode = None
        self.interp = None
        self.meta = {}
        self.stacks = []      # (entries innermost first, thread id, rss or None)
        self.names = {}       # id -> [name, ...] in file order
        self.trailer = False

    @property
    def lines(self):
        return bool(self.mode & 0x02)

    def frames(self, entries):
        """[(id, line)] innermost first."""
        if self.lines:
            return [(entries[i + 1], entries[i]) for i in range(0, len(entries), 2)]
        return [(e, None) for e in entries]

    def name(self, code_id):
        return self.names[code_id][-1]

    def func(self, code_id):
        return self.name(code_id).split(":")[1]

    def leaf_counts(self, thread=None):
        """Counter of innermost function names."""
        c = collections.Counter()
        for entries, tid, _ in self.stacks:
            if thread is None or tid == thread:
                c[self.func(self.frames(entries)[0][0])] += 1
        return c

    def inclusive(self, func, thread=None):
        """Samples whose stack contains func."""
        n = 0
        for entries, tid, _ in self.stacks:
            if thread is not None and tid != thread:
                continue
            if any(self.func(cid) == func for cid, _ in self.frames(entries)):
                n += 1
        return n

    def threads_of(self, func):
        return {tid for entries, tid, _ in self.stacks
                if any(self.func(cid) == func for cid, _ in self.frames(entries))}


def decode(data, partial=False):
    """partial: the profile of a program that died before disable() (no
    trailer, maybe a record cut short at the end): the records before the
    end are read, the cut one left out."""
    p = Profile()
    if len(data) < 40:
        raise ValueError("profile shorter than its static header")
    w = struct.unpack("<5q", data[:40])
    assert w[0] == 0 and w[1] == 3 and w[2] == 0 and w[4] == 0, w
    p.period_usec = w[3]
    i = 40

    def word():
        nonlocal i
        v = struct.unpack("<Q", data[i:i + 8])[0]
        i += 8
        return v

    def word_at(j):
        return struct.unpack("<Q", data[j:j + 8])[0]

    while i < len(data):
        if partial:
            at = i
            try:
                i = _decode_record(p, data, i, word_at)
            except (struct.error, AssertionError, IndexError, UnicodeDecodeError):
                assert at > 40, "cut inside the header"
                break
            continue
        tag = data[i]
        i += 1
        if tag == 0x05:
            p.version = struct.unpack(">H", data[i:i + 2])[0]
            p.mode = data[i + 2]
            n = data[i + 3]
            p.interp = data[i + 4:i + 4 + n].decode()
            i += 4 + n
        elif tag in (0x06, 0x03):
            assert len(data) >= i + 24, "truncated time record"
            i += 24
            if tag == 0x03:
                p.trailer = True
                assert i == len(data), "bytes after the trailer"
        elif tag == 0x07:
            kl = word()
            k = data[i:i + kl].decode()
            i += kl
            vl = word()
            p.meta[k] = data[i:i + vl].decode()
            i += vl
        elif tag == 0x01:
            assert word() == 1
            depth = word()
            assert 0 < depth <= 2000, depth
            entries = [word() for _ in range(depth)]
            tid = word()
            rss = word() if p.mode & 0x01 else None
            p.stacks.append((entries, tid, rss))
        elif tag in (0x02, 0x08):
            a = word()
            n = word()
            p.names.setdefault(a, []).append(data[i:i + n].decode("utf-8", "replace"))
            i += n
        else:
            raise AssertionError("unknown tag %#x at byte %d" % (tag, i - 1))
    return p


def _decode_record(p, data, i, word_at):
    """One record of a partial profile (decode): the index after it, raising
    when it is cut short."""
    tag = data[i]
    i += 1
    if tag == 0x05:
        n = data[i + 3]
        assert len(data) >= i + 4 + n
        p.version = struct.unpack(">H", data[i:i + 2])[0]
        p.mode = data[i + 2]
        p.interp = data[i + 4:i + 4 + n].decode()
        return i + 4 + n
    if tag in (0x06, 0x03):
        assert len(data) >= i + 24, "truncated time record"
        if tag == 0x03:
            p.trailer = True
        return i + 24
    if tag == 0x07:
        kl = word_at(i)
        vl = word_at(i + 8 + kl)
        assert len(data) >= i + 16 + kl + vl
        p.meta[data[i + 8:i + 8 + kl].decode()] = data[i + 16 + kl:i + 16 + kl + vl].decode()
        return i + 16 + kl + vl
    if tag == 0x01:
        assert word_at(i) == 1
        depth = word_at(i + 8)
        assert 0 < depth <= 2000, depth
        i += 16
        entries = [word_at(i + 8 * k) for k in range(depth)]
        i += 8 * depth
        tid = word_at(i)
        i += 8
        rss = None
        if p.mode & 0x01:
            rss = word_at(i)
            i += 8
        p.stacks.append((entries, tid, rss))
        return i
    if tag in (0x02, 0x08):
        a, n = word_at(i), word_at(i + 8)
        assert len(data) >= i + 16 + n
        p.names.setdefault(a, []).append(data[i + 16:i + 16 + n].decode("utf-8", "replace"))
        return i + 16 + n
    raise AssertionError("unknown tag %#x at byte %d" % (tag, i - 1))


# The native walk is x86-64 Linux's (vmp_native_unwind.c); elsewhere a sample
# keeps the interrupted frame only, so tests of whole native stacks skip.
NATIVE_WALK_HERE = sys.platform.startswith("linux") and platform.machine() == "x86_64"
NO_NATIVE_WALK = "the native walk is x86-64 Linux's; elsewhere a sample keeps the interrupted frame only"

# VMP_CRASH_FLUSH_NS (src/sampler/vmp_writer.h): the longest a dying
# program waits for the writer to write what the ring holds.
FLUSH_BOUND_S = 0.2


def read_back(path, partial=False):
    with open(path, "rb") as f:
        return decode(f.read(), partial)


def profile(fn, *args, **enable_options):
    """Runs fn(*args) under the profiler; returns (profile, fn's result,
    figures of the run).  Python frames only unless native=True is given:
    the sampler's tests are about Python frames (native mode has its own)."""
    enable_options.setdefault("native", False)
    fd, path = tempfile.mkstemp(suffix=".prof")
    try:
        vmprof.enable(fd, **enable_options)
        try:
            result = fn(*args)
        finally:
            vmprof.disable()
        stats = vmprof.profiler.last_run_stats
        return read_back(path), result, stats
    finally:
        os.close(fd)
        os.unlink(path)


def burn_cpu(seconds):
    """Spins for `seconds` of this thread's CPU time."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for i in range(200):
            x += i
    return x




def cpu_time_events_open():
    """Whether some thread of this process holds a CPU-time event open (the
    sampler's own table is its thread's)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            fds = os.listdir("/proc/self/task/%s/fd" % tid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/self/task/%s/fd/%s" % (tid, fd)) == "anon_inode:[perf_event]":
                    return True
            except OSError:
                pass
    return False

def thread_state(native_id):
    """The thread's state letter in /proc (R: running or waiting for a CPU;
    S: asleep), or None when it is gone."""
    try:
        with open("/proc/self/task/%d/stat" % native_id) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def wait_until_asleep(threads, func, timeout=20.0):
    """Returns once every thread of `threads` sleeps inside `func` and stays
    so: its CPU clock stood still over 20 ms in which this thread let go of
    the GIL (one that waited for the GIL would have taken it and run), its
    state is S (one kept from a CPU on a loaded machine reads R), and its
    stack holds func.  Having released a semaphore or reached the line of
    its wait is not that: a thread can still need the GIL and microseconds
    to tens of microseconds of CPU before it blocks."""
    clocks = {t: time.pthread_getcpuclockid(t.ident) for t in threads}
    deadline = time.monotonic() + timeout
    while True:
        before = {t: time.clock_gettime_ns(c) for t, c in clocks.items()}
        time.sleep(0.02)
        after = {t: time.clock_gettime_ns(c) for t, c in clocks.items()}
        frames = sys._current_frames()
        awake = []
        for t in threads:
            f = frames.get(t.ident)
            codes = []
            while f is not None:
                codes.append(f.f_code.co_name)
                f = f.f_back
            if after[t] != before[t] or thread_state(t.native_id) != "S" or func not in codes:
                awake.append(t.name)
        if not awake:
            return
        assert time.monotonic() < deadline, "threads not asleep in %s: %s" % (func, awake)

def start_waiting_threads(n, waits_in):
    """n threads, each asleep in waits_in(event) until the returned event is
    set; returns (threads, event).  Each is asleep in its wait before this
    returns (wait_until_asleep): on a loaded machine some had released the
    semaphore, or even reached the line of their wait, without having
    blocked yet (CPU clocks moved 18-73 us after that, beyond the idle
    slack); they ran after enable() read their stacks and were probed (26
    signals sent, 31 first samples, in CI)."""
    stop, ready = threading.Event(), threading.Semaphore(0)

    def wait():
        ready.release()
        waits_in(stop)

    ts = [threading.Thread(target=wait) for _ in range(n)]
    for t in ts:
        t.start()
    for _ in ts:
        ready.acquire()
    wait_until_asleep(ts, waits_in.__name__)
    return ts, stop


def spin_in_background(piece=0.01):
    """Starts a daemon thread that burns CPU in `piece`-second steps; returns
    the function that stops it and waits for it."""
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            burn_cpu(piece)

    t = threading.Thread(target=spin, daemon=True)
    t.start()

    def stop_and_join():
        stop.set()
        t.join()
    return stop_and_join


def computing(seconds):
    """Spins for `seconds` of wall time (a part of compute_then_sleep)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def sleeping(seconds):
    time.sleep(seconds)


def compute_then_sleep(compute, sleep, total):
    """Computes `compute` s, then sleeps `sleep` s, for `total` s; returns
    the share of its wall time spent in computing(), measured by itself (on
    a loaded machine both parts take longer than asked: the true shares are
    this run's), and that wall time."""
    computed = 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < total:
        a = time.perf_counter()
        computing(compute)
        computed += time.perf_counter() - a
        sleeping(sleep)
    wall = time.perf_counter() - t0
    return computed / wall, wall


def function_named(fn, name):
    """A new function running fn's code under another name: a code object of
    its own (one allocation, which may land where one just freed was)."""
    kw = {"co_name": name}
    if sys.version_info >= (3, 11):
        kw["co_qualname"] = name
    return types.FunctionType(fn.__code__.replace(**kw), fn.__globals__, name)
