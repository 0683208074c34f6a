"""A run's files against its row, on SQLite and on PostgreSQL: an upload that
races its own run's freeze, plain files left by a stopped server, files no
run names found while the server runs, and an upload to a run made days
before.  Each test runs on both engines where the rule applies to both."""
import os
import re
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import synthetic_profile, wait_for_compressor, wait_for_files
from test_postgres import (age_run, begin_upload, finish_sending, own_database,  # noqa: F401
                           postgres, psql, run_files, start_in_background,
                           wait_for_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, start_server, tmp_path):
    """(start, name, sql): start(env=None) starts a server on this test's
    SQLite file or PostgreSQL database (its own, in the module's cluster), on
    the data folder tmp_path/d; sql(statement) runs one there and returns
    its rows as lists of text."""
    data = tmp_path / "d"
    options = ()
    if request.param == "postgresql":
        name = "vmprof_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40]
        url = own_database(request.getfixturevalue("postgres"), name)
        options = ("--database", url)
        sql = lambda statement: psql(url, name, statement)
    else:
        def sql(statement):
            db = sqlite3.connect(str(data / "vmprof.db"), timeout=30)
            try:
                rows = [[str(v) for v in row] for row in db.execute(statement)]
                db.commit()
                return rows
            finally:
                db.close()

    def start(env=None):
        return start_server(*options, data=data, env=env)
    return start, request.param, sql


def gated(**gates):
    return dict(os.environ, **{"VMPROF_SERVER_TEST_" + k: str(v) for k, v in gates.items()})


def in_thread(fn):
    box = {}
    thread = threading.Thread(target=lambda: box.update(answer=fn()), daemon=True)
    thread.start()
    return thread, box


def add(server, rid, body):
    return server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid, body)


def freeze(server, rid):
    return server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")


def pass_gate(gate, thread):
    """Lets the request held at gate go, waits for it, and arms the gate again."""
    (gate / "go").touch()
    thread.join(timeout=120)
    assert not thread.is_alive()
    os.unlink(str(gate / "go"))
    if (gate / "reached").exists():
        os.unlink(str(gate / "reached"))


def first_upload_through(server, gate, rid, body):
    thread, box = in_thread(lambda: add(server, rid, body))
    wait_for_path(str(gate / "reached"))
    pass_gate(gate, thread)
    assert box["answer"][0] == 200, box


def uploaded_once(start, tmp_path, gate_name, profile_bytes):
    """A server whose uploads stop at the test gate gate_name, and a run
    uploaded once through it (not frozen): (server, gate, run id)."""
    gate = tmp_path / gate_name
    gate.mkdir()
    server = start(env=gated(**{gate_name: gate}))
    rid = server.request("POST", "/api/runtime/new", {"argv": "race.py", "VM": "CPython"})[1][
        "runtime_id"]
    first_upload_through(server, gate, rid, profile_bytes)
    return server, gate, rid


def test_a_freeze_waits_for_an_upload_placing_its_file(engine, tmp_path, profile_bytes):
    """A second upload to a run, held between the rename of its file into
    runs/ and its row's update, while the client freezes the run: the freeze
    waits for that upload to be recorded, and the run is then frozen with the
    second upload, both answered 200.  Before, the freeze was answered at
    once (the run had its first upload), the second upload was then refused
    (400, frozen meanwhile) after its file had replaced the first's: the
    frozen run served bytes nobody had been told were kept."""
    server, gate, rid = uploaded_once(engine[0], tmp_path, "UPLOAD_STORED", profile_bytes)
    second = synthetic_profile(3000)
    uploading, upload_box = in_thread(lambda: add(server, rid, second))
    wait_for_path(str(gate / "reached"))
    freezing, freeze_box = in_thread(lambda: freeze(server, rid))
    freezing.join(timeout=1.5)  # (a negative check: the freeze must still be waiting)
    answered_before = dict(freeze_box)
    pass_gate(gate, uploading)
    freezing.join(timeout=120)
    upload_status, freeze_status = upload_box["answer"][0], freeze_box["answer"][0]
    served = server.get("/api/runs/%s/raw" % rid)[1]
    # Whatever the order, the run serves the upload answered 200 last.
    assert freeze_status == 200, freeze_box
    assert served == (second if upload_status == 200 else profile_bytes), upload_box
    # And the order is the upload's, then the freeze.
    assert not answered_before, answered_before
    assert upload_status == 200, upload_box


