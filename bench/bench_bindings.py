"""The `pypy` section of bench.py: which binding of libvmprof PyPy should run.

Two bindings of the same C reading path, under pypy3, on the 1M-sample
profile of the reader section, each installed by pip into its own venv:
  - cffi:   what `pip install` builds on PyPy (src/module/pypy: vmprof._core
            in Python over a cffi module), in the project's .venv/pypy3;
  - cpyext: the C extension (src/module) under PyPy's C-API emulation, built
            with -Dpypy_binding=cpyext into .venv/bench-pypy-cpyext.
CPython's run of the extension is measured beside them for scale.

Each round starts one process per binding, alternated, and each process reads
the profile `runs` times (bench/py_bindings.py): read_profile, get_tree, a walk
of every node (name, count, children: what vmprofshow does), and an export to
collapsed.  The first run of a process is what a command-line tool pays (PyPy
has not warmed up); the later runs are a long-lived process.  Medians over the
rounds; ratios cffi / cpyext in the same run.
"""
import os
import subprocess

from bench import HERE, ROOT, VENV, big_profile, fmt, log, median, run_json, table

PHASES = ["read_profile", "get_tree", "walk", "export"]


def cpyext_venv():
    """.venv/bench-pypy-cpyext: the package built for PyPy with the extension."""
    venv = os.path.join(VENV, "bench-pypy-cpyext")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        log("pypy: making %s (the extension under cpyext)" % venv)
        subprocess.run(["pypy3", "-m", "venv", venv], check=True)
    log("pypy: installing the package with -Dpypy_binding=cpyext")
    subprocess.run([py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
                    "--config-settings=setup-args=-Dpypy_binding=cpyext", ROOT], check=True,
                   stdout=subprocess.DEVNULL)
    return py


def bench_bindings(args, res):
    pypy = os.path.join(VENV, "pypy3", "bin", "python")
    if not os.path.exists(pypy):
        log("pypy: no .venv/pypy3 (scripts/setup.sh makes it); skipping")
        return
    path = big_profile(args, "pypy")
    rounds = args.rounds or (2 if args.quick else 5)
    runs = max(args.runs, 3)  # the first run is cold; the rest need a median
    cmds = {
        "cpyext": [cpyext_venv(), "py_bindings.py", path, str(runs)],
        "cffi": [pypy, "py_bindings.py", path, str(runs)],
        "cpython": [args.ours_py, "py_bindings.py", path, str(runs)],
    }
    results = {name: [] for name in cmds}
    for r in range(rounds):
        for name, cmd in cmds.items():
            log("pypy: round %d/%d, %s" % (r + 1, rounds, name))
            results[name].append(run_json(cmd, cwd=HERE))
    for name in ("cffi", "cpyext"):
        if results[name][0]["binding"] != name:
            raise RuntimeError("%s measured the %s binding" % (name, results[name][0]["binding"]))
    res["pypy"] = {"file": path, "file_bytes": os.path.getsize(path), "rounds": rounds,
                   "runs": runs, "results": results}
    walked = {name: {(x["nodes"], x["check"]) for p in rs for x in p["runs"]}
              for name, rs in results.items()}
    if len(set(map(frozenset, walked.values()))) != 1:
        raise RuntimeError("the bindings walked different trees: %r" % walked)
    nodes = next(iter(walked["cffi"]))[0]

    def med(name, key, first):
        vals = [p["runs"][0][key] if first else median([x[key] for x in p["runs"][1:]])
                for p in results[name]]
        return median(vals)

    for first, what in ((True, "first run of a process (a command-line tool)"),
                        (False, "later runs of a process (a long-lived one)")):
        rows = []
        base = med("cpyext", "read_bytes", first)
        totals = {}
        for name in cmds:
            info = results[name][0]
            cells = [med(name, k, first) for k in PHASES]
            totals[name] = sum(cells)
            rows.append(["%s (%s %s)" % (name, info["implementation"], info["python"])]
                        + [fmt(c) for c in cells] + [fmt(totals[name]),
                                                     fmt(totals[name] / base, "%.2fx")])
        rows.append(["cffi / cpyext"] + [
            fmt(med("cffi", k, first) / med("cpyext", k, first), "%.2fx") for k in PHASES]
            + [fmt(totals["cffi"] / totals["cpyext"], "%.2fx"), ""])
        table("PyPy bindings, %s: %d-sample profile, %d nodes, medians of %d rounds"
              % (what, args.samples, nodes, rounds),
              ["", "read_profile s", "get_tree s", "walk s", "export s", "total s",
               "total / read bytes"], rows)
    print("(read bytes: readinto() under pypy3 in the cpyext processes, median %.3f s; "
          "load average at the end %.1f)" % (med("cpyext", "read_bytes", False),
                                             os.getloadavg()[0]))
