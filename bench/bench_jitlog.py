"""The `jitlog` section of bench.py: decoding a large PyPy JIT log.

The log (110 MB; --quick 20 MB) is built by out/gen_jitlog from the upstream
PyPy log of calc.py, copy after copy with fresh ids (bench/gen_jitlog.c).
Measured in one run, medians of several:
  - read():  the file's bytes into a warm buffer (the floor), and into a new
             buffer (what any reader that keeps the bytes pays)
  - our C decoder (vjl_forest_read_file, and vjl_forest_map_file from a
    mapping of the file) and a query over the forest
  - parse_jitlog() of our jitlog package (CPython), and visiting every op
  - parse_jitlog() of the original jitlog (PyPI vmprof) under CPython and
    under PyPy, each in its own venv
Ratios are against read() and against our parse_jitlog in the same run.
Times are wall-clock and CPU: on a loaded machine the CPU time is the figure
other processes disturb least.
"""
import os
import subprocess

from bench import HERE, OUT, ROOT, VENV, fmt, log, median, run_json, table

SEED = os.path.join(ROOT, "tests", "data", "upstream", "profiles", "calc_pypy.jitlog")


def make_log(megabytes):
    path = os.path.join(OUT, "big-%dmb.jitlog" % megabytes)
    if not os.path.exists(path):
        log("jitlog: generating a %d MB JIT log" % megabytes)
        subprocess.run([os.path.join(OUT, "gen_jitlog"), SEED, path, str(megabytes)], check=True)
    return path


def py_runs(py, path, runs):
    if not os.path.exists(py):
        return None
    # from /tmp: neither the source tree nor bench/ may shadow the package
    return run_json([py, os.path.join(HERE, "py_jitlog.py"), path, str(runs)], cwd="/tmp")


def med(runs, key, i):
    return median([r[key][i] for r in runs])


def bench_jitlog(args, res):
    megabytes = 20 if args.quick else 110
    path = make_log(megabytes)
    size = os.path.getsize(path)
    runs = max(args.runs, 3)
    orig_runs = 1 if args.quick else 3
    log("jitlog: C decoder, %d runs" % runs)
    c = run_json([os.path.join(OUT, "jitlog_read_bench"), path, str(runs)])
    log("jitlog: our parse_jitlog, %d runs" % runs)
    ours = py_runs(args.ours_py, path, runs)
    log("jitlog: the original parser under CPython, %d runs" % orig_runs)
    orig_cpy = py_runs(os.path.join(VENV, "bench-orig", "bin", "python"), path, orig_runs)
    log("jitlog: the original parser under PyPy, %d runs" % orig_runs)
    orig_pypy = py_runs(os.path.join(VENV, "bench-orig-pypy", "bin", "python"), path, orig_runs)
    out = {"file_bytes": size, "c": c, "ours_python": ours, "orig_cpython": orig_cpy,
           "orig_pypy": orig_pypy}
    res["jitlog"] = out

    read_w, read_c = med(c["runs"], "read", 0), med(c["runs"], "read", 1)
    ours_parse = med(ours["runs"], "parse", 0) if ours else None
    ours_parse_c = med(ours["runs"], "parse", 1) if ours else None
    rows = []

    def row(name, w, cpu):
        rows.append([name, fmt(w), fmt(cpu), fmt(w / read_w if w else None, "%.2fx"),
                     fmt(cpu / read_c if cpu else None, "%.1fx"),
                     fmt(w / ours_parse if w and ours_parse else None, "%.1fx"),
                     fmt(cpu / ours_parse_c if cpu and ours_parse_c else None, "%.1fx")])
    row("read() into a warm buffer", read_w, read_c)
    row("read() into a new buffer", med(c["runs"], "read_fresh", 0),
        med(c["runs"], "read_fresh", 1))
    row("C decoder (vjl_forest_read_file)", med(c["runs"], "decode", 0),
        med(c["runs"], "decode", 1))
    row("C decoder, file mapped (vjl_forest_map_file)", med(c["runs"], "decode_mapped", 0),
        med(c["runs"], "decode_mapped", 1))
    row("C query over the forest", med(c["runs"], "select", 0), med(c["runs"], "select", 1))
    for name, r in (("ours", ours), ("original, CPython", orig_cpy),
                    ("original, PyPy", orig_pypy)):
        if r is None:
            rows.append([name + ": not installed", "-", "-", "-", "-", "-", "-"])
            continue
        row("%s parse_jitlog (%s %s)" % (name, r["implementation"], r["python"]),
            med(r["runs"], "parse", 0), med(r["runs"], "parse", 1))
        if name == "ours":
            row("ours parse_jitlog + every op as a Python object",
                med(r["runs"], "parse", 0) + med(r["runs"], "visit", 0),
                med(r["runs"], "parse", 1) + med(r["runs"], "visit", 1))
    traces = c["runs"][0]["traces"]
    table("JIT log: %.1f MB, %d traces (medians: C and ours %d runs, original %d)"
          % (size / 1048576.0, traces, runs, orig_runs),
          ["", "wall s", "CPU s", "wall / read", "CPU / read", "wall / ours parse",
           "CPU / ours parse"], rows)
    for name, r in (("ours", ours), ("original CPython", orig_cpy),
                    ("original PyPy", orig_pypy)):
        if r:
            first = r["runs"][0]
            log("jitlog: %s read %d traces, %d ops" % (name, first["traces"], first["ops"]))