def test_an_upload_that_loses_to_its_runs_freeze_changes_nothing(engine, tmp_path,
                                                                profile_bytes):
    """A second upload whose body is in (its file complete in tmp/) when the
    run is frozen: it is refused (400, frozen meanwhile) and the run's file
    stays the first upload's, byte for byte, as does what is served."""
    server, gate, rid = uploaded_once(engine[0], tmp_path, "UPLOAD_WRITTEN", profile_bytes)
    data = server.data
    before = {n: open(os.path.join(data, "runs", n), "rb").read() for n in run_files(data, rid)}
    uploading, upload_box = in_thread(lambda: add(server, rid, synthetic_profile(3000)))
    wait_for_path(str(gate / "reached"))
    assert freeze(server, rid)[0] == 200
    # (the compressor may not pack it meanwhile: it stays as it was)
    pass_gate(gate, uploading)
    status, reply, _ = upload_box["answer"]
    assert status == 400 and "frozen meanwhile" in reply["error"], reply
    assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    after = subprocess.run(["zstd", "-dc", os.path.join(data, "runs", rid + ".prof.vmc.zst")],
                           check=True, capture_output=True).stdout
    assert list(before) == [rid + ".prof.vmc"] and after == before[rid + ".prof.vmc"]
    assert os.listdir(os.path.join(data, "tmp")) == []


def test_plain_files_a_stopped_server_left_are_compressed_at_start(engine, profile_bytes):
    """Runs frozen just before the server was killed, their files not yet
    compressed: the next start compresses them (on PostgreSQL too: before,
    only SQLite's start looked, and such files stayed plain for good).  On
    PostgreSQL a run not frozen keeps its plain file (another server may be
    uploading it), and freezes and serves later."""
    start, name, _ = engine
    server = start()
    frozen = [server.upload(profile_bytes, argv="f%d.py" % i) for i in range(3)]
    unfrozen = server.upload(profile_bytes, argv="u.py", freeze=False)
    wait_for_files(server, [r + ".prof.vmc.zst" for r in frozen] + [unfrozen + ".prof.vmc"])
    assert server.stop()[0] == 0
    runs = os.path.join(server.data, "runs")
    for rid in frozen:  # (as a kill -9 right after the freezes leaves them)
        subprocess.run(["zstd", "-q", "-d", "--rm", os.path.join(runs, rid + ".prof.vmc.zst")],
                       check=True)
    assert sorted(os.listdir(runs)) == sorted(r + ".prof.vmc" for r in frozen + [unfrozen])
    server.start()
    expected = [r + ".prof.vmc.zst" for r in frozen]
    if name == "postgresql":
        expected.append(unfrozen + ".prof.vmc")  # (SQLite's start removed it, never frozen)
    wait_for_files(server, expected)
    for rid in frozen:
        assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    if name == "postgresql":
        assert freeze(server, unfrozen)[0] == 200
        assert server.get("/api/runs/%s/raw" % unfrozen)[1] == profile_bytes


def test_servers_starting_together_compress_each_plain_file_once(postgres, start_server,
                                                                 tmp_path, profile_bytes):
    """Two PostgreSQL servers start at once on a folder of plain files of
    frozen runs: both queue every file, one compresses each (the plain
    file's lock), and every run ends with its one compressed file, served
    identical by both."""
    data = tmp_path / "shared"
    one = start_server("--database", postgres, data=data)
    rids = [one.upload(profile_bytes, argv="twice%d.py" % i) for i in range(24)]
    wait_for_files(one, [r + ".prof.vmc.zst" for r in rids])
    assert one.stop()[0] == 0
    runs = os.path.join(str(data), "runs")
    subprocess.run(["zstd", "-q", "-d", "--rm"] + [os.path.join(runs, r + ".prof.vmc.zst")
                                                   for r in rids], check=True)
    starts = [start_in_background(start_server, "--database", postgres, data=data)
              for _ in range(2)]
    servers = []
    for thread, box in starts:
        thread.join(timeout=120)
        assert "server" in box, box
        servers.append(box["server"])
    wait_for_files(servers[0], [r + ".prof.vmc.zst" for r in rids])
    wait_for_compressor(servers[1], lambda: True, "the second compressor")
    assert sorted(os.listdir(runs)) == sorted(r + ".prof.vmc.zst" for r in rids)
    for server in servers:
        for rid in rids[::5]:
            assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def test_a_running_server_removes_files_no_run_names(engine, tmp_path, profile_bytes):
    """While the server runs (VMPROF_SERVER_RECLAIM_MS: every 0.2 s here), the
    files in runs/ that no run names go, with the start's rule (listed first,
    then the rows asked for, in any state): an upload held between its
    file's rename and its row's update through several of those looks keeps
    its file, as do runs made, uploaded and frozen.  Before, such files
    waited for the next start."""
    start = engine[0]
    gate = tmp_path / "stored"
    gate.mkdir()
    env = gated(UPLOAD_STORED=gate)
    env["VMPROF_SERVER_RECLAIM_MS"] = "200"
    server = start(env=env)
    new = lambda argv: server.request("POST", "/api/runtime/new",
                                      {"argv": argv, "VM": "CPython"})[1]["runtime_id"]
    made, held = new("made.py"), new("held.py")
    frozen = new("frozen.py")
    first_upload_through(server, gate, frozen, profile_bytes)
    assert freeze(server, frozen)[0] == 200
    uploading, box = in_thread(lambda: add(server, held, profile_bytes))
    wait_for_path(str(gate / "reached"))
    runs = os.path.join(server.data, "runs")
    orphans = ["%016x" % (0xdead2000 + i) for i in range(3)]
    for i, rid in enumerate(orphans):
        with open(os.path.join(runs, rid + (".prof.vmc", ".prof", ".jit.gz")[i]), "wb") as f:
            f.write(profile_bytes)
    deadline = time.monotonic() + 60
    while any(run_files(server.data, rid) for rid in orphans):
        assert time.monotonic() < deadline, os.listdir(runs)
        time.sleep(0.05)
    time.sleep(0.5)  # (more looks while the upload is held)
    assert run_files(server.data, held) == [held + ".prof.vmc"]
    pass_gate(gate, uploading)
    assert box["answer"][0] == 200, box
    assert freeze(server, held)[0] == 200
    for rid in (held, frozen):
        assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    assert run_files(server.data, made) == []
    assert server.request("POST", "/api/runtime/%s/freeze/" % made, b"")[0] == 400
    status, err = server.stop()
    assert status == 0 and "that no run names" in err, err
    assert sum(int(n) for n in re.findall(r"removed (\d+) files in runs/", err)) == 3, err


