"""Two builds of the profiler against each other, pinned to one core, in one
run: what a change did to the whole process's cost (bench/process_workload.py
runs each case; see bench/process_bench.py's pinned section for the method).

    python bench/process_ab.py --base PYTHON --new PYTHON [--rounds 5]
        [--work 10000] [--period 0.001] [--native off|on]

Each round runs: unprofiled, the base build profiled, the new build profiled,
unprofiled again (all under `taskset -c 0`, under `perf stat` for the page
faults and context switches).  Printed per build, medians over the rounds:
the process's CPU time (every thread, user + system) and its excess over the
round's unprofiled mean, the busy thread's CPU time, the profiler's own
threads' CPU time, disable()'s CPU time, page faults, context switches.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "process_workload.py")
COUNTERS = ("page-faults", "context-switches")


def one(py, profiled, args, tmp):
    out = os.path.join(tmp, "result.json")
    if os.path.exists(out):
        os.unlink(out)
    cmd = ["perf", "stat", "-x,", "-e", ",".join(COUNTERS), "taskset", "-c", "0", py, WORKLOAD, "busy",
           "--work", str(args.work), "--result", out, "--period", str(args.period), "--native", args.native]
    if profiled:
        cmd += ["--tool", "vmprof", "--profile", os.path.join(tmp, "p.prof")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=300)
    if r.returncode != 0:
        raise SystemExit("process_ab: %s failed: %s" % (" ".join(cmd), r.stderr[-600:]))
    with open(out) as f:
        rec = json.loads(f.read().strip().splitlines()[-1])
    for line in r.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2] in COUNTERS:
            rec[f[2]] = int(f[0])
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="python of the baseline build's venv")
    ap.add_argument("--new", required=True, help="python of the build under test's venv")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=int, default=10000)
    ap.add_argument("--period", type=float, default=0.001)
    ap.add_argument("--native", choices=["off", "on"], default="off")
    args = ap.parse_args()
    args.base, args.new = os.path.abspath(args.base), os.path.abspath(args.new)  # (run elsewhere)
    builds = {"base": args.base, "new": args.new}
    res = {"base": [], "new": [], "none": []}
    tmp = tempfile.mkdtemp(prefix="vmprof-process-ab-")
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    for _ in range(args.rounds):
        b0 = one(args.new, False, args, tmp)
        for k, py in builds.items():
            res[k].append(one(py, True, args, tmp))
        b1 = one(args.new, False, args, tmp)
        res["none"] += [b0, b1]
        base_cpu = (b0["process_cpu"] + b1["process_cpu"]) / 2
        for k in builds:
            res[k][-1]["extra"] = res[k][-1]["process_cpu"] / base_cpu - 1
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    med = statistics.median
    print("period %g s, native %s, work %d, medians of %d rounds, load before %s after %s"
          % (args.period, args.native, args.work, args.rounds, " ".join(load_before), " ".join(load_after)))
    print("| run | process CPU s | against unprofiled | busy thread CPU s | profiler threads ms "
          "| disable() CPU ms | page faults | context switches |\n|---|---|---|---|---|---|---|---|")
    for k, rs in res.items():
        prof = k != "none"
        print("| %s | %.3f | %s | %.3f | %s | %s | %d | %d |" % (
            k, med(r["process_cpu"] for r in rs),
            "%+.1f%%" % (100 * med(r["extra"] for r in rs)) if prof else "",
            med(r["busy_cpu"] for r in rs),
            "%.1f" % (1000 * med(r["profiler_cpu"] for r in rs)) if prof else "",
            "%.2f" % (1000 * med(r["disable_cpu"] for r in rs)) if prof else "",
            med(r.get("page-faults", 0) for r in rs), med(r.get("context-switches", 0) for r in rs)))


if __name__ == "__main__":
    main()
