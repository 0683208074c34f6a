"""The same server against PostgreSQL: Debian's postgresql, started here in a
temporary folder (as the postgres user, since initdb refuses root), reached
over a Unix socket only.  Two server processes share the database and the
data folder: what one takes, the other serves and deletes."""
import concurrent.futures
import ctypes
import ctypes.util
import functools
import glob
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import SERVER_BIN, Server

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def as_postgres(*args, **kw):
    cmd = list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


class Cluster(object):
    """A PostgreSQL cluster in a temporary folder, reached over a Unix socket
    only; stop() and start() it again with its data."""

    def __init__(self):
        self.bin_dir = PG_BIN[-1]
        self.root = tempfile.mkdtemp(prefix="vmprof-pg-")
        os.chmod(self.root, 0o755)
        self.data, self.sockets = os.path.join(self.root, "data"), os.path.join(self.root, "run")
        os.mkdir(self.sockets)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        # A UTF-8 locale whatever the tests' environment: the search folds the
        # case of letters beyond ASCII as LOWER() does in one (srv_fold), and
        # the server warns on a database of C or POSIX.
        out = as_postgres(os.path.join(self.bin_dir, "initdb"), "-D", self.data, "-A", "trust",
                          "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        assert out.returncode == 0, out.stderr
        self.running = False
        self.start()
        out = as_postgres(os.path.join(self.bin_dir, "createdb"), "-h", self.sockets, "-p",
                          "5432", "vmprof")
        assert out.returncode == 0, out.stderr
        self.url = "postgresql:///vmprof?host=%s&port=5432&user=postgres" % self.sockets

    def pg_ctl(self, *args):
        out = as_postgres(os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-w",
                          "-t", "60", *args)
        assert out.returncode == 0, out.stdout + out.stderr

    def start(self):
        self.pg_ctl("-l", os.path.join(self.root, "log"), "-o",
                    "-k %s -p 5432 -c listen_addresses= -c fsync=off" % self.sockets, "start")
        self.running = True

    def stop(self):
        """A fast shutdown (pg_ctl's default): sessions ended at once."""
        if self.running:
            self.pg_ctl("-m", "fast", "stop")
            self.running = False

    def remove(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    if not PG_BIN:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    cluster = Cluster()
    try:
        yield cluster.url
    finally:
        cluster.remove()


def test_two_servers_on_one_database(postgres, start_server, tmp_path, profile_bytes):
    data = tmp_path / "shared"
    one = start_server("--database", postgres, data=data)
    two = start_server("--database", postgres, data=data)
    token = one.add_user("dora")
    rid = one.upload(profile_bytes, argv="pg.py", token=token)
    assert [r["id"] for r in two.get("/api/runs")[1]["runs"]] == [rid]
    status, run, _ = two.get("/api/runs/%s" % rid)
    assert status == 200 and run["owner"] == "dora" and run["samples"] > 0
    assert two.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    tree = two.get("/api/runs/%s/tree" % rid)[1]
    assert tree["total"] == run["samples"]
    assert two.request("DELETE", "/api/runs/%s" % rid)[0] == 401
    # (one holds the decoded run and its first views, from the upload)
    assert one.get("/api/runs/%s/tree" % rid)[1] == tree
    assert two.request("DELETE", "/api/runs/%s" % rid, token=token)[0] == 200
    assert one.get("/api/runs/%s" % rid)[0] == 404
    # none of what one holds is served after the delete through two
    for view in ("tree", "functions", "raw", "export/collapsed"):
        assert one.get("/api/runs/%s/%s" % (rid, view))[0] == 404, view
    assert one.get("/api/runs")[1]["runs"] == []
    # The same rules as with SQLite: a corrupt upload leaves nothing.
    status, reply, _ = one.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    bad = one.request("POST", "/api/runtime/upload/cpu/%s/add" % reply["runtime_id"],
                      b"not a profile" * 10)
    assert bad[0] == 400


def test_list_filters_and_paging_on_postgres(postgres, start_server, tmp_path, profile_bytes):
    server = start_server("--database", postgres, data=tmp_path / "d")
    ids = [server.upload(profile_bytes, argv="Job %d 50%%" % i) for i in range(52)]
    first = server.get("/api/runs?q=job")[1]
    assert len(first["runs"]) == 50 and first["next"].startswith("before-")
    assert [r["id"] for r in first["runs"]] == ids[:1:-1]
    assert [r["id"] for r in server.get("/api/runs?q=job&page=" + first["next"])[1]["runs"]] == ids[1::-1]
    assert [r["id"] for r in server.get("/api/runs?q=jo&page=" + first["next"])[1]["runs"]] == ids[1::-1]
    assert [r["id"] for r in server.get("/api/runs?q=Job%207%2050%25")[1]["runs"]] == [ids[7]]
    assert server.get("/api/runs?q=job%207%205_")[1]["runs"] == []
    assert server.get("/api/health")[0] == 200


def test_kill_9_during_uploads_on_postgres(postgres, start_server, tmp_path, profile_bytes):
    # As test_crash.py's, on PostgreSQL: nothing answered is lost and nothing
    # half-uploaded is listed (here unfrozen rows stay until they are a day
    # old, since other servers may be mid-upload: they are simply not listed).
    import random
    import signal
    import threading
    from test_crash import Uploader
    server = start_server("--database", postgres, data=tmp_path / "pgcrash")
    current = {"port": server.port}
    stop = threading.Event()
    uploaders = [Uploader(current, [profile_bytes], stop) for _ in range(4)]
    for u in uploaders:
        u.start()
    try:
        for delay in (0.8, 1.3):
            time.sleep(delay)
            server.stop(signal.SIGKILL)
            server.start()
            current["port"] = server.port
        time.sleep(1.0)
    finally:
        stop.set()
        for u in uploaders:
            u.join(timeout=60)
    frozen, attempted = {}, {}
    for u in uploaders:
        frozen.update(u.frozen)
        attempted.update(u.attempted)
    assert frozen
    listed, page = [], 1
    while page:
        reply = server.get("/api/runs?page=%s" % page)[1]
        listed += [r["id"] for r in reply["runs"]]
        page = reply["next"]
    listed = [rid for rid in listed if rid in attempted]  # the module's other tests' runs
    assert len(listed) == len(set(listed))
    assert set(frozen) <= set(listed)
    for rid in listed:
        assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def run_files(data, rid):
    return sorted(n for n in os.listdir(os.path.join(str(data), "runs")) if n.startswith(rid))


def wait_for_path(path, seconds=60):
    """Waits until path exists (a server's test gate reached: see
    srv_test_gate), at most that long."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "%s did not appear within %d s" % (path, seconds)
        time.sleep(0.02)


def start_in_background(start_server, *options, **kw):
    """start_server(...) in a thread, for a start that a test gate holds:
    (thread, {"server": ...} once it has started)."""
    import threading
    box = {}

    def run():
        try:
            box["server"] = start_server(*options, **kw)
        except BaseException as e:  # (re-raised by the test)
            box["error"] = e
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def send_half(server, rid, body):
    """An upload whose body is half sent: (socket, the rest to send)."""
    import socket
    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
               "Content-Length: %d\r\n\r\n" % (rid, len(body))).encode())
    s.sendall(body[:len(body) // 2])
    return s, body[len(body) // 2:]


def begin_upload(server, argv, body, data):
    """A new run of server's whose upload has begun (its file is in
    data/tmp) with half its body sent: (run id, socket, the rest to send)."""
    rid = server.request("POST", "/api/runtime/new", {"argv": argv, "VM": "CPython"})[1][
        "runtime_id"]
    sock, rest = send_half(server, rid, body)
    deadline = time.monotonic() + 60
    while not any(n.startswith(rid) for n in os.listdir(str(data / "tmp"))):
        assert time.monotonic() < deadline, "the upload's file never came to tmp/"
        time.sleep(0.02)
    return rid, sock, rest


def age_run(url, rid, columns=("created", "active")):
    """Makes run rid's row two days older (its columns named) in the
    database that url names."""
    database = url.split("///")[1].split("?")[0]
    psql(url, database, "UPDATE runs SET %s WHERE id = '%s'" % (
        ", ".join("%s = %s - 2 * 86400000" % (c, c) for c in columns), rid))


def finish_sending(s, rest):
    """Sends the rest of the body; the answer's status and body."""
    s.sendall(rest)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        got = s.recv(65536)
        if not got:
            break
        answer += got
    s.close()
    return int(answer.split()[1]), answer


def test_files_no_run_names_are_removed_at_start_on_postgres(postgres, start_server, tmp_path,
                                                            profile_bytes):
    """With PostgreSQL a start removes the files in runs/ whose run has no
    row at all (a run deleted whose files stayed, an upload renamed in after
    its row was swept), and keeps those of every row: frozen, uploaded and
    not frozen (another server's upload in progress).  Before, nothing was
    removed there, and such files stayed for good."""
    data = tmp_path / "shared"
    server = start_server("--database", postgres, data=data)
    frozen = server.upload(profile_bytes, argv="frozen.py")
    unfrozen = server.upload(profile_bytes, argv="unfrozen.py", freeze=False)
    assert server.stop()[0] == 0
    runs = data / "runs"
    stored = run_files(data, frozen)[0]
    orphans = ["%016x" % (0xdead0000 + i) for i in range(3)]
    shutil.copyfile(str(runs / stored), str(runs / (orphans[0] + stored[len(frozen):])))
    shutil.copyfile(str(runs / stored), str(runs / (orphans[1] + ".prof.vmc")))
    (runs / (orphans[1] + ".jit.gz")).write_bytes(b"\x1f\x8b not read")
    (runs / (orphans[2] + ".prof")).write_bytes(profile_bytes)
    server.start()
    for rid in orphans:
        assert run_files(data, rid) == [], rid
    assert run_files(data, frozen) == [stored]
    assert run_files(data, unfrozen) == [unfrozen + ".prof.vmc"]
    assert server.get("/api/runs/%s/raw" % frozen)[1] == profile_bytes
    assert server.request("POST", "/api/runtime/%s/freeze/" % unfrozen, b"")[0] == 200
    assert server.get("/api/runs/%s/raw" % unfrozen)[1] == profile_bytes
    status, err = server.stop()
    assert status == 0 and "removed 4 files in runs/ that no run names" in err, err


def test_uploads_in_flight_at_another_server_are_kept_through_a_start(postgres, start_server,
                                                                      tmp_path, profile_bytes):
    """A server starting while another uploads into the shared folder harms
    none of its uploads: one whose file is in runs/ but whose row does not
    say so yet (held there by a test gate), and one whose body is half sent.
    Both finish, freeze through the new server and are served identical."""
    data = tmp_path / "shared"
    gate = tmp_path / "stored"
    gate.mkdir()
    one = start_server("--database", postgres, data=data,
                       env=dict(os.environ, VMPROF_SERVER_TEST_UPLOAD_STORED=str(gate)))
    new = lambda: one.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})[1]
    held, halfway = new()["runtime_id"], new()["runtime_id"]
    import threading
    answers = {}
    uploader = threading.Thread(target=lambda: answers.update(held=one.request(
        "POST", "/api/runtime/upload/cpu/%s/add" % held, profile_bytes)), daemon=True)
    uploader.start()
    wait_for_path(str(gate / "reached"))
    assert run_files(data, held) == [held + ".prof.vmc"]  # (its row is still made, not uploaded)
    os.unlink(str(gate / "reached"))
    sock, rest = send_half(one, halfway, profile_bytes)
    two = start_server("--database", postgres, data=data)
    (gate / "go").touch()
    uploader.join(timeout=120)
    assert answers["held"][0] == 200, answers
    assert finish_sending(sock, rest)[0] == 200
    for rid in (held, halfway):
        assert run_files(data, rid) == [rid + ".prof.vmc"]
        assert two.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
        assert two.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
        assert one.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    assert "that no run names" not in two.stop()[1]


