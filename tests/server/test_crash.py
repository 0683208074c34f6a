"""Nothing lost: the server killed with SIGKILL at random moments while many
clients upload, then started again on the same folder.  Every run whose
freeze was answered is there exactly once with its bytes intact, no half run
is listed or left on disk, the database passes its integrity check, and
clients that retry succeed.  SIGTERM lets a request in flight finish."""
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import threading
import time

UPLOADERS = 8
KILLS = 3


class Uploader(threading.Thread):
    """Uploads one profile after another to whatever server is current,
    retrying a failed upload from the start, until told to stop."""

    def __init__(self, current, profiles, stop):
        super().__init__(daemon=True)
        self.current = current
        self.profiles = profiles
        self.stop = stop
        self.frozen = {}        # runtime id -> bytes, for each freeze answered 200
        self.attempted = {}     # every runtime id given, -> bytes
        self.failures = 0

    def post(self, path, body, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.current["port"], timeout=20)
        try:
            conn.request("POST", path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def run(self):
        while not self.stop.is_set():
            data = random.choice(self.profiles)
            try:
                status, reply = self.post("/api/runtime/new",
                                          json.dumps({"argv": "crash.py", "VM": "CPython"}),
                                          {"Content-Type": "application/json"})
                if status != 200:
                    raise OSError(status)
                rid = json.loads(reply)["runtime_id"]
                self.attempted[rid] = data
                status, _ = self.post("/api/runtime/upload/cpu/%s/add" % rid, data)
                if status != 200:
                    raise OSError(status)
                status, _ = self.post("/api/runtime/%s/freeze/" % rid, b"")
                if status != 200:
                    raise OSError(status)
                self.frozen[rid] = data
            except (OSError, http.client.HTTPException, ValueError):
                self.failures += 1
                time.sleep(0.05)


def test_kill_9_during_parallel_uploads(start_server, tmp_path, make_profile, profile_bytes,
                                       big_profile_bytes):
    # the big one's file is handed to the disk while it arrives: a kill
    # finds some of them half written back
    profiles = [profile_bytes, make_profile("--lines"), make_profile("--mem"),
                big_profile_bytes]
    data = tmp_path / "data"
    server = start_server(data=data)
    current = {"port": server.port}
    stop = threading.Event()
    uploaders = [Uploader(current, profiles, stop) for _ in range(UPLOADERS)]
    for u in uploaders:
        u.start()
    rng = random.Random(1234)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 2.0))
            server.stop(signal.SIGKILL)
            server.start()
            current["port"] = server.port
        time.sleep(1.5)            # uploads succeed again after the last restart
    finally:
        stop.set()
        for u in uploaders:
            u.join(timeout=60)
    status, err = server.stop()
    assert status == 0, err
    server.start()                 # one more start: the recovery after a clean stop too

    frozen = {}
    attempted = {}
    for u in uploaders:
        frozen.update(u.frozen)
        attempted.update(u.attempted)
    assert len(frozen) >= UPLOADERS, "too few uploads got through: %d" % len(frozen)

    listed = []
    page = 1
    while page:
        reply = server.get("/api/runs?page=%s" % page)[1]
        listed += [r["id"] for r in reply["runs"]]
        page = reply["next"]
    assert len(listed) == len(set(listed))
    # Every answered freeze is there; anything else listed is a run whose
    # freeze was committed but whose answer the kill cut off.
    assert set(frozen) <= set(listed)
    assert set(listed) <= set(attempted)
    for rid in listed:
        status, raw, _ = server.get("/api/runs/%s/raw" % rid)
        assert status == 200 and raw == attempted[rid], rid
    # No half run anywhere: every row frozen, every file a run's, tmp/ empty.
    db = sqlite3.connect(str(data / "vmprof.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM runs WHERE state != 2").fetchone()[0] == 0
    finally:
        db.close()
    # Files a killed server left uncompressed are compressed after the restart.
    for _ in range(300):
        names = os.listdir(data / "runs")
        if not any(n.endswith((".prof", ".vmc")) for n in names) and not os.listdir(data / "tmp"):
            break
        time.sleep(0.1)
    assert sorted(n.split(".")[0] for n in names) == sorted(listed)
    assert all(n.endswith(".prof.vmc.zst") for n in names), names
    assert os.listdir(data / "tmp") == []


def test_sigterm_lets_an_upload_in_flight_finish(server, profile_bytes):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %d\r\n\r\n" % (rid, len(profile_bytes))).encode())
        s.sendall(profile_bytes[:1000])
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        s.sendall(profile_bytes[1000:])
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    status, err = server.stop()     # already stopping: exits 0
    assert status == 0, err
