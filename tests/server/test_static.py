"""The browser UI's files: the built folder at /, its client-side routes
answered with its page, speedscope's files at /speedscope/, nothing else."""
import pytest


@pytest.fixture
def ui_server(start_server, tmp_path):
    web = tmp_path / "dist"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>the UI</title>")
    (web / "app.js").write_text("console.log(1)")
    (web / ".secret").write_text("hidden")
    speedscope = tmp_path / "speedscope"
    speedscope.mkdir()
    (speedscope / "index.html").write_text("speedscope page")
    (speedscope / "demangle.wasm").write_bytes(b"\0asm")
    (tmp_path / "outside.txt").write_text("not to be served")
    return start_server("--web", str(web), "--speedscope", str(speedscope))


def test_files_and_routes(ui_server):
    status, body, resp = ui_server.get("/")
    assert status == 200 and b"the UI" in body
    assert resp.getheader("Content-Type").startswith("text/html")
    status, body, resp = ui_server.get("/app.js")
    assert status == 200 and resp.getheader("Content-Type").startswith("text/javascript")
    for route in ("/runs/0123456789abcdef", "/compare/a/b", "/login"):
        status, body, _ = ui_server.get(route)
        assert status == 200 and b"the UI" in body, route
    status, body, resp = ui_server.get("/speedscope/")
    assert status == 200 and body == b"speedscope page"
    status, body, resp = ui_server.get("/speedscope/demangle.wasm")
    assert status == 200 and resp.getheader("Content-Type") == "application/wasm"


def test_nothing_outside_the_folders(ui_server):
    for path in ("/missing.js", "/.secret", "/../outside.txt", "/%2e%2e/outside.txt",
                 "/speedscope/../outside.txt", "/speedscope/missing.js"):
        status, body, _ = ui_server.get(path)
        assert status == 404 or b"not to be served" not in body, path
        assert b"hidden" not in body and b"not to be served" not in body, path


def test_unknown_api_path_is_json_404(ui_server):
    status, body, _ = ui_server.get("/api/nothing/here")
    assert status == 404 and "no API endpoint" in body["error"]
    status, body, _ = ui_server.request("POST", "/api/runs")
    assert status == 405


def test_bytes_that_are_not_utf8_in_a_path(ui_server):
    # The error message quotes the path; JSON must still come out (it was a 500).
    import socket
    with socket.create_connection(("127.0.0.1", ui_server.port), timeout=10) as s:
        s.sendall(b"BREW /r\xe9\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 405"), answer
    assert b'"error"' in answer


def test_empty_and_odd_request_targets(ui_server):
    # An empty target read one byte before the path (found by the fuzzer
    # under UBSan).
    import socket
    for target in (b"", b"?", b"*", b"%00", b"//", b"/speedscope"):
        with socket.create_connection(("127.0.0.1", ui_server.port), timeout=10) as s:
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)
    assert ui_server.proc.poll() is None
    assert ui_server.get("/api/health")[0] == 200
