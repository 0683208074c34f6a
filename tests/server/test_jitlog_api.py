"""The jit log endpoints of vmprof-server (src/server/srv_jitlog.c): logs
uploaded as the clients upload them, read back through the JSON API and
checked against the original's oracle and our Python reader of the same
bytes (jitlog.parser, over the same C decoder, but another path: the
oracle pins that path down)."""
import gzip
import json
import os
import shutil
import subprocess
import sys
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPSTREAM = os.path.join(ROOT, "tests", "data", "upstream")
CALC = os.path.join(UPSTREAM, "profiles", "calc_pypy.jitlog")
CALC_SOURCE = os.path.join(UPSTREAM, "workloads", "calc.py")
PYPY = shutil.which("pypy3")


def oracle():
    with open(os.path.join(UPSTREAM, "oracle_jitlog.json")) as f:
        return json.load(f)["calc_pypy.jitlog"]


def upload_jitlog(server, data, argv="calc.py", token=None, profile=None):
    """runtime/new, [cpu add], jit add, freeze; returns (run id, jit add's reply)."""
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": argv, "VM": "PyPy"},
                                      token=token)
    assert status == 200, reply
    rid = reply["runtime_id"]
    if profile is not None:
        status, reply, _ = server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid,
                                          profile, token=token)
        assert status == 200, reply
    status, jit_reply, _ = server.request("POST", "/api/runtime/upload/jit/%s/add" % rid,
                                          gzip.compress(data), token=token)
    if status == 200:
        status, reply, _ = server.request("POST", "/api/runtime/%s/freeze/" % rid, b"",
                                          token=token)
        assert status == 200, reply
    return rid, (status, jit_reply)


def run_of(done):
    """The run id in the address a client printed (BASE/#/ID/traces)."""
    address = [w for w in (done.stdout + done.stderr).split() if "/#/" in w][0]
    return address.split("/#/")[1].split("/")[0]


def traces(server, rid, **args):
    status, reply, _ = server.get("/api/runs/%s/jitlog/traces?%s"
                                  % (rid, urllib.parse.urlencode(args)))
    assert status == 200, reply
    return reply


@pytest.fixture
def calc_run(server):
    with open(CALC, "rb") as f:
        rid, (status, reply) = upload_jitlog(server, f.read())
    assert status == 200 and reply["jid"] == rid
    return rid


def test_the_log_and_its_trace_list_say_what_the_oracle_says(server, calc_run):
    from jitlog.parser import parse_jitlog
    forest = parse_jitlog(CALC)
    want = oracle()
    status, log, _ = server.get("/api/runs/%s/jitlog" % calc_run)
    assert status == 200, log
    assert (log["version"], log["word_size"], log["machine"], log["warning"]) == \
        (want["version"], want["word_size"], want["machine"], want["error"])
    assert log["traces"] == want["traces"]
    assert {"loop": log["loops"], "bridge": log["bridges"]} == want["types"]
    listed = traces(server, calc_run)
    assert listed["total"] == listed["matched"] == want["traces"] and listed["next"] is None
    scopes = {}
    for t in listed["traces"]:
        scopes[t["func"]] = scopes.get(t["func"], 0) + 1
        assert t["file"] == "calc.py" and t["jd"] == forest.traces[t["id"]].jd_name
        assert t["ops"] == want["opcounts"]["0x%x" % t["id"]]["opt"]
    assert scopes == want["first_merge_point_scopes"]
    # a run uploaded with its jit log (and no profile) is listed like any run,
    # and its profile's views say it has none
    status, run, _ = server.get("/api/runs/%s" % calc_run)
    assert status == 200 and run["has_jitlog"] is True
    assert calc_run in [r["id"] for r in server.get("/api/runs")[1]["runs"]]
    for view in ("tree", "functions", "memory"):
        status, reply, _ = server.get("/api/runs/%s/%s" % (calc_run, view))
        assert status == 404 and "a jit log and no profile" in reply["error"], (view, reply)


def test_sort_by_entry_count_and_paging(server, calc_run):
    by_log = traces(server, calc_run)["traces"]
    by_entries = traces(server, calc_run, sort="entries")["traces"]
    counts = [t["entries"] for t in by_entries]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert sorted(t["id"] for t in by_entries) == sorted(t["id"] for t in by_log)
    first = traces(server, calc_run, sort="entries", limit=10)
    assert first["next"] == 10 and first["traces"] == by_entries[:10]
    rest = traces(server, calc_run, sort="entries", offset=10, limit=100)
    assert rest["next"] is None and rest["traces"] == by_entries[10:]
    for bad in ({"sort": "size"}, {"limit": "-1"}, {"offset": "x"}):
        status, reply, _ = server.get("/api/runs/%s/jitlog/traces?%s"
                                      % (calc_run, urllib.parse.urlencode(bad)))
        assert status == 400 and reply["error"], bad