def test_a_run_uploaded_while_a_start_looks_for_orphans_is_kept(postgres, start_server,
                                                               tmp_path, profile_bytes):
    """A start lists runs/ first and asks for the rows after: a run made and
    uploaded through another server in between (its row is newer than the
    listing, its file too) keeps its file.  Asking first would have found no
    row for a file listed after."""
    data = tmp_path / "shared"
    one = start_server("--database", postgres, data=data)
    orphan = "%016x" % 0xdead1000
    (data / "runs" / (orphan + ".prof")).write_bytes(profile_bytes)
    gate = tmp_path / "listed"
    gate.mkdir()
    thread, box = start_in_background(start_server, "--database", postgres, data=data,
                                      env=dict(os.environ,
                                               VMPROF_SERVER_TEST_ORPHANS_LISTED=str(gate)))
    wait_for_path(str(gate / "reached"))
    rid = one.upload(profile_bytes, argv="meanwhile.py")
    (gate / "go").touch()
    thread.join(timeout=120)
    assert "server" in box, box
    two = box["server"]
    assert run_files(data, orphan) == []
    assert run_files(data, rid)
    assert two.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def test_an_upload_whose_run_was_swept_meanwhile_leaves_no_file(postgres, start_server, tmp_path,
                                                               profile_bytes):
    """A run whose upload began more than a day ago (its row's active time
    made two days old here, once the body has begun) is swept by a start of
    another server while its body arrives: the upload's file, renamed into
    runs/ after the sweep, is removed by the upload itself, which says the
    runtime is gone (404).  Before, 400 "frozen meanwhile", and the file
    stayed with no run naming it."""
    data = tmp_path / "shared"
    one = start_server("--database", postgres, data=data)
    rid, sock, rest = begin_upload(one, "late.py", profile_bytes, data)
    age_run(postgres, rid)
    start_server("--database", postgres, data=data)  # (sweeps the run, a day old)
    status, answer = finish_sending(sock, rest)
    assert status == 404 and b"was removed meanwhile" in answer, answer
    assert run_files(data, rid) == []
    assert os.listdir(str(data / "tmp")) == []


