"""The server section of the bench (bench.py --only server): vmprof-server on
127.0.0.1 with the million-sample profile.

  upload    new + add (the 340 MB file streamed) + freeze, against the C reader
            decoding the same file (read_bench), run by run (goal: <= 2x); beside
            them the floor, with the same client (http_sink.py): the file sent
            to a server that drops it; to one that writes it to a file and
            fsyncs it; to one that writes it from memory (O_DIRECT, from a
            second thread), as the server does; to one that compresses it
            (zstd -1) and writes and fsyncs that; and the server's CPU seconds
            per upload
  tree      the first GET /api/runs/ID/tree after the freeze (goal: < 50 ms)
  wrk       16 connections on that tree endpoint for 10 s: p50/p99 (goal p99 <
            20 ms), and the server's peak RSS against its --cache-size while
            three such runs are asked in turn (more than the cache holds)
  list      a page of GET /api/runs with 10,000 runs stored, under wrk (goal
            p99 < 10 ms): the first page, page 100, a search few runs match and
            one every run matches; and that sparse search as a fresh server's
            first question (what the counts of runs per trigram, kept after it,
            cost when not read yet)

The runs for the list are rows copied in SQLite from one uploaded run (the
list reads rows only), made while the server is stopped.
"""
import contextlib
import glob
import http.client
import json
import socket
import os
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from bench import OUT, ROOT, big_profile, fmt, log, median, run_json, table

# VMPROF_SERVER: another build to measure (a baseline), as the tests take it.
HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.environ.get("VMPROF_SERVER") or os.path.join(ROOT, "build", "server",
                                                         "vmprof-server")
# Two decoded 1M-sample profiles (7.4 MiB each, as vmp_profile_memory counts
# them; a server that charged a profile its file's size held one): three runs
# asked in turn then miss every time, which measures the decode from the file.
CACHE = "16M"
TREE_QUERY = "depth=12"


class Server(object):
    def __init__(self, data, *options):
        self.proc = subprocess.Popen([SERVER, "--data", data, "--listen", "127.0.0.1:0"]
                                     + list(options), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if "serving http://" not in line:
            self.proc.kill()
            raise RuntimeError("vmprof-server did not start: %s" % self.proc.stderr.read())
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self):
        self.proc.terminate()
        self.stderr = self.proc.communicate(timeout=120)[1]

    def status(self, field):
        """VmRSS, VmHWM... of the server, in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600, blocksize=1 << 20)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError("%s %s: %d %s" % (method, path, resp.status, data[:300]))
        return data

    def upload(self, path):
        """new + add + freeze; self.steps: the seconds of each (the add
        split into sending the body and waiting for the answer after its
        last byte was written)."""
        t0 = time.perf_counter()
        rid = json.loads(self.request("POST", "/api/runtime/new",
                                      json.dumps({"argv": "bench.py", "VM": "CPython"}),
                                      {"Content-Type": "application/json"}))["runtime_id"]
        t1 = time.perf_counter()
        sent, answered = send_file(self.port, "/api/runtime/upload/cpu/%s/add" % rid, path)
        t2 = time.perf_counter()
        self.request("POST", "/api/runtime/%s/freeze/" % rid, b"")
        self.steps = {"new": t1 - t0, "send": sent, "wait": answered, "freeze": time.perf_counter() - t2}
        return rid

    def cpu_seconds(self):
        """utime + stime of the server, all its threads."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_compressed(self, data, timeout=300):
        """Until the background gzip of builds before zstd has done every
        stored profile (a plain runs/ID.prof; one that came gzipped stays
        so), so that each upload is measured into an idle server."""
        deadline = time.monotonic() + timeout
        runs = os.path.join(data, "runs")

        def plain(name):
            try:
                with open(os.path.join(runs, name), "rb") as f:
                    return f.read(2) != b"\x1f\x8b"
            except OSError:
                return False
        while time.monotonic() < deadline and any(n.endswith(".prof") and plain(n) or
                                                  n.endswith(".prof.vmc")
                                                  for n in os.listdir(runs)):
            time.sleep(0.1)


# vmprof/upload.py's UNSENT_MAX, which says why (the bench's Python may not
# import vmprof); CLIENT_UNSENT_MAX=0 in the environment: a client without it
# (the original client, session 9's figures).
CLIENT_UNSENT_MAX = int(os.environ.get("CLIENT_UNSENT_MAX", 128 * 1024))


