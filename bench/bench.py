"""The benchmark harness: runs every measurement in one go and prints tables.
bench/run.sh builds the helpers and the venvs, then calls this.

Every figure is a median over several runs, and every ratio is taken against
a baseline measured in the same run (reading the file's bytes; the workload
without profiling, paired round by round).  Raw results go to
bench/out/results-<utc time>.json.

Sections:
  reader    a million-sample profile: read bytes / C decode (+ tree) /
            vmprof.read_profile().get_tree() / the original vmprof's reader
  sampler   CPU-bound workloads under ours (1 and 10 kHz, both clocks), an
            empty signal handler, the original vmprof, py-spy, austin,
            pyinstrument and cProfile
            and, when the sampler supports it, native mode beside Python-only
  export    each export format of the million-sample profile beside decoding
  pypy      the reading path under pypy3 through the extension (cpyext)
            against a cffi binding; see bench_bindings.py
  jitlog    a 110 MB PyPy JIT log: read bytes / our C decoder / our and the
            original parse_jitlog (CPython and PyPy); see bench_jitlog.py
  server    vmprof-server: upload + freeze of the million-sample profile beside
            its C decode, the first tree, wrk on the tree and on a list of
            10,000 runs, RSS against the cache size; see bench_server.py
  jitlog-server  vmprof-server with that JIT log: upload (decoded on arrival)
            against the C decoder, the trace list (goal < 100 ms), a trace, a
            restart; see bench_jitlog_server.py
  process   what the profiler costs the whole process, and many threads
            (bench/process_bench.py)
"""
import argparse
import datetime
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
VENV = os.path.join(ROOT, ".venv")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_json(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd[:3]), r.returncode,
                                                   r.stderr.strip()[-600:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_polled(cmd, **kw):
    """run_json, watching the child's /proc/PID/statm every millisecond: adds
    peak_anon_kib, the highest private (non-file-backed) resident memory seen.
    ru_maxrss alone would count the pages of a memory-mapped input file,
    which belong to the page cache."""
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    peak = 0
    statm = "/proc/%d/statm" % proc.pid
    while proc.poll() is None:
        try:
            with open(statm) as f:
                fields = f.read().split()
            peak = max(peak, (int(fields[1]) - int(fields[2])) * page_kib)
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.001)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd[:3]), proc.returncode,
                                                   err.strip()[-600:]))
    rec = json.loads(out.strip().splitlines()[-1])
    rec["peak_anon_kib"] = peak
    return rec


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="%.3f", none="-"):
    return none if x is None else spec % x


def table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["", "### " + title, ""]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    lines.append(line(header))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [line(r) for r in rows]
    print("\n".join(lines), flush=True)


def has_vmprof_api(py, attr):
    """Whether the vmprof that py imports (from bench/, so never the source
    tree) has attr."""
    if not os.path.exists(py):
        return False
    r = subprocess.run([py, "-c", "import vmprof, sys; sys.exit(0 if hasattr(vmprof, %r) "
                        "else 1)" % attr], cwd=HERE, capture_output=True)
    return r.returncode == 0


# ---- reader -----------------------------------------------------------------

def big_profile(args, section):
    """The profile of args.samples samples the sections read (made once by
    out/gen_profile, deterministic)."""
    path = os.path.join(OUT, "big-%d.prof" % args.samples)
    if not os.path.exists(path):
        log("%s: generating %s" % (section, path))
        subprocess.run([os.path.join(OUT, "gen_profile"), path + ".tmp", str(args.samples)],
                       check=True)
        os.rename(path + ".tmp", path)
    return path