@pytest.mark.parametrize("query", ["", "loops", "bridges()", 'func("merge_sort")',
                                   'op("guard_class") & ~loops', 'loops | func("fib")',
                                   '~(op("call_i") | func("merge"))'])
def test_queries_select_what_the_python_api_selects(server, calc_run, query):
    from jitlog.parser import parse_jitlog
    from jitlog.query import select
    want = sorted(t.unique_id for t in select(parse_jitlog(CALC), query))
    got = traces(server, calc_run, q=query)
    assert sorted(t["id"] for t in got["traces"]) == want
    assert got["matched"] == len(want) and got["total"] == oracle()["traces"]


@pytest.mark.parametrize("query, column", [("loops &", 8), ('func("x"', 9), ("loopz", 1),
                                           ("(loops", 7), ('op(x)', 4)])
def test_a_malformed_query_is_400_with_its_column(server, calc_run, query, column):
    status, reply, _ = server.get("/api/runs/%s/jitlog/traces?q=%s"
                                  % (calc_run, urllib.parse.quote(query)))
    assert status == 400, reply
    assert reply["column"] == column and reply["error"].startswith("column %d: " % column)


def test_a_missing_log_run_or_trace_is_404(server, calc_run, profile_bytes):
    plain = server.upload(profile_bytes)
    for path in ("/api/runs/%s/jitlog" % plain, "/api/runs/%s/jitlog/traces" % plain,
                 "/api/runs/0123456789abcdef/jitlog", "/api/runs/nosuchrun/jitlog/traces",
                 "/api/runs/%s/jitlog/traces/999999" % calc_run):
        status, reply, _ = server.get(path)
        assert status == 404 and reply["error"], path
    assert "no jit log" in server.get("/api/runs/%s/jitlog" % plain)[1]["error"]
    for bad in ("x", "-1", "1e3", "99999999999999999999999"):
        status, reply, _ = server.get("/api/runs/%s/jitlog/traces/%s" % (calc_run, bad))
        assert status == 400, bad


def test_a_trace_has_its_stages_links_and_machine_code(server, calc_run):
    from jitlog.parser import parse_jitlog
    forest = parse_jitlog(CALC)
    want = oracle()["opcounts"]
    listed = traces(server, calc_run)["traces"]
    details = {}
    for item in listed:
        status, t, _ = server.get("/api/runs/%s/jitlog/traces/%d" % (calc_run, item["id"]))
        assert status == 200, t
        details[t["id"]] = t
        ours = forest.traces[t["id"]]
        assert t["type"] == ours.type and t["entries"] == ours.counter
        assert {name: len(s["ops"]) for name, s in t["stages"].items()} == want["0x%x" % t["id"]]
        for name, stage in t["stages"].items():
            theirs = ours.get_stage(name)
            assert [op["name"] for op in stage["ops"]] == [op.opname for op in theirs.get_ops()]
            assert [(op["result"], op["args"], op["descr"]) for op in stage["ops"]] == \
                [(op.result, ",".join(op.args), op.descr) for op in theirs.get_ops()]
            assert [(mp["at"], mp["scope"], mp["line"]) for mp in stage["merge_points"]] == \
                [(mp.index, mp.get_scope(), mp.get_source_line()[0])
                 for mp in theirs.get_merge_points()]
    linked = 0
    for t in details.values():
        # every guard with a bridge names it, and that bridge names the guard back
        for name, stage in t["stages"].items():
            for op in stage["ops"]:
                if "bridge" in op:
                    bridge = details[op["bridge"]]
                    assert bridge["type"] == "bridge"
                    if bridge["guard"] is not None:
                        assert bridge["guard"]["id"] == t["id"]
                        assert bridge["guard"]["descr"] == op["descr_number"]
                    linked += 1
        if t["guard"] is not None:
            parent = details[t["guard"]["id"]]
            guard = parent["stages"][t["guard"]["stage"]]["ops"][t["guard"]["op"]]
            assert guard["bridge"] == t["id"] and guard["name"].startswith("guard_")
            assert guard["descr_number"] == t["guard"]["descr"]
            assert t["parent"] == parent["id"]
    assert linked >= oracle()["stitches"]
    # the machine code: every asm op's bytes decode whole, at its own address
    for t in details.values():
        assert t["disassembled"] is True
        ours = forest.traces[t["id"]]
        start = int(t["addr"]["start"], 16)
        for op, theirs in zip(t["stages"]["asm"]["ops"], ours.get_stage("asm").get_ops()):
            offset, code = theirs.core_dump or (0, b"")
            if not code:  # an op that emitted no machine code
                assert "asm" not in op
                continue
            insns = op["asm"]
            assert all(i["text"] for i in insns), insns
            assert bytes.fromhex("".join(i["bytes"] for i in insns)) == code
            at = start + offset
            for i in insns:
                assert int(i["addr"], 16) == at
                at += len(i["bytes"]) // 2
    jumps = [i["text"] for t in details.values() for op in t["stages"]["asm"]["ops"]
             if op["name"].startswith("guard_") for i in op.get("asm", ())]
    assert any(text.startswith(("j", "cmp", "test")) for text in jumps)


