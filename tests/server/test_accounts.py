"""Accounts, tokens, sessions and who may do what: anyone reads; a run is
changed (renamed, deleted) by its owner or an admin only; an anonymous run by
an admin only; a browser session's writes need its CSRF token."""
import gzip
import http.client
import json
import sqlite3
import subprocess

import pytest

from conftest import SERVER_BIN


@pytest.fixture
def people(server):
    return {"alice": server.add_user("alice"), "bob": server.add_user("bob"),
            "root": server.add_user("root", admin=True)}


def test_user_add_prints_the_token_last_and_refuses_a_second_one(server, tmp_path):
    out = subprocess.run([SERVER_BIN, "--data", server.data, "user", "add", "carol"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    token = out.stdout.strip().splitlines()[-1]
    assert len(token) == 48 and int(token, 16) >= 0
    again = subprocess.run([SERVER_BIN, "--data", server.data, "user", "add", "carol"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "exists" in again.stderr
    # The token is stored hashed: it appears nowhere in the database file.
    with open(server.data + "/vmprof.db", "rb") as f:
        assert token.encode() not in f.read()
    bad = subprocess.run([SERVER_BIN, "--data", server.data, "user", "add", "x y"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1


def test_anonymous_run_may_be_read_but_changed_by_admin_only(server, people, profile_bytes):
    rid = server.upload(profile_bytes)
    assert server.get("/api/runs/%s" % rid)[0] == 200
    assert server.request("DELETE", "/api/runs/%s" % rid)[0] == 401
    assert server.request("PATCH", "/api/runs/%s" % rid, {"name": "x"})[0] == 401
    assert server.request("DELETE", "/api/runs/%s" % rid, token=people["alice"])[0] == 403
    assert server.request("PATCH", "/api/runs/%s" % rid, {"name": "x"},
                          token=people["alice"])[0] == 403
    assert server.request("DELETE", "/api/runs/%s" % rid, token=people["root"])[0] == 200
    assert server.get("/api/runs/%s" % rid)[0] == 404


def test_owner_and_admin_may_change_others_may_not(server, people, profile_bytes):
    rid = server.upload(profile_bytes, token=people["alice"])
    status, run, _ = server.get("/api/runs/%s" % rid, token=people["alice"])
    assert run["owner"] == "alice" and run["may_change"] is True
    assert server.get("/api/runs/%s" % rid, token=people["bob"])[1]["may_change"] is False
    assert server.request("PATCH", "/api/runs/%s" % rid, {"name": "b"},
                          token=people["bob"])[0] == 403
    assert server.request("DELETE", "/api/runs/%s" % rid, token=people["bob"])[0] == 403
    status, reply, _ = server.request("PATCH", "/api/runs/%s" % rid, {"name": "first try"},
                                      token=people["alice"])
    assert status == 200, reply
    assert server.get("/api/runs/%s" % rid)[1]["name"] == "first try"
    assert [r["id"] for r in server.get("/api/runs?q=FIRST")[1]["runs"]] == [rid]
    assert server.request("PATCH", "/api/runs/%s" % rid, {"name": 5},
                          token=people["alice"])[0] == 400
    assert server.request("PATCH", "/api/runs/%s" % rid, {"name": "admin's"},
                          token=people["root"])[0] == 200
    assert server.request("DELETE", "/api/runs/%s" % rid, token=people["alice"])[0] == 200
    assert server.request("DELETE", "/api/runs/%s" % rid, token=people["alice"])[0] == 404


def test_uploading_into_another_users_runtime_is_refused(server, people, profile_bytes):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"},
                                      token=people["alice"])
    rid = reply["runtime_id"]
    for token in (None, people["bob"]):
        status, _, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                                      profile_bytes, token=token)
        assert status == 403
        assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"", token=token)[0] == 403


def test_list_filters(server, people, profile_bytes):
    a = server.upload(profile_bytes, argv="alpha.py --x", token=people["alice"])
    b = server.upload(profile_bytes, argv="beta.py 100%_done", vm="PyPy", token=people["bob"])
    c = server.upload(profile_bytes, argv="gamma.py")
    ids = lambda q: [r["id"] for r in server.get("/api/runs" + q)[1]["runs"]]
    assert ids("") == [c, b, a]        # newest first
    assert ids("?user=alice") == [a]
    assert ids("?user=me") == []
    assert [r["id"] for r in server.get("/api/runs?user=me", token=people["bob"])[1]["runs"]] == [b]
    assert ids("?vm=PyPy") == [b]
    assert ids("?q=ALPHA") == [a]
    assert ids("?q=100%25_") == [b]    # % and _ are matched as themselves
    assert ids("?q=0%25") == [b]
    assert ids("?q=a%25_d") == []
    assert ids("?q=PH") == [a]         # shorter than a trigram: matched row by row
    assert ids("?q=%22") == []         # a quote, alone and inside a search (FTS5 syntax)
    assert ids("?q=a%22b") == []
    for bad in ("0", "x", "2", "before-", "before-x", "before--1", "before-1x"):
        status, reply, _ = server.get("/api/runs?page=" + bad)
        assert status == 400 and "next" in reply["error"], bad


def test_search_follows_rename_and_delete(server, profile_bytes):
    """The search index is kept in step with the runs: a new name is found,
    the old command line still is, a deleted run is not."""
    token = server.add_user("alice")
    rid = server.upload(profile_bytes, argv="plain.py", token=token)
    other = server.upload(profile_bytes, argv="plain.py --other", token=token)
    ids = lambda q: [r["id"] for r in server.get("/api/runs?q=" + q)[1]["runs"]]
    assert ids("Wobbly") == []
    assert server.request("PATCH", "/api/runs/%s" % rid, {"name": "the wobbly one"},
                          token=token)[0] == 200
    assert ids("Wobbly") == [rid]
    assert ids("plain") == [other, rid]
    assert server.request("DELETE", "/api/runs/%s" % other, token=token)[0] == 200
    assert ids("plain") == [rid]


def test_paging(server, profile_bytes):
    ids = [server.upload(profile_bytes, argv="run %d" % i) for i in range(103)]
    listed, page, pages = [], "1", 0
    while page:
        reply = server.get("/api/runs?page=%s" % page)[1]
        assert len(reply["runs"]) == (50 if reply["next"] else 3)
        listed += [r["id"] for r in reply["runs"]]
        page, pages = reply["next"], pages + 1
    assert pages == 3 and listed == ids[::-1]
    # The search through the index pages the same way: every "run 1..", newest first.
    ones = [i for n, i in enumerate(ids) if str(n).startswith("1")]
    got, page = [], "1"
    while page:
        reply = server.get("/api/runs?q=run%201&page=" + page)[1]
        got += [r["id"] for r in reply["runs"]]
        page = reply["next"]
    assert got == ones[::-1]
    # A search nearly every run matches: its pages are found among the newest
    # runs below the cursor; the last, short one through the index again.
    got, page = [], "1"
    while page:
        reply = server.get("/api/runs?q=RUN&page=" + page)[1]
        got += [r["id"] for r in reply["runs"]]
        page = reply["next"]
    assert got == ids[::-1]
    # A page is named by where the one before it ended: a run added meanwhile
    # does not shift it (with page numbers its last run would come again).
    first = server.get("/api/runs")[1]
    server.upload(profile_bytes, argv="newer")
    second = server.get("/api/runs?page=" + first["next"])[1]
    assert [r["id"] for r in second["runs"]] == listed[50:100]


def test_database_of_the_previous_version_is_upgraded(start_server, tmp_path, profile_bytes):
    """A database made before runs were numbered (no seq column, no search
    index) keeps its runs, in their order, and they can be searched."""
    data = tmp_path / "old"
    server = start_server(data=data)
    ids = [server.upload(profile_bytes, argv="old run %d" % i) for i in range(3)]
    server.stop()
    db = sqlite3.connect(str(data / "vmprof.db"))
    cols = [c[1] for c in db.execute("PRAGMA table_info(runs)") if c[1] != "seq"]
    db.executescript("DROP TABLE runs_search; DROP TRIGGER IF EXISTS runs_search_add;"
                     "DROP TRIGGER IF EXISTS runs_search_remove;"
                     "DROP TRIGGER IF EXISTS runs_search_change;"
                     "CREATE TABLE runs_v1 AS SELECT %s FROM runs ORDER BY seq DESC;"
                     "DROP TABLE runs; ALTER TABLE runs_v1 RENAME TO runs;"
                     "CREATE INDEX runs_listing ON runs (state, created DESC, id);"
                     % ", ".join(cols))
    db.close()
    server = start_server(data=data)
    listed = [r["id"] for r in server.get("/api/runs")[1]["runs"]]
    assert listed == ids[::-1]
    assert [r["id"] for r in server.get("/api/runs?q=RUN%201")[1]["runs"]] == [ids[1]]
    new = server.upload(profile_bytes, argv="new run")
    assert [r["id"] for r in server.get("/api/runs?q=run")[1]["runs"]] == [new] + ids[::-1]


def test_search_index_of_the_previous_version_is_made_again(start_server, tmp_path,
                                                            profile_bytes):
    """A database whose search index folded case itself (FTS5's trigram
    tokenizer as it comes, which folds as SQLite's tables do, not as the
    server) gets the index that keeps case at start-up, and its runs are
    found as srv_fold folds them: q=init finds "İNIT" (towlower folds U+0130
    to i, SQLite does not)."""
    data = tmp_path / "old"
    server = start_server(data=data)
    ids = [server.upload(profile_bytes, argv=a) for a in ("job İNIT", "job init", "job other")]
    server.stop()
    db = sqlite3.connect(str(data / "vmprof.db"))
    db.executescript("DROP TABLE runs_search_terms; DROP TABLE runs_search;"
                     "CREATE VIRTUAL TABLE runs_search USING fts5(argv, name, content='runs',"
                     " content_rowid='seq', tokenize='trigram');"
                     "INSERT INTO runs_search (runs_search) VALUES ('rebuild');"
                     "CREATE VIRTUAL TABLE runs_search_terms USING fts5vocab(runs_search, 'row');")
    db.close()
    server = start_server(data=data)
    assert server.search_all("init") == [ids[1], ids[0]]
    assert server.search_all("İNI") == [ids[1], ids[0]]
    new = server.upload(profile_bytes, argv="new INIT")
    assert server.search_all("iNiT") == [new, ids[1], ids[0]]
    status, err = server.stop()
    assert status == 0 and "search index of runs is made again" in err, err
    db = sqlite3.connect(str(data / "vmprof.db"))
    made = db.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_search'").fetchone()[0]
    db.close()
    assert "case_sensitive 1" in made, made
    # Made once: the next start keeps it.
    server = start_server(data=data)
    assert server.search_all("init") == [new, ids[1], ids[0]]
    status, err = server.stop()
    assert "made again" not in err, err


def session_request(server, method, path, body=None, cookie=None, csrf=None, forwarded=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    if cookie:
        headers["Cookie"] = cookie
    if csrf:
        headers["X-CSRF-Token"] = csrf
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"null")
    conn.close()
    return resp.status, data, resp


def test_browser_session(server, people, profile_bytes):
    out = subprocess.run([SERVER_BIN, "--data", server.data, "user", "password", "alice"],
                         input="correct horse\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    status, _, _ = session_request(server, "POST", "/api/login",
                                   {"name": "alice", "password": "wrong horse"})
    assert status == 401
    status, me, resp = session_request(server, "POST", "/api/login",
                                       {"name": "alice", "password": "correct horse"})
    assert status == 200 and me["user"] == "alice" and me["csrf"]
    set_cookie = resp.getheader("Set-Cookie")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Secure" not in set_cookie          # plain http: a Secure cookie would not come back
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/api/login", body=json.dumps({"name": "alice",
                                                         "password": "correct horse"}),
                 headers={"Content-Type": "application/json", "X-Forwarded-Proto": "https"})
    behind_tls = conn.getresponse()
    behind_tls.read()
    conn.close()
    assert "; Secure" in behind_tls.getheader("Set-Cookie")
    cookie = set_cookie.split(";")[0]
    status, me2, _ = session_request(server, "GET", "/api/me", cookie=cookie)
    assert me2 == me
    rid = server.upload(profile_bytes, token=people["alice"])
    # A write with the cookie but without the CSRF token is refused.
    status, reply, _ = session_request(server, "PATCH", "/api/runs/%s" % rid, {"name": "n"},
                                       cookie=cookie)
    assert status == 403 and "CSRF" in reply["error"]
    status, _, _ = session_request(server, "PATCH", "/api/runs/%s" % rid, {"name": "n"},
                                   cookie=cookie, csrf="0" * 48)
    assert status == 403
    status, _, _ = session_request(server, "PATCH", "/api/runs/%s" % rid, {"name": "n"},
                                   cookie=cookie, csrf=me["csrf"])
    assert status == 200
    # A token made in the browser works for uploads, shown once.
    status, tok, _ = session_request(server, "POST", "/api/tokens", cookie=cookie,
                                     csrf=me["csrf"])
    assert status == 200
    assert server.get("/api/me", token=tok["token"])[1]["user"] == "alice"
    status, _, _ = session_request(server, "POST", "/api/logout", cookie=cookie, csrf=me["csrf"])
    assert status == 200
    assert session_request(server, "GET", "/api/me", cookie=cookie)[1]["user"] is None


