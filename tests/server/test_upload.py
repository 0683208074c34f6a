"""The upload exchange of docs/spec/upload-protocol.md against vmprof-server: by
hand, with our client (`python -m vmprof --web`), and with the original
client from PyPI, anonymous and with a token."""
import gzip
import http.client
import os
import json
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

import pytest

from conftest import (ORIG_PYTHON, ROOT, SERVER_BIN, attach_strace, wait_for_compressor,
                      wait_for_files)


def listed_ids(server, **query):
    qs = "&".join("%s=%s" % kv for kv in query.items())
    status, reply, _ = server.get("/api/runs" + ("?" + qs if qs else ""))
    assert status == 200
    return [r["id"] for r in reply["runs"]]


def test_protocol_by_hand(server, profile_bytes):
    rid = server.upload(profile_bytes, argv="burn_workload.py 5", freeze=False)
    # Not listed, not served until frozen.
    assert rid not in listed_ids(server)
    assert server.get("/api/runs/%s" % rid)[0] == 404
    status, reply, _ = server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")
    assert (status, reply) == (200, {"status": "ok"})
    assert listed_ids(server) == [rid]
    status, run, _ = server.get("/api/runs/%s" % rid)
    assert status == 200
    assert run["argv"] == "burn_workload.py 5" and run["vm"] == "CPython"
    assert run["owner"] is None and run["samples"] > 0 and run["thread_count"] >= 1
    assert run["interpreter"] == "cpython" and run["filename"] == "/tmp/x.prof"
    status, raw, resp = server.get("/api/runs/%s/raw" % rid)
    assert status == 200 and raw == profile_bytes
    assert resp.getheader("Content-Type") == "application/octet-stream"


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


COMPACT_MAGIC = b"vmpCMP02"


def unzstd(path):
    return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout


def test_the_stored_profile_is_compact_then_compressed(server, big_profile_bytes):
    """A plain upload is written in the compact lossless form (a repeated
    stack kept once), then compressed; /raw gives back the bytes uploaded."""
    rid = server.upload(big_profile_bytes)
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    path = os.path.join(server.data, "runs", rid + ".prof.vmc.zst")
    with open(path, "rb") as f:
        assert f.read(4) == ZSTD_MAGIC
    compact = unzstd(path)
    assert compact.startswith(COMPACT_MAGIC)
    # 300,000 samples over a few stacks: references, not the records
    assert len(compact) < len(big_profile_bytes) / 10
    assert server.get("/api/runs/%s/raw" % rid)[1] == big_profile_bytes


FIXTURES = sorted(
    [os.path.join(ROOT, "tests", "data", "upstream", "profiles", n)
     for n in os.listdir(os.path.join(ROOT, "tests", "data", "upstream", "profiles"))
     if n.endswith(".prof")] +
    [os.path.join(ROOT, "tests", "data", "vmprof06", n)
     for n in os.listdir(os.path.join(ROOT, "tests", "data", "vmprof06")) if n.endswith(".prof")])


def test_every_fixture_comes_back_byte_for_byte(start_server, make_profile, profile_bytes):
    """Every profile fixture (CPython 3.9-3.11, PyPy, lines, native, memory,
    real time, vmprof 0.6's), profiles of our sampler in each mode, and
    generated shapes up to mostly distinct stacks: the bytes of /raw are
    the bytes uploaded, read from the compact file, again after a restart
    (from the file alone), and from the compressed file; what a crash left
    uncompressed is compressed after the restart."""
    server = start_server()
    profiles = [open(p, "rb").read() for p in FIXTURES]
    profiles += [profile_bytes, make_profile("--lines"), make_profile("--mem")]
    profiles += [generated_profile(*args) for args in GENERATED]
    assert len(profiles) >= 12 + 3 + len(GENERATED)
    ids = [server.upload(data) for data in profiles]
    for rid, data in zip(ids, profiles):
        assert server.get("/api/runs/%s/raw" % rid)[1] == data, rid
    wait_for_files(server, [rid + ".prof.vmc.zst" for rid in ids])
    assert server.stop()[0] == 0
    runs = os.path.join(server.data, "runs")
    # half of them back to the uncompressed compact file, as a crash before
    # the compressor got there leaves them
    for rid in ids[::2]:
        packed = os.path.join(runs, rid + ".prof.vmc.zst")
        with open(os.path.join(runs, rid + ".prof.vmc"), "wb") as f:
            f.write(unzstd(packed))
        os.unlink(packed)
    # Outside the server (before it starts and compresses the .prof.vmc
    # files again): `vmprof-server --data DIR raw ID`, and `raw FILE` on the
    # stored file alone (copied out of the data folder), give the same
    # bytes, from .prof.vmc and .prof.vmc.zst alike.
    elsewhere = os.path.join(server.data, "..", "copied")
    os.makedirs(elsewhere)
    forms = set()
    for rid, data in zip(ids, profiles):
        assert raw_command(server, rid) == (0, data, ""), rid
        name = [n for n in os.listdir(runs) if n.startswith(rid)][0]
        forms.add(name[len(rid):])
        copy = os.path.join(elsewhere, name)
        shutil.copyfile(os.path.join(runs, name), copy)
        assert raw_command(None, copy) == (0, data, ""), rid
    assert forms == {".prof.vmc", ".prof.vmc.zst"}
    server.start()
    for rid, data in zip(ids, profiles):
        assert server.get("/api/runs/%s/raw" % rid)[1] == data, rid
        samples = server.get("/api/runs/%s" % rid)[1]["samples"]
        assert tree_total(server, rid) == samples
    # and the start compressed what the "crash" left plain
    wait_for_files(server, [rid + ".prof.vmc.zst" for rid in ids])