def bench_reader(args, res):
    path = big_profile(args, "reader")
    size = os.path.getsize(path)
    res["reader"] = r = {"file": path, "file_bytes": size, "samples": args.samples}
    c_bench = os.path.join(OUT, "read_bench")
    rows = []
    base = None
    if os.path.exists(c_bench):
        log("reader: C decode, %d runs" % args.runs)
        r["c"] = run_json([c_bench, "time", path, str(args.runs)])
        r["c_mem"] = run_polled([c_bench, "mem", path])
        runs = r["c"]["runs"]
        base = median([x["read_bytes"] for x in runs])
        rows.append(("read() the bytes (C, warm cache)", base, None))
        rows.append(("C decode", median([x["decode"] for x in runs]), None))
        rows.append(("C decode + call tree", median([x["decode"] + x["tree"] for x in runs]),
                     r["c_mem"]))
    if has_vmprof_api(args.ours_py, "read_profile"):
        log("reader: ours from Python, %d runs" % args.runs)
        r["ours"] = run_json([args.ours_py, "py_read.py", "time", path, str(args.runs)], cwd=HERE)
        r["ours_mem"] = run_polled([args.ours_py, "py_read.py", "mem", path], cwd=HERE)
        runs = r["ours"]["runs"]
        if base is None:
            base = median([x["read_bytes"] for x in runs])
            rows.append(("read the bytes (Python readinto)", base, None))
        rows.append(("ours: read_profile()", median([x["read_profile"] for x in runs]), None))
        rows.append(("ours: read_profile().get_tree()",
                     median([x["read_profile"] + x["get_tree"] for x in runs]), r["ours_mem"]))
    else:
        log("reader: vmprof.read_profile not in %s yet; skipping ours" % args.ours_py)
    if os.path.exists(args.orig_py):
        log("reader: the original vmprof, %d runs (slow)" % args.orig_runs)
        # Its memory is watched during the timed runs (a separate run would
        # take another minute); the read-bytes buffer is taken off below.
        r["orig"] = run_polled([args.orig_py, "py_read.py", "time", path, str(args.orig_runs)],
                               cwd=HERE)
        r["orig_mem"] = r["orig"]
        runs = r["orig"]["runs"]
        if base is None:
            base = median([x["read_bytes"] for x in runs])
            rows.append(("read the bytes (Python readinto)", base, None))
        rows.append(("original vmprof: read_profile().get_tree()",
                     median([x["read_profile"] + x["get_tree"] for x in runs]), r["orig_mem"]))
    r["rows"] = []
    out = []
    for name, t, mem in rows:
        extra = mem.get("buffer_kib", 0) if mem else 0
        peak = (mem["peak_kib"] - mem["rss_before_kib"] - extra) * 1024 if mem else None
        anon = (mem["peak_anon_kib"] - mem["anon_before_kib"] - extra) * 1024 if mem else None
        r["rows"].append({"name": name, "seconds": t, "peak_rss_delta_bytes": peak,
                          "peak_private_delta_bytes": anon})
        mib = lambda x: fmt(x / 2**20 if x is not None else None, "%.0f MiB")
        ratio = lambda x: fmt(x / size if x is not None else None, "%.2f")
        out.append((name, fmt(t, "%.3f s"), fmt(args.samples / t / 1e6, "%.2f M/s"),
                    fmt(t / base, "%.2fx"), mib(peak), ratio(peak), mib(anon), ratio(anon)))
    table("Reader: %d samples, %.0f MiB file, medians of %d runs (original: %d)"
          % (args.samples, size / 2**20, args.runs, args.orig_runs),
          ["", "time", "samples/s", "vs read bytes (goal <= 3x)", "peak RSS delta",
           "/ file size", "peak private delta", "/ file size (goal << 1)"], out)
    print("(RSS counts the pages of a memory-mapped input file, which are the page "
          "cache's; 'private' excludes file-backed pages.)")


# ---- sampler ----------------------------------------------------------------

WORKLOADS = ["recursion", "loops", "objects", "threads", "idle"]
# The medians and per-sample costs are over these; "idle" (recursion beside 16
# waiting threads) is run by the wall-clock tools only, where idle threads
# are owed samples.
CPU_BOUND = ["recursion", "loops", "objects", "threads"]


def runs_workload(cfg, workload):
    return workload in CPU_BOUND or cfg[5] == "wall"


def native_supported(py):
    """Whether our sampler accepts native=True on this interpreter."""
    code = ("import os, tempfile, vmprof\n"
            "fd, path = tempfile.mkstemp()\n"
            "try:\n"
            "    vmprof.enable(fd, period=0.01, native=True)\n"
            "    vmprof.disable()\n"
            "finally:\n"
            "    os.close(fd); os.unlink(path)\n")
    r = subprocess.run([py, "-c", code], cwd=HERE, capture_output=True)
    return r.returncode == 0