def test_an_upload_to_a_run_made_days_ago_keeps_its_run(postgres, start_server, tmp_path,
                                                        profile_bytes):
    """PostgreSQL's sweep of unfinished uploads a day old keys on the last
    upload's start, not on the run's creation: a run made two days before its
    upload, whose body is half sent when another server starts, keeps its
    row; the upload is answered 200 and the run freezes and is served.
    Before, the start removed the row and the upload was answered 404."""
    data = tmp_path / "shared"
    one = start_server("--database", postgres, data=data)
    rid, sock, rest = begin_upload(one, "slow.py", profile_bytes, data)
    age_run(postgres, rid, columns=("created",))  # (made two days ago, its upload begun now)
    two = start_server("--database", postgres, data=data)  # (sweeps day-old uploads)
    status, answer = finish_sending(sock, rest)
    assert status == 200, answer
    assert freeze(two, rid)[0] == 200
    assert two.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    assert rid in [r["id"] for r in one.get("/api/runs")[1]["runs"]]


def test_an_upload_still_receiving_marks_its_run_active_again(postgres, start_server, tmp_path,
                                                              profile_bytes):
    """An upload whose body takes longer than the sweep's day says again that
    its run is active while the body arrives (every hour; every 0.2 s here,
    VMPROF_SERVER_TEST_TOUCH_MS): its row, marked two days old after the
    upload began, is fresh again once more of the body comes, and another
    server's start keeps it."""
    data = tmp_path / "shared"
    env = dict(os.environ, VMPROF_SERVER_TEST_TOUCH_MS="200")
    one = start_server("--database", postgres, data=data, env=env)
    rid, sock, rest = begin_upload(one, "slower.py", profile_bytes, data)
    age_run(postgres, rid)
    database = postgres.split("///")[1].split("?")[0]
    time.sleep(0.3)
    sock.sendall(rest[:len(rest) // 2])  # (the upload marks its row again)
    deadline = time.monotonic() + 60
    while int(psql(postgres, database, "SELECT %d - active FROM runs WHERE id = '%s'"
                   % (int(time.time() * 1000), rid))[0][0]) > 86400000:
        assert time.monotonic() < deadline, "the row was not marked again"
        time.sleep(0.05)
    two = start_server("--database", postgres, data=data)  # (sweeps day-old uploads)
    status, answer = finish_sending(sock, rest[len(rest) // 2:])
    assert status == 200, answer
    assert freeze(two, rid)[0] == 200
    assert two.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def test_a_database_of_the_version_before_active_gets_the_column(engine, profile_bytes):
    """A database made before runs had their active time gets the column at
    start-up; its rows (NULL there) are swept by their creation time: on
    PostgreSQL an unfinished upload made two days ago goes, one made now
    stays (SQLite's start sweeps both, as every unfinished upload)."""
    start, name, sql = engine
    server = start()
    old, fresh = [server.request("POST", "/api/runtime/new", {"argv": a, "VM": "CPython"})[1][
        "runtime_id"] for a in ("old.py", "fresh.py")]
    frozen = server.upload(profile_bytes, argv="kept.py")
    assert server.stop()[0] == 0
    sql("ALTER TABLE runs DROP COLUMN active")
    sql("UPDATE runs SET created = created - 2 * 86400000 WHERE id = '%s'" % old)
    server.start()
    left = sorted(r[0] for r in sql("SELECT id FROM runs WHERE active IS NULL"))
    assert left == sorted([frozen] + ([fresh] if name == "postgresql" else []))
    assert server.get("/api/runs/%s/raw" % frozen)[1] == profile_bytes
    assert server.upload(profile_bytes, argv="after.py")