def raw_command(server, what, *args):
    """`vmprof-server [--data DIR] raw WHAT ARGS...`: (status, stdout bytes,
    stderr text)."""
    out = subprocess.run([SERVER_BIN] + (["--data", server.data] if server else []) +
                         ["raw", what] + list(args), capture_output=True, timeout=120)
    return out.returncode, out.stdout, out.stderr.decode()


# Generated shapes: samples, distinct stacks, seed, word size, memory, sample times
GENERATED = [(60000, 3000, 1, 8, False, False), (60000, 4000, 2, 8, True, True),
             (60000, 50000, 3, 8, False, True), (30000, 2000, 4, 4, True, True)]


def generated_profile(samples, n_stacks, seed, word, memory, times):
    """A profile of `samples` records over `n_stacks` random stacks (depth
    5-40, a few hot, 3 threads), rss and times when asked (format 7)."""
    rng = random.Random(seed)
    fmt = "<%d" + ("q" if word == 8 else "i")
    w = lambda *vs: struct.pack(fmt % len(vs), *vs)
    stacks = [[0x1000 + 16 * rng.randrange(3000) for _ in range(rng.randint(5, 40))]
              for _ in range(n_stacks)]
    version = 7 if times else 6
    out = [w(0, 3, 0, 1000, 0), bytes([5, 0, version, 1 if memory else 0, 7]), b"cpython"]
    rss, t = 20000, 10 ** 9
    for _ in range(samples):
        k = int(n_stacks * rng.random() ** 3)
        s = stacks[k]
        rec = bytes([1]) + w(1, len(s), *s) + w(100 + k % 3)
        if memory:
            rss += rng.choice((0, 0, 0, 4, 128))
            rec += w(rss)
        if times:
            t += rng.randrange(2000000)
            rec += struct.pack("<q", t)
        out.append(rec)
    for addr in sorted({a for s in stacks for a in s}):
        name = ("py:f%x:1:m.py" % addr).encode()
        out.append(bytes([2]) + w(addr, len(name)) + name)
    return b"".join(out)


def tree_total(server, rid):
    status, tree, _ = server.get("/api/runs/%s/tree?depth=2" % rid)
    assert status == 200, tree
    return tree["total"]


def test_a_second_upload_replaces_a_compressed_first_one(server, profile_bytes,
                                                        big_profile_bytes):
    """A runtime not frozen yet takes another profile after the first was
    compressed: one file stays, the second's, under the name the reader
    looks at first.  (This build compresses a profile once frozen; builds
    before compressed it once uploaded, as done here by hand.)"""
    rid = server.upload(big_profile_bytes, freeze=False)
    first = os.path.join(server.data, "runs", rid + ".prof.vmc")
    subprocess.run(["zstd", "-q", "--rm", first, "-o", first + ".zst"], check=True)
    assert server.get("/api/runs/%s/raw" % rid)[0] == 404  # (not frozen)
    assert server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                          profile_bytes)[0] == 200
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes
    assert server.get("/api/runs/%s" % rid)[1]["raw_size"] == len(profile_bytes)


