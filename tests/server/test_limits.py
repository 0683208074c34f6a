"""Limits on everything a client controls: header size, request time, idle
connections, connections, uploads in flight, upload size (test_upload.py);
each a short, bounded exchange on 127.0.0.1."""
import json
import os
import select
import socket
import time

import pytest


def connect(server):
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_all(s, limit=1 << 20):
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def new_runtime(server):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    assert status == 200
    return reply["runtime_id"]


def test_headers_over_the_limit(server):
    with connect(server) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        assert read_all(s).startswith(b"HTTP/1.1 431")
    assert server.get("/api/health")[0] == 200


def test_slow_upload_is_cut_at_the_request_time_limit(start_server, profile_bytes):
    server = start_server("--request-timeout", "2")
    rid = new_runtime(server)
    with connect(server) as s:
        s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %d\r\n\r\n" % (rid, len(profile_bytes))).encode())
        started = time.monotonic()
        closed = False
        for i in range(0, 40):           # at most 40 x 0.25 s
            try:
                s.sendall(profile_bytes[i * 10:(i + 1) * 10])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.25)
            if select.select([s], [], [], 0)[0]:
                closed = True
                break
        assert closed and time.monotonic() - started < 8
        # told why, in one line, then the connection closed
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"].startswith(
        "the request took over 2 s, the most this server gives one "
        "(vmprof-server --request-timeout)")
    # Nothing of it was kept, and the server serves on.
    assert server.get("/api/runs")[1]["runs"] == []
    assert server.upload(profile_bytes)


def test_a_chunked_upload_over_the_limit_is_told_so(start_server, big_profile_bytes):
    """No length declared (chunked): the body is cut at --max-upload, and the
    client is told so with 413 before it has sent the rest (before, the
    connection was closed without a word)."""
    server = start_server("--max-upload", "1M")
    rid = new_runtime(server)
    sent = 0
    with connect(server) as s:
        s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n" % rid).encode())
        piece = 64 << 10
        while sent < len(big_profile_bytes):
            if select.select([s], [], [], 0.01)[0]:
                break
            data = big_profile_bytes[sent:sent + piece]
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(data)
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error == ("the request body is over 1048576 bytes, the most this server takes "
                     "(vmprof-server --max-upload)"), error
    assert sent < len(big_profile_bytes) // 2, (sent, len(big_profile_bytes))
    assert os.listdir(os.path.join(server.data, "runs")) == []
    assert os.listdir(os.path.join(server.data, "tmp")) == []
    assert server.get("/api/health")[0] == 200


def send_until_answered(server, head, pieces):
    """Sends the request head, then its body's pieces until an answer comes;
    returns the whole answer (what the server wrote before it closed)."""
    with connect(server) as s:
        s.sendall(head.encode())
        for piece in pieces:
            if select.select([s], [], [], 0.01)[0]:
                break
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        return read_all(s)


def header_lines(answer):
    """The status and the headers of a raw answer, as (status, {name: value});
    Date and Content-Length, which differ by answer, with their values left out."""
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        assert name not in headers, head
        headers[name] = "" if name in ("date", "content-length") else value.strip()
    return head[0].split(" ")[1], headers


