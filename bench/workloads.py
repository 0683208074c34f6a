"""CPU-bound workloads for the sampler benchmark, each run under one tool.

    python bench/workloads.py WORKLOAD --result FILE [--tool TOOL] [--period S]
                              [--real-time] [--profile FILE] [--scale X]

Runs WORKLOAD once and writes a JSON line to FILE: its wall and CPU time
(measured around the workload only; starting and stopping the tool are
outside), and what the tool reports (signals handled, samples).  The in-process
tools are started here; external samplers (py-spy, austin) wrap this script
and use --tool none.

Tools: none, vmprof (whichever `vmprof` this interpreter imports: ours in the
project's venv, the original in the bench-orig venv), empty-thread,
empty-timer, empty-all (an empty SIGPROF handler delivered as our sampler
delivers its signals on the CPU and the wall clock, or by setitimer; see
empty_signal.c),
pyinstrument, cprofile.

Runs on every CPython the project supports: no imports beyond the stdlib and
the tool asked for.
"""
import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- workloads --------------------------------------------------------------

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def recursion(scale):
    total = 0
    for _ in range(int(360 * scale)):
        total += fib(22)
    return total


def loops(scale):
    acc = 0
    for i in range(int(9000000 * scale)):
        acc = (acc + i * i) % 1000003
        if i & 7 == 0:
            acc ^= i >> 3
    return acc


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y


class Order:
    def __init__(self, oid, items):
        self.oid = oid
        self.items = items
        self.meta = {"id": oid, "n": len(items)}

    def total(self):
        return sum(price * qty for price, qty in self.items)


def objects(scale):
    out = 0
    for rnd in range(int(120 * scale)):
        pts = [Point(i, rnd - i) for i in range(3000)]
        pts.sort(key=Point.norm2)
        orders = [Order(i, [(j + 1.5, i % 7) for j in range(i % 9)]) for i in range(3000)]
        index = {o.oid: o for o in orders}
        out += sum(index[k].total() for k in range(0, 3000, 3))
        out += len({str(p.x) + ":" + str(p.y) for p in pts[:1000]})
    return out


# Seconds each worker thread of the last `threads` run lived, by
# threading.get_ident() (the thread id a vmprof profile carries).  The workers
# do not end together, so a wall-clock rate per thread must divide each
# thread's samples by its own lifetime, not by the workload's wall time.
WORKER_LIFETIMES = {}


def threads(scale):
    # Four workers share the GIL; each has its own hot function so that a
    # profiler must attribute them to the right threads.
    results = []
    cpu = []

    def run(job):
        born = time.perf_counter()
        results.append(job())
        cpu.append(time.thread_time())
        WORKER_LIFETIMES[threading.get_ident()] = time.perf_counter() - born

    jobs = [lambda: recursion(scale / 4), lambda: loops(scale / 4),
            lambda: objects(scale / 4), lambda: recursion(scale / 4)]
    workers = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(cpu)


def idle(scale):
    # The recursion workload beside sixteen threads that only wait, as in a
    # server with a pool of idle workers: a wall-clock profiler owes each of
    # them a sample every period.
    stop = threading.Event()

    def wait(born):
        stop.wait()
        WORKER_LIFETIMES[threading.get_ident()] = time.perf_counter() - born

    waiters = [threading.Thread(target=wait, args=(time.perf_counter(),)) for _ in range(16)]
    for w in waiters:
        w.start()
    out = recursion(scale)
    stop.set()
    for w in waiters:
        w.join()
    return out


WORKLOADS = {"recursion": recursion, "loops": loops, "objects": objects,
             "threads": threads, "idle": idle}


# ---- tools ------------------------------------------------------------------

class Tool:
    def __init__(self, args):
        self.args = args
        self.report = {}

    def start(self):
        pass

    def stop(self):
        pass


class Vmprof(Tool):
    def start(self):
        import vmprof
        self.vmprof = vmprof
        self.fd = os.open(self.args.profile, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        kw = {"period": self.args.period, "real_time": self.args.real_time}
        if self.args.native is not None:
            kw["native"] = self.args.native == "on"
        vmprof.enable(self.fd, **kw)

    def stop(self):
        t = time.perf_counter()
        self.vmprof.disable()
        self.report["disable_seconds"] = time.perf_counter() - t
        os.close(self.fd)


class EmptySignal(Tool):
    DELIVERY = {"empty-thread": 0, "empty-timer": 1, "empty-all": 2}

    def start(self):
        import ctypes
        self.lib = ctypes.CDLL(os.path.join(HERE, "out", "libempty_signal.so"))
        self.lib.es_stop.restype = ctypes.c_long
        how = self.DELIVERY[self.args.tool]
        if self.lib.es_start(ctypes.c_long(int(self.args.period * 1e9)), how):
            raise SystemExit("empty_signal: es_start failed")

    def stop(self):
        self.report["signals"] = self.lib.es_stop()


class Pyinstrument(Tool):
    def start(self):
        import pyinstrument
        self.p = pyinstrument.Profiler(interval=self.args.period)
        self.p.start()

    def stop(self):
        session = self.p.stop()
        self.report["samples"] = session.sample_count


class CProfile(Tool):
    def start(self):
        import cProfile
        self.p = cProfile.Profile()
        self.p.enable()

    def stop(self):
        self.p.disable()


TOOLS = {"none": Tool, "vmprof": Vmprof, "empty-thread": EmptySignal,
         "empty-timer": EmptySignal, "empty-all": EmptySignal,
         "pyinstrument": Pyinstrument, "cprofile": CProfile}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--result", required=True)
    ap.add_argument("--tool", default="none", choices=sorted(TOOLS))
    ap.add_argument("--period", type=float, default=0.001)
    ap.add_argument("--real-time", action="store_true")
    ap.add_argument("--native", choices=["on", "off"])
    ap.add_argument("--profile")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()

    work = WORKLOADS[args.workload]
    tool = TOOLS[args.tool](args)
    tool.start()
    w0, c0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
    ret = work(args.scale)
    w1, c1, t1 = time.perf_counter(), time.process_time(), time.thread_time()
    tool.stop()
    # CPU used by the workload's own threads (not by a tool's helper thread):
    # the denominator of a CPU-clock sampler's rate.
    thread_cpu = ret if args.workload == "threads" else t1 - t0
    lifetimes = dict(WORKER_LIFETIMES)
    lifetimes[threading.get_ident()] = w1 - w0
    rec = {"wall": w1 - w0, "cpu": c1 - c0, "thread_cpu": thread_cpu,
           "lifetimes": {str(k): v for k, v in lifetimes.items()},
           "python": sys.version.split()[0]}
    rec.update(tool.report)
    with open(args.result, "a") as f:
        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