def test_a_compressed_run_is_read_again_after_a_restart(start_server, big_profile_bytes):
    """After a restart nothing is in memory: the views decode the .zst file
    (streamed, 14 MiB in many pieces) and the raw bytes come back identical."""
    server = start_server()
    rid = server.upload(big_profile_bytes)
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    assert server.stop()[0] == 0
    server.start()
    assert tree_total(server, rid) == 300000
    assert server.get("/api/runs/%s/raw" % rid)[1] == big_profile_bytes


def test_runs_stored_by_older_builds_are_still_served(start_server, profile_bytes,
                                                      big_profile_bytes):
    """A data folder outlives builds: a run an older build gzipped (ID.prof.gz)
    and one it left plain (ID.prof, stopped before its compression) are
    served as they were uploaded after the restart, and the plain one is
    compressed (ID.prof.zst, as builds before the compact form stored every
    plain upload) and served from that."""
    server = start_server()
    old_gzip = server.upload(big_profile_bytes)
    old_plain = server.upload(profile_bytes)
    wait_for_files(server, [old_gzip + ".prof.vmc.zst", old_plain + ".prof.vmc.zst"])
    assert server.stop()[0] == 0
    runs = os.path.join(server.data, "runs")
    os.unlink(os.path.join(runs, old_gzip + ".prof.vmc.zst"))
    with open(os.path.join(runs, old_gzip + ".prof.gz"), "wb") as f:
        f.write(gzip.compress(big_profile_bytes, 1))
    os.unlink(os.path.join(runs, old_plain + ".prof.vmc.zst"))
    with open(os.path.join(runs, old_plain + ".prof"), "wb") as f:
        f.write(profile_bytes)
    server.start()
    assert server.get("/api/runs/%s/raw" % old_gzip)[1] == big_profile_bytes
    assert tree_total(server, old_gzip) == 300000
    assert server.get("/api/runs/%s/raw" % old_plain)[1] == profile_bytes
    wait_for_files(server, [old_gzip + ".prof.gz", old_plain + ".prof.zst"])
    assert server.get("/api/runs/%s/raw" % old_plain)[1] == profile_bytes
    assert tree_total(server, old_plain) == server.get("/api/runs/%s" % old_plain)[1]["samples"]
    with open(os.path.join(runs, old_plain + ".prof.zst"), "rb") as f:
        assert f.read(4) == ZSTD_MAGIC
    # and after one more restart, from the .zst file alone
    assert server.stop()[0] == 0
    server.start()
    assert server.get("/api/runs/%s/raw" % old_plain)[1] == profile_bytes
    assert tree_total(server, old_plain) == server.get("/api/runs/%s" % old_plain)[1]["samples"]


