"""What the profiler costs the whole process, not only the sampled thread, and
how it copes with many threads (bench/process_workload.py runs each case).

Sections (all medians of --rounds runs; ratios against a run without
profiling in the same round):
  own      one Python thread computes for 3 s: the CPU time of the profiler's
           own threads (sampler, writer) as a share of a core, the achieved
           rate, and disable()'s CPU time
  pinned   the whole process pinned to one core (taskset -c 0), a fixed amount
           of work: its CPU time (user + system, every thread) against the
           same work unprofiled, paired round by round; beside the profiler,
           the floor: an empty handler delivered as the CPU clock delivers
           (each thread's own CPU-time event: the kernel's timer interrupt and
           signal per sample, which no sampler that samples in the thread
           avoids), and the profiler's cost beyond it per sample
  floors   the floor under each way to deliver a sample: an empty handler
           delivered by today's CPU clock and by three mechanisms the thread
           arms on itself (the perf event's O_ASYNC signal, perf's SIGTRAP, a
           CLOCK_MONOTONIC POSIX timer), alternating round by round with no
           signal inside one pinned process, at 1 and 10 kHz (pinned work a
           third of --work a round); then bench/signal_floor.c's table of
           every mechanism in C (the POSIX CPU-time timers too)
  pool     1,000 Python threads waiting on an Event, 16 C threads sleeping in
           a loop, one thread computing for 2 s: the profiler's threads' share
           of a core (until disable(), the sampler thread's alone, the
           sampler thread's from 0.5 s on (without its start), the writer's,
           and with their work in disable()), the busy thread's rate, the C threads'
           sleeps cut short; and the floor under the writer: a bare thread
           writing the wall clock's profile size to the same file, plainly
           and with its blocks allocated ahead (as the writer does on ext4)
           (a Python thread writing the whole profile, disable()'s part too:
           an upper bound); then, round by round, the wall clock's writer
           against a bare C thread that writes, the writer's way and in the
           same kind of process (1,000 waiting threads), the bytes the writer
           had written when its CPU time was read (the writer's own work is
           what its share exceeds that by)
  late     1,100 waiting threads, then a busy one started: its samples
  fast     threads that wait now and then, which keep the wall clock's sampler
           thread on short (1 ms) rounds: 4 Python threads computing together
           (each waits for the GIL), and one thread computing 3 ms then
           sleeping 7 ms; the profiler's threads' share of a core (the sampler
           thread's alone too) and the threads' rate

    python bench/process_bench.py [--rounds N] [--only own,pinned,floors,pool,late,fast]
        [--py 3.11] [--quick] [--configs REGEX] [--work N]

bench/run.sh builds the helper library (bench/out/libc_sleepers.so), and
bench/bench.py runs this as its `process` section; it also runs alone
(after bench/run.sh built the library once).
Raw results: bench/out/process-<utc time>.json.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
WORKLOAD = os.path.join(HERE, "process_workload.py")

# (label, extra argv, rate Hz, clock); --configs picks some by a regex
CONFIGS = [
    ("cpu 1 kHz", ["--period", "0.001"], 1000, "cpu"),
    ("cpu 1 kHz native", ["--period", "0.001", "--native", "on"], 1000, "cpu"),
    ("wall 1 kHz", ["--period", "0.001", "--real-time"], 1000, "wall"),
    ("cpu 10 kHz", ["--period", "0.0001"], 10000, "cpu"),
    ("cpu 10 kHz native", ["--period", "0.0001", "--native", "on"], 10000, "cpu"),
    ("wall 10 kHz", ["--period", "0.0001", "--real-time"], 10000, "wall"),
]
# ... and the wall clock with native frames too, in the `own` section only
OWN_CONFIGS = CONFIGS + [
    ("wall 1 kHz native", ["--period", "0.001", "--real-time", "--native", "on"], 1000, "wall"),
    ("wall 10 kHz native", ["--period", "0.0001", "--real-time", "--native", "on"], 10000, "wall"),
]

# The floor of the pinned section: (label, extra argv, rate Hz), run with
# --tool empty-perf; a config of CONFIGS on the CPU clock is compared with the
# floor of its rate.
FLOORS = [
    ("empty perf 1 kHz", ["--period", "0.001"], 1000),
    ("empty perf 10 kHz", ["--period", "0.0001"], 10000),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "-" if x is None else spec % x


def table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    print("\n".join(["", "### " + title, "", line(header),
                     "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                    + [line(r) for r in rows]), flush=True)


class Runner:
    def __init__(self, args):
        self.py = args.ours_py
        self.tmp = tempfile.mkdtemp(prefix="vmprof-process-bench-")

    def run(self, scenario, extra, profile=True, pin=False, tool=None):
        """Runs one case; returns its record plus, when profiled, the samples
        per thread id of its profile.  tool: another --tool than vmprof
        (then not profiled)."""
        result = os.path.join(self.tmp, "result.json")
        prof = os.path.join(self.tmp, "p.prof")
        for f in (result, prof):
            if os.path.exists(f):
                os.unlink(f)
        # The disk's work left by the run before (a wall-clock pool run writes
        # ~150 MiB) is done first: while the kernel writes it back, the next
        # run's writes cost its writer several times as much CPU (measured:
        # 160 ms against 700 ms for the same profile)
        os.sync()
        cmd = [self.py, WORKLOAD, scenario, "--result", result] + extra
        if profile:
            cmd += ["--tool", "vmprof", "--profile", prof]
        elif tool:
            cmd += ["--tool", tool]
        if pin:
            cmd = ["taskset", "-c", "0"] + cmd
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.tmp)
        out, err = proc.communicate(timeout=300)
        status = proc.returncode
        if status != 0:
            raise RuntimeError("%s %s failed (%d): %s" % (scenario, " ".join(extra), status,
                                                          err.strip()[-600:]))
        with open(result) as f:
            rec = json.loads(f.read().strip().splitlines()[-1])
        if profile:
            rec["profile_bytes"] = os.path.getsize(prof)
            r = subprocess.run([self.py, os.path.join(HERE, "count_samples.py"), prof],
                               capture_output=True, text=True, cwd=HERE)
            if r.returncode != 0:
                raise RuntimeError("count_samples: " + r.stderr.strip()[-600:])
            rec.update(json.loads(r.stdout.strip().splitlines()[-1]))
            rec["busy_samples"] = rec["per_thread"].get(str(rec["busy_ident"]), 0)
        return rec


def busy_rate(rec, clock):
    if clock == "cpu":
        return rec["busy_samples"] / rec["busy_cpu"]
    return rec["busy_samples"] / rec["busy_lifetime"]


def section_own(runner, args, res):
    data = {c[0]: [] for c in OWN_CONFIGS}
    for rnd in range(args.rounds):
        for label, extra, hz, clock in OWN_CONFIGS:
            data[label].append(runner.run("busy", extra + ["--seconds", str(args.seconds)]))
        log("own: round %d/%d" % (rnd + 1, args.rounds))
    rows = []
    for label, extra, hz, clock in OWN_CONFIGS:
        recs = data[label]
        rows.append([label,
                     fmt(median([100 * r["profiler_cpu"] / r["wall"] for r in recs]), "%.1f%%"),
                     fmt(median([busy_rate(r, clock) for r in recs]), "%.0f Hz"),
                     fmt(median([1000 * r["disable_cpu"] for r in recs]), "%.0f ms"),
                     fmt(median([1000 * r["disable_wall"] for r in recs]), "%.0f ms")])
    res["own"] = data
    table("Profiler threads while one Python thread computes for %g s (medians of %d)"
          % (args.seconds, args.rounds),
          ["config", "profiler threads, share of a core (goal 1 kHz <= 1%, native <= 2%, "
           "10 kHz <= 5%)", "rate", "disable() CPU", "disable() wall"], rows)


def floor_of(hz, clock):
    return next((f[0] for f in FLOORS if f[2] == hz), None) if clock == "cpu" else None


def section_pinned(runner, args, res):
    work = ["--work", str(args.work)]
    configs = [c for c in CONFIGS if args.configs.search(c[0])]
    floors = [f for f in FLOORS if any(floor_of(c[2], c[3]) == f[0] for c in configs)]
    data = {c[0]: [] for c in configs + floors}
    base = []
    for rnd in range(args.rounds):
        b0 = runner.run("busy", work, False, True)
        group = [(f[0], runner.run("busy", f[1] + work, False, True, "empty-perf")) for f in floors]
        group += [(c[0], runner.run("busy", c[1] + work, True, True)) for c in configs]
        b1 = runner.run("busy", work, False, True)
        bc = (b0["process_cpu"] + b1["process_cpu"]) / 2
        base.append(bc)
        floor_cpu = {}
        for label, rec in group:
            rec["base_cpu"] = bc
            rec["extra"] = rec["process_cpu"] / bc - 1
            data[label].append(rec)
            floor_cpu[label] = rec["process_cpu"]
        for label, extra, hz, clock in configs:
            rec, f = data[label][-1], floor_of(hz, clock)
            if f:
                # CPU beyond the floor's in the same round, per sample
                rec["beyond_floor_us"] = (rec["process_cpu"] - floor_cpu[f]) / rec["samples"] * 1e6
        log("pinned: round %d/%d (load %s)" % (rnd + 1, args.rounds, load_now()))
    rows = []
    for label, extra, hz in floors:
        recs = data[label]
        rows.append([label, fmt(median([100 * r["extra"] for r in recs]), "%+.1f%%"),
                     fmt(median([r["signals"] / r["busy_cpu"] for r in recs]), "%.0f Hz"),
                     fmt(median([1e6 * (r["process_cpu"] - r["base_cpu"]) / r["signals"]
                                 for r in recs]), "%.1f us"), "-"])
    for label, extra, hz, clock in configs:
        recs = data[label]
        rows.append([label, fmt(median([100 * r["extra"] for r in recs]), "%+.1f%%"),
                     fmt(median([busy_rate(r, clock) for r in recs]), "%.0f Hz"),
                     fmt(median([1e6 * (r["process_cpu"] - r["base_cpu"]) / r["samples"]
                                 for r in recs]), "%.1f us"),
                     fmt(median([r.get("beyond_floor_us") for r in recs]), "%.1f us")])
    res["pinned"] = {"base": base, "data": data}
    table("Whole process pinned to one core (taskset -c 0): CPU time against unprofiled, "
          "paired (baseline %.2f s; medians of %d)" % (median(base), args.rounds),
          ["config", "process CPU (goal 1 kHz <= +3%, 10 kHz <= +15%)", "rate",
           "CPU per sample (signal)", "beyond the empty handler per sample"], rows)
    # (today's delivery and its parts; the floors section has every mechanism)
    res["pinned"]["c_floor"] = c_floor(args, floors, "timer,signal,signal+clock,sigtrap")


# The floors section: process_workload.py's floors scenario's deliveries
CANDIDATES = [
    ("today", "today's: the helper's rounds + each thread's perf event, O_ASYNC signal"),
    ("signal", "the same event armed by the thread itself, O_ASYNC signal"),
    ("sigtrap", "the same event, perf's SIGTRAP (attr.sigtrap)"),
    ("posix", "POSIX timer, CLOCK_MONOTONIC, SIGEV_THREAD_ID"),
]


def section_floors(runner, args, res):
    """The deliveries alternating inside one pinned process per rate (the
    floors scenario), each round's against that round's run with none."""
    rows, out = [], {}
    for hz in (1000, 10000):
        rec = runner.run("floors", ["--period", str(1.0 / hz), "--work", str(args.work // 3),
                                    "--rounds", str(max(args.rounds, 5))], False, True)
        fl = rec["floors"]
        out[hz] = fl
        none = [x["cpu"] for x in fl["none"]]
        for name, label in CANDIDATES:
            recs = fl[name]
            rows.append(["%d kHz" % (hz // 1000), label,
                         fmt(median([100 * (x["cpu"] / b - 1) for x, b in zip(recs, none)]), "%+.1f%%"),
                         fmt(median([x["signals"] / x["cpu"] for x in recs]), "%.0f Hz"),
                         fmt(median([1e6 * (x["cpu"] - b) / x["signals"]
                                     for x, b in zip(recs, none) if x["signals"]]), "%.1f us")])
        log("floors: %d Hz done (load %s)" % (hz, load_now()))
    res["floors"] = out
    table("An empty handler, each delivery, alternating in one process pinned to one core: "
          "CPU time against none in the same round (%s: medians of %d)"
          % (rec.get("python", "?"), max(args.rounds, 5)),
          ["rate", "delivery", "process CPU", "signals a second of CPU", "CPU per signal"], rows)
    res["floors_c"] = c_floor(args, [(None, None, 1000), (None, None, 10000)])


def c_floor(args, floors, modes=None):
    """The kernel's cost per sample in C (bench/signal_floor.c, pinned), at
    the floors' rates: printed as it comes, returned as text."""
    exe = os.path.join(OUT, "signal_floor")
    if not os.path.exists(exe):
        log("pinned: %s missing (bench/run.sh builds it): no C floor" % exe)
        return None
    texts = []
    for label, extra, hz in floors:
        r = subprocess.run(["taskset", "-c", "0", exe, "--period", str(10**9 // hz),
                            "--rounds", str(args.rounds), "--work", str(args.work * 10000)]
                           + (["--modes", modes] if modes else []),
                           capture_output=True, text=True, timeout=1800)
        texts.append(r.stdout + r.stderr)
        print("\n" + texts[-1].strip(), flush=True)
    return texts


def load_now():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def section_pool(runner, args, res):
    extra = ["--idle", str(args.idle), "--c-idle", "16", "--seconds", "2"]
    # (profiled runs also read the profiler threads' CPU time 0.5 s in: the
    # sampler thread's share after its start and first visits, below)
    mark = ["--mark", "0.5"]
    cfgs = [c for c in CONFIGS if c[0] in ("cpu 1 kHz", "wall 1 kHz")]
    data = {c[0]: [] for c in cfgs}
    c_floor = []

    def floor_run(written):
        # The floor under a round's writer: a bare C thread writing, in the
        # same kind of process among the same threads and the writer's way,
        # the bytes the writer had written when its CPU time was read (the
        # rest goes out in disable())
        c_floor.append(runner.run("pool", extra + ["--bytes", str(written), "--profile",
                                                   os.path.join(runner.tmp, "p.prof")],
                                  False, tool="c-writer"))

    for rnd in range(args.rounds):
        for label, cextra, hz, clock in cfgs:
            # (every other round the floor goes first, with the last
            # round's bytes: a run right after one that wrote ~150 MiB gets
            # the pages just freed, cheaper to write into than pages the
            # host took back, so neither side always has them)
            walls = data.get("wall 1 kHz", [])
            if label == "wall 1 kHz" and rnd % 2 and walls:
                floor_run(walls[-1]["profile_bytes_before_disable"])
            data[label].append(runner.run("pool", cextra + extra + mark))
            if label == "wall 1 kHz" and not rnd % 2:
                floor_run(data[label][-1]["profile_bytes_before_disable"])
        log("pool: round %d/%d" % (rnd + 1, args.rounds))
    rows = []
    for label, cextra, hz, clock in cfgs:
        recs = data[label]
        rows.append([label,
                     fmt(median([100 * r["profiler_cpu"] / r["wall"] for r in recs]), "%.1f%%"),
                     fmt(median([100 * r["profiler_cpu_each"][-1] / r["wall"] for r in recs]), "%.1f%%"),
                     fmt(median([100 * r["profiler_cpu_each_since_mark"][-1] / (r["wall"] - r["mark"])
                                 for r in recs if "mark" in r]), "%.1f%%"),
                     fmt(median([100 * r["profiler_cpu_each"][0] / r["wall"] for r in recs]), "%.1f%%"),
                     fmt(median([100 * r["profiler_cpu_through_disable"] / r["wall"] for r in recs]),
                         "%.1f%%"),
                     fmt(median([busy_rate(r, clock) / hz * 100 for r in recs]), "%.0f%%"),
                     fmt(median([r["c_sleeps_cut_short"] for r in recs]), "%d"),
                     fmt(median([r["samples"] for r in recs]), "%d"),
                     fmt(median([r.get("repeated") for r in recs]), "%d")])
    # The floor under the writer: the same bytes written to the same file
    # at the same pace by a bare thread
    # (and the same with the blocks allocated ahead, as the writer does on
    # ext4; the two alternate round by round)
    wall = [r["profile_bytes"] for r in data.get("wall 1 kHz", [])]
    if wall:
        floor, ahead = [], []
        for _ in range(args.rounds):
            for out, more in ((floor, []), (ahead, ["--allocate-ahead"])):
                out.append(runner.run("write", ["--bytes", str(int(median(wall))), "--seconds", "2",
                                                "--profile", os.path.join(runner.tmp, "p.prof")] + more,
                                      False))
        res["pool_write_floor"] = floor
        res["pool_write_floor_ahead"] = ahead
        for what, recs in (("the same way", floor), ("... its blocks allocated ahead", ahead)):
            rows.append(["floor: a bare thread writes the wall clock's %.0f MiB %s"
                         % (median(wall) / 2**20, what),
                         fmt(median([100 * r["profiler_cpu"] / r["wall"] for r in recs]), "%.1f%%"),
                         "-", "-", "-", "-", "-", "-", "-", "-"])
    res["pool"] = data
    table("%d waiting Python threads + 16 sleeping C threads + one busy thread for 2 s "
          "(medians of %d)" % (args.idle, args.rounds),
          ["config", "profiler threads, share of a core (goal <= 3%)", "of it the sampler thread",
           "... the sampler thread from 0.5 s on (its start and first visits left out)",
           "of it the writer",
           "... counting their work in disable() too",
           "busy thread's rate / asked (goal >= 90%)",
           "C threads' sleeps cut short (2 s x 16 threads x 10/s = 320 sleeps)",
           "samples", "of them repeated"], rows)
    res["pool_writer_c_floor"] = c_floor
    if c_floor:
        walls = data["wall 1 kHz"][:len(c_floor)]
        writer = [100 * r["profiler_cpu_each"][0] / r["wall"] for r in walls]
        floor = [100 * r["profiler_cpu"] / r["wall"] for r in c_floor]
        table("The wall clock's writer (1 kHz) against a bare C thread writing the same bytes "
              "its way in the same process (medians of %d; ratio: the median of same-round pairs)"
              % len(c_floor),
              ["bytes written before disable()", "the writer, share of a core",
               "the C thread", "writer / C thread"],
              [[fmt(median([r["profile_bytes_before_disable"] for r in walls]) / 2**20, "%.0f MiB"),
                fmt(median(writer), "%.2f%%"), fmt(median(floor), "%.2f%%"),
                fmt(median([w / f for w, f in zip(writer, floor) if f]), "%.2f")]])


def section_late(runner, args, res):
    extra = ["--idle", str(args.late_idle), "--seconds", "1"]
    cfgs = [c for c in CONFIGS if c[0] in ("cpu 1 kHz", "wall 1 kHz")]
    rows = []
    res["late"] = {}
    for label, cextra, hz, clock in cfgs:
        recs = [runner.run("late", cextra + extra) for _ in range(max(1, args.rounds // 2))]
        res["late"][label] = recs
        rows.append([label, fmt(median([r["process_threads"] for r in recs]), "%d"),
                     fmt(median([busy_rate(r, clock) / hz * 100 for r in recs]), "%.0f%%"),
                     fmt(median([r.get("threads_not_sampled", 0) for r in recs]), "%d")])
    table("A thread started after %d others (medians)" % args.late_idle,
          ["config", "threads in the process", "its rate / asked",
           "META threads_not_sampled"], rows)


# (label, scenario, extra argv) of the `fast` section
FAST_CASES = [
    ("4 threads sharing the GIL", "gil", ["--threads", "4"]),
    ("one thread: 3 ms compute, 7 ms sleep", "alternate", ["--run-ms", "3", "--sleep-ms", "7"]),
]


def workers_rate(rec, clock):
    """The median over the workload's threads of samples / (CPU time on the
    CPU clock, lifetime on the wall clock)."""
    rates = []
    for w in rec["workers"]:
        n = rec["per_thread"].get(str(w["ident"]), 0)
        rates.append(n / (w["cpu"] if clock == "cpu" else w["lifetime"]))
    return median(rates)


def section_fast(runner, args, res):
    cfgs = [c for c in CONFIGS if c[0] in ("cpu 1 kHz", "wall 1 kHz", "wall 10 kHz")]
    data = {(case[0], c[0]): [] for case in FAST_CASES for c in cfgs}
    for rnd in range(args.rounds):
        for label, scenario, sextra in FAST_CASES:
            for clabel, cextra, hz, clock in cfgs:
                data[(label, clabel)].append(
                    runner.run(scenario, cextra + sextra + ["--seconds", str(args.seconds)]))
        log("fast: round %d/%d (load %s)" % (rnd + 1, args.rounds, load_now()))
    rows = []
    for label, scenario, sextra in FAST_CASES:
        for clabel, cextra, hz, clock in cfgs:
            recs = data[(label, clabel)]
            rows.append([label, clabel,
                         fmt(median([100 * r["profiler_cpu"] / r["wall"] for r in recs]), "%.1f%%"),
                         fmt(median([100 * r["profiler_cpu_each"][-1] / r["wall"] for r in recs]),
                             "%.1f%%"),
                         fmt(median([workers_rate(r, clock) / hz * 100 for r in recs]), "%.0f%%")])
    res["fast"] = {"%s / %s" % k: v for k, v in data.items()}
    table("Threads that wait now and then, for %g s (medians of %d)" % (args.seconds, args.rounds),
          ["workload", "config", "profiler threads, share of a core",
           "of it the sampler thread", "threads' rate / asked"], rows)


SECTIONS = (("own", section_own), ("pinned", section_pinned), ("floors", section_floors),
            ("pool", section_pool),
            ("late", section_late), ("fast", section_fast))


def bench_process(ours_py, rounds, quick, res, only=None, configs=".", work=30000):
    """Every section (or those in `only`) into res["process"]; bench/bench.py
    calls this as its `process` section."""
    args = argparse.Namespace(ours_py=ours_py, rounds=rounds, seconds=3.0, work=work,
                              idle=1000, late_idle=1100, configs=re.compile(configs))
    if quick:
        args.rounds, args.seconds, args.work = min(rounds, 2), 1.0, 10000
    runner = Runner(args)
    out = res.setdefault("process", {})
    for name, fn in SECTIONS:
        if only is None or name in only:
            fn(runner, args, out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="own,pinned,pool,late,fast")
    ap.add_argument("--py", default=os.environ.get("BENCH_PY", "3.11"))
    ap.add_argument("--ours-python")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--configs", default=".", help="pinned: only the configs whose label matches")
    ap.add_argument("--work", type=int, default=30000, help="pinned: rounds of fib(15)")
    args = ap.parse_args(argv)
    # absolute: the workloads run in a temporary folder
    args.ours_py = os.path.abspath(args.ours_python or
                                   os.path.join(ROOT, ".venv", args.py, "bin", "python"))
    os.makedirs(OUT, exist_ok=True)
    # the C parts of the baselines, built and copied here by bench/run.sh
    missing = [name for name in ("libempty_signal.so", "libc_sleepers.so", "signal_floor")
               if not os.path.exists(os.path.join(OUT, name))]
    if missing:
        raise SystemExit("process bench: bench/out/ lacks %s; build them with `scripts/build.sh "
                         "bench -Dextension=false -Dbench=true && cp build/bench/%s bench/out/` "
                         "(bench/run.sh does it)" % (", ".join(missing), "{" + ",".join(missing) + "}"
                                                    if len(missing) > 1 else missing[0]))
    from bench import run_facts
    commit, stamp, load = run_facts()
    res = {"date": stamp, "commit": commit, "load_before": load, "rounds": args.rounds}
    print("vmprof process bench, %s, commit %s, load average before %s"
          % (stamp, commit, " ".join(load)))
    t0 = time.time()
    try:
        bench_process(args.ours_py, args.rounds, args.quick, res, args.only.split(","),
                      args.configs, args.work)
    finally:
        with open("/proc/loadavg") as f:
            res["load_after"] = f.read().split()[:3]
        path = os.path.join(OUT, "process-%s.json" % stamp.replace(":", ""))
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        print("\n%.0f s; load average after %s; raw results: %s"
              % (time.time() - t0, " ".join(res["load_after"]), os.path.relpath(path, ROOT)))


if __name__ == "__main__":
    main()