def test_guesses_through_one_server_count_at_the_other(postgres, start_server, tmp_path):
    """Failed guesses are counted in the database: wrong tokens sent to two
    servers sharing it add up, and both then refuse the address (429), even
    with the right token; a successful login through one clears the address
    at the other."""
    data = tmp_path / "shared"
    one = start_server("--database", postgres, data=data)
    two = start_server("--database", postgres, data=data)
    token = one.add_user("erin")
    out = subprocess.run([SERVER_BIN, "--data", str(data), "--database", postgres, "user",
                          "password", "erin"], input="correct horse\n", capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    def ask(server, tok, address):
        return server.request("GET", "/api/me", token=tok, headers={"X-Forwarded-For": address})

    def login(server, password, address):
        return server.request("POST", "/api/login", {"name": "erin", "password": password},
                              headers={"X-Forwarded-For": address})[0]

    wrong = "e" * 48
    for _ in range(3):
        assert ask(one, wrong, "192.0.2.70")[0] == 401
    for _ in range(2):
        assert ask(two, wrong, "192.0.2.70")[0] == 401
    for server in (one, two):
        status, reply, resp = ask(server, token, "192.0.2.70")
        assert status == 429 and "wrong API tokens" in reply["error"], reply
        assert 0 < int(resp.getheader("Retry-After")) <= 600
        assert login(server, "correct horse", "192.0.2.70") == 429
    assert ask(two, token, "192.0.2.71")[1]["user"] == "erin"
    # Three failed logins at one, a good one at two: one has forgotten them
    # (four more failures would make seven, refused from the sixth, otherwise).
    for _ in range(3):
        assert login(one, "wrong", "192.0.2.72") == 401
    assert login(two, "correct horse", "192.0.2.72") == 200
    for _ in range(4):
        assert ask(one, wrong, "192.0.2.72")[0] == 401
    assert ask(one, token, "192.0.2.72")[1]["user"] == "erin"


def psql(url, database, sql):
    """Runs sql (ON_ERROR_STOP) in another database of the cluster that url
    reaches; returns its rows as lists of text."""
    sockets = url.split("host=")[1].split("&")[0]
    out = as_postgres(os.path.join(PG_BIN[-1], "psql"), "-h", sockets, "-p", "5432", "-d",
                      database, "-v", "ON_ERROR_STOP=1", "-AtF", "\t", "-c", sql)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def own_database(postgres, name):
    """Creates database name in the cluster of the fixture postgres; its URL."""
    sockets = postgres.split("host=")[1].split("&")[0]
    out = as_postgres(os.path.join(PG_BIN[-1], "createdb"), "-h", sockets, "-p", "5432", name)
    assert out.returncode == 0, out.stderr
    return postgres.replace("/vmprof?", "/%s?" % name)


def lock_runs(url, database, table="runs"):
    """A psql session holding table runs (or table) locked (ACCESS EXCLUSIVE)
    until unlock_runs: every read of it waits, holding its connection."""
    sockets = url.split("host=")[1].split("&")[0]
    locker = subprocess.Popen(
        (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
        + [os.path.join(PG_BIN[-1], "psql"), "-h", sockets, "-p", "5432", "-d", database,
           "-v", "ON_ERROR_STOP=1", "-Atq"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    locker.stdin.write("BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n"
                       % table)
    locker.stdin.flush()
    assert locker.stdout.readline().strip() == "locked"
    return locker


def unlock_runs(locker):
    locker.stdin.write("COMMIT;\n")
    locker.stdin.close()
    assert locker.wait(timeout=60) == 0


def test_search_on_postgres_finds_what_reading_every_run_finds(postgres, start_server,
                                                                tmp_path):
    """q= of ASCII text on PostgreSQL reads the newest runs of the list of
    q's rarest trigram (table runs_trigrams, kept by a trigger; counts kept a
    while in the server), a page's worth first and then the whole list, or
    leaves a trigram most runs hold to the planner: every page says what
    reading every run finds, newest first, through each way; also after
    renames and deletes, for a trigram first counted when no run held it,
    and through a server that fills the table from runs already there."""
    url = own_database(postgres, "vmprof_search")
    server = start_server("--database", url, data=tmp_path / "d")
    # 900 runs: 300 "Tool" ones, more than the first read of a list (4 pages'
    # worth) and fewer than half the runs; names on every 7th.
    psql(url, "vmprof_search",
         "INSERT INTO runs (id, argv, vm, name, created, state, samples, duration)"
         " SELECT lpad(to_hex(13434880 + i), 16, '0'),"
         " CASE WHEN i % 3 = 0 THEN 'Tool --CASE X' || i || 'Y' ELSE 'bench.py --case ' || i END,"
         " CASE WHEN i % 5 = 0 THEN 'PyPy' ELSE 'CPython' END,"
         " CASE WHEN i % 7 = 0 THEN 'named ' || i END, 1700000000000 + i, 2, 10, 1.5"
         " FROM generate_series(0, 899) AS i")

    def runs(vm=None):
        return [(i, argv, name or None) for i, argv, name, v in
                psql(url, "vmprof_search", "SELECT id, argv, name, vm FROM runs ORDER BY seq DESC")
                if vm in (None, v)]

    def expected(q, vm=None):
        q = q.lower()
        return [i for i, argv, name in runs(vm)
                if q in argv.lower() or (name and q in name.lower())]

    def pages(query):
        got, page = [], "1"
        while page:
            reply = server.get("/api/runs?%s&page=%s" % (query, page))[1]
            got += [r["id"] for r in reply["runs"]]
            page = reply["next"]
        return got

    queries = ["tool", "TOOL --case x1", "x29", "case 7", "CASE 1", "case 149", "se 1", "--case",
               "BENCH.PY", "py --c",
               "e X1", "named 14", "ed 7", "bench", "nothing here", "1y", "0y", "9Y", "_1",
               "%", "x1%", "ca", "é x"]
    for q in queries:
        assert server.search_all(q) == expected(q), q
    assert server.search_all("") == [i for i, _, _ in runs()]
    # With vm= (or vm= empty: any) as well.
    for q in ("bench", "tool", "case 1", "PY --", ""):
        assert pages("q=%s&vm=PyPy" % urllib.parse.quote(q)) == expected(q, "PyPy"), q
        assert pages("q=%s&vm=" % urllib.parse.quote(q)) == expected(q), q
    # Renamed and deleted runs: the trigger keeps the trigrams in step.
    psql(url, "vmprof_search",
         "UPDATE runs SET name = 'Renamed ' || seq WHERE seq % 11 = 0;"
         " UPDATE runs SET argv = 'moved X' || seq WHERE seq % 13 = 0;"
         " DELETE FROM runs WHERE seq % 17 = 0")
    for q in queries + ["renamed", "moved x1", "named 14"]:
        assert server.search_all(q) == expected(q), q
    # Counted when no run held it (the count is kept), then one does.
    assert server.search_all("zzq") == []
    psql(url, "vmprof_search", "INSERT INTO runs (id, argv, vm, created, state)"
         " VALUES ('00000000cafe0001', 'tool zzq', 'CPython', 1800000000000, 2)")
    assert server.search_all("zzq") == expected("zzq") != []
    # The server's sessions ended under it (their prepared statements with
    # them): a broken connection answers one error, then is opened again.
    psql(url, "vmprof_search", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
         " WHERE datname = 'vmprof_search' AND pid <> pg_backend_pid()")
    statuses = [server.get("/api/runs?q=tool")[0] for _ in range(20)]
    assert set(statuses) <= {200, 503} and statuses[-10:] == [200] * 10, statuses
    assert server.search_all("tool") == expected("tool")
    assert server.search_all("") == [i for i, _, _ in runs()]
    # A database whose runs came before the table: the next server fills it.
    psql(url, "vmprof_search", "DROP TRIGGER runs_trigrams_sync ON runs; DELETE FROM runs_trigrams;"
         " UPDATE runs SET argv = argv || ' later' WHERE seq % 5 = 0")
    other = start_server("--database", url, data=tmp_path / "d")
    for q in queries + ["later", "zzq"]:
        assert other.search_all(q) == expected(q), q
    assert psql(url, "vmprof_search", "SELECT COUNT(*) FROM pg_trigger"
                " WHERE tgname = 'runs_trigrams_sync'") == [["1"]]


def test_a_search_asked_by_many_at_once_counts_its_trigrams_once(postgres, start_server,
                                                                  tmp_path):
    """The runs holding each trigram of q (which picks the list to walk) are
    read by one search at a time: the others asking at once wait for that
    answer instead of each reading every count again (16 at once under wrk,
    each count sent again when slow, made a search's first second slow).
    Here the table of trigrams is locked, so a count read waits in
    PostgreSQL where it can be seen: of 8 searches at once, one waits there.
    Once unlocked, every answer is the right page."""
    url = own_database(postgres, "vmprof_counts")
    # No read sent again (a second count waiting would be the hedge's).
    env = dict(os.environ, VMPROF_SERVER_HEDGE_MS="0")
    server = start_server("--database", url, data=tmp_path / "d", env=env)
    psql(url, "vmprof_counts",
         "INSERT INTO runs (id, argv, vm, created, state, samples, duration)"
         " SELECT lpad(to_hex(16777216 + i), 16, '0'), 'bench.py --case ' || i, 'CPython',"
         " 1700000000000 + i, 2, 10, 1.5 FROM generate_series(0, 299) AS i")
    expected = [i for i, argv in psql(url, "vmprof_counts",
                                      "SELECT id, argv FROM runs ORDER BY seq DESC")
                if "case 1" in argv][:50]
    assert server.get("/api/runs")[0] == 200  # the pool's first session is open

    def waiting():
        return int(psql(url, "vmprof_counts",
                        "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                        " WHERE NOT l.granted AND c.relname = 'runs_trigrams'")[0][0])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        locker = lock_runs(url, "vmprof_counts", "runs_trigrams")
        try:
            asked = [pool.submit(server.get, "/api/runs?q=case%201", timeout=120)
                     for _ in range(8)]
            for _ in range(600):
                if waiting():
                    break
                time.sleep(0.1)
            # Two seconds more for the other 7, sent at the same moment, to
            # reach their counts: none reads them in PostgreSQL beside it.
            seen = []
            for _ in range(20):
                time.sleep(0.1)
                seen.append(waiting())
            assert set(seen) == {1}, seen
        finally:
            unlock_runs(locker)
        for reply in asked:
            status, page, _ = reply.result()
            assert status == 200 and [r["id"] for r in page["runs"]] == expected


def client_backends(url, database):
    """The pids of the client sessions of database (psql's own left out)."""
    return [int(pid) for (pid,) in psql(
        url, database, "SELECT pid FROM pg_stat_activity WHERE datname = '%s'"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()" % database)]


def test_a_read_whose_session_stalls_is_answered_through_another(postgres, start_server,
                                                                 tmp_path, profile_bytes):
    """A list statement unanswered after a few ms is sent again on a second
    connection and the first answer is the page (srv_db_read).  Here the
    server's one PostgreSQL session is stopped (SIGSTOP: a process that
    never gets a core): pages and searches, the kept plan's walk included,
    still come, right, and a write in the meantime lands once.  The stopped
    session's answer, once it comes, is thrown away, never taken for a later
    statement's; a stopped session that is then terminated is opened again
    with its prepared statements."""
    url = own_database(postgres, "vmprof_hedge")
    # Sent again after 2 s (4 ms by default): long enough that no read is
    # sent again before the test stops a session, whatever the load.
    env = dict(os.environ, VMPROF_SERVER_HEDGE_MS="2000")
    server = start_server("--database", url, data=tmp_path / "d", env=env)
    psql(url, "vmprof_hedge",
         "INSERT INTO runs (id, argv, vm, created, state, samples, duration)"
         " SELECT lpad(to_hex(15728640 + i), 16, '0'),"
         " CASE WHEN i % 3 = 0 THEN 'Tool --case ' || i ELSE 'bench.py --case ' || i END,"
         " 'CPython', 1700000000000 + i, 2, 10, 1.5 FROM generate_series(0, 299) AS i")

    def expected(q):
        rows = psql(url, "vmprof_hedge", "SELECT id, argv FROM runs ORDER BY seq DESC")
        return [i for i, argv in rows if q.lower() in argv.lower()]

    def check_pages():
        for q in ("", "tool", "case 1", "bench"):
            assert server.search_all(q) == expected(q), q

    check_pages()
    # One request at a time, none slow: the pool has used its first
    # connection only.
    [stalled] = client_backends(url, "vmprof_hedge")
    os.kill(stalled, signal.SIGSTOP)
    try:
        status, page, _ = server.get("/api/runs", timeout=60)
        assert status == 200 and [r["id"] for r in page["runs"]] == expected("")[:50]
        check_pages()
        rid = server.upload(profile_bytes, argv="while stalled")
    finally:
        os.kill(stalled, signal.SIGCONT)
    # Its answer comes now; later statements on that session get their own.
    for _ in range(5):
        check_pages()
    assert expected("while stalled") == [rid]
    # Stopped, then ended while its answer is owed: a second server, whose
    # one session so far is the new one.
    before = set(client_backends(url, "vmprof_hedge"))
    other = start_server("--database", url, data=tmp_path / "d", env=env)
    [stalled] = set(client_backends(url, "vmprof_hedge")) - before
    os.kill(stalled, signal.SIGSTOP)
    try:
        status, page, _ = other.get("/api/runs?q=tool", timeout=60)
        assert status == 200 and [r["id"] for r in page["runs"]] == expected("tool")[:50]
        psql(url, "vmprof_hedge", "SELECT pg_terminate_backend(%d)" % stalled)
    finally:
        os.kill(stalled, signal.SIGCONT)
    # The ended session answers one error at most, then is opened again
    # (with the walk's statement prepared anew).
    statuses = [other.get("/api/runs?q=tool")[0] for _ in range(10)]
    assert set(statuses) <= {200, 503} and statuses[-5:] == [200] * 5, statuses
    for q in ("", "tool", "case 1", "bench"):
        assert other.search_all(q) == expected(q), q
    # Both servers said they sent reads again, and that the second answered.
    for s in (server, other):
        status, err = s.stop()
        assert status == 0, err
        sent, won = re.search(r"(\d+) slow reads sent again .*?, (\d+) answered", err).groups()
        assert int(sent) >= 1 and int(won) >= 1, err


def test_a_failed_connect_leaves_its_pool_slot_for_a_later_one(postgres, start_server,
                                                               tmp_path):
    """While the database refuses sessions, requests that find no connection
    free fail to open one (503), many at once; once it accepts them again
    the server gets its whole pool back: 8 sessions at once, however those
    connects failed (a slot was lost for good when its connect failed after
    a later slot's had started)."""
    url = own_database(postgres, "vmprof_pool")
    # No reads sent again: the pool's 8 connections only, no spares.
    env = dict(os.environ, VMPROF_SERVER_HEDGE_MS="0")
    server = start_server("--database", url, data=tmp_path / "d", env=env)
    psql(url, "vmprof_pool",
         "INSERT INTO runs (id, argv, vm, created, state, samples, duration)"
         " SELECT lpad(to_hex(16711680 + i), 16, '0'), 'prog.py ' || i, 'CPython',"
         " 1700000000000 + i, 2, 10, 1.5 FROM generate_series(0, 99) AS i")
    expected = [i for (i,) in psql(url, "vmprof_pool", "SELECT id FROM runs ORDER BY seq DESC")]

    def sessions():
        return int(psql(url, "postgres", "SELECT COUNT(*) FROM pg_stat_activity"
                        " WHERE datname = 'vmprof_pool' AND backend_type = 'client backend'"
                        " AND application_name <> 'psql'")[0][0])

    def get_first_page():
        return server.get("/api/runs", timeout=120)

    locker = lock_runs(url, "vmprof_pool")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=24)
    waiting = []
    try:
        # The server's one session waits on the lock with a first request.
        waiting.append(pool.submit(get_first_page))
        for _ in range(600):
            if psql(url, "postgres", "SELECT COUNT(*) FROM pg_locks WHERE NOT granted") != [["0"]]:
                break
            time.sleep(0.1)
        psql(url, "postgres", "ALTER DATABASE vmprof_pool ALLOW_CONNECTIONS false")
        # Every other request connects, and fails, many at once.
        for _ in range(5):
            statuses = [f.result()[0] for f in [pool.submit(get_first_page) for _ in range(16)]]
            assert set(statuses) == {503}, statuses
        psql(url, "postgres", "ALTER DATABASE vmprof_pool ALLOW_CONNECTIONS true")
        assert sessions() == 1
        # (after its connects failed the server tries again once its backoff,
        # at most 2 s, has passed; before that, requests are answered 503)
        time.sleep(2.5)
        # Back: requests enough for the whole pool, each waiting on the lock
        # once it has its session.
        waiting += [pool.submit(get_first_page) for _ in range(12)]
        for _ in range(600):
            if sessions() >= 8:
                break
            time.sleep(0.1)
        assert sessions() == 8
    finally:
        unlock_runs(locker)
        psql(url, "postgres", "ALTER DATABASE vmprof_pool ALLOW_CONNECTIONS true")
        pool.shutdown(wait=True)
    for f in waiting:
        status, page, _ = f.result()
        assert status == 200 and [r["id"] for r in page["runs"]] == expected[:50]
    assert sessions() == 8


def test_a_session_stuck_for_good_gives_its_slot_back(postgres, start_server, tmp_path):
    """A read's losing connection is set aside until its answer comes; one
    whose answer never comes (a session stopped for good) is closed after
    the drain bound (VMPROF_SERVER_DRAIN_MS here, 30 s by default) and its
    slot serves again.  Three sessions stuck that way took the 2 spares and
    one of the pool's 8 forever: 7 reads at once at most."""
    url = own_database(postgres, "vmprof_stuck")
    # Sent again after 2 s: no read is sent again by chance before a session
    # is stopped.
    env = dict(os.environ, VMPROF_SERVER_HEDGE_MS="2000", VMPROF_SERVER_DRAIN_MS="1000")
    server = start_server("--database", url, data=tmp_path / "d", env=env)
    psql(url, "vmprof_stuck",
         "INSERT INTO runs (id, argv, vm, created, state, samples, duration)"
         " SELECT lpad(to_hex(16776960 + i), 16, '0'), 'prog.py ' || i, 'CPython',"
         " 1700000000000 + i, 2, 10, 1.5 FROM generate_series(0, 99) AS i")
    expected = [i for (i,) in psql(url, "vmprof_stuck", "SELECT id FROM runs ORDER BY seq DESC")]

    def get_first_page():
        return server.get("/api/runs", timeout=120)

    stopped = []

    def live_sessions():
        return [pid for pid in client_backends(url, "vmprof_stuck") if pid not in stopped]

    locker = None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=16)
    waiting = []
    try:
        # Three times: the one session free is stopped; a read is answered
        # through a new one, the stopped one set aside.
        for _ in range(3):
            [session] = live_sessions()
            os.kill(session, signal.SIGSTOP)
            stopped.append(session)
            status, page, _ = get_first_page()
            assert status == 200 and [r["id"] for r in page["runs"]] == expected[:50]
        # Reads of runs each holding a connection: enough for the whole pool.
        locker = lock_runs(url, "vmprof_stuck")
        waiting = [pool.submit(get_first_page) for _ in range(12)]

        def server_sessions():
            return int(psql(url, "postgres", "SELECT COUNT(*) FROM pg_stat_activity"
                            " WHERE datname = 'vmprof_stuck' AND backend_type = 'client backend'"
                            " AND application_name <> 'psql' AND pid NOT IN (%s)"
                            % ",".join(str(p) for p in stopped))[0][0])
        for _ in range(600):
            if server_sessions() >= 8:
                break
            time.sleep(0.1)
        assert server_sessions() >= 8
    finally:
        if locker:
            unlock_runs(locker)
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        pool.shutdown(wait=True)
    for f in waiting:
        status, page, _ = f.result()
        assert status == 200 and [r["id"] for r in page["runs"]] == expected[:50]
    # said when the server stops: the sessions closed stuck (at least the one
    # the eighth read needed; those still set aside when they were let go
    # answered, and went back to the pool)
    status, err = server.stop()
    assert status == 0, err
    stuck = re.search(r"(\d+) database sessions closed stuck", err)
    assert stuck and 1 <= int(stuck.group(1)) <= 3, err


def test_a_view_whose_session_ends_midway_says_to_retry(postgres, start_server, tmp_path,
                                                        profile_bytes):
    """A view of a run the server holds decoded still reads the run's row (whether
    it still exists is the database's to say: docs/server.md).  Its session
    ended while the statement waits (terminated, as when PostgreSQL stops):
    503 whose one line says why and to retry, with Retry-After; asked again,
    it is answered through a new session."""
    url = own_database(postgres, "vmprof_lost")
    server = start_server("--database", url, data=tmp_path / "d")
    rid = server.upload(profile_bytes)
    tree = "/api/runs/%s/tree" % rid
    assert server.get(tree)[0] == 200
    locker = lock_runs(url, "vmprof_lost")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            asked = pool.submit(server.get, tree, timeout=120)
            waiting = []
            for _ in range(600):
                waiting = psql(url, "vmprof_lost",
                               "SELECT pid FROM pg_stat_activity WHERE datname = 'vmprof_lost'"
                               " AND wait_event_type = 'Lock'")
                if waiting:
                    break
                time.sleep(0.1)
            assert len(waiting) == 1, waiting
            psql(url, "vmprof_lost", "SELECT pg_terminate_backend(%s)" % waiting[0][0])
            status, reply, resp = asked.result()
    finally:
        unlock_runs(locker)
    assert status == 503, reply
    error = reply["error"]
    # (the first line of PostgreSQL's or libpq's reason, whichever came)
    assert re.fullmatch(r"cannot read the run: the connection to PostgreSQL was lost \(.+\); "
                        r"retry in 1 s", error), error
    assert resp.getheader("Retry-After") == "1"
    assert server.get(tree)[0] == 200


def test_the_database_stopped_then_started_again(start_server, tmp_path, profile_bytes):
    """PostgreSQL stopped under a running server, then started again.
    Restarted while nobody asked: every request after it is answered (the
    pool's sessions that ended are closed before use, not used for one
    failed request each).  While it is down: 503 with a one-line reason and
    Retry-After, most requests answered without a connect of their own (one
    tries at a time, after a backoff of at most 2 s); once it is back, the
    server answers again within that backoff."""
    if not PG_BIN:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    cluster = Cluster()
    try:
        server = start_server("--database", cluster.url, data=tmp_path / "d")
        rid = server.upload(profile_bytes)
        # The pool's sessions: 8 reads at once, each held by the lock.
        locker = lock_runs(cluster.url, "vmprof")
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            held = [pool.submit(server.get, "/api/runs", timeout=120) for _ in range(8)]
            for _ in range(600):
                if len(client_backends(cluster.url, "vmprof")) >= 8:
                    break
                time.sleep(0.1)
            unlock_runs(locker)
            assert all(f.result()[0] == 200 for f in held)
        sessions = client_backends(cluster.url, "vmprof")
        assert len(sessions) >= 8, sessions
        paths = ["/api/runs", "/api/runs/" + rid, "/api/runs/%s/tree" % rid, "/api/health",
                 "/api/runs?q=prog"]

        # Stopped and started again with no request meanwhile.
        cluster.stop()
        cluster.start()
        for _ in range(3):
            for path in paths:
                status, reply, _ = server.get(path)
                assert status == 200, (path, reply)
        status, reply, _ = server.request("POST", "/api/runtime/new",
                                          {"argv": "x.py", "VM": "CPython"})
        assert status == 200, reply

        # An upload between its steps, with the database stopped meanwhile:
        # 503 and nothing kept; the step asked again once it is back: the run
        # as uploaded.  (asked: the requests while it was not back)
        asked = 0
        status, reply, _ = server.request("POST", "/api/runtime/new",
                                          {"argv": "retried.py", "VM": "CPython"})
        retried = reply["runtime_id"]
        cluster.stop()
        add = "/api/runtime/upload/cpu/%s/add" % retried
        status, reply, resp = server.request("POST", add, profile_bytes)
        asked += 1
        assert status == 503 and resp.getheader("Retry-After"), reply
        assert reply["error"].endswith(" s"), reply  # (the advice is not cut off)
        assert not [n for n in os.listdir(os.path.join(server.data, "runs"))
                    if n.startswith(retried)]
        cluster.start()
        for _ in range(100):
            status, reply, _ = server.request("POST", add, profile_bytes)
            asked += 1
            if status != 503:
                break
            time.sleep(0.1)
        assert status == 200, reply
        cluster.stop()
        freeze = "/api/runtime/%s/freeze/" % retried
        assert server.request("POST", freeze, b"")[0] == 503
        asked += 1
        cluster.start()
        for _ in range(100):
            status, reply, _ = server.request("POST", freeze, b"")
            asked += 1
            if status != 503:
                break
            time.sleep(0.1)
        assert status == 200, reply
        assert server.get("/api/runs/%s/raw" % retried)[1] == profile_bytes

        # Stopped, and asked meanwhile.
        cluster.stop()
        for _ in range(10):
            for path in paths:
                status, reply, resp = server.get(path)
                asked += 1
                assert status == 503, (path, status, reply)
                error = reply["error"]
                assert error and "\n" not in error, reply
                assert ("not reachable" in error or "connection to PostgreSQL was lost"
                        in error), error
                assert 1 <= int(resp.getheader("Retry-After")) <= 2, resp.getheaders()
            status, reply, resp = server.request("POST", "/api/runtime/new",
                                                 {"argv": "x.py", "VM": "CPython"})
            asked += 1
            assert status == 503 and resp.getheader("Retry-After"), reply
        cluster.start()
        # Back: answered again once the backoff has passed (at most 2 s).
        for _ in range(100):
            asked += 1
            if server.get("/api/health")[0] == 200:
                break
            time.sleep(0.1)
        for path in paths:
            status, reply, _ = server.get(path)
            assert status == 200, (path, reply)
        status, err = server.stop()
        assert status == 0, err
        closed = re.search(r"(\d+) found ended \(the database restarted\)", err)
        assert closed and int(closed.group(1)) >= 8, err
        failed, refused = map(int, re.search(
            r"(\d+) connects to the database failed; (\d+) requests answered 503 at once",
            err).groups())
        # (each request while it was down either tried a connect or was
        # refused without one)
        assert failed >= 1 and refused >= 1 and failed + refused <= asked, err
        assert failed < asked / 2, err
    finally:
        cluster.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, start_server, tmp_path):
    """A server on SQLite, then on PostgreSQL (skipped without it), and a
    function running SQL on its database, which returns the rows as lists
    of text ('' for NULL, as psql gives them)."""
    data = tmp_path / "d"
    if request.param == "sqlite":
        server = start_server(data=data)

        def sql(statement):
            db = sqlite3.connect(str(data / "vmprof.db"), timeout=30)
            try:
                if statement.lstrip().upper().startswith("SELECT"):
                    return [["" if v is None else str(v) for v in row]
                            for row in db.execute(statement)]
                db.executescript(statement)
                db.commit()
                return []
            finally:
                db.close()
        return server, sql
    # (a database of each test's own, in the session's cluster)
    name = "vmprof_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40]
    url = own_database(request.getfixturevalue("postgres"), name)
    return start_server("--database", url, data=data), lambda s: psql(url, name, s)


def test_a_search_most_runs_match_finds_what_reading_every_run_finds(engine):
    """q= of ASCII text that most runs hold the rarest trigram of is read
    from the newest page's worth of runs first, through a statement whose
    plan is kept per connection (PostgreSQL), and asks the planner only when
    they hold no full page.  On both engines every page says what reading
    every run finds, newest first, for text whose characters mean something
    to LIKE (%, _ and the backslash it escapes them with), upper and lower
    case, ASCII and beyond (q=ÜNÏ finds "ünï" and q=ünï "ÜNÏ" on both: one
    folding, srv_fold, for q and the texts), alone and with vm= and user=,
    which the newest runs hold too few of to fill a page, and user= alone
    (the owner's runs through their index)."""
    server, sql = engine
    sql("INSERT INTO users (name, created) VALUES ('carol', 0)")
    kinds = ["Run 50%% of_X\\Path %d", "run 50_ of%%x\\\\path %d", "RUN ünï 50%% %d",
             "run plain_%d"]
    rows = []
    for i in range(400):
        argv = kinds[i % 4] % i
        name = ("Named 5%%_\\%d ÜNÏ ÀÉЖ" % i) if i % 9 == 0 else None
        rows.append("('%016x', '%s', '%s', %s, %s, %d, 2, 10, 1.5)" % (
            0xc0de0000 + i, argv.replace("'", "''"), "PyPy" if i % 10 == 0 else "CPython",
            "'%s'" % name.replace("'", "''") if name else "NULL",
            "(SELECT id FROM users WHERE name = 'carol')" if i % 15 == 0 else "NULL",
            1700000000000 + i))
    sql("INSERT INTO runs (id, argv, vm, name, owner_id, created, state,"
        " samples, duration) VALUES " + ", ".join(rows))
    runs = sql("SELECT r.id, r.argv, r.name, r.vm, u.name FROM runs r"
               " LEFT JOIN users u ON u.id = r.owner_id ORDER BY r.seq DESC")

    def expected(q, vm="", user=""):
        q = q.lower()
        return [i for i, argv, name, v, owner in runs
                if (q in argv.lower() or (name and q in name.lower()))
                and vm in ("", v) and user in ("", owner)]

    def pages(q, vm="", user=""):
        got, page = [], "1"
        while page:
            reply = server.get("/api/runs?q=%s&vm=%s&user=%s&page=%s" % (
                urllib.parse.quote(q), vm, user, page))[1]
            assert len(reply["runs"]) == 50 or not reply["next"], q
            got += [r["id"] for r in reply["runs"]]
            page = reply["next"]
        return got

    queries = ["run", "RUN", "rUn 5", "50%", "50% of", "50_", "0_ of", "of_x", "f%x", "%",
               "_", "\\", "x\\path", "\\\\path", "\\p", "% of", "50%% ", "ünï", "ün", "ï 50%",
               "named 5%_\\", "5%_", "plain_1", "plain_", "n 5",
               # Case beyond ASCII, in q and in the texts, as three characters
               # or more (the trigram index) and fewer (row by row).
               "ÜNÏ", "Ünï", "RUN ÜNÏ 5", "ÜN", "Ü", "ï", "Ï", "àéж", "ÀÉЖ", "ÉЖ", "Ж",
               "Ï ÀÉ"]
    for q in queries:
        assert pages(q) == expected(q), q
        assert server.search_all(q) == expected(q), q
    for q in ("run", "50%", "_", "\\", "ünï", "plain_", "ÜNÏ", "Ü", "ru", ""):
        assert pages(q, vm="PyPy") == expected(q, vm="PyPy"), q
        assert pages(q, user="carol") == expected(q, user="carol"), q
        assert pages(q, vm="PyPy", user="carol") == expected(q, "PyPy", "carol"), q
    assert pages("", user="nobody") == []
    # Runs not frozen stay out of every page, the newest ones too.
    sql("UPDATE runs SET state = 1 WHERE seq > 380 OR seq % 4 = 0")
    runs = [r for r, (state,) in zip(runs, sql("SELECT state FROM runs ORDER BY seq DESC"))
            if state == "2"]
    for q in ("run", "50%", "\\", "ünï", "ÜNÏ", "Ü", ""):
        assert server.search_all(q) == expected(q), q
        assert pages(q, user="carol") == expected(q, user="carol"), q


def test_a_search_of_bytes_that_are_not_utf8_is_refused_on_both_engines(engine):
    """Every stored text is UTF-8, so a q, vm or user= of other bytes can
    match nothing: both engines answer 400 naming the argument.  Before,
    PostgreSQL refused such a q as a database error and answered 503 (a
    retry that can never succeed) where SQLite answered an empty page."""
    server, sql = engine
    sql("INSERT INTO users (name, created) VALUES ('carol', 0)")
    for arg in ("q", "vm", "user"):
        for raw in ("%FF", "ab%C3%28cd", "%ED%A0%80xyz"):  # a stray byte, a cut pair, a surrogate
            status, reply, _ = server.get("/api/runs?%s=%s" % (arg, raw))
            assert status == 400, (arg, raw, status, reply)
            assert reply["error"] == "%s must be UTF-8 text" % arg, reply
    # valid text beyond ASCII is still a search
    status, reply, _ = server.get("/api/runs?q=%C3%9CN%C3%8F&user=carol")
    assert status == 200 and reply["runs"] == [], reply


@functools.lru_cache(maxsize=None)
def glibc_towlower():
    """glibc's towlower() of C.UTF-8, loaded once: find_library() runs
    /sbin/ldconfig -p each time (2.3 ms at load ~15), and glibc_fold is
    called ~13,000 times a test (33 searches, 300 runs' argv and 100 names):
    at load 20-60 those processes took the test past its 300 s timeout."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.newlocale.restype = ctypes.c_void_p
    libc.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
    libc.towlower_l.restype = ctypes.c_uint32
    libc.towlower_l.argtypes = [ctypes.c_uint32, ctypes.c_void_p]
    utf8 = libc.newlocale(1, b"C.UTF-8", None)  # LC_CTYPE_MASK
    assert utf8
    return lambda c: chr(libc.towlower_l(ord(c), utf8))


def glibc_fold(text):
    """srv_fold as the server does it, from glibc itself: ASCII letters, then
    towlower() of C.UTF-8 (PostgreSQL's LOWER() in a UTF-8 database)."""
    towlower = glibc_towlower()
    return "".join(c.lower() if c < "\x80" else towlower(c) for c in text)


def test_a_search_folds_case_as_glibc_does_on_both_engines(engine):
    """q= of three characters or more goes through the trigram index (SQLite:
    FTS5; PostgreSQL: the trigram table), which must fold as srv_fold does
    for the letters where SQLite's own folding differs from towlower():
    U+0130 İ, U+037F Ϳ and U+0528-U+052E (towlower folds them, SQLite not),
    U+017F ſ and U+00B5 µ (SQLite folds them, towlower not), Cherokee and
    U+212A KELVIN SIGN.  Every page says what reading every run finds."""
    server, sql = engine
    words = ["İNIT", "init", "ınit", "INIT", "Ϳota", "ϳota", "Ԩabc", "ԩabc", "Ԫxyz", "ԫxyz",
             "Ԭxyz", "ԭxyz", "Ԯxyz", "ԯxyz", "ſeven", "seven", "SEVEN", "µsec", "μsec",
             "Μsec", "ᎠᎡᎢ", "ꭰꭱꭲ", "\u212aelvin", "kelvin", "KELVIN"]
    rows = []
    for i in range(300):
        word = words[i % len(words)] if i % 4 else "filler"
        argv, name = ("job %s %d" % (word, i), None) if i % 3 else ("job %d" % i, word)
        rows.append("('%016x', '%s', 'CPython', %s, %d, 2, 10, 1.5)" % (
            0xf01d0000 + i, argv, "'%s'" % name if name else "NULL", 1700000000000 + i))
    sql("INSERT INTO runs (id, argv, vm, name, created, state, samples, duration) VALUES "
        + ", ".join(rows))
    runs = sql("SELECT id, argv, name FROM runs ORDER BY seq DESC")

    def expected(q):
        q = glibc_fold(q)
        return [i for i, argv, name in runs
                if q in glibc_fold(argv) or (name and q in glibc_fold(name))]

    assert glibc_fold("İϳԨſµᎠ\u212a") == "iϳԩſµꭰk"  # (as the docstring says)
    for q in ["İNI", "İnit", "init", "INIT", "ınit", "b İn", "ϳot", "Ϳota", "ԩab", "Ԩabc",
              "Ԫxy", "ԫxyz", "Ԭxy", "ԭxy", "Ԯxy", "ԯxy", "ſev", "ſeven", "sev", "SEVEN",
              "µse", "μse", "Μsec", "ΜSEC", "ᎠᎡᎢ", "ꭰꭱꭲ", "Ꭰꭱꭲ", "\u212aelvin", "kel", "KELVIN",
              "job", "b ı", "ob Ϳ"]:
        want = expected(q)
        assert server.search_all(q) == want, q


def test_a_search_of_one_owner_finds_what_reading_every_run_finds(engine):
    """user= with a q of three characters or more walks the shorter list:
    the owner's runs (each checked with LIKE) when they are no more than the
    runs holding q's rarest trigram, else that trigram's list filtered by
    owner.  An owner of a few runs and one of half of them, with q's held by
    every run, by some, by none; with vm=; paged by cursor; then with runs
    not frozen (the newest among them).  Every page says what reading every
    run finds."""
    server, sql = engine
    sql("INSERT INTO users (name, created) VALUES ('few', 0), ('many', 0)")
    rows = []
    for i in range(600):
        owner = "few" if i % 75 == 7 else "many" if i % 2 else None
        argv = ("bench.py --case %d" % i) if i % 5 else ("Tool X%d --CASE" % i)
        rows.append("('%016x', '%s', '%s', %s, %d, 2, 10, 1.5)" % (
            0xab1e0000 + i, argv, "PyPy" if i % 7 == 0 else "CPython",
            "(SELECT id FROM users WHERE name = '%s')" % owner if owner else "NULL",
            1700000000000 + i))
    sql("INSERT INTO runs (id, argv, vm, owner_id, created, state, samples, duration) VALUES "
        + ", ".join(rows))

    def read_every_run():
        return sql("SELECT r.id, r.argv, r.vm, u.name FROM runs r LEFT JOIN users u"
                   " ON u.id = r.owner_id WHERE r.state = 2 ORDER BY r.seq DESC")

    def expected(runs, q, user, vm=""):
        return [i for i, argv, v, owner in runs
                if q.lower() in argv.lower() and owner == user and vm in ("", v)]

    def pages(q, user, vm=""):
        got, page = [], "1"
        while page:
            reply = server.get("/api/runs?q=%s&user=%s&vm=%s&page=%s" % (
                urllib.parse.quote(q), user, vm, page))[1]
            assert len(reply["runs"]) == 50 or not reply["next"], (q, user)
            assert len(got) < 600, (q, user)  # (a cursor not followed)
            got += [r["id"] for r in reply["runs"]]
            page = reply["next"]
        return got

    queries = ["bench", "bench.py --case", "case", "--CASE", "tool", "case 7", "case 1",
               "case 59", "x5", "ase 3", "nothing", "case 582"]
    runs = read_every_run()
    assert len(expected(runs, "bench", "few")) == 8 and len(expected(runs, "bench", "many")) > 200
    for q in queries:
        for user in ("few", "many"):
            assert pages(q, user) == expected(runs, q, user), (q, user)
        assert pages(q, "many", "PyPy") == expected(runs, q, "many", "PyPy"), q
    assert pages("bench", "nobody") == []
    sql("UPDATE runs SET state = 1 WHERE seq > 560 OR seq % 4 = 0")
    runs = read_every_run()
    for q in queries:
        for user in ("few", "many"):
            assert pages(q, user) == expected(runs, q, user), (q, user)


def test_an_owners_runs_past_the_newest_batch_are_found_on_both_engines(engine):
    """The owner's runs read in one statement (PostgreSQL): first the newest
    four pages' worth of them, then, when those hold no full page, all of
    them; all at once when the owner's count (kept ten minutes) says they
    are no more.  "wide" owns 400 of 800 runs; only its oldest 100 say
    "bench.py --case", which (every trigram of it held by 500 runs) makes
    q= of it walk the owner's list, past its newest 204 runs.  A vm= only
    its oldest runs have; user= alone and with a short q; "small" (36 runs)
    read at once, then given 300 more while its count is kept (all of them
    must still come); "wide" left with few runs while its count says many.
    Every page, paged by cursor, says what reading every run finds."""
    server, sql = engine
    sql("INSERT INTO users (name, created) VALUES ('wide', 0), ('small', 0)")

    def add(first, count, owner_of, argv_of):
        rows = []
        for i in range(first, first + count):
            owner = owner_of(i)
            rows.append("('%016x', '%s', '%s', %s, %d, 2, 10, 1.5)" % (
                0xfade0000 + i, argv_of(i), "PyPy" if i < 40 and i % 4 == 1 else "CPython",
                "(SELECT id FROM users WHERE name = '%s')" % owner if owner else "NULL",
                1700000000000 + i))
        sql("INSERT INTO runs (id, argv, vm, owner_id, created, state, samples, duration)"
            " VALUES " + ", ".join(rows))

    # Oldest first (seq order): wide's old runs, then the rest interleaved.
    add(0, 100, lambda i: "wide", lambda i: "bench.py --case %d" % i)
    add(100, 700, lambda i: "wide" if i % 7 < 3 else "small" if i % 11 == 0 else None,
        lambda i: ("x --case %d bench.py" % i) if i % 7 < 3 else "bench.py --case %d" % i)

    def read_every_run():
        return sql("SELECT r.id, r.argv, r.vm, u.name FROM runs r LEFT JOIN users u"
                   " ON u.id = r.owner_id WHERE r.state = 2 ORDER BY r.seq DESC")

    def expected(q, user, vm=""):
        return [i for i, argv, v, owner in read_every_run()
                if q.lower() in argv.lower() and owner == user and vm in ("", v)]

    def pages(q, user, vm=""):
        got, page = [], "1"
        while page:
            reply = server.get("/api/runs?q=%s&user=%s&vm=%s&page=%s" % (
                urllib.parse.quote(q), user, vm, page))[1]
            assert len(reply["runs"]) == 50 or not reply["next"], (q, user)
            assert len(got) < 900, (q, user)  # (a cursor not followed)
            got += [r["id"] for r in reply["runs"]]
            page = reply["next"]
        return got

    wide = [owner for _, _, _, owner in read_every_run()].count("wide")
    assert wide == 400, wide
    assert len(expected("bench.py --case", "wide")) == 100
    for q, user, vm in [("bench.py --case", "wide", ""), ("bench.py --case 3", "wide", ""),
                        ("case", "wide", ""), ("", "wide", ""), ("", "wide", "PyPy"),
                        ("ca", "wide", "PyPy"), ("bench", "wide", "PyPy"), ("", "small", ""),
                        ("bench", "small", ""), ("py", "small", ""), ("", "nobody", ""),
                        ("bench.py --case", "nobody", "")]:
        assert pages(q, user, vm) == expected(q, user, vm), (q, user, vm)
    # small's count (30) is kept: 300 runs more of it, newer than any.
    add(800, 300, lambda i: "small", lambda i: "bench.py --case %d" % i)
    for q in ("", "py", "bench", "bench.py --case"):
        assert len(expected(q, "small")) > 300
        assert pages(q, "small") == expected(q, "small"), q
    # wide's count (many) is kept: all but its 20 oldest runs deleted.
    sql("DELETE FROM runs WHERE owner_id = (SELECT id FROM users WHERE name = 'wide')"
        " AND seq > (SELECT MIN(seq) + 19 FROM runs WHERE owner_id ="
        " (SELECT id FROM users WHERE name = 'wide'))")
    for q, vm in (("", ""), ("", "PyPy"), ("bench.py --case", ""), ("case 1", "")):
        assert pages(q, "wide", vm) == expected(q, "wide", vm), q


def test_an_owners_pages_read_only_their_runs_in_a_database_never_vacuumed(
        postgres, start_server, tmp_path):
    """PostgreSQL: the pages of an owner of 10 runs among 3,000 read those
    runs, not every run, also in a database not vacuumed since its runs
    were written (autovacuum off here), where an index-only walk looks no
    cheaper to the planner than reading runs_pkey backwards.  The
    statement's plan is kept per connection, so it must be one that no
    statistics turn into a walk of every run.  Counted by PostgreSQL itself
    (index tuples read, which a session reports when it ends: the server is
    stopped first)."""
    name = "vmprof_owner_never_vacuumed"
    url = own_database(postgres, name)
    server = start_server("--database", url, data=tmp_path / "d")
    psql(url, name,
         "ALTER TABLE runs SET (autovacuum_enabled = false);"
         " ALTER TABLE runs_trigrams SET (autovacuum_enabled = false);"
         " INSERT INTO users (name, created) VALUES ('few', 0), ('most', 0);"
         " INSERT INTO runs (id, argv, vm, created, state, samples, duration, owner_id)"
         " SELECT lpad(to_hex(3735928559 + i), 16, '0'), 'bench.py --case ' || i, 'CPython',"
         " 1700000000000 + i, 2, 10, 1.5, (SELECT id FROM users WHERE name ="
         " CASE WHEN i % 300 = 7 THEN 'few' WHEN i % 2 = 0 THEN 'most' END)"
         " FROM generate_series(0, 2999) AS i;"
         " ANALYZE runs")
    few = [row[0] for row in psql(url, name, "SELECT id FROM runs WHERE owner_id ="
                                  " (SELECT id FROM users WHERE name = 'few') ORDER BY seq DESC")]
    assert len(few) == 10

    def tuples_read():
        return dict(psql(url, name, "SELECT indexrelname, idx_tup_read FROM"
                                    " pg_stat_user_indexes WHERE relname = 'runs'"))
    before = tuples_read()
    pages = 0
    for _ in range(20):
        for query in ("q=bench&user=few", "user=few", "q=ca&user=few"):
            reply = server.get("/api/runs?" + query)[1]
            assert [r["id"] for r in reply["runs"]] == few and not reply["next"], query
            pages += 1
    server.stop()
    after = tuples_read()
    read = {index: int(after[index]) - int(before.get(index, 0)) for index in after}
    # Walking every run, a page reads 3,000 (runs_pkey); the owner's, ~10 of
    # runs_by_owner and ~10 of runs_pkey (their rows).
    assert sum(read.values()) < pages * 100, read


def test_a_slow_read_finding_no_connection_free_is_sent_again_once_one_frees(
        postgres, start_server, tmp_path):
    """A list read unanswered after the hedge delay that finds no connection
    free for its second sending looks again until one frees (srv_db_read).
    Here the pool's 8 sessions are opened by 8 writes at once (never sent
    twice) while runs is locked; then 10 list reads wait on that lock, 8 on
    those sessions, whose second sendings open the 2 spare sessions (waiting
    on the lock too) or find none free; the 8 sessions are stopped
    (SIGSTOP, a backend kept from every core) and the lock released: every
    read is answered through the spares, two at a time.  Looked at once
    only, six of them waited for their stopped session."""
    name = "vmprof_hedge_again"
    url = own_database(postgres, name)
    env = dict(os.environ, VMPROF_SERVER_HEDGE_MS="300")
    server = start_server("--database", url, data=tmp_path / "d", env=env)
    psql(url, name, "INSERT INTO runs (id, argv, vm, created, state, samples, duration)"
                    " SELECT lpad(to_hex(15728640 + i), 16, '0'), 'bench.py --case ' || i,"
                    " 'CPython', 1700000000000 + i, 2, 10, 1.5 FROM generate_series(0, 99) AS i")
    def sessions():  # the server's (psql's, the locker's too, left out)
        return [int(pid) for (pid,) in psql(
            url, name, "SELECT pid FROM pg_stat_activity WHERE datname = '%s' AND"
            " backend_type = 'client backend' AND application_name <> 'psql'" % name)]

    pool = concurrent.futures.ThreadPoolExecutor(10)
    locker = lock_runs(url, name)
    try:
        news = [pool.submit(server.request, "POST", "/api/runtime/new",
                            {"argv": "x", "VM": "CPython"}) for _ in range(8)]
        deadline = time.time() + 30
        while len(sessions()) < 8 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        unlock_runs(locker)
    assert [f.result()[0] for f in news] == [200] * 8
    primaries = sessions()
    assert len(primaries) == 8, primaries
    locker = lock_runs(url, name)
    stopped = []
    try:
        reads = [pool.submit(server.get, "/api/runs", timeout=120) for _ in range(10)]
        deadline = time.time() + 30
        while len(sessions()) < 10 and time.time() < deadline:
            time.sleep(0.05)
        assert len(sessions()) == 10  # (the spares, waiting)
        for pid in primaries:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        unlock_runs(locker)
        locker = None
        done, _ = concurrent.futures.wait(reads, timeout=20)
        assert len(done) == 10, "%d of 10 reads answered, their sessions stopped" % len(done)
        assert all(f.result()[0] == 200 and len(f.result()[1]["runs"]) == 50 for f in reads)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        if locker:
            unlock_runs(locker)
    pool.shutdown()


def owned_runs(sql, count, owner_of, argv_of=lambda i: "bench.py --case %d" % i,
               name_of=lambda i: None, vm_of=lambda i: "PyPy" if i % 7 == 0 else "CPython"):
    """count runs (ids from 0xca5e0000) written by SQL, oldest first, owned as
    owner_of(i) says (a user's name, or None)."""
    rows = []
    for i in range(count):
        owner, name = owner_of(i), name_of(i)
        rows.append("('%016x', '%s', '%s', %s, %s, %d, 2, 10, 1.5)" % (
            0xca5e0000 + i, argv_of(i), vm_of(i), "'%s'" % name if name else "NULL",
            "(SELECT id FROM users WHERE name = '%s')" % owner if owner else "NULL",
            1700000000000 + i))
    for at in range(0, count, 200):  # (psql's argument has a limit)
        sql("INSERT INTO runs (id, argv, vm, name, owner_id, created, state, samples,"
            " duration) VALUES " + ", ".join(rows[at:at + 200]))


def every_run(sql):
    return sql("SELECT r.id, r.argv, r.name, r.vm, u.name FROM runs r LEFT JOIN users u"
               " ON u.id = r.owner_id WHERE r.state = 2 ORDER BY r.seq DESC")


def owner_matches(runs, q, user, vm=""):
    q = q.lower()
    return [i for i, argv, name, v, owner in runs
            if (q in argv.lower() or (name and q in name.lower()))
            and owner == user and vm in ("", v)]


def owner_pages(server, q, user, vm="", limit=5000):
    """The ids of every page of q= with user= (and vm=), by their cursors;
    every page but the last full."""
    got, page = [], "1"
    while page:
        reply = server.get("/api/runs?q=%s&user=%s&vm=%s&page=%s" % (
            urllib.parse.quote(q), user, vm, page))[1]
        assert len(reply["runs"]) == 50 or not reply["next"], (q, user, vm)
        assert all(r["owner"] == user for r in reply["runs"]), (q, user, vm)
        assert len(got) < limit, (q, user, vm)  # (a cursor not followed)
        got += [r["id"] for r in reply["runs"]]
        page = reply["next"]
    return got


def test_an_owners_search_through_the_trigrams_of_their_runs_finds_every_match(engine):
    """user= whose list of q's rarest trigram is the shorter reads, on
    PostgreSQL, that trigram's list of the owner's runs alone (table
    runs_owner_trigrams, kept by runs' trigger): q held by few runs and by
    most, batches read first then the whole list, paged by cursor, with
    vm=; then runs deleted, given another owner, an owner, none (their
    owner's row deleted), renamed, and left unfrozen.  "big" owns two
    thirds of the runs (more than the count of any trigram, which stops at
    half), "some" a sixth.  Every page, on both engines, says what reading
    every run finds."""
    server, sql = engine
    sql("INSERT INTO users (name, created) VALUES ('big', 0), ('some', 0), ('gone', 0)")
    owned_runs(sql, 1200, lambda i: "big" if i % 3 else "some" if i % 2 == 0 else None,
               name_of=lambda i: "Case 5 named %d" % i if i % 50 == 3 else None)
    queries = [("bench", "big", ""), ("case 1", "big", ""), ("case 5", "big", ""),
               ("case 5", "big", "PyPy"), ("case 77", "big", ""), ("named", "big", ""),
               ("case 5", "some", ""), ("case 1", "some", ""), ("bench", "some", "PyPy"),
               ("nothing", "big", ""), ("case 5", "nobody", "")]

    def check():
        runs = every_run(sql)
        for q, user, vm in queries:
            assert owner_pages(server, q, user, vm) == owner_matches(runs, q, user, vm), \
                (q, user, vm)
        return runs

    runs = check()
    assert len(owner_matches(runs, "bench", "big")) == 800  # (16 pages)
    assert len(owner_matches(runs, "case 1", "big")) == 209  # ("e 1": 311 runs)
    assert len(owner_matches(runs, "case 5", "big")) == 88  # ("e 5": 111 runs, names)
    # Runs deleted, re-owned both ways, renamed, unfrozen; an owner's row
    # deleted (PostgreSQL: its runs' owner set NULL by the foreign key).
    sql("DELETE FROM runs WHERE seq % 17 = 0")
    sql("UPDATE runs SET owner_id = (SELECT id FROM users WHERE name = 'some')"
        " WHERE seq % 13 = 0 AND owner_id = (SELECT id FROM users WHERE name = 'big')")
    sql("UPDATE runs SET owner_id = (SELECT id FROM users WHERE name = 'big')"
        " WHERE seq % 11 = 0 AND owner_id IS NULL")
    sql("UPDATE runs SET owner_id = (SELECT id FROM users WHERE name = 'gone')"
        " WHERE seq % 19 = 0")
    sql("UPDATE runs SET name = 'Case 5 renamed' WHERE seq % 23 = 0")
    sql("UPDATE runs SET argv = 'tool --case 1' WHERE seq % 29 = 0")
    sql("UPDATE runs SET state = 1 WHERE seq % 31 = 0")
    queries += [("case 5", "gone", ""), ("renamed", "big", ""), ("tool", "big", "")]
    check()
    sql("DELETE FROM users WHERE name = 'gone'")
    runs = check()
    assert owner_matches(runs, "case 5", "gone") == []


def test_an_owners_search_reads_only_their_runs_holding_the_trigram(postgres, start_server,
                                                                    tmp_path):
    """PostgreSQL: q= with user= of an owner of a third of 3,000 runs, whose
    rarest trigram 111 runs hold ("e 7" of q=case 7), reads the owner's 39
    of them (runs_owner_trigrams, then those runs by their key), not all
    111 and their rows to filter by owner, in a database not vacuumed since
    its runs were written (autovacuum off: the plan is kept per connection
    and must not turn on statistics).  Counted by PostgreSQL itself: the
    index tuples read in the table of runs, which a session reports when it
    ends (the server is stopped first)."""
    name = "vmprof_owner_trigrams"
    url = own_database(postgres, name)
    server = start_server("--database", url, data=tmp_path / "d")
    psql(url, name,
         "ALTER TABLE runs SET (autovacuum_enabled = false);"
         " ALTER TABLE runs_trigrams SET (autovacuum_enabled = false);"
         " ALTER TABLE IF EXISTS runs_owner_trigrams SET (autovacuum_enabled = false);"
         " INSERT INTO users (name, created) VALUES ('third', 0);"
         " INSERT INTO runs (id, argv, vm, created, state, samples, duration, owner_id)"
         " SELECT lpad(to_hex(3735928559 + i), 16, '0'), 'bench.py --case ' || i, 'CPython',"
         " 1700000000000 + i, 2, 10, 1.5, CASE WHEN i % 3 = 1 THEN"
         " (SELECT id FROM users WHERE name = 'third') END"
         " FROM generate_series(0, 2999) AS i;"
         " ANALYZE runs")
    mine = [row[0] for row in psql(
        url, name, "SELECT id FROM runs WHERE owner_id IS NOT NULL AND argv LIKE '%case 7%'"
        " ORDER BY seq DESC")]
    assert len(mine) == 39

    def tuples_read():
        return dict(psql(url, name, "SELECT relname, SUM(idx_tup_read) FROM pg_stat_user_indexes"
                                    " WHERE relname IN ('runs', 'runs_owner_trigrams')"
                                    " GROUP BY relname"))
    before = tuples_read()
    pages = 40
    for _ in range(pages):
        reply = server.get("/api/runs?q=case%207&user=third")[1]
        assert [r["id"] for r in reply["runs"]] == mine and not reply["next"]
    server.stop()
    after = tuples_read()
    read = {table: int(after[table]) - int(before.get(table, 0)) for table in after}
    # Runs read: through every owner's list of "e 7", its 111 a page (runs_pkey;
    # 4,440 here); through the owner's, their 39 (1,560) and as many of
    # runs_owner_trigrams.  (Not counted: runs_trigrams, read for the counts
    # of q's trigrams, up to 1,501 each, once or twice when sent again.)
    assert read["runs"] < pages * 60, read
    assert read.get("runs_owner_trigrams", 0) < pages * 60, read


# The trigger of runs_trigrams as the version before runs_owner_trigrams made
# it (that version's srv_store.c, trigrams_pg).
EARLIER_TRIGRAMS_TRIGGER = """
DROP TRIGGER runs_trigrams_sync ON runs;
DROP TABLE runs_owner_trigrams;
CREATE OR REPLACE FUNCTION runs_trigrams_sync() RETURNS trigger LANGUAGE plpgsql AS $$
 BEGIN
  IF TG_OP <> 'INSERT' THEN
   DELETE FROM runs_trigrams WHERE seq = OLD.seq AND tri = ANY (ARRAY(
    SELECT runs_trigrams_of(LOWER(OLD.argv)) UNION
    SELECT runs_trigrams_of(LOWER(OLD.name))));
  END IF;
  IF TG_OP <> 'DELETE' THEN
   INSERT INTO runs_trigrams (tri, seq) SELECT t, NEW.seq FROM
    (SELECT runs_trigrams_of(LOWER(NEW.argv)) UNION
     SELECT runs_trigrams_of(LOWER(NEW.name))) AS x(t);
  END IF;
  RETURN NULL;
 END $$;
CREATE TRIGGER runs_trigrams_sync AFTER INSERT OR DELETE OR UPDATE OF argv, name
 ON runs FOR EACH ROW EXECUTE PROCEDURE runs_trigrams_sync();
"""


def test_a_database_of_the_version_before_owner_trigrams_is_upgraded(postgres, start_server,
                                                                     tmp_path, profile_bytes):
    """A database whose trigger fills runs_trigrams alone (the version
    before) and whose runs were written then: two servers starting on it at
    once, one makes runs_owner_trigrams and the trigger again and copies
    the owned runs' trigrams (saying so), the other finds them made; every
    owner's search through either says what reading every run finds, and
    so after runs are uploaded, re-owned and deleted through the new
    trigger; a server started again changes nothing."""
    name = "vmprof_owner_upgrade"
    url = own_database(postgres, name)
    sql = lambda s: psql(url, name, s)
    data = tmp_path / "d"
    start_server("--database", url, data=data).stop()
    sql(EARLIER_TRIGRAMS_TRIGGER)
    sql("INSERT INTO users (name, created) VALUES ('big', 0), ('some', 0)")
    owned_runs(sql, 900, lambda i: "big" if i % 3 else "some" if i % 2 == 0 else None)
    assert sql("SELECT to_regclass('runs_owner_trigrams') IS NULL") == [["t"]]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one, two = pool.map(lambda _: start_server("--database", url, data=data), range(2))
    copied = sql("SELECT t.tri, r.owner_id, t.seq FROM runs_trigrams t JOIN runs r"
                 " ON r.seq = t.seq WHERE r.owner_id IS NOT NULL ORDER BY 1, 2, 3")
    assert len(copied) > 900 * 2 // 3 * 10
    assert sql("SELECT tri, owner_id, seq FROM runs_owner_trigrams ORDER BY 1, 2, 3") == copied
    queries = [("bench", "big"), ("case 1", "big"), ("case 5", "big"), ("case 77", "big"),
               ("case 5", "some"), ("upload", "big")]

    def check():
        runs = every_run(sql)
        for q, user in queries:
            want = owner_matches(runs, q, user)
            assert owner_pages(one, q, user) == want, (q, user)
            assert owner_pages(two, q, user) == want, (q, user)
        return runs

    assert len(owner_matches(check(), "case 5", "big")) == 75
    token = one.add_user("carol")
    uploaded = two.upload(profile_bytes, argv="upload case 5", token=token)
    sql("UPDATE runs SET owner_id = (SELECT id FROM users WHERE name = 'big')"
        " WHERE id = '%s' OR seq %% 10 = 0" % uploaded)
    sql("DELETE FROM runs WHERE seq % 7 = 0")
    assert uploaded in owner_matches(check(), "upload", "big")
    said = [s.stop()[1] for s in (one, two)]
    assert sum("kept by owner too" in err for err in said) == 1, said
    again = start_server("--database", url, data=data)
    assert owner_pages(again, "case 5", "big") == owner_matches(every_run(sql), "case 5", "big")
    assert "kept by owner too" not in again.stop()[1]