def send_file(port, url, path):
    """POST the file as the upload's client does (http.client, 1 MiB pieces,
    at most CLIENT_UNSENT_MAX bytes unsent in the kernel: TCP_NOTSENT_LOWAT);
    (seconds to write the request, seconds from its last byte written to the
    answer read: what the server does after the bytes in the sockets'
    buffers, a few MB, arrive)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600, blocksize=1 << 20)
    conn.connect()
    if CLIENT_UNSENT_MAX:
        conn.sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25),
                             CLIENT_UNSENT_MAX)
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        conn.request("POST", url, f, {"Content-Length": str(os.path.getsize(path))})
    t1 = time.perf_counter()
    resp = conn.getresponse()
    data = resp.read()
    t2 = time.perf_counter()
    conn.close()
    if resp.status != 200:
        raise RuntimeError("POST %s: %d %s" % (url, resp.status, data[:300]))
    return t1 - t0, t2 - t1


class Sink(object):
    """http_sink.py in a process of its own: the floor of an upload."""
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "http_sink.py")]
                                     + list(args), stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening "):
            self.proc.kill()
            raise RuntimeError("http_sink.py did not start")
        self.port = int(line.split()[1])

    def send(self, path):
        t0 = time.perf_counter()
        send_file(self.port, "/sink", path)
        return time.perf_counter() - t0

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=60)


def wrk(url, seconds=10, connections=16):
    """(requests/s, p50 ms, p99 ms) from wrk --latency."""
    out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--latency",
                          url], capture_output=True, text=True, timeout=seconds + 60).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError("wrk on %s: %s non-2xx answers" % (url, errors.group(1)))
    return wrk_figures(out)


def wrk_figures(out):
    """(requests/s, p50 ms, p99 ms) from the output of wrk --latency."""
    def ms(label):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, out, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None, ms("50"), ms("99")


def bench_server(args, res):
    if not os.path.exists(SERVER):
        log("server: %s is not built (make server); skipping" % SERVER)
        return
    path = big_profile(args, "server")
    size = os.path.getsize(path)
    r = res["server"] = {"file_bytes": size, "samples": args.samples, "cache": CACHE}
    data = tempfile.mkdtemp(prefix="vmprof-bench-server-", dir=OUT)
    try:
        server = Server(data, "--cache-size", CACHE, "--max-upload", "2G")
        sink_dir = os.path.join(data, "sink")
        os.mkdir(sink_dir)
        drop, keep = Sink("discard"), Sink("keep", sink_dir)
        direct, packed = Sink("direct", sink_dir), Sink("zstd", sink_dir)
        # Upload + freeze beside the C decode of the same file and the floor,
        # run by run.
        decode, upload, first_tree, ids, dropped, kept, cpu = [], [], [], [], [], [], []
        kept_direct, kept_packed, waited = [], [], []
        try:
            for i in range(args.runs):
                d = run_json([os.path.join(OUT, "read_bench"), "time", path, "1"])
                decode.append(d["runs"][0]["decode"])
                dropped.append(drop.send(path))
                kept.append(keep.send(path))
                kept_direct.append(direct.send(path))
                kept_packed.append(packed.send(path))
                server.wait_compressed(data)
                c0 = server.cpu_seconds()
                t0 = time.perf_counter()
                rid = server.upload(path)
                upload.append(time.perf_counter() - t0)
                cpu.append(server.cpu_seconds() - c0)
                waited.append(server.steps["wait"])
                t0 = time.perf_counter()
                server.request("GET", "/api/runs/%s/tree?%s" % (rid, TREE_QUERY))
                first_tree.append(time.perf_counter() - t0)
                ids.append(rid)
                log("server: upload %d: %.2f s (decode %.2f s, sent to a sink %.2f s, to a "
                    "sink that keeps it %.2f s, O_DIRECT %.2f s, zstd %.2f s; server CPU "
                    "%.2f s), first tree %.1f ms"
                    % (i + 1, upload[-1], decode[-1], dropped[-1], kept[-1], kept_direct[-1],
                       kept_packed[-1], cpu[-1], first_tree[-1] * 1000))
        finally:
            for sink in (drop, keep, direct, packed):
                sink.stop()
        r["decode_s"], r["upload_freeze_s"], r["first_tree_s"] = decode, upload, first_tree
        r["sink_drop_s"], r["sink_keep_s"], r["upload_cpu_s"] = dropped, kept, cpu
        r["sink_direct_s"], r["sink_zstd_s"] = kept_direct, kept_packed
        r["upload_wait_s"] = waited
        ratio = lambda xs: fmt(median([x / y for x, y in zip(xs, decode)]), "%.2fx")
        table("vmprof-server: upload and freeze of the %d-sample profile (%.0f MiB), "
              "medians of %d runs" % (args.samples, size / 2**20, args.runs),
              ["", "time", "vs C decode (goal <= 2x)"],
              [("C reader: decode the file", fmt(median(decode), "%.3f s"), "1.00x"),
               ("floor: the same client sends it to a server that drops it",
                fmt(median(dropped), "%.3f s"), ratio(dropped)),
               ("floor: ... to one that writes it to a file (handed to the disk every "
                "8 MiB) and fsyncs it",
                fmt(median(kept), "%.3f s"), ratio(kept)),
               ("floor: ... to one that writes it from memory (O_DIRECT, 2 MiB pieces, "
                "from a second thread) and fsyncs it",
                fmt(median(kept_direct), "%.3f s"), ratio(kept_direct)),
               ("floor: ... to one that compresses it (zstd -1), writes that and fsyncs it",
                fmt(median(kept_packed), "%.3f s"), ratio(kept_packed)),
               ("server: new + upload + freeze (per run: %s)"
                % ", ".join("%.2fx" % (x / y) for x, y in zip(upload, decode)),
                fmt(median(upload), "%.3f s"), ratio(upload)),
               ("server: ... of which the wait for the upload's answer after its last byte "
                "was written", fmt(median(waited) * 1000, "%.1f ms"), ""),
               ("server: its CPU during new + upload + freeze (all threads)",
                fmt(median(cpu), "%.3f s"), ratio(cpu)),
               ("server: first tree answer after the freeze (goal < 50 ms)",
                fmt(median(first_tree) * 1000, "%.1f ms"), "")])

        # The tree under 16 connections; RSS while three runs are asked in turn.
        url = "%s/api/runs/%s/tree?%s" % (server.url, ids[-1], TREE_QUERY)
        rps, p50, p99 = wrk(url)
        r["tree_wrk"] = {"rps": rps, "p50_ms": p50, "p99_ms": p99}
        # A question never asked (so not kept): the tree built from the
        # profile in memory.
        fresh = []
        for i in range(5):
            t0 = time.perf_counter()
            server.request("GET", "/api/runs/%s/tree?depth=12&min=%.7f" % (ids[-1], 0.0005 + i * 1e-7))
            fresh.append(time.perf_counter() - t0)
        r["fresh_tree_s"] = fresh
        # Each run asked a new question in turn, twice: with a cache that
        # holds one such profile, each is decoded again from its file.
        before = server.status("VmRSS")
        reload = []
        for k, rid in enumerate(ids[:3] * 2):
            t0 = time.perf_counter()
            server.request("GET", "/api/runs/%s/tree?depth=6&min=%.7f" % (rid, 0.001 + k * 1e-7))
            reload.append(time.perf_counter() - t0)
        r["reload_tree_s"] = reload
        r["rss_kib"] = {"before": before, "after": server.status("VmRSS"),
                        "peak": server.status("VmHWM")}
        table("vmprof-server: GET tree (depth 12) of that run",
              ["", "requests/s", "p50", "p99 (goal < 20 ms)"],
              [("wrk, 16 connections, 10 s (the answer is kept after the first)",
                fmt(rps, "%.0f"), fmt(p50, "%.2f ms"), fmt(p99, "%.2f ms")),
               ("a new question, profile in memory (median of 5)", "",
                fmt(median(fresh) * 1000, "%.1f ms"), ""),
               ("a new question, profile decoded again from its file (median of %d)"
                % len(reload), "", fmt(median(reload) * 1000, "%.0f ms"), "")])
        model = d.get("runs", [{}])[0].get("memory")
        print("server RSS with --cache-size %s (a profile's model: %s; its file %.0f MiB), "
              "%d runs asked in turn twice: %.0f MiB now, peak %.0f MiB"
              % (CACHE, "%.1f MiB" % (model / 2**20) if model else "not measured",
                 size / 2**20, min(3, len(ids)), r["rss_kib"]["after"] / 1024,
                 r["rss_kib"]["peak"] / 1024))
        server.stop()

        # 10,000 runs: rows copied from the first run while the server is down.
        fill_list_sqlite(os.path.join(data, "vmprof.db"), ids[0], 10000 - len(ids))
        server = Server(data, "--cache-size", CACHE)
        out, r["list_wrk"] = list_under_wrk(server)
        server.stop()
        r["list_first_search_ms"] = first_search(lambda: Server(data, "--cache-size", CACHE))
        out.append(first_search_row(r["list_first_search_ms"]))
        table("vmprof-server: GET /api/runs with 10,000 runs (SQLite), wrk 16 connections, %d s"
              % LIST_SECONDS,
              ["", "requests/s", "p50", "p99 (goal < 10 ms)", "server CPU a request"], out)
        bench_list_postgres(r, os.path.join(data, "pg-files"))
    finally:
        shutil.rmtree(data, ignore_errors=True)


LIST_SECONDS = 8
LIST_QUERIES = (("first page", ""), ("page 100", None),
                ("search q=case 77 (111 runs match)", "?q=case%2077"),
                ("search q=bench (every run matches)", "?q=bench"),
                ("search q=bench, user= of 10 runs", "?q=bench&user=ten"),
                ("search q=case 77, user= of a third", "?q=case%2077&user=third"))


def list_owner(i):
    """The owner of the list's run i: "ten" has 10 of the 10,000, "third" a
    third, the rest are anonymous (the user= rows)."""
    return "ten" if i % 1000 == 500 else "third" if i % 3 == 1 else None


def fill_list_sqlite(path, rid, count):
    """count runs copied from run rid (its row; the server down), with
    argv "bench.py --case I" and list_owner's owners."""
    db = sqlite3.connect(path)
    for name in ("ten", "third"):
        db.execute("INSERT INTO users (name, created) VALUES (?, 0)", (name,))
    owners = dict(db.execute("SELECT name, id FROM users"))
    cols = [c[1] for c in db.execute("PRAGMA table_info(runs)")]
    row = dict(zip(cols, db.execute("SELECT * FROM runs WHERE id = ?", (rid,)).fetchone()))
    rows = []
    for i in range(count):
        # seq (the listing's key, from this version on) is numbered by SQLite
        row = dict(row, id="%016x" % (0xbe00000000000000 + i), created=row["created"] + 1,
                   argv="bench.py --case %d" % i, seq=None, owner_id=owners.get(list_owner(i)))
        rows.append(tuple(row.get(c) for c in cols))
    db.executemany("INSERT INTO runs VALUES (%s)" % ",".join("?" * len(cols)), rows)
    db.commit()
    db.close()


