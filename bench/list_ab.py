"""The runs list of bench_server.py (10,000 runs, wrk 16 connections on the
first page, page 100, q=case 77, q=bench, and q= with user=) for two builds of vmprof-server
(or more: --new again), interleaved round by round, on PostgreSQL and on SQLite.

  python bench/list_ab.py --base OLD_SERVER [--new NEW_SERVER ...] [--rounds N]
                          [--only postgresql|sqlite]

PostgreSQL: bench_server.bench_list_postgres as the bench runs it (a cluster
made for the round, the rows made by SQL, the CPU of PostgreSQL's backends
per request beside the server's).  SQLite: the rows copied
from one small uploaded run, as the bench copies them from the big one.  Per
build and row: the medians over the rounds of requests/s, p50, p99, the
largest p99 and the server's CPU per request.  Prints `uptime` before and
after; the raw figures go to bench/out/list_ab-HHMMSS.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import OUT, ROOT, median, table  # noqa: E402
import bench_server  # noqa: E402

PROFILE = os.path.join(ROOT, "..", "shared", "fixtures", "upstream", "profiles",
                       "calc_py311.prof")


def postgresql(binary):
    bench_server.SERVER = binary
    data, r = tempfile.mkdtemp(prefix="list-ab-pg-"), {}
    try:
        bench_server.bench_list_postgres(r, data)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return r["list_wrk_postgres"]


def sqlite(binary):
    bench_server.SERVER = binary
    data = tempfile.mkdtemp(prefix="list-ab-sqlite-")
    try:
        server = bench_server.Server(data)
        rid = server.upload(PROFILE)
        server.stop()
        bench_server.fill_list_sqlite(os.path.join(data, "vmprof.db"), rid, 10000 - 1)
        server = bench_server.Server(data, "--cache-size", bench_server.CACHE)
        try:
            return bench_server.list_under_wrk(server)[1]
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", action="append",
                    help="a build to compare (again for more: new1, new2, ...)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("postgresql", "sqlite"))
    args = ap.parse_args()
    news = args.new or [bench_server.SERVER]
    builds = [("base", args.base)] + [("new" if len(news) == 1 else "new%d" % (i + 1), b)
                                      for i, b in enumerate(news)]
    kinds = [k for k in ("postgresql", "sqlite") if args.only in (None, k)]
    bench_server.table = lambda *a, **k: None  # the rounds' own tables
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    raw = []
    for rnd in range(args.rounds):
        for name, binary in builds:
            for kind in kinds:
                load = os.getloadavg()[0]
                figures = postgresql(binary) if kind == "postgresql" else sqlite(binary)
                raw.append({"round": rnd, "build": name, "db": kind, "load": load,
                            "figures": figures})
                print(json.dumps(raw[-1]), file=sys.stderr, flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, time.strftime("list_ab-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump({"builds": dict(builds), "rounds": raw}, f, indent=1)
    for kind in kinds:
        rows = []
        for label, _ in bench_server.LIST_QUERIES:
            for name, _ in builds:
                figs = [r["figures"][label] for r in raw if r["db"] == kind and r["build"] == name]

                def med(key, spec):
                    values = [f[key] for f in figs if f.get(key) is not None]
                    return spec % median(values) if values else "-"
                rows.append(("%s, %s" % (label, name), med("rps", "%.0f"), med("p50_ms", "%.2f ms"),
                             med("p99_ms", "%.2f ms"),
                             "%.2f ms" % max(f["p99_ms"] for f in figs),
                             med("cpu_ms", "%.3f ms"), med("pg_cpu_ms", "%.3f ms")))
        table("%s: GET /api/runs with 10,000 runs, wrk 16 connections, %d s, medians of %d rounds"
              % (kind, bench_server.LIST_SECONDS, args.rounds),
              ["", "requests/s", "p50", "p99 (goal < 10 ms)", "largest p99", "server CPU a request",
               "PostgreSQL CPU a request"], rows)
        if kind == "postgresql":
            for name, _ in builds:
                hedges = [r["figures"].get("hedges", {}) for r in raw
                          if r["db"] == kind and r["build"] == name]
                print("%s: list reads sent again on a second connection (answered first"
                      " there), per round: %s" % (name, ", ".join(
                          "%s (%s)" % (h.get("sent", 0), h.get("won", 0)) for h in hedges)))
    print("raw figures:", path)


if __name__ == "__main__":
    main()