def sampler_configs(args):
    """(label, kind, interpreter, argv after the workload, rate Hz, clock)."""
    ours, orig, peers = args.ours_py, args.orig_py, args.peers_bin
    py_peers = os.path.join(peers, "python")
    have_ours = has_vmprof_api(ours, "enable")
    have_native = have_ours and native_supported(ours)
    if have_ours and not have_native:
        log("sampler: native=True is not supported yet; no native rows")
    cfgs = []
    for hz in (1000, 10000):
        p = "%g" % (1.0 / hz)
        if have_ours:
            cfgs.append(("ours cpu %s" % khz(hz), "ours", ours,
                         ["--tool", "vmprof", "--period", p, "--native", "off"], hz, "cpu"))
            cfgs.append(("ours wall %s" % khz(hz), "ours", ours,
                         ["--tool", "vmprof", "--period", p, "--native", "off", "--real-time"],
                         hz, "wall"))
        if have_native:
            cfgs.append(("ours cpu %s native" % khz(hz), "ours", ours,
                         ["--tool", "vmprof", "--period", p, "--native", "on"], hz, "cpu"))
        cfgs.append(("empty signal, cpu delivery %s" % khz(hz), "empty", py_peers,
                     ["--tool", "empty-thread", "--period", p], hz, "cpu"))
        cfgs.append(("empty signal, wall delivery %s" % khz(hz), "empty", py_peers,
                     ["--tool", "empty-all", "--period", p, "--real-time"], hz, "wall"))
        if hz == 1000:
            # the kernel tick bounds it (~250 Hz), so one rate says it all
            cfgs.append(("empty signal, setitimer asked %s" % khz(hz), "empty", py_peers,
                         ["--tool", "empty-timer", "--period", p], hz, "cpu"))
        if os.path.exists(orig):
            cfgs.append(("original vmprof %s" % khz(hz), "orig", orig,
                         ["--tool", "vmprof", "--period", p, "--native", "off"], hz, "cpu"))
            if hz == 1000 and have_native:
                cfgs.append(("original vmprof %s native" % khz(hz), "orig", orig,
                             ["--tool", "vmprof", "--period", p, "--native", "on"], hz, "cpu"))
        if os.path.exists(py_peers):
            cfgs.append(("pyinstrument %s" % khz(hz), "pyinstrument", py_peers,
                         ["--tool", "pyinstrument", "--period", p], hz, "wall"))
            cfgs.append(("py-spy record %s" % khz(hz), "py-spy", py_peers, [], hz, "wall"))
            cfgs.append(("py-spy record --nonblocking %s" % khz(hz), "py-spy-nb", py_peers, [],
                         hz, "wall"))
            cfgs.append(("austin %s" % khz(hz), "austin", py_peers, [], hz, "wall"))
    if os.path.exists(py_peers):
        cfgs.append(("cProfile (deterministic)", "cprofile", py_peers, ["--tool", "cprofile"],
                     None, None))
    return cfgs


def khz(hz):
    return "%g kHz" % (hz / 1000)


def wall_rate(samples, rec):
    """Samples per thread-second: each thread of the workload can be sampled
    only while it lives, and the workers of `threads` end at different
    times, so the denominator is the sum of the threads' own lifetimes."""
    return samples / sum(rec["lifetimes"].values())