def backend_seconds():
    """CPU seconds of the PostgreSQL backends of database vmprof now (a
    backend opened later starts at 0; none closes while a server runs)."""
    ticks = 0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(os.path.dirname(stat) + "/cmdline", "rb") as f:
                if not f.read().startswith(b"postgres: postgres vmprof"):
                    continue
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def list_under_wrk(server, backends=False):
    """The rows of the list table: each of LIST_QUERIES under wrk, with the
    server's CPU per request (from /proc: what the p99 comes to on a quiet
    machine, whatever the load now), and with backends PostgreSQL's too.
    Page 100 by its number where the server pages by OFFSET (a number in
    "next"), else by the cursor that page 99 gave."""
    page = "1"
    for _ in range(99):
        page = str(json.loads(server.request("GET", "/api/runs?page=" + page))["next"])
    rows, figures = [], {}
    for label, query in LIST_QUERIES:
        c0, b0 = server.cpu_seconds(), backend_seconds() if backends else 0
        rps, p50, p99 = wrk("%s/api/runs%s" % (server.url, "?page=" + page if query is None
                                                else query), seconds=LIST_SECONDS)
        per = lambda seconds: seconds / (rps * LIST_SECONDS) * 1000 if rps else None
        cpu = per(server.cpu_seconds() - c0)
        figures[label] = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "cpu_ms": cpu}
        rows.append((label, fmt(rps, "%.0f"), fmt(p50, "%.2f ms"), fmt(p99, "%.2f ms"),
                     fmt(cpu, "%.3f ms")))
        if backends:
            figures[label]["pg_cpu_ms"] = per(backend_seconds() - b0)
            rows[-1] += (fmt(figures[label]["pg_cpu_ms"], "%.3f ms"),)
    return rows, figures


