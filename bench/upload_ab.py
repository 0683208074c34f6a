"""Upload + freeze of several profiles into two builds of vmprof-server,
interleaved round by round, beside the C reader's decode of the same file and
the floors (http_sink.py: drop the bytes; write + fsync them; write them from
aligned memory with O_DIRECT from a second thread + fsync; compress with zstd
+ write + fsync them).

  python bench/upload_ab.py --base OLD_SERVER [--new NEW_SERVER] [--rounds N]
                            [--no-sinks] [--reload N] [--new-root DIR] [--no-check]
                            FILE [FILE...]

Each file is a shape of input (the million-sample profile, a small one, a
gzipped one, a native-frames one...).  Per file and per row: the median time
over the rounds, the median of the per-round ratios to the decode of that
round, the server's CPU (all threads) during the upload and until its
background compression is done, the bytes it stored, and with --reload the
first tree after a restart (the profile decoded again from its stored file).
Each upload goes into an idle server (the background compression of the
earlier upload finished first); the raw bytes are checked identical after
each.  Prints `uptime` before and after; the raw figures go to
bench/out/upload_ab-HHMMSS.json.
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
from bench import OUT, median, run_json, table  # noqa: E402
import bench_server  # noqa: E402

SINKS = ("discard", "keep", "direct", "zstd")


def start(binary, data):
    bench_server.SERVER = binary
    return bench_server.Server(data, "--max-upload", "2G")


def stored_bytes(data, rid):
    runs = os.path.join(data, "runs")
    return sum(os.path.getsize(os.path.join(runs, n)) for n in os.listdir(runs)
               if n.startswith(rid))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", default=os.path.join(HERE, "..", "build", "server", "vmprof-server"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-sinks", action="store_true", help="the decode and the servers only")
    ap.add_argument("--reload", type=int, default=0, metavar="N",
                    help="then N times, each build restarted: the first tree of each file's "
                         "last run, decoded again from its stored file")
    ap.add_argument("--new-root", default=None, metavar="DIR",
                    help="the new build's data folder goes under DIR (e.g. /dev/shm: the same "
                         "build without the disk, to see how much of an upload is the disk)")
    ap.add_argument("--no-check", action="store_true",
                    help="do not compare the raw bytes (a build patched to skip writing "
                         "them: bench/RESULTS.md, 2026-11-30 10:47, gives the patch)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    root = tempfile.mkdtemp(prefix="vmprof-upload-ab-", dir=OUT)
    builds = (("base", os.path.abspath(args.base)), ("new", os.path.abspath(args.new)))
    servers, sinks, roots = {}, {}, []
    try:
        for name, binary in builds:
            if name == "new" and args.new_root:
                data = tempfile.mkdtemp(prefix="vmprof-upload-ab-new-", dir=args.new_root)
                roots.append(data)
            else:
                data = os.path.join(root, name)
                os.mkdir(data)
            servers[name] = (start(binary, data), data)
        sink_kinds = () if args.no_sinks else SINKS
        for kind in sink_kinds:
            d = os.path.join(root, "sink-" + kind)
            os.mkdir(d)
            sinks[kind] = bench_server.Sink(kind, d) if kind != "discard" else bench_server.Sink(kind)
        res = {f: {} for f in args.files}
        for rnd in range(args.rounds):
            for f in args.files:
                r = res[f]
                d = run_json([os.path.join(OUT, "read_bench"), "time", f, "1"])
                r.setdefault("decode", []).append(d["runs"][0]["decode"])
                for kind in sink_kinds:
                    r.setdefault("sink " + kind, []).append(sinks[kind].send(f))
                order = builds if rnd % 2 == 0 else builds[::-1]
                for name, _ in order:
                    server, data = servers[name]
                    server.wait_compressed(data)
                    c0 = server.cpu_seconds()
                    t0 = time.perf_counter()
                    rid = server.upload(f)
                    r.setdefault(name + " rid", []).append(rid)
                    r.setdefault(name, []).append(time.perf_counter() - t0)
                    r.setdefault(name + " cpu", []).append(server.cpu_seconds() - c0)
                    for step, seconds in server.steps.items():
                        r.setdefault(name + " " + step, []).append(seconds)
                    # and until its background work (older builds' gzip) is done
                    server.wait_compressed(data)
                    r.setdefault(name + " cpu all", []).append(server.cpu_seconds() - c0)
                    r.setdefault(name + " stored", []).append(stored_bytes(data, rid))
                    if args.no_check:
                        continue
                    # the bytes back, identical
                    got = server.request("GET", "/api/runs/%s/raw" % rid)
                    with open(f, "rb") as fh:
                        if got != fh.read():
                            raise RuntimeError("%s: %s gave back other bytes" % (f, name))
        for rnd in range(args.reload):
            for name, _ in (builds if rnd % 2 == 0 else builds[::-1]):
                server, data = servers[name]
                server.stop()
                servers[name] = (start(dict(builds)[name], data), data)
                for f in args.files:
                    t0 = time.perf_counter()
                    servers[name][0].request("GET", "/api/runs/%s/tree?depth=6"
                                             % res[f][name + " rid"][-1])
                    res[f].setdefault(name + " reload", []).append(time.perf_counter() - t0)
        with open(os.path.join(OUT, "upload_ab-%s.json" % time.strftime("%H%M%S")), "w") as out:
            json.dump(res, out)
        for f in args.files:
            r = res[f]
            dec = r["decode"]
            # (the median of the per-round ratios, and their range: a run's
            # rounds spread widely on a shared machine)
            ratio = lambda xs: "%.2fx (%.2f-%.2f)" % (
                median([x / y for x, y in zip(xs, dec)]), min(x / y for x, y in zip(xs, dec)),
                max(x / y for x, y in zip(xs, dec)))
            rows = [("C reader: decode the file", "%.4f s" % median(dec), "1.00x", "", "", "", "",
                     "")]
            for label, key in (("sink: receive, drop", "sink discard"),
                               ("sink: receive, write, fsync", "sink keep"),
                               ("sink: receive, write O_DIRECT from a thread, fsync",
                                "sink direct"),
                               ("sink: receive, zstd -1, write, fsync", "sink zstd")):
                if key not in r:
                    continue
                rows.append((label, "%.4f s" % median(r[key]), ratio(r[key]), "", "", "", "", ""))
            for name, binary in builds:
                rows.append(("server %s (%s)" % (name, binary), "%.4f s" % median(r[name]),
                             ratio(r[name]),
                             "%.1f / %.1f / %.1f ms" % tuple(1000 * median(r[name + " " + k])
                                                            for k in ("new", "wait", "freeze")),
                             "%.3f s" % median(r[name + " cpu"]),
                             "%.3f s" % median(r[name + " cpu all"]),
                             "%.0f KiB" % (median(r[name + " stored"]) / 1024),
                             "%.4f s" % median(r[name + " reload"]) if args.reload else ""))
            table("%s (%.0f KiB), medians of %d interleaved rounds"
                  % (os.path.basename(f), os.path.getsize(f) / 1024, args.rounds),
                  ["", "time", "vs C decode",
                   "new / after the body's last byte / freeze", "server CPU, upload",
                   "server CPU, with its background work", "stored",
                   "first tree after a restart"], rows)
    finally:
        for s in sinks.values():
            s.stop()
        for server, _ in servers.values():
            server.stop()
        for d in [root] + roots:
            shutil.rmtree(d, ignore_errors=True)
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