@pytest.mark.parametrize("form, damage, says", [
    (".prof.vmc.zst", "cut", "is damaged: it is cut short (inside its zstd frame)"),
    (".prof.vmc.zst", "flip", "is damaged: zstd: "),
    (".prof.vmc", "cut", "is damaged: it is cut short"),
    (".prof.vmc", "flip", "is damaged: "),
])
def test_a_damaged_compressed_file_is_an_error_not_a_crash(start_server, big_profile_bytes,
                                                          form, damage, says):
    """A stored file damaged on the disk: every view answers 500 with one line
    that names the file, says what is wrong with it and what to do; the
    download stops short (its status and length were sent) and the server
    says why on its standard error; the raw command writes what comes before
    the damage and says the same (exit 1)."""
    server = start_server()
    rid = server.upload(big_profile_bytes)
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    assert server.stop()[0] == 0
    path = os.path.join(server.data, "runs", rid + form)
    if form == ".prof.vmc":
        with open(path, "wb") as f:
            f.write(unzstd(path + ".zst"))
        os.unlink(path + ".zst")
    with open(path, "r+b") as f:
        if damage == "cut":
            f.truncate(os.path.getsize(path) // 2)
        else:
            # a stretch in the middle overwritten (in the compact form, where
            # the references are: the first third is the defined stacks)
            f.seek(os.path.getsize(path) * 2 // 3)
            f.write(bytes(range(251, 0, -1)) * 4)
    # (no server while the command reads: the start-up compressor may turn a
    # .prof.vmc into .prof.vmc.zst, damage and all)
    status, out, err = raw_command(server, rid)
    named = "runs/%s%s" % (rid, form)
    assert status == 1 and named + " " + says in err and "\n" not in err.strip(), err
    assert "bytes before the damage were written" in err
    assert len(out) < len(big_profile_bytes) and big_profile_bytes.startswith(out)
    server.start()
    for view in ("tree", "functions", "export/collapsed"):
        status, reply, _ = server.get("/api/runs/%s/%s" % (rid, view))
        error = reply["error"]
        assert status == 500 and "\n" not in error, reply
        assert re.search(r"^the stored profile of run %s does not read: runs/%s\.prof\.vmc"
                         r"(\.zst)? is damaged: " % (rid, rid), error), error
        assert error.endswith("; restore that file under the data folder from a backup, or "
                              "delete the run and upload its profile again"), error
    # the download stops short of the declared length instead of lying
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/api/runs/%s/raw" % rid)
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()
    assert server.get("/api/health")[0] == 200
    status, err = server.stop()
    assert status == 0
    assert re.search(r"a download of a raw profile stopped short: runs/%s\.prof\.vmc(\.zst)? "
                     r"is damaged: " % rid, err), err


@pytest.mark.parametrize("form", [".prof.vmc", ".prof.vmc.zst"])
def test_one_byte_changed_in_a_stored_compact_file_is_never_served(start_server,
                                                                   big_profile_bytes, form):
    """One byte of the compact form changed on the disk where the structure
    still reads (a function's name among the verbatim bytes): the file's
    checksum tells, so no view shows the changed name and the raw command
    does not give the changed bytes as the profile.  As .prof.vmc.zst: the
    damage came before the background compression (whose frame checksum
    then covers the wrong bytes)."""
    server = start_server()
    rid = server.upload(big_profile_bytes)
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    assert server.stop()[0] == 0
    zst = os.path.join(server.data, "runs", rid + ".prof.vmc.zst")
    compact = unzstd(zst)
    name = b"py:f110:1:m.py"
    assert compact.count(name) == 1
    damaged = compact.replace(name, b"py:f110:1:n.py")
    os.unlink(zst)
    with open(os.path.join(server.data, "runs", rid + ".prof.vmc"), "wb") as f:
        f.write(damaged)
    if form == ".prof.vmc.zst":
        # a start-up compresses the .prof.vmc a stopped server left
        server.start()
        wait_for_files(server, [rid + form])
        assert server.stop()[0] == 0
    status, out, err = raw_command(server, rid)
    assert status == 1, err
    assert ("runs/%s%s is damaged: its checksum does not match" % (rid, form)) in err, err
    server.start()
    for view in ("tree", "functions", "export/collapsed"):
        status, reply, _ = server.get("/api/runs/%s/%s" % (rid, view))
        assert status == 500, (view, status, reply)
        assert "is damaged: its checksum does not match" in reply["error"], reply
    status, run, _ = server.get("/api/runs/%s" % rid)
    assert status == 200 and run["samples"] == 300000 - 300000 % 3


def test_a_missing_file_says_what_to_do(server, profile_bytes):
    rid = server.upload(profile_bytes)
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    assert server.stop()[0] == 0
    os.unlink(os.path.join(server.data, "runs", rid + ".prof.vmc.zst"))
    server.start()
    for view in ("tree", "raw"):
        status, reply, _ = server.get("/api/runs/%s/%s" % (rid, view))
        assert status == 500 and reply["error"] == (
            "the profile file of run %s is missing (no runs/%s.prof* under the data folder): "
            "restore it from a backup, or delete the run and upload its profile again"
            % (rid, rid)), reply


def test_the_raw_command_refuses_what_it_cannot_give(server, profile_bytes, tmp_path):
    rid = server.upload(profile_bytes)
    assert raw_command(server, "0123456789abcdef")[::2] == (
        2, "vmprof-server: raw: run 0123456789abcdef has no profile file under %s/runs\n"
        % server.data)
    status, _, err = raw_command(None, rid)
    assert status == 2 and "is neither a file nor a run id with --data DIR" in err
    status, _, err = raw_command(server, rid, "--frobnicate")
    assert status == 2 and "raw: unexpected --frobnicate" in err
    # -o OUT: the bytes go there
    out = str(tmp_path / "back.prof")
    assert raw_command(server, rid, "-o", out) == (0, b"", "")
    with open(out, "rb") as f:
        assert f.read() == profile_bytes
    # a file that is no stored form is given as it is (a plain profile)
    assert raw_command(None, out)[:2] == (0, profile_bytes)


def test_frozen_runtime_takes_no_more_uploads(server, profile_bytes):
    rid = server.upload(profile_bytes)
    status, reply, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                                      profile_bytes)
    assert status == 400 and "frozen" in reply["error"]
    status, reply, _ = server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")
    assert status == 400


def test_freeze_without_profile_is_refused(server):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    status, reply, _ = server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")
    assert status == 400 and "no profile" in reply["error"]
    assert listed_ids(server) == []


def test_unknown_runtime(server, profile_bytes):
    for rid in ("0123456789abcdef", "../../etc/passwd", "x"):
        status, reply, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                                          profile_bytes)
        assert status == 404, reply


