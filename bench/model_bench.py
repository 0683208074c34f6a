"""The read model's figures against a baseline build, side by side in one run.

    python bench/model_bench.py --before PY_BEFORE --after PY_AFTER FILE... [--rounds N]
        [--query-bench BIN] [--summary-file PROF]

Each round runs, for each build in turn (interleaved, so the machine's load
falls on both alike): read_profile + get_tree from Python against reading
the file's bytes (bench/py_read.py), the peak RSS of a fresh process doing
the same, `vmprofshow FILE tree` and `flat` (whole processes, output thrown
away), and the summary `python -m vmprof` prints (read + format_summary).
Medians of the rounds are printed with the after/before ratios; with
--query-bench, the C timings of the server's queries (bench/query_bench.c).
Run from the repository root; the Python children run from bench/ so the
source tree cannot shadow the installed package.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SUMMARY = ("import sys, time, vmprof\n"
           "from vmprof import summary\n"
           "t0 = time.perf_counter()\n"
           "stats = vmprof.read_profile(sys.argv[1])\n"
           "t1 = time.perf_counter()\n"
           "summary.format_summary(stats)\n"
           "t2 = time.perf_counter()\n"
           "print(t1 - t0, t2 - t1)\n")


def run_json(cmd):
    out = subprocess.run(cmd, cwd=HERE, stdout=subprocess.PIPE, check=True,
                         universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def wall(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=HERE, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--query-bench")
    ap.add_argument("--summary-file", action="append", default=[])
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    builds = {"before": a.before, "after": a.after}
    res = {}

    def add(key, value):
        res.setdefault(key, []).append(value)

    for _ in range(a.rounds):
        for f in a.files:
            name = os.path.basename(f)
            for b, py in builds.items():
                t = run_json([py, "py_read.py", "time", f, "1"])["runs"][0]
                add((name, b, "read_bytes"), t["read_bytes"])
                add((name, b, "read+tree"), t["read_profile"] + t["get_tree"])
                m = run_json([py, "py_read.py", "mem", f])
                add((name, b, "peak_rss_of_file"),
                    (m["peak_kib"] * 1024.0) / os.path.getsize(f))
                for view in ("tree", "flat"):
                    add((name, b, "vmprofshow " + view),
                        wall([py, "-m", "vmprof.show", f, view]))
        for f in a.summary_file:
            name = os.path.basename(f)
            for b, py in builds.items():
                out = subprocess.run([py, "-c", SUMMARY, f], cwd=HERE, stdout=subprocess.PIPE,
                                     check=True, universal_newlines=True).stdout.split()
                add((name, b, "summary read+format"), float(out[0]) + float(out[1]))
    rows = sorted({(k[0], k[2]) for k in res})
    print("%-28s %-22s %12s %12s %8s" % ("file", "measure", "before", "after", "ratio"))
    for name, what in rows:
        bef = statistics.median(res[(name, "before", what)])
        aft = statistics.median(res[(name, "after", what)])
        print("%-28s %-22s %12.4f %12.4f %8.2f" % (name, what, bef, aft, aft / bef if bef else 0))
    for f in a.files:
        name = os.path.basename(f)
        for b in builds:
            rb = statistics.median(res[(name, b, "read_bytes")])
            rt = statistics.median(res[(name, b, "read+tree")])
            print("%s %s: read+tree / read bytes = %.2fx" % (name, b, rt / rb))
    if a.query_bench:
        for f in a.files:
            print(json.dumps(run_json([a.query_bench, f, f, "7"])))
    print("load:", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    sys.exit(main())
