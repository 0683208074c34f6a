"""The jitlog package: the C decoder through vmprof._core, with the original
`jitlog` API (parse_jitlog, the forest, query.select) and `python -m jitlog`.

The upstream PyPy log must read as the original parser read it (its oracle);
logs written here by pypy3 must hold exactly the traces PyPy itself reports
in its text log (PYPYLOG=jit-log-opt) of the same run."""
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest

from data_paths import PROFILES, UPSTREAM, WORKLOADS
from jitlog import query
from jitlog.parser import ParseException, parse_jitlog
from upload_server import UploadServer

CALC = os.path.join(PROFILES, "calc_pypy.jitlog")
PYPY = shutil.which("pypy3")
needs_pypy = pytest.mark.skipif(PYPY is None, reason="pypy3 is not installed (apt install pypy3)")


def oracle():
    with open(os.path.join(UPSTREAM, "oracle_jitlog.json")) as f:
        return json.load(f)["calc_pypy.jitlog"]


def test_the_upstream_log_reads_as_the_oracle_says():
    want = oracle()
    forest = parse_jitlog(CALC)
    assert forest.version == want["version"]
    assert forest.word_size == want["word_size"]
    assert forest.machine == want["machine"]
    assert forest.exc is None and want["error"] is None
    assert len(forest.resops) == want["resops"]
    assert len(forest.traces) == want["traces"]
    types = {}
    for trace in forest.traces.values():
        types[trace.type] = types.get(trace.type, 0) + 1
    assert types == want["types"]
    assert len(forest.stitches) == want["stitches"]
    scopes = {}
    for trace in forest.traces.values():
        scope = trace.get_first_merge_point().get_scope()
        scopes[scope] = scopes.get(scope, 0) + 1
    assert scopes == want["first_merge_point_scopes"]
    opcounts = dict(("0x%x" % trace.unique_id,
                     dict((mark, stage.get_opcount()) for mark, stage in trace.stages.items()))
                    for trace in forest.traces.values())
    assert opcounts == want["opcounts"]
    # get_opcount() is the ops a script iterates
    for trace in forest.traces.values():
        for stage in trace.stages.values():
            assert len(stage.get_ops()) == stage.get_opcount()


def test_ops_merge_points_and_links():
    forest = parse_jitlog(CALC)
    assert forest.resops[1] == "jump" and forest.resops[2] == "finish"
    loop = forest.traces[0x43]
    opt = loop.get_stage("opt")
    op = opt.ops[0]
    assert (op.opname, op.result, op.args) == ("getfield_gc_r", "p2", ["p0"])
    assert op.descr.startswith("<FieldP pypy.interpreter.pyframe.PyFrame.inst_pycode")
    assert repr(op).startswith("p2 = getfield_gc_r(p0, @<FieldP")
    mp = loop.get_first_merge_point()
    assert mp.get_scope() == "merge_sort"
    assert mp.get_source_line() == (38, "calc.py")
    assert mp.values[0x10] == "LOAD_FAST"
    # a bridge names its parent and its guard, the guard its bridge
    bridge = forest.traces[0x44]
    assert bridge.is_bridge() and bridge.get_parent() is loop
    guard = bridge.get_failing_guard()
    assert guard.is_guard() and guard.descr_number == bridge.descr_number
    assert guard.get_bridge() is bridge
    assert forest.stitches[guard.descr_number] == 0x44
    assert bridge in loop.bridges
    # machine code: the asm stage's ops carry their bytes
    asm = loop.get_stage("asm")
    assert loop.is_assembled() and loop.addrs[0] < loop.addrs[1]
    code = loop.get_core_dump()
    assert 0 < len(code) <= loop.addrs[1] - loop.addrs[0] + 1
    assert all(op.core_dump[0] >= 0 for op in asm.ops if op.core_dump)
    # counters: the loop's entries, written at disable
    assert loop.counter == 2858314


