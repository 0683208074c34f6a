"""Accounts, tokens, sessions and who may do what: anyone reads; a run is
changed (renamed, deleted) by its owner or an admin only; an anonymous run by
an admin only; a browser session's writes need its CSRF token."""
import gzip
import http.client
import json
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
    assert server.get("/api/runs?page=0")[0] == 400
    assert server.get("/api/runs?page=x")[0] == 400


def test_paging(server, profile_bytes):
    ids = [server.upload(profile_bytes, argv="run %d" % i) for i in range(53)]
    first = server.get("/api/runs")[1]
    assert len(first["runs"]) == 50 and first["next"] == 2
    second = server.get("/api/runs?page=2")[1]
    assert second["next"] is None
    assert [r["id"] for r in first["runs"] + second["runs"]] == ids[::-1]


def session_request(server, method, path, body=None, cookie=None, csrf=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json"}
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
