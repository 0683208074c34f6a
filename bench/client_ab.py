"""Upload + freeze of a profile into one vmprof-server by two clients,
interleaved round by round: the bench's client as vmprof/upload.py sends
(at most UNSENT_MAX bytes written and not yet sent in the kernel:
TCP_NOTSENT_LOWAT), and the same without that limit (the original client,
and ours before it).  Per client: the medians of the upload's time (new +
add + freeze), of its ratio to the C reader's decode of the same round, of
the server's CPU and of the client's own CPU (this process: the sending).

  python bench/client_ab.py [--server BIN] [--rounds N] [--unsent BYTES] FILE

Why: on one machine the server's receiving thread sends, on the client's
behalf, whatever the client queued ahead of the server's window, each time
it reads (bench/RESULTS.md, 2026-11-30 23:00).  Prints `uptime` before and
after; the raw figures go to bench/out/client_ab-HHMMSS.json.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.path.join(HERE, "..", "build", "server",
                                                     "vmprof-server"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--unsent", type=int, default=bench_server.CLIENT_UNSENT_MAX or 128 * 1024)
    ap.add_argument("file")
    args = ap.parse_args()
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    bench_server.SERVER = os.path.abspath(args.server)
    data = tempfile.mkdtemp(prefix="vmprof-client-ab-", dir=OUT)
    server = bench_server.Server(data, "--max-upload", "2G")
    clients = (("limited", args.unsent), ("unlimited", 0))
    r = {}
    try:
        for rnd in range(args.rounds):
            d = run_json([os.path.join(OUT, "read_bench"), "time", args.file, "1"])
            r.setdefault("decode", []).append(d["runs"][0]["decode"])
            for name, unsent in (clients if rnd % 2 == 0 else clients[::-1]):
                bench_server.CLIENT_UNSENT_MAX = unsent
                server.wait_compressed(data)
                c0, own0 = server.cpu_seconds(), os.times()
                t0 = time.perf_counter()
                server.upload(args.file)
                r.setdefault(name, []).append(time.perf_counter() - t0)
                own1 = os.times()
                r.setdefault(name + " server cpu", []).append(server.cpu_seconds() - c0)
                r.setdefault(name + " client cpu", []).append(
                    own1.user - own0.user + own1.system - own0.system)
        with open(os.path.join(OUT, "client_ab-%s.json" % time.strftime("%H%M%S")), "w") as out:
            json.dump(r, out)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    dec = r["decode"]
    rows = [("C reader: decode the file", "%.4f s" % median(dec), "1.00x", "", "", "")]
    for name, unsent in clients:
        xs = r[name]
        rows.append(("client, unsent %s" % (unsent or "unlimited"), "%.4f s" % median(xs),
                     "%.2fx (%.2f-%.2f)" % (median([x / y for x, y in zip(xs, dec)]),
                                            min(x / y for x, y in zip(xs, dec)),
                                            max(x / y for x, y in zip(xs, dec))),
                     "%.3f s" % median(r[name + " server cpu"]),
                     "%.3f s" % median(r[name + " client cpu"]),
                     "%.3f" % median([x / y for x, y in zip(xs, r["limited" if name == "unlimited"
                                                                   else "unlimited"])])))
    table("%s, medians of %d interleaved rounds" % (os.path.basename(args.file), args.rounds),
          ["", "upload + freeze", "vs C decode", "server CPU", "client CPU",
           "per-round time vs the other client"], rows)
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