def test_big_answers_are_gzipped_for_who_asks(server, profile_bytes):
    for i in range(40):
        server.upload(profile_bytes, argv="run %d" % i)
    status, plain, _ = server.get("/api/runs")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/api/runs", headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    packed = resp.read()
    conn.close()
    assert resp.getheader("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(packed)) == plain


def test_failed_logins_are_throttled_per_address(server, people):
    """Five wrong passwords from one address: the sixth attempt, even with the
    right password, is refused (429, Retry-After) without being checked; other
    addresses (as the reverse proxy names them) still log in; a success
    forgets an address's failures."""
    out = subprocess.run([SERVER_BIN, "--data", server.data, "user", "password", "alice"],
                         input="correct horse\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    login = lambda password, address: session_request(
        server, "POST", "/api/login", {"name": "alice", "password": password},
        forwarded=address)
    # four failures, then a success: the count starts again
    for _ in range(4):
        assert login("wrong", "192.0.2.7")[0] == 401
    assert login("correct horse", "192.0.2.7")[0] == 200
    for _ in range(5):
        assert login("wrong", "192.0.2.7")[0] == 401
    status, reply, resp = login("correct horse", "192.0.2.7")
    assert status == 429 and "too many failed logins" in reply["error"], reply
    assert 0 < int(resp.getheader("Retry-After")) <= 600
    # the last address of the proxy's list is the client
    assert login("correct horse", "10.0.0.1, 192.0.2.7")[0] == 429
    assert login("correct horse", "192.0.2.8")[0] == 200
    assert login("correct horse", "2001:db8::1")[0] == 200
    # an unknown user counts as a failure too
    for _ in range(5):
        assert session_request(server, "POST", "/api/login",
                               {"name": "nobody", "password": "x"}, forwarded="192.0.2.9")[0] == 401
    assert login("correct horse", "192.0.2.9")[0] == 429


def test_wrong_api_tokens_are_throttled_per_address(server, people, profile_bytes):
    """Five wrong API tokens from one address: its sixth request with a token,
    even the right one, is refused (429, Retry-After) before the token is
    looked at; the same address still reads without a token, and other
    addresses still use theirs.  A valid token does not forget the failures
    (whoever holds one could reset the count between guesses)."""
    alice = people["alice"]
    rid = server.upload(profile_bytes, token=alice)

    def ask(token, address, path="/api/me"):
        return server.request("GET", path, token=token,
                              headers={"X-Forwarded-For": address})

    wrong = "f" * 48
    for _ in range(4):
        assert ask(wrong, "192.0.2.7")[0] == 401
    assert ask(alice, "192.0.2.7")[1]["user"] == "alice"   # not reset by it
    assert ask(wrong, "192.0.2.7")[0] == 401
    status, reply, resp = ask(alice, "192.0.2.7")
    assert status == 429 and "wrong API tokens" in reply["error"], reply
    assert 0 < int(resp.getheader("Retry-After")) <= 600
    # uploads with a token are refused the same way
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "x", "VM": "CPython"},
                                      token=alice, headers={"X-Forwarded-For": "192.0.2.7"})
    assert status == 429, reply
    # reading without credentials is not guessing
    assert server.request("GET", "/api/runs/%s" % rid,
                          headers={"X-Forwarded-For": "192.0.2.7"})[0] == 200
    assert ask(alice, "192.0.2.8")[1]["user"] == "alice"
    assert ask(alice, "2001:db8::7")[1]["user"] == "alice"
    # wrong tokens and wrong passwords are one count of guesses
    for _ in range(3):
        assert ask(wrong, "192.0.2.9")[0] == 401
    for _ in range(2):
        assert session_request(server, "POST", "/api/login", {"name": "alice", "password": "x"},
                               forwarded="192.0.2.9")[0] == 401
    assert ask(alice, "192.0.2.9")[0] == 429


