"""What a fork costs a profiled program, two builds of the profiler against
each other in one run (CPython 3.12+: our threads are stopped for each
os.fork so that CPython does not count them, vmp_sampler.c).

    python bench/fork_bench.py --base PYTHONPATH --new PYTHONPATH
        [--python PYTHON] [--rounds 3] [--forks 200] [--modes off,cpu,native]

--base and --new are folders holding a build of the `vmprof` package (as
`pip install --target` makes them; "" is the interpreter's own), put first
on PYTHONPATH.  Each round runs every mode with base then new, then with new
then base in the next round (interleaved: load from other processes falls on
both).  One run is a program that, --forks times: computes 20,000 additions,
forks (the child leaves at once with os._exit), and waits for the child.
Printed per mode and build, medians over the rounds of each run's median:
the time os.fork takes in the parent (ms), and the samples lost to each
fork's stop: the time from our stop to our restart over the forks
(`_core._fork_stops()`, a tests-only figure: ms per fork; at 1 kHz, one
ms is one sample).  "off" is the program unprofiled (the build does not
matter: it is the floor).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PROGRAM = r"""
import json, os, sys, time
mode, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode != "off":
    import vmprof
    f = open(out, "wb")
    vmprof.enable(f.fileno(), period=0.001, real_time=mode == "wall", native=mode == "native")
def work():
    s = 0
    for i in range(20000):
        s += i
took = []
for i in range(n):
    work()
    t0 = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    t1 = time.perf_counter_ns()
    os.waitpid(pid, 0)
    took.append(t1 - t0)
stops = None
if mode != "off":
    from vmprof import _core
    stops = list(_core._fork_stops()) if hasattr(_core, "_fork_stops") else None
    vmprof.disable()
    f.close()
print(json.dumps({"fork_ms": sorted(took)[len(took) // 2] / 1e6, "stops": stops}))
"""


def one(python, path, mode, forks, tmp):
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path
    prog = os.path.join(tmp, "fork_prog.py")
    with open(prog, "w") as f:
        f.write(PROGRAM)
    r = subprocess.run([python, prog, mode, str(forks), os.path.join(tmp, "p.prof")], env=env, cwd=tmp,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit("fork_bench: %s %s failed: %s" % (path, mode, r.stderr[-600:]))
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    stops = rec.pop("stops")
    if stops and stops[0]:
        rec["stopped"] = stops[0]
        rec["refused"] = stops[1]
        rec["gap_ms"] = stops[2] / 1e6 / stops[0]
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--forks", type=int, default=200)
    ap.add_argument("--modes", default="off,cpu,native")
    args = ap.parse_args()
    builds = {"base": os.path.abspath(args.base) if args.base else "",
              "new": os.path.abspath(args.new) if args.new else ""}
    modes = args.modes.split(",")
    res = {(b, m): [] for b in builds for m in modes}
    tmp = tempfile.mkdtemp(prefix="vmprof-fork-bench-")
    with open("/proc/loadavg") as f:
        print("load before:", f.read().split()[0])
    for r in range(args.rounds):
        order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
        for m in modes:
            for b in order:
                rec = one(args.python, builds[b], m, args.forks, tmp)
                res[(b, m)].append(rec)
                print("round %d %-6s %-4s %s" % (r, m, b, json.dumps(rec)), flush=True)
    with open("/proc/loadavg") as f:
        print("load after:", f.read().split()[0])
    print("\n%-7s %-5s %14s %16s %14s" % ("mode", "build", "fork ms (med)", "gap ms/fork (med)", "stopped/refused"))
    for m in modes:
        for b in builds:
            recs = res[(b, m)]
            fork = statistics.median(x["fork_ms"] for x in recs)
            gaps = [x["gap_ms"] for x in recs if "gap_ms" in x]
            gap = "%.2f" % statistics.median(gaps) if gaps else "-"
            st = "/".join(str(x.get("stopped", 0)) + "," + str(x.get("refused", 0)) for x in recs)
            print("%-7s %-5s %14.3f %16s %14s" % (m, b, fork, gap, st))


if __name__ == "__main__":
    main()
