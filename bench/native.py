"""Native mode's own costs, ours against a baseline build, in one run.

    python bench/native.py --baseline DIR [--rounds 5] [--seconds 1.5] [--period S] [--clock cpu|wall]

DIR is a `pip install --target` of the build to compare with (bench/native.sh
makes one from a git commit).  Every measurement runs in a fresh process of
this interpreter, rounds interleaved (ours, baseline, ours, ...), and the
tables give medians:

- per sample at 10 kHz (--period) on the CPU clock (--clock): the workload thread's extra CPU time
  (where the signal handler runs) per sample, native mode minus Python-only
  mode, and the whole process's (sampler and writer threads too);
- disable() in native mode: the CPU time and wall time of the call (the
  writer names the native functions then), ours with an empty and with a
  warm name cache.

The workload is the generator-heavy code of tests/python/test_native_order.py
(sum and join over generator expressions, sorted with a key), run for a fixed
number of iterations so that every mode does the same work.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r'''
import json, os, resource, sys, tempfile, time
mode, period, iters, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
real_time = sys.argv[5] == "wall"
import vmprof

def gen_sum(n):
    return sum(x * x for x in range(n))

def gen_join(n):
    return ",".join(str(x) for x in range(n))

def sort_key(data):
    return sorted(data, key=lambda v: -v)

def work(iters):
    data = list(range(300))
    for _ in range(iters):
        gen_sum(300)
        gen_join(100)
        sort_key(data)

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

work(20)  # warm the interpreter's caches before measuring
f = tempfile.NamedTemporaryFile(suffix=".prof", delete=False)
if mode != "none":
    vmprof.enable(f.fileno(), period=period, native=(mode == "native"), real_time=real_time)
t0, p0 = time.thread_time(), cpu()
work(iters)
t1, p1 = time.thread_time(), cpu()
res = {"thread_s": t1 - t0, "process_s": p1 - p0}
if mode != "none":
    w0, c0 = time.perf_counter(), cpu()
    vmprof.disable()
    res["disable_wall_ms"] = (time.perf_counter() - w0) * 1e3
    res["disable_cpu_ms"] = (cpu() - c0) * 1e3
    f.close()
    res["samples"] = len(vmprof.read_profile(f.name).profiles)
os.unlink(f.name)
with open(out, "w") as o:
    json.dump(res, o)
'''


CLOCK = "cpu"


def run(site, mode, period, iters, cache_dir):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if site:
        env["PYTHONPATH"] = site
    env["VMPROF_CACHE_DIR"] = cache_dir
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-c", CHILD, mode, str(period), str(iters), out.name, CLOCK],
                       env=env, check=True, cwd="/")
        with open(out.name) as f:
            return json.load(f)


def iterations_for(seconds):
    r = run(None, "none", 0, 200, "")
    return max(200, int(200 * seconds / max(r["thread_s"], 1e-3)))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="site dir of the build to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--period", type=float, default=0.0001)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="the sampling clock (wall: real_time=True)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = args.clock
    iters = iterations_for(args.seconds)
    builds = {"ours": None, "baseline": os.path.abspath(args.baseline)}
    got = {(b, m): [] for b in builds for m in ("none", "python", "native", "native-warm")}
    with tempfile.TemporaryDirectory() as cache:
        for r in range(args.rounds):
            for b, site in builds.items():
                got[(b, "none")].append(run(site, "none", 0, iters, ""))
                got[(b, "python")].append(run(site, "python", args.period, iters, ""))
                # An empty name cache each round (cold), then the same again (warm).
                cold = os.path.join(cache, "%s-%d" % (b, r))
                got[(b, "native")].append(run(site, "native", args.period, iters, cold))
                got[(b, "native-warm")].append(run(site, "native", args.period, iters, cold))
            print("round %d of %d done" % (r + 1, args.rounds), file=sys.stderr)

    def per_sample_us(b, mode, key):
        # Paired within each round: the extra over the run without profiling.
        xs = []
        for base, m in zip(got[(b, "none")], got[(b, mode)]):
            if m.get("samples"):
                xs.append((m[key] - base[key]) / m["samples"] * 1e6)
        return med(xs)

    print("%s clock, period %g s; iterations per run: %d (about %.1f s of the workload thread alone)"
          % (CLOCK, args.period, iters, med([x["thread_s"] for x in got[("ours", "none")]])))
    print()
    print("| build | samples | handler thread µs/sample, Python-only | native | native − Python-only "
          "| whole process µs/sample, Python-only | native | native − Python-only |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for b in builds:
        t_py, t_nat = per_sample_us(b, "python", "thread_s"), per_sample_us(b, "native", "thread_s")
        p_py, p_nat = per_sample_us(b, "python", "process_s"), per_sample_us(b, "native", "process_s")
        print("| %s | %d | %.2f | %.2f | **%.2f** | %.2f | %.2f | **%.2f** |"
              % (b, med([x["samples"] for x in got[(b, "native")]]), t_py, t_nat, t_nat - t_py,
                 p_py, p_nat, p_nat - p_py))
    print()
    print("| build | disable() native, CPU ms | wall ms | name cache warm: CPU ms | wall ms |")
    print("|---|---:|---:|---:|---:|")
    for b in builds:
        print("| %s | **%.1f** | %.1f | %.1f | %.1f |"
              % (b, med([x["disable_cpu_ms"] for x in got[(b, "native")]]),
                 med([x["disable_wall_ms"] for x in got[(b, "native")]]),
                 med([x["disable_cpu_ms"] for x in got[(b, "native-warm")]]),
                 med([x["disable_wall_ms"] for x in got[(b, "native-warm")]])))
    raw = os.path.join(HERE, "out", "native.json")
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "w") as f:
        json.dump({"%s/%s" % k: v for k, v in got.items()}, f)


if __name__ == "__main__":
    main()