def test_failed_guesses_outlive_a_restart(start_server, tmp_path):
    """The failures are kept in the database (where servers sharing it all
    count them: test_postgres.py), so a restart does not forget them."""
    server = start_server()
    token = server.add_user("frank")
    for _ in range(5):
        assert server.request("GET", "/api/me", token="d" * 48,
                              headers={"X-Forwarded-For": "192.0.2.60"})[0] == 401
    assert server.stop()[0] == 0
    server.start()
    status, reply, _ = server.request("GET", "/api/me", token=token,
                                      headers={"X-Forwarded-For": "192.0.2.60"})
    assert status == 429, reply
    assert server.request("GET", "/api/me", token=token,
                          headers={"X-Forwarded-For": "192.0.2.61"})[1]["user"] == "frank"


def test_vms(server, profile_bytes):
    assert server.get("/api/vms")[:2] == (200, {"vms": []})
    server.upload(profile_bytes, vm="PyPy")
    server.upload(profile_bytes, vm="CPython")
    server.upload(profile_bytes, vm="CPython")
    server.upload(profile_bytes, vm="Jython", freeze=False)  # not listed until frozen
    assert server.get("/api/vms")[1] == {"vms": [{"vm": "CPython", "runs": 2},
                                                 {"vm": "PyPy", "runs": 1}]}


