"""A bounded HTTP fuzzer against a live server on 127.0.0.1: random and
mutated request lines, paths, headers and bodies (profiles cut and
corrupted, JSON and multipart malformed, chunked encodings broken).  The
server must answer each with a well-formed status (or close the connection),
never fail with a 5xx other than 503, and still serve afterwards.  The
binary built with ASan+UBSan is used when present (make server-sanitized: build/server-asan/vmprof-server)."""
import os
import random
import socket
import time

import pytest

from conftest import ROOT, Server

SANITIZED = os.path.join(ROOT, "build", "server-asan", "vmprof-server")
REQUESTS = int(os.environ.get("SERVER_FUZZ_REQUESTS", "1500"))
SECONDS = float(os.environ.get("SERVER_FUZZ_SECONDS", "40"))

PATHS = ["/api/runtime/new", "/api/runtime/upload/cpu/{id}/add",
         "/api/runtime/upload/jit/{id}/add", "/api/runtime/{id}/freeze/", "/api/runs",
         "/api/runs/{id}", "/api/runs/{id}/raw", "/api/runs/{id}/tree",
         "/api/runs/{id}/functions", "/api/runs/{id}/lines", "/api/runs/{id}/memory",
         "/api/runs/{id}/export/{fmt}", "/api/diff/{id}/{id}", "/api/me", "/api/login",
         "/api/logout", "/api/tokens", "/api/health", "/", "/runs/x", "/speedscope/"]
QUERIES = ["", "?page=2", "?page=-1", "?q=%25%00%ff", "?path=1.2.3", "?depth=1e309",
           "?min=nan", "?thread=99999999999999999999", "?from=5&to=1", "?width=0",
           "?function=-1", "?native=2&interp=x", "?sort=self&limit=0", "?q=" + "a" * 5000]
METHODS = ["GET", "POST", "DELETE", "PATCH", "PUT", "HEAD", "OPTIONS", "BREW", "G\x00T", ""]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if not data or choice < 0.3:
            data[rng.randint(0, len(data)):rng.randint(0, len(data))] = os.urandom(rng.randint(1, 64))
        elif choice < 0.6:
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        elif choice < 0.8:
            del data[rng.randrange(len(data)):]
        else:
            i = rng.randrange(len(data))
            data[i:i] = data[i:i + rng.randint(1, 2000)]
    return bytes(data)


def make_request(rng, ids, profile):
    rid = rng.choice(ids + ["0" * 16, "../../etc", "%2e%2e", "x" * 300, ""])
    path = rng.choice(PATHS).replace("{id}", rid).replace(
        "{fmt}", rng.choice(["html", "pprof", "x", "%00"]))
    if rng.random() < 0.2:
        path = mutate(rng, path.encode()).decode("latin-1")
    path += rng.choice(QUERIES)
    method = rng.choice(METHODS[:5]) if rng.random() < 0.9 else rng.choice(METHODS)
    kind = rng.random()
    if kind < 0.35:
        body = mutate(rng, profile)
    elif kind < 0.5:
        body = profile[:rng.randint(0, len(profile))]
    elif kind < 0.7:
        body = mutate(rng, b'{"argv": "x", "VM": "CPython", "name": "n", "password": "p"}')
    elif kind < 0.8:
        body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p\"\r\n\r\n"
                + profile[:rng.randint(0, 3000)] + rng.choice([b"\r\n--B--\r\n", b"", b"--"]))
    else:
        body = b""
    headers = [("Host", "127.0.0.1")]
    if rng.random() < 0.5:
        headers.append(("Content-Type", rng.choice(
            ["application/json", "multipart/form-data; boundary=B", "multipart/form-data",
             "text/plain", "\x7f\xff"])))
    if rng.random() < 0.3:
        headers.append(("Authorization", rng.choice(["Token " + "0" * 48, "Token", "Basic x",
                                                     "Token " + "a" * 4000])))
    if rng.random() < 0.2:
        headers.append(("Cookie", rng.choice(["vmprof_session=" + "1" * 48, "vmprof_session=",
                                              "a=b; vmprof_session=" + "x" * 100, ";;;="])))
    if rng.random() < 0.1:
        headers.append(("X-" + "h" * rng.randint(1, 50), "v" * rng.randint(0, 3000)))
    chunked = rng.random() < 0.15
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        pieces = b""
        for i in range(0, len(body), 1000):
            piece = body[i:i + 1000]
            size = len(piece) if rng.random() < 0.9 else rng.randint(0, 5000)
            pieces += b"%x\r\n" % size + piece + b"\r\n"
        body = pieces + rng.choice([b"0\r\n\r\n", b"", b"zz\r\n"])
    else:
        length = len(body)
        if rng.random() < 0.1:
            length = rng.choice([0, len(body) + 10, 1 << 40, -1])
        headers.append(("Content-Length", str(length)))
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
    data = head.encode("latin-1", "replace") + body
    if rng.random() < 0.05:
        data = mutate(rng, data)
    return data


def exchange(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        answer = b""
        try:
            while len(answer) < 64:
                chunk = s.recv(64)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return answer


def test_http_fuzz(start_server, tmp_path, profile_bytes):
    binary = SANITIZED if os.path.exists(SANITIZED) else None
    if binary:
        env = dict(os.environ, ASAN_OPTIONS="abort_on_error=1:detect_leaks=0",
                   UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
        os.environ["VMPROF_SERVER_SANITIZED"] = "1"
        import conftest
        saved = conftest.SERVER_BIN
        conftest.SERVER_BIN = binary
        try:
            server = Server(tmp_path / "data", "--request-timeout", "5", "--idle-timeout", "2",
                            env=env)
        finally:
            conftest.SERVER_BIN = saved
    else:
        server = start_server("--request-timeout", "5", "--idle-timeout", "2")
    try:
        ids = [server.upload(profile_bytes) for _ in range(3)]
        rng = random.Random(int(os.environ.get("SERVER_FUZZ_SEED", "20261130")))
        deadline = time.monotonic() + SECONDS
        statuses = {}
        sent = 0
        while sent < REQUESTS and time.monotonic() < deadline:
            last = make_request(rng, ids, profile_bytes)
            answer = exchange(server.port, last)
            sent += 1
            assert server.proc.poll() is None, "the server died on request %d" % sent
            if not answer:
                continue
            assert answer.startswith(b"HTTP/1.1 ") or answer.startswith(b"HTTP/1.0 "), answer
            status = int(answer[9:12])
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500 or status == 503, (status, answer, last[:300])
        assert sent >= min(REQUESTS, 200)
        assert server.get("/api/health")[0] == 200
        for rid in ids:
            assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    finally:
        status, err = server.stop()
        assert status == 0, err
        assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err