def test_an_early_answer_has_the_headers_of_a_queued_one(start_server, big_profile_bytes):
    """An answer written on the socket while the body still arrives
    (answer_early) carries the headers libmicrohttpd sends with the same
    answer queued after the body or before it: 413 for a chunked body over
    --max-upload against 413 for a declared length over it, 400 for a
    profile refused at its first bytes against 400 for one found cut at its
    end.  A header given to one way only (a second list of them) fails here."""
    server = start_server("--max-upload", "1M")

    def chunked(data):
        for at in range(0, len(data), 64 << 10):
            yield b"%x\r\n%s\r\n" % (len(data[at:at + (64 << 10)]), data[at:at + (64 << 10)])

    def plain(data, piece=64 << 10):
        return (data[at:at + piece] for at in range(0, len(data), piece))

    add = "POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
    early_413 = send_until_answered(
        server, add % new_runtime(server) + "Transfer-Encoding: chunked\r\n\r\n",
        chunked(big_profile_bytes))
    queued_413 = send_until_answered(
        server, add % new_runtime(server) + "Content-Length: %d\r\n\r\n" % len(big_profile_bytes),
        plain(big_profile_bytes))
    # (a body declared longer than sent: only an early answer comes)
    garbage = b"not a profile " * 20000
    early_400 = send_until_answered(
        server, add % new_runtime(server) + "Content-Length: %d\r\n\r\n" % (1 << 20),
        plain(garbage))
    cut = big_profile_bytes[:5]
    queued_400 = send_until_answered(
        server, add % new_runtime(server) + "Content-Length: %d\r\nConnection: close\r\n\r\n"
        % len(cut), [cut])
    # (which way each went: the early ones before their body's end)
    assert b"--max-upload" in early_413 and b"over 1048576 bytes" in early_413, early_413
    assert b"the profile does not read" in early_400, early_400
    assert b"the profile does not read" in queued_400, queued_400
    for early, queued in ((early_413, queued_413), (early_400, queued_400)):
        assert header_lines(early) == header_lines(queued), (early, queued)
    assert header_lines(early_413)[1]["connection"] == "close"


def test_idle_connection_is_closed(start_server):
    server = start_server("--idle-timeout", "1")
    with connect(server) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\n")     # and then nothing
        started = time.monotonic()
        read_all(s)    # returns when the server closes (the socket waits 10 s)
        assert time.monotonic() - started < 6


def test_connection_limit(start_server):
    server = start_server("--max-connections", "3")
    held = [connect(server) for _ in range(3)]
    try:
        time.sleep(0.3)
        with connect(server) as extra:
            extra.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not read_all(extra).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert server.get("/api/health")[0] == 200


def test_uploads_in_flight(start_server, profile_bytes):
    server = start_server("--max-uploads", "1")
    first, second = new_runtime(server), new_runtime(server)
    with connect(server) as s:
        s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %d\r\n\r\n" % (first, len(profile_bytes))).encode())
        s.sendall(profile_bytes[:100])
        time.sleep(0.3)
        status, reply, resp = server.request("POST", "/api/runtime/upload/cpu/%s/add" % second,
                                             profile_bytes)
        assert status == 503 and resp.getheader("Retry-After")
        s.sendall(profile_bytes[100:])
        assert read_all(s, 1).startswith(b"H")
    time.sleep(0.2)
    status, _, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % second,
                                  profile_bytes)
    assert status == 200


def test_json_body_over_its_limit(server):
    with connect(server) as s:
        s.sendall(b"POST /api/runtime/new HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
        assert read_all(s).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("value", ["0", "-1", "1X", "abc"])
def test_bad_option_values_say_so_in_one_line(tmp_path, value):
    import subprocess
    from conftest import SERVER_BIN
    out = subprocess.run([SERVER_BIN, "--data", str(tmp_path), "--max-upload", value + "Q"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--max-upload" in out.stderr


@pytest.mark.parametrize("args, says", [
    (["--bogus"], "unknown option --bogus (vmprof-server --help lists them)"),
    (["--version"], "unknown option --version"),
    (["--listen"], "--listen needs a value"),
    (["frobnicate"], "unknown command frobnicate"),
    (["user", "add"], "user: say what and whom"),
    (["user", "remove", "bob"], "unknown command user remove"),
    (["user", "token", "bob", "--admin"], "user token: unexpected --admin"),
    (["raw", "0123456789abcdef", "-o"], "raw: -o needs a value"),
    (["raw", "0123456789abcdef", "extra"], "raw: unexpected extra"),
])
def test_wrong_command_lines_say_what_is_wrong_in_one_line(tmp_path, args, says):
    """An unknown option last on the line was reported as one that "needs a
    value", and each mistake came with the whole usage text after it."""
    import subprocess
    from conftest import SERVER_BIN
    out = subprocess.run([SERVER_BIN, "--data", str(tmp_path / "d")] + args,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and says in out.stderr, out.stderr


def test_no_data_folder_says_so_in_one_line():
    import subprocess
    from conftest import SERVER_BIN
    out = subprocess.run([SERVER_BIN, "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--data DIR is needed" in out.stderr
