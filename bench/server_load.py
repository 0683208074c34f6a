"""vmprof-server under load, on SQLite and on PostgreSQL (a cluster of
bench_server's, fsync off), loopback only, every step bounded:

  python bench/server_load.py [--seconds S] [--uploaders N] [--readers N]
                              [--only sqlite|postgresql] [--server BINARY]

  upload  wrk -tN -cN with upload_cycle.lua: each connection uploads in a loop
          by the protocol's three steps (new, add of calc_py311.prof, 109 KiB,
          freeze); N = --uploaders (8: the server's --max-uploads)
  browse  wrk -t2 -c(--readers) with browse_paths.lua over the runs uploaded:
          the first page of the list, and each of 50 runs' row, tree and
          functions in turn
  both    the two at once (each row its own wrk)

Per row: requests/s, p50, p99, answers other than 2xx, socket errors, and for
the uploads the cycles frozen and failed.  Then the checks: every run whose
freeze was answered is listed and served, each has its one file, and after
the stop (exit 0) tmp/ is empty.  Prints `uptime` before and after; the raw
figures go to bench/out/server_load-HHMMSS.json.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import OUT, ROOT, table  # noqa: E402
import bench_server  # noqa: E402

PROFILE = os.path.join(ROOT, "tests", "data", "upstream", "profiles", "calc_py311.prof")


def wrk(url, script, arg, connections, threads, seconds):
    """wrk --latency with a script of ours: {rps, p50_ms, p99_ms, non2xx,
    socket_errors, requests, cycles, failed}."""
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--latency",
           "--timeout", "30s", "-s", os.path.join(HERE, script), url, "--", arg]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90).stdout

    def count(pattern):
        m = re.search(pattern, out)
        return int(m.group(1)) if m else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    rps, p50, p99 = bench_server.wrk_figures(out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99,
            "requests": count(r"(\d+) requests in"),
            "non2xx": count(r"Non-2xx or 3xx responses: (\d+)"),
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
            "cycles": count(r"cycles (\d+) failed"), "failed": count(r"cycles \d+ failed (\d+)"),
            "output": out}


def listed(server):
    """Every run id the list gives, page after page."""
    ids, page = [], "1"
    while page:
        reply = json.loads(server.request("GET", "/api/runs?page=%s" % page))
        ids += [r["id"] for r in reply["runs"]]
        page = reply["next"] and str(reply["next"])
    return ids


def one_engine(kind, args, url=None):
    data = tempfile.mkdtemp(prefix="server-load-%s-" % kind, dir=OUT)
    options = ["--database", url] if url else []
    rows, figures = [], {}
    try:
        server = bench_server.Server(data, *options)
        upload_wrk = lambda: wrk(server.url, "upload_cycle.lua", PROFILE, args.uploaders,
                                 args.uploaders, args.seconds)
        figures["upload"] = upload_wrk()
        ids = listed(server)
        paths = os.path.join(data, "paths")
        with open(paths, "w") as f:
            f.write("/api/runs\n")
            for rid in ids[:50]:
                f.write("/api/runs/%s\n/api/runs/%s/tree\n/api/runs/%s/functions\n"
                        % (rid, rid, rid))
        browse_wrk = lambda: wrk(server.url, "browse_paths.lua", paths, args.readers, 2,
                                 args.seconds)
        figures["browse"] = browse_wrk()
        both = {}
        threads = [threading.Thread(target=lambda k=k, f=f: both.__setitem__(k, f()))
                   for k, f in (("upload", upload_wrk), ("browse", browse_wrk))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        figures["both: upload"], figures["both: browse"] = both["upload"], both["browse"]
        # The checks: what was answered is there.
        frozen = sum(figures[k]["cycles"] for k in ("upload", "both: upload"))
        ids = listed(server)
        checks = {"frozen_answered": frozen, "listed": len(ids),
                  "listed_twice": len(ids) - len(set(ids)), "raw_differs": 0}
        with open(PROFILE, "rb") as f:
            profile = f.read()
        for rid in ids[:: max(1, len(ids) // 20)]:
            if server.request("GET", "/api/runs/%s/raw" % rid) != profile:
                checks["raw_differs"] += 1
        server.stop()
        # (after the stop: the compressor, which moves the packed file in
        # before it removes the plain one, is not between the two)
        files = {}
        for name in os.listdir(os.path.join(data, "runs")):
            files.setdefault(name.split(".")[0], []).append(name)
        checks["listed_without_file"] = sum(1 for i in ids if i not in files)
        checks["runs_with_two_files"] = sum(1 for v in files.values() if len(v) > 1)
        checks["exit"] = server.proc.returncode
        checks["tmp_after_stop"] = len(os.listdir(os.path.join(data, "tmp")))
        figures["checks"] = checks
        for label in ("upload", "browse", "both: upload", "both: browse"):
            f = figures[label]
            rows.append(("%s, %s" % (kind, label), "%.0f" % (f["rps"] or 0),
                         "%.2f ms" % (f["p50_ms"] or 0), "%.2f ms" % (f["p99_ms"] or 0),
                         str(f["non2xx"]), str(f["socket_errors"]),
                         "%d / %d" % (f["cycles"], f["failed"]) if "upload" in label else ""))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return rows, figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--uploaders", type=int, default=8)
    ap.add_argument("--readers", type=int, default=16)
    ap.add_argument("--only", choices=("postgresql", "sqlite"))
    ap.add_argument("--server", help="the build to load (default build/server)")
    args = ap.parse_args()
    if args.server:
        bench_server.SERVER = args.server
    os.makedirs(OUT, exist_ok=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows, raw = [], {}
    if args.only in (None, "sqlite"):
        r, raw["sqlite"] = one_engine("sqlite", args)
        rows += r
    if args.only in (None, "postgresql"):
        with bench_server.postgres_cluster() as url:
            if url is None:
                print("no PostgreSQL (scripts/setup.sh installs it): not measured")
            else:
                r, raw["postgresql"] = one_engine("postgresql", args, url)
                rows += r
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    path = os.path.join(OUT, time.strftime("server_load-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump(raw, f, indent=1)
    table("vmprof-server under load, %d s a row (uploads: %d connections; browse: %d)"
          % (args.seconds, args.uploaders, args.readers),
          ["", "requests/s", "p50", "p99", "non-2xx", "socket errors", "cycles frozen / failed"],
          rows)
    for kind, figures in raw.items():
        print("%s checks: %s" % (kind, json.dumps(figures["checks"])))
    print("raw figures:", path)


if __name__ == "__main__":
    main()
