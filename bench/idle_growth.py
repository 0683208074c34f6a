"""How the sampler thread's cost grows with idle threads: a pool of N Python
threads waiting on an Event, 16 C threads sleeping in a loop, one thread
computing for --seconds, profiled on the wall clock (1 kHz); a row per N, and
per build when several are given (interleaved round by round, so that two
builds meet the same load).

    python bench/idle_growth.py [--build LABEL=PYTHON ...] [--idle 100,1000,3000]
        [--rounds 3] [--seconds 3] [--mark 1] [--clock wall|cpu]

Each run is bench/process_workload.py's `pool` scenario (`sync` before it:
the disk's work left by the run before costs the next writer several times
its CPU).  Printed per build and N, medians over the rounds, as a share of a
core over the busy thread's run: the sampler thread over the whole run and
from --mark seconds on (its steady cost, without the start's first sample of
every thread: the figure that must not grow with N), the writer, both, both
counting their work in disable() too (idle threads' repeats still owed are
written then), the sampler's clock readings, polls and listings a second
(from disable()'s figures), and, up to 1,000
idle threads, the busy thread's samples against its rate (3,000 threads
make profiles of ~450 MB, too long to read back here).  The builds default
to this checkout's .venv/3.11.  Raw results: bench/out/idle-<utc time>.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOAD = os.path.join(HERE, "process_workload.py")
COUNT_UP_TO = 1000  # idle threads: above, the busy thread's samples are not counted


def load_now():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_pool(py, idle, args, tmp):
    """One profiled pool run: the workload's record, plus the busy thread's
    samples when counted."""
    result, prof = os.path.join(tmp, "result.json"), os.path.join(tmp, "p.prof")
    for f in (result, prof):
        if os.path.exists(f):
            os.unlink(f)
    os.sync()
    period = str(1.0 / args.hz)
    cmd = [py, WORKLOAD, "pool", "--result", result, "--tool", "vmprof", "--profile", prof,
           "--period", period, "--idle", str(idle), "--c-idle", "16", "--seconds", str(args.seconds),
           "--mark", str(args.mark)]
    if args.clock == "wall":
        cmd.append("--real-time")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=600)
    if r.returncode != 0:
        raise SystemExit("idle_growth: %s failed: %s" % (" ".join(cmd), r.stderr.strip()[-600:]))
    with open(result) as f:
        rec = json.loads(f.read().strip().splitlines()[-1])
    rec["profile_bytes"] = os.path.getsize(prof)
    if idle <= COUNT_UP_TO:
        c = subprocess.run([py, os.path.join(HERE, "count_samples.py"), prof],
                           capture_output=True, text=True, cwd=HERE)
        if c.returncode == 0:
            counted = json.loads(c.stdout.strip().splitlines()[-1])
            rec["busy_samples"] = counted["per_thread"].get(str(rec["busy_ident"]), 0)
            rec["dropped"] = counted.get("dropped")
    os.unlink(prof)
    return rec


def share(recs, key):
    vals = [100 * key(r) / r["wall"] for r in recs]
    return "%.2f%%" % statistics.median(vals) if vals else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", default=[],
                    help="LABEL=PYTHON of a build's venv (repeatable; default: this checkout's 3.11)")
    ap.add_argument("--idle", default="100,1000,3000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--mark", type=float, default=1.0,
                    help="the sampler thread's steady cost is counted from here to the end")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--hz", type=float, default=1000)
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.build] or [
        ["this", os.path.join(ROOT, ".venv", "3.11", "bin", "python")]]
    builds = [(label, os.path.abspath(py)) for label, py in builds]  # (run elsewhere)
    counts = [int(n) for n in args.idle.split(",")]
    tmp = tempfile.mkdtemp(prefix="vmprof-idle-growth-")
    res = {(label, n): [] for label, _ in builds for n in counts}
    loads = [load_now()]
    t0 = time.time()
    for rnd in range(args.rounds):
        for n in counts:
            for label, py in builds:
                res[(label, n)].append(run_pool(py, n, args, tmp))
        loads.append(load_now())
        print("round %d/%d done, load %.1f" % (rnd + 1, args.rounds, loads[-1]), file=sys.stderr, flush=True)
    print("### %s clock %g Hz, N Python threads waiting + 16 C threads sleeping + one busy for %g s; "
          "medians of %d, interleaved; load %.1f-%.1f; %.0f s"
          % (args.clock, args.hz, args.seconds, args.rounds, min(loads), max(loads), time.time() - t0))
    print()
    print("| build | idle threads N | sampler thread | ... from %g s on | writer | both | "
          "both, with disable() | clock readings / s | polls | listings | "
          "busy thread's rate / asked | MiB |" % args.mark)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        for label, _ in builds:
            recs = res[(label, n)]
            rates = [100 * r["busy_samples"] / r["busy_lifetime"] / args.hz
                     if args.clock == "wall" else 100 * r["busy_samples"] / r["busy_cpu"] / args.hz
                     for r in recs if "busy_samples" in r]
            stat = lambda key: statistics.median((r.get("run_stats") or {}).get(key, 0) for r in recs)
            print("| %s | %d | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f | %s | %.0f |" % (
                label, n, share(recs, lambda r: r["profiler_cpu_each"][-1]),
                "%.2f%%" % statistics.median(100 * r["profiler_cpu_each_since_mark"][-1] / (r["wall"] - r["mark"])
                                             for r in recs),
                share(recs, lambda r: r["profiler_cpu_each"][0]),
                share(recs, lambda r: r["profiler_cpu"]),
                share(recs, lambda r: r["profiler_cpu_through_disable"]),
                stat("clock_reads") / args.seconds, stat("polls"), stat("listings"),
                "%.0f%%" % statistics.median(rates) if rates else "-",
                statistics.median(r["profile_bytes"] for r in recs) / 2**20))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    path = os.path.join(HERE, "out", "idle-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    with open(path, "w") as f:
        json.dump({"builds": builds, "loads": loads, "args": vars(args),
                   "runs": {"%s/%d" % k: v for k, v in res.items()}}, f)
    print("\nraw results: %s" % os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