def run_once(args, cfg, workload, tmp):
    label, kind, py, extra, hz, clock = cfg
    result = os.path.join(tmp, "result.json")
    prof = os.path.join(tmp, "p.prof")
    for f in (result, prof):
        if os.path.exists(f):
            os.unlink(f)
    cmd = [py, os.path.join(HERE, "workloads.py"), workload, "--result", result,
           "--scale", str(args.scale)] + extra
    if kind in ("ours", "orig"):
        cmd += ["--profile", prof]
    raw = os.path.join(tmp, "raw.txt")
    if kind in ("py-spy", "py-spy-nb"):
        cmd = [os.path.join(args.peers_bin, "py-spy"), "record", "-r", str(hz), "-f", "raw",
               "-o", raw] + (["--nonblocking"] if kind == "py-spy-nb" else []) + ["--"] + cmd
    elif kind == "austin":
        cmd = [os.path.join(args.peers_bin, "austin"), "-i", "%dus" % (1e6 / hz), "-o", raw] + cmd
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=120)
    proc_wall = time.perf_counter() - t0
    if r.returncode != 0 or not os.path.exists(result):
        raise RuntimeError("%s on %s failed (exit status %d%s): %s"
                           % (label, workload, r.returncode,
                              ", a crash" if r.returncode < 0 else "", r.stderr.strip()[-800:]))
    with open(result) as f:
        rec = json.loads(f.read().strip().splitlines()[-1])
    rec["proc_wall"] = proc_wall
    rate = None
    if kind in ("ours", "orig"):
        # The original's own reader for its files: vmprof 0.6 writes format
        # version 7 (a timestamp per sample), which ours does not read yet.
        counter = args.ours_py if kind == "ours" else args.orig_py
        c = run_json([counter, os.path.join(HERE, "count_samples.py"), prof], cwd=HERE)
        rec.update(c)
        if clock == "cpu":
            rate = c["samples"] / rec["thread_cpu"]
        else:
            rate = wall_rate(c["samples"], rec)
            # the thread that got the fewest, over its own lifetime
            per_thread = [n / rec["lifetimes"][t] for t, n in c["per_thread"].items()
                          if t in rec["lifetimes"]]
            rec["min_thread_rate"] = min(per_thread, default=None)
    elif kind == "empty":
        # CPU clock: per CPU-second of the workload's threads; wall clock:
        # per thread and second, as for ours
        if clock == "cpu":
            rate = rec["signals"] / rec["thread_cpu"]
        else:
            rate = wall_rate(rec["signals"], rec)
    elif kind == "pyinstrument":
        rate = rec["samples"] / rec["wall"]
    elif kind in ("py-spy", "py-spy-nb"):
        m = re.search(r"Samples: (\d+)", r.stdout + r.stderr)
        if m:
            rec["samples"] = int(m.group(1))
            rate = rec["samples"] / proc_wall
    elif kind == "austin":
        n = 0
        with open(raw, errors="replace") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    n += 1
        rec["samples"] = n
        rate = wall_rate(n, rec)
    rec["rate"] = rate
    return rec