def test_corrupt_profile_gets_the_readers_error_and_leaves_nothing(server, profile_bytes):
    bad = profile_bytes[:200] + b"\xee" * 64 + profile_bytes[264:]
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    status, reply, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid, bad)
    assert status == 400
    assert re.search(r"at byte \d+", reply["error"]), reply
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 400
    assert listed_ids(server) == []
    assert os.listdir(os.path.join(server.data, "runs")) == []
    assert os.listdir(os.path.join(server.data, "tmp")) == []


def test_not_a_profile_at_all(server):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    status, reply, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                                      b"hello, this is not a profile\n" * 10)
    assert status == 400 and reply["error"].startswith("the profile does not read:")


def test_gzipped_upload_is_kept_as_it_came(server, profile_bytes):
    packed = gzip.compress(profile_bytes)
    rid = server.upload(packed)
    status, raw, _ = server.get("/api/runs/%s/raw" % rid)
    assert raw == packed
    assert server.get("/api/runs/%s" % rid)[1]["samples"] > 0


@pytest.mark.parametrize("how", ["raw", "gzip", "multipart", "chunked"])
def test_a_big_upload_is_kept_byte_for_byte(server, big_profile_bytes, how):
    """Many MB, handed to the disk while the body arrives (raw, gzipped, in a
    form, in chunks of odd sizes): the same bytes come back, the decoded
    samples are all there, and nothing is left in tmp/."""
    data = gzip.compress(big_profile_bytes, 1) if how == "gzip" else big_profile_bytes
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    path = "/api/runtime/upload/cpu/%s/add" % rid
    if how == "multipart":
        boundary = "----vmproftestboundary"
        body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.prof\""
                 "\r\n\r\n" % boundary).encode() + data + ("\r\n--%s--\r\n" % boundary).encode())
        status, reply, _ = server.request(
            "POST", path, body, {"Content-Type": "multipart/form-data; boundary=%s" % boundary})
    elif how == "chunked":
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.putrequest("POST", path)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        at, size = 0, 1
        while at < len(data):
            piece = data[at:at + size]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            at += len(piece)
            size = size * 7 + 3 if size < 3000000 else 1
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        status, reply = resp.status, resp.read()
        conn.close()
    else:
        status, reply, _ = server.request("POST", path, data)
    assert status == 200, reply
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s/raw" % rid)[1] == data
    assert server.get("/api/runs/%s" % rid)[1]["samples"] == 300000
    # (the background compressor's own file comes and goes in tmp/ meanwhile)
    tmp = os.path.join(server.data, "tmp")
    wait_for_compressor(server, lambda: os.listdir(tmp) == [] and
                        sorted(os.listdir(os.path.join(server.data, "runs"))) ==
                        [rid + (".prof" if how == "gzip" else ".prof.vmc.zst")],
                        "the compressor to be done with tmp/")
    assert server.get("/api/runs/%s/raw" % rid)[1] == data


def test_a_big_upload_corrupt_in_the_middle_leaves_nothing(server, big_profile_bytes):
    """Corrupt after 10 MiB: the pieces before went to the disk already (by the
    writer's thread, several times round its buffers); 400, and no file."""
    at = 10 << 20
    bad = big_profile_bytes[:at] + b"\xee" * 64 + big_profile_bytes[at + 64:]
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    status, reply, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid, bad)
    assert status == 400 and re.search(r"at byte \d+", reply["error"]), reply
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 400
    assert os.listdir(os.path.join(server.data, "runs")) == []
    assert os.listdir(os.path.join(server.data, "tmp")) == []
    # the runtime takes a good upload after that
    assert server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                          big_profile_bytes)[0] == 200
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s/raw" % rid)[1] == big_profile_bytes


