"""The upload client (vmprof.upload) against a loopback server.

The client must speak docs/spec/upload-protocol.md exactly: new runtime (JSON),
the raw file (no Content-Type, Content-Disposition with the path), freeze;
print <url>/#/<runtime_id>; and on failure raise/print one line and leave the
file where it was.
"""
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from data_paths import PROFILES as UPSTREAM
from upload_server import UploadServer
from vmprof import upload

# (a real profile: the client reads what it uploads first, where it can)
with open(os.path.join(UPSTREAM, "calc_py311.prof"), "rb") as _f:
    PROFILE_BYTES = _f.read()
NOT_A_PROFILE = bytes(range(256)) * 40 + b"\x00end"


@pytest.fixture
def server():
    with UploadServer() as s:
        yield s


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "run.prof"
    path.write_bytes(PROFILE_BYTES)
    return str(path)


def test_upload_speaks_the_protocol(server, profile):
    result = upload.upload(profile, server.url, auth="s3cret", argv="prog.py -x 1",
                           vm="CPython")
    assert server.paths() == ["/api/runtime/new",
                              "/api/runtime/upload/cpu/rt42/add",
                              "/api/runtime/rt42/freeze/"]
    new, cpu, freeze = server.requests
    assert new.headers["Content-Type"] == "application/json"
    assert json.loads(new.body) == {"argv": "prog.py -x 1", "VM": "CPython"}
    for request in server.requests:
        assert request.headers["AUTHORIZATION"] == "Token s3cret"
    assert cpu.body == PROFILE_BYTES
    assert "Content-Type" not in cpu.headers
    assert cpu.headers["Content-Disposition"] == "attachment; filename=%s" % profile
    assert freeze.body == b""
    assert server.frozen == {"rt42"}
    assert result.runtime_id == "rt42"
    assert result.profile_url == server.url + "/#/rt42"
    assert result.traces_url is None


def test_no_auth_header_without_a_token(server, profile):
    upload.upload(profile, server.url)
    assert all("AUTHORIZATION" not in r.headers for r in server.requests)
    assert json.loads(server.requests[0].body)["VM"] == upload.interpreter_name()


def test_host_without_scheme_gets_http(server, profile):
    bare = server.url[len("http://"):] + "/"
    result = upload.upload(profile, bare)
    assert result.profile_url == server.url + "/#/rt42"


def test_jitlog_is_sent_gzipped_before_the_freeze(server, profile, tmp_path):
    jitlog = tmp_path / "run.prof.jitlog"
    jitlog.write_bytes(b"JITLOG" * 1000)
    result = upload.upload(profile, server.url, jitlog_path=str(jitlog))
    assert server.paths()[2:] == ["/api/runtime/upload/jit/rt42/add",
                                  "/api/runtime/rt42/freeze/"]
    jit = server.requests[2]
    assert gzip.decompress(jit.body) == b"JITLOG" * 1000
    assert jit.headers["Content-Disposition"].endswith(".zip")
    assert result.traces_url == server.url + "/#/jit7/traces"


@pytest.mark.parametrize("step", ["new", "cpu", "freeze"])
def test_a_refused_step_is_a_one_line_error(server, profile, step):
    server.fail[step] = 500 if step != "cpu" else 413
    with pytest.raises(upload.UploadError) as info:
        upload.upload(profile, server.url)
    message = str(info.value)
    assert "\n" not in message
    assert str(server.fail[step]) in message
    assert os.path.exists(profile)


def test_a_refusal_gives_the_servers_sentence_whole(server, profile):
    """vmprof-server's refusals are JSON {"error": sentence}: the sentence was
    shown as the JSON text, cut at 200 characters, often before what to do."""
    says = ("the profile does not read: at byte 10770: STACKTRACE with count 3963167672086036481"
            " (always 1 in valid files); the file is corrupt; " + "x" * 150 + " do this")
    server.fail["cpu"] = 400
    server.error_text = says
    with pytest.raises(upload.UploadError) as info:
        upload.upload(profile, server.url)
    assert str(info.value).endswith("/add answered 400 Bad Request: " + says), info.value


def test_a_server_that_is_down(profile):
    with socket.socket() as s:            # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(upload.UploadError) as info:
        upload.upload(profile, "http://127.0.0.1:%d" % port)
    assert "connection refused" in str(info.value)
    assert "--web-url" in str(info.value)


def test_a_server_that_does_not_answer(server, profile):
    server.stall.add("new")
    with pytest.raises(upload.UploadError) as info:
        upload.upload(profile, server.url, timeout=0.3)
    assert "no answer within 0.3 s" in str(info.value)


def test_an_answer_that_is_not_json(server, profile):
    server.garbage.add("new")
    with pytest.raises(upload.UploadError) as info:
        upload.upload(profile, server.url)
    assert "not JSON" in str(info.value)