def bench_sampler(args, res):
    key = "sampler"
    cfgs = [c for c in sampler_configs(args) if re.search(args.configs, c[0])]
    if not cfgs:
        log("%s: nothing to run (the sampler has not landed)" % key)
        return
    tmp = tempfile.mkdtemp(prefix="vmprof-bench-")
    base_cfg = ("none", "none", args.ours_py if has_vmprof_api(args.ours_py, "enable")
                else os.path.join(args.peers_bin, "python"), [], None, None)
    data = {c[0]: {w: [] for w in WORKLOADS} for c in cfgs}
    base = {w: [] for w in WORKLOADS}
    n_runs = args.runs * sum(2 + sum(1 for c in cfgs if runs_workload(c, w)) for w in WORKLOADS)
    log("%s: %d configurations x %d workloads x %d rounds = %d runs"
        % (key, len(cfgs), len(WORKLOADS), args.runs, n_runs))
    t_start = time.time()
    for rnd in range(args.runs):
        for w in WORKLOADS:
            # The baseline opens and closes each group; the tools are paired
            # with the mean of the two, which cancels slow drift in the load.
            b0 = run_once(args, base_cfg, w, tmp)
            group = []
            for c in cfgs:
                if not runs_workload(c, w):
                    continue
                try:
                    group.append((c, run_once(args, c, w, tmp)))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log("  %s" % e)
                    group.append((c, None))
            b1 = run_once(args, base_cfg, w, tmp)
            bw = (b0["wall"] + b1["wall"]) / 2
            bc = (b0["thread_cpu"] + b1["thread_cpu"]) / 2
            base[w].append({"wall": bw, "thread_cpu": bc, "b0": b0, "b1": b1})
            for c, rec in group:
                if rec is not None:
                    rec["slowdown"] = rec["wall"] / bw - 1
                    rec["cpu_slowdown"] = rec["thread_cpu"] / bc - 1
                    rec["base_wall"] = bw
                    rec["base_thread_cpu"] = bc
                data[c[0]][w].append(rec)
        log("  round %d/%d done, %.0f s" % (rnd + 1, args.runs, time.time() - t_start))
    res[key] = {"configs": [list(c[:2]) + [c[4], c[5]] for c in cfgs], "base": base,
                "data": data}

    # Per-sample cost: (time with the tool - paired baseline) / samples, by
    # wall time and by the CPU time of the workload's own threads.  The second
    # does not see other processes' load (the machine is shared), nor a tool's
    # helper thread running on the other core, nor an external sampler
    # stopping the process: it is the cost the signal handler adds.
    def cost_us(rec, what):
        if rec is None:
            return None
        n = rec.get("samples", rec.get("signals"))
        return (rec[what] - rec["base_" + what]) / n * 1e6 if n else None

    in_process = ("ours", "orig", "empty", "pyinstrument", "cprofile")
    rows, cpu_rows = [], []
    summary = {}
    for c in cfgs:
        label = c[0]
        cells, cpu_cells, all_sd, all_cd = [], [], [], []
        for w in WORKLOADS:
            recs = [x for x in data[label][w] if x is not None]
            sd = median([x["slowdown"] for x in recs])
            cd = median([x["cpu_slowdown"] for x in recs])
            rate = median([x["rate"] for x in recs])
            if w in CPU_BOUND:
                all_sd.append(sd)
                all_cd.append(cd)
            cell = "%s / %s" % (pct(sd), fmt(rate, "%.0f Hz"))
            slowest = median([x["min_thread_rate"] for x in recs if x.get("min_thread_rate")])
            if w in ("threads", "idle") and slowest is not None:
                cell += " (slowest thread %.0f Hz)" % slowest
            repeated = median([x["repeated"] / x["samples"] for x in recs
                               if x.get("repeated") is not None and x.get("samples")])
            if w == "idle" and repeated is not None:
                cell += ", %.0f%% without a signal" % (100 * repeated)
            if not data[label][w]:
                cell = "-"
            cells.append(cell)
            cpu_cells.append(pct(cd))
        recs = [x for w in WORKLOADS for x in data[label][w]]
        failed = sum(1 for x in recs if x is None)
        if failed:
            label = "%s (FAILED %d/%d runs)" % (label, failed, len(recs))
        cpu_bound = [x for w in CPU_BOUND for x in data[c[0]][w]]
        cu = median([cost_us(x, "wall") for x in cpu_bound]) if c[1] in in_process else None
        cc = median([cost_us(x, "thread_cpu") for x in cpu_bound]) if c[1] in in_process else None
        summary[c[0]] = {"failed_runs": failed, "median_slowdown": median(all_sd),
                         "median_cpu_slowdown": median(all_cd),
                         "cost_us_wall": cu, "cost_us_cpu": cc}
        rows.append([label] + cells + [pct(median(all_sd)), fmt(cu, "%.1f")])
        dropped = [x["dropped"] for x in recs if x is not None and "dropped" in x]
        summary[c[0]]["dropped"] = sum(dropped) if dropped else None
        if c[1] in in_process:
            cpu_rows.append([label] + cpu_cells + [pct(median(all_cd)), fmt(cc, "%.1f"),
                                                   str(sum(dropped)) if dropped else "-"])
    res[key]["summary"] = summary
    bases = ", ".join("%s %.2f s" % (w, median([b["wall"] for b in base[w]])) for w in WORKLOADS)
    title = ("Sampler: wall-clock slowdown (paired median of %d rounds) / achieved rate"
             % args.runs)
    table(title + "; baselines: " + bases,
          ["tool"] + WORKLOADS + ["median slowdown (CPU-bound four)", "µs/sample (wall)"], rows)
    table("In-process tools: slowdown of the workload threads' CPU time (insensitive to "
          "other processes' load)", ["tool"] + WORKLOADS + ["median", "µs/sample (CPU)",
                                                       "samples dropped (all runs)"],
          cpu_rows)

    # ours beyond an empty signal delivered the same way
    candidates = [("ours cpu %s", "empty signal, cpu delivery %s"),
                  ("ours wall %s", "empty signal, wall delivery %s"),
                  ("ours cpu %s native", "empty signal, cpu delivery %s")]
    pairs = []
    for hz in (1000, 10000):
        for o_fmt, e_fmt in candidates:
            o_label, e_label = o_fmt % khz(hz), e_fmt % khz(hz)
            if o_label not in summary or e_label not in summary:
                continue
            row = [o_label, e_label]
            for what in ("cost_us_wall", "cost_us_cpu"):
                o, e = summary[o_label][what], summary[e_label][what]
                row += [fmt(o, "%.1f"), fmt(e, "%.1f"),
                        fmt(o - e if o is not None and e is not None else None, "%.1f")]
            pairs.append(row)
    if pairs:
        res[key]["beyond_empty"] = pairs
        table("Per-sample cost beyond an empty signal delivered the same way (goals: "
              "<= 3 µs Python-only, <= 15 µs native)",
              ["ours", "empty handler", "ours µs (wall)", "empty µs (wall)", "beyond (wall)",
               "ours µs (CPU)", "empty µs (CPU)", "beyond (CPU)"], pairs)