FIRST_SEARCHES = 3


def first_search(start):
    """A new question's cost: the sparse search as the first question of a
    fresh server (SQLite: before it has read how many runs hold each of its
    trigrams, which it then keeps ten minutes and wrk's repeats reuse), one
    client, median of FIRST_SEARCHES servers, in ms."""
    times = []
    for _ in range(FIRST_SEARCHES):
        server = start()
        try:
            server.request("GET", "/api/runs")  # the server's first answer is not the search's
            t0 = time.perf_counter()
            server.request("GET", "/api/runs" + LIST_QUERIES[2][1])
            times.append((time.perf_counter() - t0) * 1000)
        finally:
            server.stop()
    return median(times)


def first_search_row(ms):
    return ("%s, a new server's first question (one client, median of %d)"
            % (LIST_QUERIES[2][0].split(" (")[0], FIRST_SEARCHES), "", fmt(ms, "%.2f ms"), "", "")


def as_postgres(*cmd, **kw):
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--") + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


@contextlib.contextmanager
def postgres_cluster():
    """Debian's PostgreSQL started in a temporary folder (Unix socket only,
    fsync off: the server's work is measured) with a database vmprof: its
    URL, or None when PostgreSQL is not installed; stopped and removed after."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        yield None
        return
    root = tempfile.mkdtemp(prefix="vmprof-bench-pg-")
    os.chmod(root, 0o755)
    pgdata, sock = os.path.join(root, "data"), os.path.join(root, "run")
    os.mkdir(sock)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    pg = None
    try:
        out = as_postgres(os.path.join(bins[-1], "initdb"), "-D", pgdata, "-A", "trust",
                          "-U", "postgres", "--no-sync")
        if out.returncode:
            raise RuntimeError("initdb: " + out.stderr)
        pg = subprocess.Popen(
            (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
            + [os.path.join(bins[-1], "postgres"), "-D", pgdata, "-k", sock, "-p", "5432",
               "-c", "listen_addresses=", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if as_postgres(os.path.join(bins[-1], "pg_isready"), "-h", sock,
                           "-p", "5432").returncode == 0:
                break
            time.sleep(0.1)
        as_postgres(os.path.join(bins[-1], "createdb"), "-h", sock, "-p", "5432", "vmprof")
        yield "postgresql:///vmprof?host=%s&port=5432&user=postgres" % sock
    finally:
        if pg:
            pg.terminate()
            pg.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def bench_list_postgres(r, data):
    """The same list against Debian's PostgreSQL, started here in a temporary
    folder (Unix socket only, fsync off: the reads are measured)."""
    with postgres_cluster() as url:
        if url is None:
            log("server: no PostgreSQL (scripts/setup.sh installs it); its list is not measured")
            return
        list_postgres(r, data, url)


def list_postgres(r, data, url):
    """bench_list_postgres's rows, on the cluster of url."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    sock = url.split("host=")[1].split("&")[0]
    server = Server(data, "--database", url)  # makes the schema
    # 10,000 frozen runs, made by SQL: the list reads rows only.
    # (owners as list_owner says)
    sql = ("INSERT INTO users (name, created) VALUES ('ten', 0), ('third', 0);"
           "INSERT INTO runs (id, argv, vm, created, state, samples, duration, threads,"
           " mode, interp, raw_size, complete, owner_id)"
           " SELECT lpad(to_hex(3458764513820540928 + i), 16, '0'),"
           " 'bench.py --case ' || i, 'CPython', 1700000000000 + i, 2, 1000000, 12.5,"
           " 1, 0, 'cpython', 339429145, 1,"
           " CASE WHEN i % 1000 = 500 THEN (SELECT id FROM users WHERE name = 'ten')"
           "      WHEN i % 3 = 1 THEN (SELECT id FROM users WHERE name = 'third') END"
           " FROM generate_series(0, 9999) AS i;"
           " ANALYZE runs;")
    out = as_postgres(os.path.join(bins[-1], "psql"), "-h", sock, "-p", "5432", "-d",
                      "vmprof", "-v", "ON_ERROR_STOP=1", "-c", sql)
    if out.returncode:
        raise RuntimeError("psql: " + out.stderr)
    rows, r["list_wrk_postgres"] = list_under_wrk(server, backends=True)
    server.stop()
    # Slow reads sent again (srv_db_read), all four rows together.
    hedges = re.search(r"(\d+) slow reads sent again .*?, (\d+) answered", server.stderr)
    r["list_wrk_postgres"]["hedges"] = {"sent": int(hedges.group(1)) if hedges else 0,
                                        "won": int(hedges.group(2)) if hedges else 0}
    log("server: PostgreSQL list, the four rows: %(sent)d reads sent again on a second"
        " connection, %(won)d answered first there" % r["list_wrk_postgres"]["hedges"])
    r["list_first_search_ms_postgres"] = first_search(lambda: Server(data, "--database", url))
    rows.append(first_search_row(r["list_first_search_ms_postgres"]) + ("",))
    table("vmprof-server: GET /api/runs with 10,000 runs (PostgreSQL %s, same machine), "
          "wrk 16 connections, %d s" % (os.path.basename(os.path.dirname(bins[-1])),
                                        LIST_SECONDS),
          ["", "requests/s", "p50", "p99 (goal < 10 ms)", "server CPU a request",
           "PostgreSQL's backends' CPU a request"], rows)