def test_query_select():
    forest = parse_jitlog(CALC)
    assert len(query.select(forest, "")) == 25
    assert len(query.select(forest, "loops")) == 5
    assert len(query.select(forest, "loops()")) == 5
    assert len(query.select(forest, "~loops")) == 20
    assert len(query.select(forest, "bridges & ~bridges")) == 0
    tokenize = query.select(forest, 'func("tokenize")')
    assert set(t.unique_id for t in tokenize) >= {0x51, 0x52, 0x53, 0x54, 0x56}
    with_call = query.select(forest, 'op("call_assembler") | op("call_may_force")')
    assert with_call and all(
        any("call_assembler" in op.opname or "call_may_force" in op.opname
            for stage in t.stages.values() for op in stage.ops) for t in with_call)
    # the original API
    assert [t.unique_id for t in query.Query("loops")(forest)] == [0x42, 0x43, 0x51, 0x52, 0x55]
    with pytest.raises(query.QueryError, match="column 7: expected"):
        query.select(forest, "loops bridges")
    with pytest.raises(query.QueryError, match="column 1: unknown name '__import__'"):
        query.Query("__import__('os').system('true')")


def test_a_cut_log_reads_up_to_the_cut_and_a_bad_header_raises():
    with open(CALC, "rb") as f:
        data = f.read()
    cut = parse_jitlog("cut", data=data[:len(data) // 2])
    assert cut.exc is not None
    byte = int(re.match(r"at byte (\d+): ", str(cut.exc)).group(1))
    assert byte <= len(data) // 2
    assert 0 < len(cut.traces) < 25
    # gzip is read too
    assert len(parse_jitlog("gz", data=gzip.compress(data)).traces) == 25
    with pytest.raises(ParseException, match="not a PyPy JIT log"):
        parse_jitlog(os.path.join(PROFILES, "calc_pypy.prof"))
    with pytest.raises(ParseException, match="version 9 is not supported"):
        parse_jitlog("v9", data=b"\x1e\x09\x00\x00" + struct.pack("<i", 6) + b"x86_64")


@pytest.fixture
def run_cli(tmp_path):
    """`python -m jitlog` run where the source folder is not on its path."""
    def run(*args, cwd=tmp_path):
        return subprocess.run([sys.executable, "-m", "jitlog"] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=120, cwd=cwd)
    return run


def test_cli_prints_the_selected_traces_stage_by_stage(run_cli):
    done = run_cli(CALC, "-q", 'loops & func("parse_expr")')
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("loop 0x55 ")
    assert "in parse_expr calc.py:" in out.splitlines()[0]
    # each stage with its op count, then its ops and merge points
    assert re.search(r"^  noopt: 870 ops$", out, re.M)
    assert re.search(r"^  opt: 156 ops$", out, re.M)
    assert re.search(r"^  asm: 164 ops$", out, re.M)
    assert re.search(r"^    # parse_expr calc.py:\d+ LOAD_FAST$", out, re.M)
    assert "bridge 0x" not in out
    # the original spelling, and the list without a query
    same = run_cli("-i", CALC, "-q", 'loops & func("parse_expr")')
    assert same.stdout == out
    listing = run_cli(CALC)
    assert listing.stdout.splitlines()[0].endswith("25 traces (version 4, x86_64)")
    assert len(listing.stdout.splitlines()) == 26


def test_cli_errors_are_one_line(run_cli, tmp_path):
    done = run_cli(CALC, "-q", "loops &")
    assert done.returncode == 2
    assert done.stderr.strip() == ("jitlog: bad query 'loops &': column 8: expected loops, "
                                   "bridges, func(\"name\"), op(\"name\"), '~' or '(', found the "
                                   "end of the query")
    done = run_cli(os.path.join(PROFILES, "calc_pypy.prof"), "-q", "loops")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "not a PyPy JIT log" in done.stderr
    with open(CALC, "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.jitlog"
    cut.write_bytes(data[:100000])
    done = run_cli(cut, "-q", "")
    assert done.returncode == 0
    assert re.fullmatch(r"jitlog: the log is read only in part: at byte \d+: the log ends inside "
                        r"a \w+ record \(cut short\?\); it is read up to there\n", done.stderr)
    assert done.stdout.startswith("loop 0x42")
    done = run_cli("-o", tmp_path / "x.jitlog", "no_such_prog.py")
    assert done.returncode == 2
    if sys.implementation.name == "pypy":
        assert done.stderr == ("jitlog: can't open file 'no_such_prog.py': [Errno 2] No such "
                               "file or directory\n")
    else:
        assert "recording a JIT log needs PyPy" in done.stderr
    if sys.implementation.name == "pypy":
        # a program that does not compile: python's own report, and status 1
        bad = tmp_path / "bad.py"
        bad.write_text("x = (\n")
        done = run_cli("-o", tmp_path / "y.jitlog", bad)
        assert done.returncode == 1
        assert "SyntaxError" in done.stderr and "bad.py" in done.stderr
        assert "jitlog:" not in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "y.jitlog").exists()


def test_upload_adds_the_source_lines_of_the_traced_functions(run_cli, tmp_path):
    # the log names its file relatively ("calc.py"): upload from where it ran
    shutil.copy(os.path.join(WORKLOADS, "calc.py"), tmp_path / "calc.py")
    with UploadServer() as server:
        done = run_cli("--upload", CALC, "--web-url", server.url, "--web-auth", "k3y",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "%s/#/jit7/traces" % server.url
    assert server.paths() == ["/api/runtime/new", "/api/runtime/upload/jit/rt42/add",
                              "/api/runtime/rt42/freeze/"]
    new = json.loads(server.requests[0].body)
    assert new["VM"] == "PyPy"
    assert server.requests[1].headers["AUTHORIZATION"] == "Token k3y"
    assert server.requests[1].headers["Content-Disposition"].endswith(".jitlog.zip")
    sent = gzip.decompress(server.requests[1].body)
    with open(CALC, "rb") as f:
        original = f.read()
    assert sent.startswith(original) and len(sent) > len(original)
    forest = parse_jitlog("sent", data=sent)
    assert forest.exc is None and len(forest.traces) == 25
    lines = forest.source_lines["calc.py"]
    source = (tmp_path / "calc.py").read_text().splitlines()
    mp = forest.traces[0x43].get_first_merge_point()
    lineno, _ = mp.get_source_line()
    indent, text = lines[lineno]
    assert text == source[lineno - 1].strip()
    assert indent == len(source[lineno - 1]) - len(source[lineno - 1].lstrip())
    # uploading the uploaded log again adds nothing
    from jitlog.upload import source_code_records
    again = tmp_path / "again.jitlog"
    again.write_bytes(sent)
    assert source_code_records(str(again), str(tmp_path)) == b""


def test_vmprof_uploads_profile_and_jitlog_under_one_runtime(tmp_path, monkeypatch):
    # what `pypy3 -m vmprof --jitlog --web` sends once the program ended
    from vmprof import upload
    shutil.copy(os.path.join(WORKLOADS, "calc.py"), tmp_path / "calc.py")
    monkeypatch.chdir(tmp_path)
    with UploadServer() as server:
        result = upload.upload(os.path.join(PROFILES, "calc_pypy.prof"), server.url,
                               argv="calc.py", vm="PyPy", jitlog_path=CALC)
    assert server.paths() == ["/api/runtime/new", "/api/runtime/upload/cpu/rt42/add",
                              "/api/runtime/upload/jit/rt42/add", "/api/runtime/rt42/freeze/"]
    assert result.traces_url == "%s/#/jit7/traces" % server.url
    sent = parse_jitlog("sent", data=gzip.decompress(server.requests[2].body))
    assert len(sent.traces) == 25 and "calc.py" in sent.source_lines


# ---- logs made here by PyPy ---------------------------------------------------

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

def strings(n):
    out = []
    for i in range(n):
        out.append(str(i)[::-1])
    return len("".join(out))

class Point(object):
    def __init__(self, x, y):
        self.x, self.y = x, y

def objects(n):
    acc = 0
    for i in range(n):
        p = Point(i, -i)
        acc += p.x * 2 + p.y
    return acc

print(branchy(300000), strings(60000), objects(200000), sys.argv[1:])
'''


@pytest.fixture
def pypy_jitlog(tmp_path):
    """`pypy3 -m jitlog -o` on a program, with PYPYLOG's own text log of the
    same run; the installed packages' Python files on PYTHONPATH (PyPy has
    no build of our extension)."""
    pkg = tmp_path / "pkg"
    for name in ("vmprof", "jitlog"):
        module = __import__(name)
        shutil.copytree(os.path.dirname(module.__file__), pkg / name,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tmp_path / "prog.py").write_text(PROGRAM)

    def run(*args):
        env = dict(os.environ, PYTHONPATH=str(pkg),
                   PYPYLOG="jit-log-opt:%s" % (tmp_path / "pypylog.txt"))
        return subprocess.run([PYPY, "-m", "jitlog"] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    return run


def pypy_reported_traces(path):
    """[(header, [op names])] of PYPYLOG's jit-log-opt sections."""
    with open(path) as f:
        text = f.read()
    traces = []
    for block in re.findall(r"\{jit-log-opt-(?:loop|bridge)\n(.*?)\n\[[0-9a-f]+\] jit-log-opt",
                            text, re.S):
        lines = block.splitlines()
        names = []
        for line in lines[1:]:
            m = re.match(r"^(?:\+\d+: )?(?:[a-z]\d+ = )?([a-z_0-9]+)\(", line)
            if m:
                names.append(m.group(1))
        traces.append((lines[0], names))
    return traces


def opt_sequence(trace):
    """The opt stage as PyPy prints it: ops with debug_merge_points between."""
    stage = trace.get_stage("opt")
    seq, mps, k = [], stage.get_merge_points(), 0
    for op in stage.get_ops():
        while k < len(mps) and mps[k].index <= op.index:
            seq.append("debug_merge_point")
            k += 1
        seq.append(op.opname)
    return seq + ["debug_merge_point"] * (len(mps) - k)


@needs_pypy
def test_pypy_logs_hold_the_traces_pypy_reports(pypy_jitlog, tmp_path):
    done = pypy_jitlog("-o", "out.jitlog", "prog.py", "a1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("['a1']")   # the program's own argv and stdout
    assert "JIT log written to out.jitlog" in done.stderr
    forest = parse_jitlog(str(tmp_path / "out.jitlog"))
    assert forest.exc is None
    assert forest.version == 4 and forest.word_size == 8
    # PYPYLOG covers the whole run, the JIT log the program's part: from the
    # first trace both have, every trace PyPy reports is in the JIT log
    reported = pypy_reported_traces(tmp_path / "pypylog.txt")
    by_descr = dict((t.descr_number, t) for t in forest.traces.values() if t.is_bridge())

    def ours(header):
        m = re.match(r"# Loop (\d+) ", header)
        if m:
            return forest.traces.get(int(m.group(1)))
        m = re.match(r"# bridge out of Guard (0x[0-9a-f]+) ", header)
        return by_descr.get(int(m.group(1), 16))
    first = min(i for i, (header, _) in enumerate(reported) if ours(header) is not None)
    reported = reported[first:]
    assert len(reported) >= 3
    compiled = [t for t in forest.traces.values() if t.get_stage("opt") is not None]
    assert len(compiled) == len(reported)
    scopes = set()
    for header, names in reported:
        trace = ours(header)
        assert trace is not None, header
        m = re.match(r"# Loop (\d+) \(([^;]+);([^:]+):.*: (?:entry bridge|loop) with (\d+) ops",
                     header)
        if m:
            assert trace.type == "loop"
            mp = trace.get_first_merge_point()
            assert mp.get_scope() == m.group(2)
            assert mp.get_source_line()[1] == m.group(3)
            scopes.add(m.group(2))
        else:
            m = re.match(r"# bridge out of Guard (0x[0-9a-f]+) with (\d+) ops", header)
            assert trace.type == "bridge"
            guard = trace.get_failing_guard()
            if guard is not None:
                assert guard.descr_number == int(m.group(1), 16) and guard.is_guard()
        # PyPy's op count is the opt stage's ops and merge points, op by op
        count = int(m.group(m.lastindex))
        stage = trace.get_stage("opt")
        assert stage.get_opcount() + len(stage.get_merge_points()) == count
        assert opt_sequence(trace) == names
    assert {"branchy", "strings", "objects"} <= scopes
    # entry counters were written at disable and reached the loops
    assert all(t.counter > 0 for t in forest.traces.values() if t.type == "loop")


@needs_pypy
def test_pypy_jitlog_web_uploads_the_log(pypy_jitlog):
    with UploadServer() as server:
        done = pypy_jitlog("--web", "--web-url", server.url, "prog.py")
    assert done.returncode == 0, done.stderr
    assert server.paths() == ["/api/runtime/new", "/api/runtime/upload/jit/rt42/add",
                              "/api/runtime/rt42/freeze/"]
    assert json.loads(server.requests[0].body) == {"argv": "prog.py", "VM": "PyPy"}
    forest = parse_jitlog("sent", data=gzip.decompress(server.requests[1].body))
    assert forest.exc is None and len(forest.traces) >= 3
    assert "JIT log uploaded: %s/#/jit7/traces" % server.url in done.stderr