def test_a_missing_profile(server, tmp_path):
    with pytest.raises(upload.UploadError) as info:
        upload.upload(str(tmp_path / "nope.prof"), server.url)
    assert "cannot read the profile" in str(info.value)
    assert server.requests == []


def test_bad_web_urls():
    for url, words in [("ftp://example.org", "http:// or https://"),
                       ("", "empty"), ("http://host:notaport", "port")]:
        with pytest.raises(upload.UploadError) as info:
            upload.upload(__file__, url)
        assert words in str(info.value)


def run_upload_module(*args):
    # Not from the source tree, whose vmprof/ would shadow the installed one.
    return subprocess.run([sys.executable, "-m", "vmprof.upload"] + list(args),
                          capture_output=True, text=True, timeout=60,
                          cwd=tempfile.gettempdir())


def test_upload_module_prints_the_address(server, profile):
    done = run_upload_module(profile, "--web-url", server.url, "--web-auth", "tok")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == server.url + "/#/rt42"
    assert server.requests[1].body == PROFILE_BYTES
    assert server.requests[0].headers["AUTHORIZATION"] == "Token tok"
    assert os.path.exists(profile)


@pytest.mark.parametrize("fixture, vm", [("calc_py311.prof", "CPython"),
                                         ("calc_pypy.prof", "PyPy")])
def test_upload_module_names_the_profiles_interpreter(server, fixture, vm):
    path = os.path.join(UPSTREAM, fixture)
    done = run_upload_module(path, "--web-url", server.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(server.requests[0].body) == {"VM": vm, "argv": fixture}
    with open(path, "rb") as f:
        assert server.requests[1].body == f.read()


def test_upload_module_failure_says_why_and_keeps_the_file(server, profile):
    server.fail["cpu"] = 503
    done = run_upload_module(profile, "--web-url", server.url)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("vmprof: upload failed:") and "503" in last
    assert done.stdout == ""
    assert os.path.exists(profile)


@pytest.mark.parametrize("timeout", ["0", "-1", "abc", "nan"])
def test_upload_module_refuses_a_timeout_that_cannot_wait(profile, timeout):
    """--timeout 0 was taken: the socket became non-blocking and the upload
    failed with "Operation now in progress"."""
    done = run_upload_module(profile, "--timeout", timeout, "--web-url", "http://127.0.0.1:1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].endswith(
        "argument --timeout: give the seconds to wait for the server, more than 0 (e.g. 30), "
        "not %r" % timeout), done.stderr


def test_upload_module_bad_arguments(tmp_path):
    done = run_upload_module(str(tmp_path / "missing.prof"))
    assert done.returncode == 2
    assert "is not a file" in done.stderr
    done = run_upload_module()
    assert done.returncode == 2
    assert "FILE" in done.stderr


@pytest.mark.parametrize("content", [NOT_A_PROFILE, b"", PROFILE_BYTES[:5]], ids=["garbage", "empty", "cut-head"])
def test_what_the_reader_refuses_is_refused_before_anything_is_sent(server, tmp_path, content):
    # Before, the server made a runtime, refused the body with 400, and the
    # unfrozen runtime waited for the sweep.
    path = tmp_path / "bad.prof"
    path.write_bytes(content)
    with pytest.raises(upload.NotAProfile) as info:
        upload.upload(str(path), server.url)
    message = str(info.value)
    assert "\n" not in message and "at byte" in message and "nothing was sent" in message, message
    assert server.requests == []
    done = run_upload_module(str(path), "--web-url", server.url)
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("vmprof: upload refused: %s is not a profile" % path) and "kept" in last, last
    assert server.requests == [] and path.read_bytes() == content


def test_a_profile_cut_short_is_uploaded(server, tmp_path):
    # (read up to its last complete record, on the server as here)
    path = tmp_path / "cut.prof"
    path.write_bytes(PROFILE_BYTES[:len(PROFILE_BYTES) - 3])
    assert upload.upload(str(path), server.url).runtime_id == "rt42"
    assert server.requests[1].body == path.read_bytes()


def test_every_request_limits_the_bytes_left_unsent_in_the_kernel(server, profile, monkeypatch):
    """Each connection of an upload sets TCP_NOTSENT_LOWAT (where the system
    has it) before its request, and sends the file in 1 MiB pieces: on one
    machine a server's receiving thread would otherwise send megabytes queued
    ahead of its window on our behalf."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", 25 if sys.platform.startswith("linux") else None)
    if option is None:
        pytest.skip("no TCP_NOTSENT_LOWAT on this system")
    seen = []

    class Watched(upload.http.client.HTTPConnection):
        def request(self, *args, **kwargs):
            seen.append((self.sock.getsockopt(socket.IPPROTO_TCP, option), self.blocksize))
            return super().request(*args, **kwargs)

    monkeypatch.setattr(upload.http.client, "HTTPConnection", Watched)
    upload.upload(profile, server.url)
    assert seen == [(upload.UNSENT_MAX, 1 << 20)] * 3
    assert server.requests[1].body == PROFILE_BYTES