def test_a_big_upload_cut_off_midway_leaves_nothing(server, big_profile_bytes):
    """The client goes away after 9 MiB of 14: no file stays, the runtime has
    no profile, and the server goes on (under ASan: no leak of the writer's
    thread or its memory)."""
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %d\r\n\r\n" % (rid, len(big_profile_bytes))).encode())
        s.sendall(big_profile_bytes[:9 << 20])
    for _ in range(300):
        if not os.listdir(os.path.join(server.data, "tmp")):
            break
        time.sleep(0.1)
    assert os.listdir(os.path.join(server.data, "tmp")) == []
    assert os.listdir(os.path.join(server.data, "runs")) == []
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 400
    assert server.get("/api/health")[0] == 200


# A body that is no profile from its first bytes on, and long: the server must
# not read it all to say so.
CORRUPT_HEAD = b"hello, this is not a profile\n" * 100
CORRUPT_TOTAL = 64 << 20


def corrupt_body(how):
    """(body, extra headers) of a corrupt upload of about CORRUPT_TOTAL bytes,
    as the clients send one: raw, gzipped (level 0, so that it stays long) or
    in an older client's multipart form."""
    data = CORRUPT_HEAD + bytes(CORRUPT_TOTAL - len(CORRUPT_HEAD))
    if how == "gzip":
        z = zlib.compressobj(0, zlib.DEFLATED, 31)
        return z.compress(data) + z.flush(), {}
    if how == "multipart":
        boundary = "----vmproftestboundary"
        return ((("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.prof\""
                  "\r\n\r\n" % boundary).encode() + data
                 + ("\r\n--%s--\r\n" % boundary).encode()),
                {"Content-Type": "multipart/form-data; boundary=%s" % boundary})
    return data, {}


def send_until_answered(port, path, body, headers, piece=256 << 10):
    """Sends body piece by piece, looking for an answer between pieces (10 ms
    each); stops at the answer, or when the server has closed.  Returns (bytes
    of the body sent when the answer was there, the answer's bytes, whether the
    server closed the connection after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
                   % (path, len(body), "".join("%s: %s\r\n" % kv for kv in headers.items()))
                   ).encode())
        sent = 0
        while sent < len(body):
            if select.select([s], [], [], 0.01)[0]:
                break
            try:
                s.sendall(body[sent:sent + piece])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent = min(sent + piece, len(body))
        answer = b""
        while True:
            head, _, text = answer.partition(b"\r\n\r\n")
            length = re.search(rb"\r\nContent-Length: (\d+)", head)
            if length and len(text) >= int(length.group(1)):
                break
            got = s.recv(65536)
            assert got, answer
            answer += got
        # then the server closes the connection
        try:
            closed = s.recv(65536) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
    return sent, answer, closed


@pytest.mark.parametrize("how", ["raw", "gzip", "multipart"])
def test_a_corrupt_upload_is_answered_before_its_body_ends(server, profile_bytes, how):
    """The decoder refuses the profile at its first bytes: 400 with its
    one-line error comes while the client is still sending (it had sent a
    fraction of the 64 MiB: before, the server read all of it first), the
    connection is closed (the rest is not read as a next request), nothing is
    kept, and the server goes on serving; the runtime takes a good upload."""
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    body, headers = corrupt_body(how)
    sent, answer, closed = send_until_answered(
        server.port, "/api/runtime/upload/cpu/%s/add" % rid, body, headers)
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    error = json.loads(text.decode())["error"]
    assert error.startswith("the profile does not read: at byte 0: ") and "\n" not in error
    assert sent < len(body) // 4, (sent, len(body))
    assert b"\r\nConnection: close" in head and closed, head
    assert os.listdir(os.path.join(server.data, "runs")) == []
    assert os.listdir(os.path.join(server.data, "tmp")) == []
    assert server.get("/api/health")[0] == 200
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 400
    assert server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                          profile_bytes)[0] == 200
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def write_corrupt_profile(tmp_path):
    path = tmp_path / "corrupt.prof"
    path.write_bytes(corrupt_body("raw")[0])
    return path


def test_our_client_gets_the_one_line_error_of_an_upload_refused_midway(server, tmp_path):
    """The server answers before the body's end and closes: our client's next
    write fails (EPIPE), and it reads and prints the server's answer rather
    than "Broken pipe".  (Our client checks a file with vmprof's reader before
    sending it; this one is sent unchecked, as where the reader is not built
    or reads what this server's does not.)"""
    path = write_corrupt_profile(tmp_path)
    code = ("import sys; from vmprof import upload; upload._check_profile = lambda p: None; "
            "sys.exit(upload.main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "--web-url", server.url, str(path)],
                         capture_output=True, text=True, timeout=180, cwd="/")
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert re.match(r"vmprof: upload failed: POST \S+/add answered 400 Bad Request: the profile "
                    r"does not read: at byte 0: ", last), out.stderr
    assert os.listdir(os.path.join(server.data, "runs")) == []


def test_multipart_form_from_older_clients(server, profile_bytes):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "PyPy"})
    rid = reply["runtime_id"]
    boundary = "----vmproftestboundary"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.prof\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode()
            + profile_bytes + ("\r\n--%s--\r\n" % boundary).encode())
    status, reply, _ = server.request(
        "POST", "/api/runtime/upload/cpu/%s/add" % rid, body,
        {"Content-Type": "multipart/form-data; boundary=%s" % boundary})
    assert status == 200, reply
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def test_long_command_line(server, profile_bytes):
    # The original server failed with 500 on long command lines.
    argv = "prog.py " + " ".join("--option-%d=value" % i for i in range(8000))
    rid = server.upload(profile_bytes, argv=argv)
    assert server.get("/api/runs/%s" % rid)[1]["argv"] == argv