def test_merge_points_show_the_source_lines_the_client_sent(server, tmp_path):
    # `python -m jitlog --upload` adds SOURCE_CODE records for the traced files
    shutil.copy(CALC_SOURCE, tmp_path / "calc.py")
    done = subprocess.run([sys.executable, "-m", "jitlog", "--upload", CALC,
                           "--web-url", server.url], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    rid = run_of(done)
    with open(CALC_SOURCE) as f:
        source = f.read().splitlines()
    status, log, _ = server.get("/api/runs/%s/jitlog" % rid)
    assert status == 200 and log["source_lines"] > 0
    first = traces(server, rid, limit=1)["traces"][0]
    status, t, _ = server.get("/api/runs/%s/jitlog/traces/%d" % (rid, first["id"]))
    mps = t["stages"]["opt"]["merge_points"]
    assert mps
    for mp in mps:
        line = source[mp["line"] - 1]
        assert mp["source"] == line.strip()
        assert mp["indent"] == len(line) - len(line.lstrip())


def test_a_file_that_is_no_jit_log_is_refused_and_not_kept(server, profile_bytes):
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "PyPy"})
    rid = reply["runtime_id"]
    assert server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid, profile_bytes)[0] == 200
    status, reply, _ = server.request("POST", "/api/runtime/upload/jit/%s/add" % rid,
                                      gzip.compress(b"\x00not a jit log"))
    assert status == 400 and "jit log" in reply["error"]
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s" % rid)[1]["has_jitlog"] is False
    assert not [n for n in os.listdir(os.path.join(server.data, "runs")) if ".jit" in n]
    assert server.get("/api/runs/%s/jitlog" % rid)[0] == 404


def test_a_bad_log_never_replaces_a_good_one(start_server):
    """A second jit log for the same runtime that is no jit log is refused
    (400) and the first stays: the run's log views answer from it, before and
    after a restart (its file was not replaced)."""
    server = start_server()
    with open(CALC, "rb") as f:
        data = f.read()
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "PyPy"})
    rid = reply["runtime_id"]
    add = "/api/runtime/upload/jit/%s/add" % rid
    assert server.request("POST", add, gzip.compress(data))[0] == 200
    status, reply, _ = server.request("POST", add, gzip.compress(b"\x00not a jit log"))
    assert status == 400 and "jit log" in reply["error"], reply
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    assert server.get("/api/runs/%s" % rid)[1]["has_jitlog"] is True
    status, log, _ = server.get("/api/runs/%s/jitlog" % rid)
    assert status == 200 and log["traces"] == oracle()["traces"], log
    before = traces(server, rid, sort="entries")
    assert [n for n in os.listdir(os.path.join(server.data, "runs")) if ".jit" in n]
    assert not os.listdir(os.path.join(server.data, "tmp"))
    assert server.stop()[0] == 0
    server.start()
    assert traces(server, rid, sort="entries") == before