def expected_text(raw):
    """What the API says of stored bytes: the text when it is UTF-8, else
    each byte from 0x80 up as '?'."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else "?" for b in raw)


def test_list_writes_every_text_and_number_as_json_reads_them(server, people, profile_bytes):
    """The list's page is written as JSON text by hand (srv_json.c): quotes,
    backslashes, control characters, UTF-8 of every length come back as they
    were stored; text that is not UTF-8 (an overlong form, a surrogate, a
    stray continuation byte, a byte no UTF-8 has, cut short) as '?' for its
    bytes from 0x80 up, as GET /api/runs/ID says it; reals as reals."""
    rid = server.upload(profile_bytes, token=people["alice"])
    texts = [b'say "hi" \\ back\\', bytes(range(1, 32)) + b"\x7f", "caf\u00e9 \u20ac \u2028 \U0001F600".encode(),
             b"over\xc0\xaflong", b"sur\xed\xa0\x80gate", b"stray\x80", b"no\xf5byte", b"cut\xe2\x82",
             b"above\xf4\x90\x80\x80", b""]
    durations = [0.0, 1e-7, 12.5, 1e20, 123456789012.5, 1 / 3]
    db = sqlite3.connect(server.data + "/vmprof.db", timeout=30)
    cols = [c[1] for c in db.execute("PRAGMA table_info(runs)")]
    row = dict(zip(cols, db.execute("SELECT * FROM runs WHERE id = ?", (rid,)).fetchone()))
    made = {}
    for i, raw in enumerate(texts):
        new = dict(row, id="%016x" % (0xab00 + i), seq=None, duration=durations[i % len(durations)])
        del new["argv"], new["name"]
        names = [c for c in cols if c in new]
        db.execute("INSERT INTO runs (%s, argv, name) VALUES (%s, CAST(? AS TEXT), CAST(? AS TEXT))"
                   % (", ".join(names), ", ".join("?" * len(names))),
                   [new[c] for c in names] + [raw, raw[::-1]])
        made[new["id"]] = (raw, new["duration"])
    db.commit()
    db.close()
    listed = {r["id"]: r for r in server.get("/api/runs")[1]["runs"]}
    for id_, (raw, duration) in made.items():
        item = listed[id_]
        assert item["argv"] == expected_text(raw), raw
        assert item["name"] == expected_text(raw[::-1]), raw
        assert item["owner"] == "alice" and item["vm"] == "CPython"
        assert isinstance(item["duration"], float)
        assert item["duration"] == pytest.approx(duration, rel=1e-9)
        one = server.get("/api/runs/" + id_)[1]
        assert {k: one[k] for k in item} == item
    assert listed[rid]["name"] is None


def test_search_finds_what_reading_every_run_finds(server, profile_bytes):
    """q= of ASCII text walks the index's list of the trigram of q the fewest
    runs hold (counts kept a while in memory), or the newest runs when most
    hold it: every page says what reading every run finds, newest first,
    also for a trigram first counted when no run held it."""
    rid = server.upload(profile_bytes, argv="first")
    db = sqlite3.connect(server.data + "/vmprof.db", timeout=30)
    cols = [c[1] for c in db.execute("PRAGMA table_info(runs)")]
    row = dict(zip(cols, db.execute("SELECT * FROM runs WHERE id = ?", (rid,)).fetchone()))

    def add(i, argv, name=None):
        new = dict(row, id="%016x" % (0xcd0000 + i), seq=None, argv=argv, name=name)
        names = [c for c in cols if c in new]
        db.execute("INSERT INTO runs (%s) VALUES (%s)" % (", ".join(names), ", ".join("?" * len(names))),
                   [new[c] for c in names])
        db.commit()
    for i in range(160):
        add(i, "bench.py --case %d" % i if i % 3 else "Tool --CASE X%dY" % i,
            "named %d" % i if i % 7 == 0 else None)
    runs = [(r[0], r[1], r[2]) for r in db.execute("SELECT id, argv, name FROM runs ORDER BY seq DESC")]

    def expected(q):
        q = q.lower()
        return [i for i, argv, name in runs if q in argv.lower() or (name and q in name.lower())]

    for q in ["case 7", "CASE 1", "case 149", "se 1", "--case", "ool --case x1", "e X1", "named 14",
              "ed 7", "bench", "first", "nothing here", '"q"', "1y", "0y"]:
        assert server.search_all(q) == expected(q), q
    assert server.search_all("zzq") == []
    add(500, "tool zzq")
    runs.insert(0, ("%016x" % (0xcd0000 + 500), "tool zzq", None))
    assert server.search_all("zzq") == expected("zzq") != []
    db.close()