def test_jitlog_upload(server, profile_bytes):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "PyPy"})
    rid = reply["runtime_id"]
    # a real log: the server decodes it and refuses what is none (test_jitlog_api.py)
    with open(os.path.join(ROOT, "tests", "data", "upstream", "profiles", "calc_pypy.jitlog"),
              "rb") as f:
        jit = gzip.compress(f.read())
    assert server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid, profile_bytes)[0] == 200
    status, reply, _ = server.request("POST", "/api/runtime/upload/jit/%s/add" % rid, jit)
    assert status == 200 and reply["jid"]
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s" % rid)[1]["has_jitlog"] is True


def test_upload_too_large_is_refused_before_the_body(start_server):
    server = start_server("--max-upload", "1M")
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    # Headers only: the answer must come without a byte of the body sent.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(("POST /api/runtime/upload/cpu/%s/add HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %d\r\n\r\n" % (rid, 50 << 20)).encode())
        answer = s.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "--max-upload" in answer


# About 0.3 s of CPU, so that a sampler takes samples even on a loaded machine
# (200,000 rounds gave the original client 1 to 9 samples, and now and then none).
WORKLOAD_ROUNDS = "2000000"


def our_client(url, workload, *extra):
    return subprocess.run([sys.executable, "-m", "vmprof", "--web", "--web-url", url]
                          + list(extra) + [str(workload), WORKLOAD_ROUNDS],
                          capture_output=True, text=True, timeout=180, cwd="/")


def run_id_printed(text, url):
    m = re.search(re.escape(url) + r"/#/([0-9a-f]+)", text)
    assert m, text
    return m.group(1)


def test_our_client_anonymous(server, workload):
    out = our_client(server.url, workload)
    assert out.returncode == 0, out.stderr
    rid = run_id_printed(out.stderr, server.url)
    status, run, _ = server.get("/api/runs/%s" % rid)
    assert status == 200 and run["owner"] is None
    assert "burn_workload.py 200000" in run["argv"]


def test_our_client_with_token(start_server, workload):
    server = start_server("--anonymous-upload", "off")
    token = server.add_user("alice")
    refused = our_client(server.url, workload)
    assert refused.returncode != 0 and "401" in refused.stderr
    assert listed_ids(server) == []
    out = our_client(server.url, workload, "--web-auth", token)
    assert out.returncode == 0, out.stderr
    rid = run_id_printed(out.stderr, server.url)
    assert server.get("/api/runs/%s" % rid)[1]["owner"] == "alice"
    bad = our_client(server.url, workload, "--web-auth", "0" * 48)
    assert bad.returncode != 0 and "401" in bad.stderr


needs_orig = pytest.mark.skipif(not os.path.exists(ORIG_PYTHON),
                                reason="the original vmprof (.venv/orig) is not installed")


def orig_client(url, workload, *extra):
    return subprocess.run([ORIG_PYTHON, "-m", "vmprof", "--web", "--web-url", url]
                          + list(extra) + [str(workload), WORKLOAD_ROUNDS],
                          capture_output=True, text=True, timeout=180, cwd="/")


@needs_orig
def test_original_client_anonymous(server, workload):
    out = orig_client(server.url, workload)
    assert out.returncode == 0, out.stderr
    rid = run_id_printed(out.stderr, server.url)
    status, run, _ = server.get("/api/runs/%s" % rid)
    assert status == 200 and run["samples"] > 0 and run["owner"] is None
    assert listed_ids(server) == [rid]