def pct(x):
    return fmt(x * 100 if x is not None else None, "%+.1f%%")


# ---- exports ----------------------------------------------------------------

def bench_export(args, res):
    path = os.path.join(OUT, "big-%d.prof" % args.samples)
    if not os.path.exists(path):
        log("export: run the reader section first (it makes %s)" % path)
        return
    tmp = tempfile.mkdtemp(prefix="vmprof-bench-export-")
    log("export: every format, %d runs" % args.runs)
    r = run_json([os.path.join(OUT, "read_bench"), "export", path, str(args.runs), tmp])
    res["export"] = r
    runs = r["runs"]
    decode = median([x["decode"] for x in runs])
    formats = [k for k in runs[0] if k != "decode" and not k.endswith("_bytes")]
    rows = [["decode (the baseline)", fmt(decode, "%.3f s"), "1.00x", "-"]]
    for f in formats:
        t = median([x[f] for x in runs])
        rows.append([f, fmt(t, "%.3f s"), fmt(t / decode, "%.2fx"),
                     "%.1f MiB" % (runs[-1][f + "_bytes"] / 2**20)])
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)
    table("Exports of the %d-sample profile from C (medians of %d runs), beside decoding it"
          % (args.samples, args.runs), ["format", "time", "vs decode", "output size"], rows)


def run_facts():
    """What every bench run's header states: the commit measured, the time
    (UTC) and the load average before it."""
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return commit, stamp, load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smoke run: small, one or two rounds")
    ap.add_argument("--only", default="reader,sampler,export,pypy,jitlog,server,jitlog-server,process")
    ap.add_argument("--rounds", type=int, help="runs of each measurement (default 5, "
                    "quick 2; the original's reader: 5, quick 1)")
    ap.add_argument("--configs", default="", help="a regular expression: run only the "
                    "sampler configurations whose label matches")
    ap.add_argument("--py", default=os.environ.get("BENCH_PY", "3.11"))
    ap.add_argument("--ours-python", help="the interpreter with our vmprof installed "
                    "(default: .venv/PY/bin/python), e.g. to measure another build")
    args = ap.parse_args()
    args.ours_py = args.ours_python or os.path.join(VENV, args.py, "bin", "python")
    args.orig_py = os.path.join(VENV, "bench-orig", "bin", "python")
    args.peers_bin = os.path.join(VENV, "bench-peers", "bin")
    if args.quick:
        args.samples, args.runs, args.orig_runs, args.scale = 100000, 2, 1, 0.25
    else:
        args.samples, args.runs, args.orig_runs, args.scale = 1000000, 5, 5, 1.0
    args.runs = args.rounds or args.runs
    args.orig_runs = args.rounds or args.orig_runs
    os.makedirs(OUT, exist_ok=True)
    commit, stamp, load = run_facts()
    res = {"date": stamp, "commit": commit, "quick": args.quick, "load_before": load,
           "nproc": os.cpu_count()}
    print("vmprof bench, %s, commit %s, %s, load average before %s, %d cores"
          % (stamp, commit, "quick" if args.quick else "full", " ".join(load), os.cpu_count()))
    only = args.only.split(",")
    t0 = time.time()
    try:
        if "reader" in only:
            bench_reader(args, res)
        if "sampler" in only:
            bench_sampler(args, res)
        if "export" in only:
            bench_export(args, res)
        if "pypy" in only:
            from bench_bindings import bench_bindings
            bench_bindings(args, res)
        if "jitlog" in only:
            from bench_jitlog import bench_jitlog
            bench_jitlog(args, res)
        if "server" in only:
            from bench_server import bench_server
            bench_server(args, res)
        if "jitlog-server" in only:
            from bench_jitlog_server import bench_jitlog_server
            bench_jitlog_server(args, res)
        if "process" in only:
            import process_bench
            process_bench.bench_process(args.ours_py, args.runs, args.quick, res)
    finally:
        with open("/proc/loadavg") as f:
            res["load_after"] = f.read().split()[:3]
        res["seconds"] = time.time() - t0
        path = os.path.join(OUT, "results-%s.json" % stamp.replace(":", ""))
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        print("\n%.0f s; load average after %s; raw results: %s"
              % (res["seconds"], " ".join(res["load_after"]), os.path.relpath(path, ROOT)))


if __name__ == "__main__":
    main()
