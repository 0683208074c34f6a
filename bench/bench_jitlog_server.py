"""The `jitlog-server` section of bench.py: vmprof-server with a large PyPy jit log.

The log (110 MB; --quick 20 MB) is the one of the `jitlog` section (gen_jitlog:
the upstream calc.py log copied with fresh ids), uploaded gzipped as the clients
send it.  Measured in one run, medians of several:
  upload    jit add (the upload, decoded once on arrival) + freeze, against
            the C decoder (jitlog_read_bench) on the same gzipped file just
            before (the server decodes the file it stored, gunzip included)
  list      GET .../jitlog/traces once decoded (goal: < 100 ms): the first
            page (1,000 traces) sorted by entry count, every trace, and a query
  trace     GET .../jitlog/traces/ID of the most entered trace (stages, merge
            points, disassembly)
  cold      the first list after a restart: the log decoded again from its file
Request times are the client's, to the last byte of the answer (gzip asked for,
as a browser does).
"""
import gzip
import json
import os
import time

from bench import OUT, fmt, log, median, run_json, table
from bench_jitlog import make_log
from bench_server import Server


def timed(server, path, headers=None):
    t = time.perf_counter()
    body = server.request("GET", path, headers=headers)
    return time.perf_counter() - t, body


def bench_jitlog_server(args, res):
    megabytes = 20 if args.quick else 110
    path = make_log(megabytes)
    size = os.path.getsize(path)
    rounds = max(args.runs, 3)
    gz = path + ".gz"
    if not os.path.exists(gz):
        log("jitlog-server: gzip of the log (as the client sends it)")
        with open(path, "rb") as f, gzip.open(gz, "wb", compresslevel=1) as out:
            out.write(f.read())
    r = res["jitlog_server"] = {"file_bytes": size, "gzip_bytes": os.path.getsize(gz)}
    accept = {"Accept-Encoding": "gzip"}
    data = os.path.join(OUT, "jitlog-server-data")
    if os.path.isdir(data):
        import shutil
        shutil.rmtree(data)
    os.makedirs(data)
    server = Server(data, "--cache-size", "1G")
    try:
        uploads, decodes = [], []
        rid = None
        for i in range(rounds):
            c = run_json([os.path.join(OUT, "jitlog_read_bench"), gz, "1"])
            decodes.append(c["runs"][0]["decode"][0])
            rid = json.loads(server.request("POST", "/api/runtime/new",
                                            json.dumps({"argv": "bench.py", "VM": "PyPy"}),
                                            {"Content-Type": "application/json"}))["runtime_id"]
            t = time.perf_counter()
            with open(gz, "rb") as f:
                server.request("POST", "/api/runtime/upload/jit/%s/add" % rid, f,
                               {"Content-Length": str(os.path.getsize(gz))})
            server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")
            uploads.append(time.perf_counter() - t)
            log("jitlog-server: upload %d: %.2f s (C decode %.2f s)" % (i + 1, uploads[-1],
                                                                        decodes[-1]))
        r["upload"] = uploads
        r["decode"] = decodes
        base = "/api/runs/%s/jitlog/traces" % rid
        questions = [("first page (1,000), by entry count", base + "?sort=entries"),
                     ("every trace, by entry count", base + "?sort=entries&limit=100000"),
                     ("query loops & func(\"merge_sort\")",
                      base + "?sort=entries&q=loops%20%26%20func(%22merge_sort%22)"),
                     ("query op(\"guard_class\") | bridges", base + "?q=op(%22guard_class%22)%20%7C%20bridges")]
        top = json.loads(server.request("GET", base + "?sort=entries&limit=1"))["traces"][0]
        questions.append(("one trace (the most entered), with disassembly",
                          "%s/%d" % (base, top["id"])))
        n_traces = json.loads(server.request("GET", "/api/runs/%s/jitlog" % rid))["traces"]
        times = {}
        sizes = {}
        counts = {}
        for label, q in questions:
            runs = []
            for _ in range(max(rounds * 4, 10)):
                dt, body = timed(server, q, accept)
                runs.append(dt)
            times[label] = runs
            sizes[label] = len(body)
            answer = json.loads(server.request("GET", q))
            counts[label] = ("%d traces" % len(answer["traces"]) if "traces" in answer
                             else "%d ops" % sum(len(s["ops"]) for s in answer["stages"].values()))
        r["requests"] = times
        server.stop()
        server = Server(data, "--cache-size", "1G")
        cold, _ = timed(server, base + "?sort=entries", accept)
        warm, _ = timed(server, base + "?sort=entries", accept)
        r["cold"], r["warm_after_cold"] = cold, warm
    finally:
        server.stop()
    rows = [["upload (jit add + freeze, decoded on arrival)", fmt(median(uploads)),
             fmt(median(decodes)), fmt(median([u / d for u, d in zip(uploads, decodes)]), "%.2fx"),
             "%d KB up" % (r["gzip_bytes"] // 1024)]]
    for label, _ in questions:
        rows.append([label, fmt(median(times[label]) * 1000, "%.1f ms"), "", "",
                     "%s, %.1f KB (gzip)" % (counts[label], sizes[label] / 1024.0)])
    rows.append(["first list after a restart (decoded from the file)", fmt(cold, "%.2f s"),
                 "", "", ""])
    rows.append(["the list again after that", fmt(warm * 1000, "%.1f ms"), "", "", ""])
    table("vmprof-server: a %.0f MB jit log, %d traces (medians: uploads %d, requests %d each)"
          % (size / 1048576.0, n_traces, rounds, max(rounds * 4, 10)),
          ["", "time", "C decode of the .gz", "ratio", "answer"], rows)