def test_a_cut_log_is_kept_with_its_warning(server):
    with open(CALC, "rb") as f:
        data = f.read()
    rid, (status, reply) = upload_jitlog(server, data[:len(data) // 2])
    assert status == 200, reply
    log = server.get("/api/runs/%s/jitlog" % rid)[1]
    assert log["warning"].startswith("at byte ") and 0 < log["traces"] <= oracle()["traces"]


def test_the_log_is_decoded_again_after_a_restart_and_goes_with_its_run(start_server, tmp_path):
    server = start_server()
    token = server.add_user("alice")
    other = server.add_user("bob")
    with open(CALC, "rb") as f:
        rid, _ = upload_jitlog(server, f.read(), token=token)
    before = traces(server, rid, sort="entries")
    assert server.stop()[0] == 0
    server.start()
    assert traces(server, rid, sort="entries") == before
    # read like its run: by anyone; deleted only by its owner, and then gone
    assert server.get("/api/runs/%s/jitlog" % rid, token=other)[0] == 200
    assert server.request("DELETE", "/api/runs/%s" % rid, token=other)[0] == 403
    assert server.request("DELETE", "/api/runs/%s" % rid, token=token)[0] == 200
    assert server.get("/api/runs/%s/jitlog/traces" % rid)[0] == 404


@pytest.mark.skipif(PYPY is None, reason="pypy3 is not installed (apt install pypy3)")
def test_a_log_uploaded_by_pypy3_m_jitlog_web(server, tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    done = run_pypy_jitlog(tmp_path, "--web", "--web-url", server.url, "prog.py")
    assert done.returncode == 0, done.stderr
    rid = run_of(done)
    listed = traces(server, rid, sort="entries")
    funcs = {t["func"] for t in listed["traces"]}
    assert {"branchy", "objects"} <= funcs, funcs
    loops = traces(server, rid, q='loops & func("branchy")')["traces"]
    assert loops and all(t["type"] == "loop" and t["entries"] > 0 for t in loops)
    status, t, _ = server.get("/api/runs/%s/jitlog/traces/%d" % (rid, loops[0]["id"]))
    assert status == 200 and t["disassembled"] is True
    assert any("asm" in op for op in t["stages"]["asm"]["ops"])
    assert any(mp["scope"] == "branchy" for mp in t["stages"]["opt"]["merge_points"])


PROGRAM = '''
import sys

def branchy(n):
    total = 0
    for i in range(n):
        if i % 3 == 0:
            total += i * 2
        else:
            total -= 1
    return total

class Point(object):
    def __init__(self, x, y):
        self.x, self.y = x, y

def objects(n):
    acc = 0
    for i in range(n):
        p = Point(i, -i)
        acc += p.x * 2 + p.y
    return acc

print(branchy(300000), objects(200000))
'''


def run_pypy_jitlog(cwd, *args):
    """`pypy3 -m jitlog ARGS` as a user runs it: from PyPy's venv when `make
    install` made one (it has our extension, so the upload carries the source
    lines), else with the package's Python files on PYTHONPATH."""
    venv = os.path.join(ROOT, ".venv", "pypy3", "bin", "python")
    env = dict(os.environ)
    if os.path.exists(venv):
        python = venv
    else:
        pkg = cwd / "pkg"
        for name in ("vmprof", "jitlog"):
            module = __import__(name)
            shutil.copytree(os.path.dirname(module.__file__), pkg / name,
                            ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        env["PYTHONPATH"] = str(pkg)
        python = PYPY
    return subprocess.run([python, "-m", "jitlog"] + list(args), capture_output=True,
                          text=True, timeout=180, cwd=str(cwd), env=env)


def test_queries_and_trace_names_from_the_network_never_break_the_server(server, calc_run):
    # parsed, never evaluated: whatever arrives is 200 or 400 with a column, and
    # the server still answers (the second round of make test-server runs this
    # against the ASan+UBSan build)
    import random
    rng = random.Random(14)
    seeds = ['loops & func("merge_sort")', '~(op("guard_class") | bridges())',
             "__import__('os').system('true')", "((((loops))))", 'func("\\"")']
    queries = ["(" * 150 + "loops" + ")" * 150, "~" * 5000 + "loops", "a" * 20000,
               "\x00", "\xff\xfe", "func('x\\", 'op("' + "x" * 3000]
    for _ in range(150):
        q = bytearray(rng.choice(seeds).encode())
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(q) + 1)
            q[i:i + rng.randint(0, 3)] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3)))
        queries.append(q.decode("latin-1"))
    for q in queries:
        status, reply, _ = server.get("/api/runs/%s/jitlog/traces?q=%s"
                                      % (calc_run, urllib.parse.quote(q, safe="")))
        assert status in (200, 400), (q, status, reply)
        if status == 400:
            assert isinstance(reply["column"], int) and 1 <= reply["column"] <= len(q.encode()) + 1
    for name in ["0", "18446744073709551615", "18446744073709551616", "+1", "%201", "-0",
                 "0x43", "67.0", "6" * 400]:
        status, reply, _ = server.get("/api/runs/%s/jitlog/traces/%s" % (calc_run, name))
        assert status in (400, 404), (name, status)
    assert server.get("/api/health")[0] == 200


def test_damaged_logs_read_up_to_the_damage_in_every_view(server):
    # cut and corrupted copies of a real log: refused (bad header) or kept with
    # the decoder's warning, and then every view of every trace answers
    import random
    rng = random.Random(140)
    with open(CALC, "rb") as f:
        data = f.read()
    kept = 0
    for k in range(12):
        damaged = bytearray(data[:rng.randint(0, len(data))] if k % 3 == 0 else data)
        for _ in range(rng.randint(1, 30)):
            if damaged:
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        rid, (status, reply) = upload_jitlog(server, bytes(damaged))
        assert status in (200, 400), reply
        if status != 200:
            assert "the jit log does not read" in reply["error"]
            continue
        kept += 1
        listed = traces(server, rid, sort="entries", limit=100000)
        for t in listed["traces"][:40]:
            status, detail, _ = server.get("/api/runs/%s/jitlog/traces/%d" % (rid, t["id"]))
            assert status == 200, detail
    assert kept >= 6
    assert server.get("/api/health")[0] == 200