@needs_orig
def test_original_client_with_token(start_server, workload):
    server = start_server("--anonymous-upload", "off")
    token = server.add_user("bob")
    out = orig_client(server.url, workload, "--web-auth", token)
    assert out.returncode == 0, out.stderr
    rid = run_id_printed(out.stderr, server.url)
    assert server.get("/api/runs/%s" % rid)[1]["owner"] == "bob"
    # Without the token the original client is refused, and says so.
    out = orig_client(server.url, workload)
    assert "status: 401" in out.stderr
    assert listed_ids(server) == [rid]


@needs_orig
def test_original_client_gets_the_one_line_error_of_an_upload_refused_midway(server, tmp_path):
    """The original client (requests, urllib3) meets the close in the middle of
    its body and still prints the server's answer."""
    path = write_corrupt_profile(tmp_path)
    out = subprocess.run([ORIG_PYTHON, "-m", "vmprof.upload", "--web-url", server.url,
                          str(path)], capture_output=True, text=True, timeout=180, cwd="/")
    assert "server rejected meta data. status: 400, msg: " in out.stderr, out.stderr
    assert "the profile does not read: at byte 0: " in out.stderr, out.stderr
    assert os.listdir(os.path.join(server.data, "runs")) == []


def test_head_of_a_get_endpoint(server, profile_bytes):
    rid = server.upload(profile_bytes)
    status, body, resp = server.request("HEAD", "/api/runs/%s/raw" % rid)
    assert status == 200 and body == b""
    assert int(resp.getheader("Content-Length")) == len(profile_bytes)


def test_the_stored_profile_is_compressed_once_frozen(server, profile_bytes):
    """The background compression starts once the freeze is answered (its
    writing and fsyncs would otherwise meet the freeze's commit at the disk):
    an upload not frozen stays in the compact form, its freeze has it
    compressed; /raw gives back the bytes either way."""
    rid = server.upload(profile_bytes, freeze=False)
    runs = os.path.join(server.data, "runs")
    # (the compressor takes a few milliseconds over this file when it runs)
    time.sleep(1.0)
    assert sorted(os.listdir(runs)) == [rid + ".prof.vmc"]
    status, reply, _ = server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")
    assert status == 200, reply
    wait_for_files(server, [rid + ".prof.vmc.zst"])
    assert server.get("/api/runs/%s/raw" % rid)[1] == profile_bytes


def test_parallel_uploads_wait_for_the_database_without_sleeping(server, profile_bytes):
    """Eight clients upload at once (new, add, freeze: three writes each):
    with SQLite one writer at a time, and a writer that finds the lock taken
    waits for the writer before it to end (srv_db_sqlite.c, busy_wait), not
    in SQLite's own busy handler, which sleeps 1-100 ms at a time between
    tries whether the lock was freed or not (hundreds of such sleeps here
    before; the upload cycle's p99 under load 0.27-0.35 s against 20-29 ms,
    bench/RESULTS.md).  The server's sleeps are counted with strace: those
    of SQLite's busy handler, 1, 2, 5, 10, 15, 20, 25, 50 or 100 ms, not its
    retries of a WAL read, (n - 9)^2 * 39 us for the n-th, which a loaded
    machine makes many of and which are never a whole millisecond."""
    import threading
    log = os.path.join(server.data, "..", "sleeps.log")
    tracer = attach_strace(server, "clock_nanosleep,nanosleep", log)
    done, errors = [], []

    def client():
        try:
            for _ in range(15):
                done.append(server.upload(profile_bytes))
        except BaseException as e:  # (reported below)
            errors.append(e)
    clients = [threading.Thread(target=client) for _ in range(8)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(timeout=240)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    assert not errors and len(done) == 120, errors
    busy_ms = {1, 2, 5, 10, 15, 20, 25, 50, 100}
    sleeps = []
    with open(log) as f:
        for line in f:
            m = re.search(r"nanosleep\((?:CLOCK_\w+, 0, )?\{tv_sec=(\d+), tv_nsec=(\d+)\}", line)
            ns = m and int(m.group(1)) * 10 ** 9 + int(m.group(2))
            if ns and ns % 10 ** 6 == 0 and ns // 10 ** 6 in busy_ms:
                sleeps.append(line.strip())
    assert sleeps == [], (len(sleeps), sleeps[:5])
