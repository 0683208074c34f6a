"""vmprofshow's text views on the upstream fixtures, checked against the
oracle (counts worked out by the original tools) and against the sources of
the workloads."""
import os
import re
import sys
import subprocess
import tempfile

import pytest

from vmprof import _core
from views_support import FIXTURES, ORACLE, WORKLOADS, fixture, is_runner, oracle_name, vmprofshow

# "  self%  samples    cum%  samples  name  file:line" (a file may hold spaces)
ROW = re.compile(r"^\s*([\d.]+)%\s+(\d+)\s+([\d.]+)%\s+(\d+)  (\S+)  (.*)$")
# "percent  count  <indent>name  file:line  [self x%]"
TREE = re.compile(r"^\s*([\d.]+)%\s+(\d+)  ( *)(\S+)  (.*?)(  self [\d.]+%)?$")


def flat_rows(text, section):
    body = text.split(section, 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in body.splitlines():
        m = ROW.match(line)
        if m:
            self_n, cum_n, name, where = int(m.group(2)), int(m.group(4)), m.group(5), m.group(6)
            path, _, line_no = where.rpartition(":")
            rows[oracle_name(name, path, line_no)] = (self_n, cum_n)
    return rows


@pytest.mark.parametrize("name", FIXTURES)
def test_flat_matches_the_oracle(name):
    text = vmprofshow(fixture(name), "flat", "--no-native").stdout
    rows = flat_rows(text, "By cumulative time")
    oracle = ORACLE[name]
    for n, count in oracle["inclusive_top"]:
        if is_runner(n):  # the runner's frames are left out where they led a stack
            assert rows.get(n, (0, count))[1] == count, n
        else:
            assert rows[n][1] == count, n
    if oracle["interp"] != "pypy":  # PyPy's innermost frames are JIT/assembler code
        for n, count in oracle["self_top"]:
            assert rows[n][0] == count, n


@pytest.mark.parametrize("name", FIXTURES)
def test_tree_on_every_fixture(name):
    text = vmprofshow(fixture(name), "tree").stdout
    nodes = [TREE.match(l) for l in text.splitlines()]
    nodes = [m for m in nodes if m]
    assert nodes
    total = sum(int(m.group(2)) for m in nodes if m.group(3) == "")
    assert total == ORACLE[name]["samples"]
    # a child never has more samples than its parent
    stack = []
    for m in nodes:
        depth, count = len(m.group(3)), int(m.group(2))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            assert count <= stack[-1][1]
        stack.append((depth, count))


def test_tree_prune_options_and_indent():
    full = vmprofshow(fixture("calc_py311.prof"), "tree").stdout
    pruned = vmprofshow(fixture("calc_py311.prof"), "--prune_percent", "5").stdout
    shallow = vmprofshow(fixture("calc_py311.prof"), "--prune_level", "2", "--indent", "4").stdout
    assert len(pruned.splitlines()) < len(full.splitlines())
    assert "subtrees hidden" in pruned and "subtrees hidden" not in full
    for m in filter(None, (TREE.match(l) for l in pruned.splitlines())):
        assert float(m.group(1)) >= 5.0
    depths = {len(m.group(3)) for m in filter(None, (TREE.match(l) for l in shallow.splitlines()))}
    assert depths == {0, 4, 8}


def test_tree_folds_recursion_into_one_node():
    text = vmprofshow(fixture("calc_py311.prof"), "tree").stdout
    names = [m.group(4) for m in filter(None, (TREE.match(l) for l in text.splitlines()))]
    assert names.count("merge_sort") == 1  # merge_sort recursing into itself is one node


def test_flat_include_callees_and_cutoff():
    text = vmprofshow(fixture("pool_py311.prof"), "flat", "--include-callees").stdout
    assert re.search(r"-> <genexpr>  pool.py:9", text)
    cut = vmprofshow(fixture("pool_py311.prof"), "flat", "--percent-cutoff", "20").stdout
    rows = flat_rows(cut, "By self time")
    assert rows and all(100.0 * s / 164 >= 20 for s, _ in rows.values())


def test_no_native_drops_native_frames():
    with_native = vmprofshow(fixture("calc_native_py311.prof"), "flat").stdout
    without = vmprofshow(fixture("calc_native_py311.prof"), "flat", "--no-native").stdout
    assert "<native>" in with_native and "<native>" not in without


def test_lines_beside_the_source():
    text = vmprofshow(fixture("calc_lines_py311.prof"), "lines", "--filter", "^merge_sort$",
                      cwd=WORKLOADS).stdout
    assert text.count("samples (") == 1  # one function passed the filter
    src = open(os.path.join(WORKLOADS, "calc.py")).read().splitlines()
    hits = {}
    for line in text.splitlines():
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+[\d.]+  (.*)$", line)
        if m:
            ln, n, code = int(m.group(1)), int(m.group(2)), m.group(3)
            assert code == src[ln - 1]  # the source line is the file's own line
            hits[ln] = n
    assert hits and max(hits, key=hits.get) == 36  # the recursive call line
    # the counts per line come from the samples: a line is counted once per sample
    assert max(hits.values()) <= 396


def test_lines_without_source_and_without_line_numbers():
    text = vmprofshow(fixture("calc_lines_py311.prof"), "lines", "--filter", "tokenize").stdout
    assert "source not found: calc.py" in text  # run from /, calc.py is not there
    r = vmprofshow(fixture("calc_py311.prof"), "lines", check=False)
    assert r.returncode == 1 and "--lines" in r.stdout


def test_threads_breakdown_and_selection():
    text = vmprofshow(fixture("pool_py311.prof")).stdout
    rows = re.findall(r"^\s+(\d+)\s+0x([0-9a-f]+)\s+(\d+) samples", text, re.M)
    assert len(rows) == 4 and sum(int(r[2]) for r in rows) == 164
    second = vmprofshow(fixture("pool_py311.prof"), "--thread", "2").stdout
    by_id = vmprofshow(fixture("pool_py311.prof"), "--thread", "0x" + rows[1][1]).stdout
    assert second == by_id and "Threads" not in second
    top = [m for m in (TREE.match(l) for l in second.splitlines()) if m and m.group(3) == ""]
    assert sum(int(m.group(2)) for m in top) == int(rows[1][2])
    bad = vmprofshow(fixture("pool_py311.prof"), "--thread", "77", check=False)
    assert bad.returncode != 0 and "its threads are" in bad.stderr


def test_memory_summary():
    text = vmprofshow(fixture("grow_mem_py311.prof")).stdout
    peak_kib = ORACLE["grow_mem_py311.prof"]["max_rss_kb"]
    assert "peak RSS %.1f MiB" % (peak_kib / 1024.0) in text
    grew = re.findall(r"^\s+([\d.]+) MiB\s+([\d.]+)%\s+(\S+)", text, re.M)
    assert grew and abs(sum(float(g[1]) for g in grew) - 100.0) < 0.5
    assert "Memory" not in vmprofshow(fixture("calc_py311.prof")).stdout


def test_colour_only_on_request_or_terminal():
    piped = vmprofshow(fixture("calc_py39.prof")).stdout
    forced = vmprofshow(fixture("calc_py39.prof"), "--color", "always").stdout
    assert "\033[" not in piped and "\033[" in forced
    assert re.sub(r"\033\[[\d;]*m", "", forced) == piped


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    junk = tmp_path / "junk.prof"
    junk.write_bytes(b"this is not a profile at all")
    r = vmprofshow(junk, check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "not a vmprof profile" in r.stderr
    r = vmprofshow(tmp_path / "missing.prof", check=False)
    assert r.returncode == 1 and "missing.prof" in r.stderr


@pytest.mark.parametrize("option, value, says", [
    ("--indent", "-3", "give a whole number, 0 or more, not '-3'"),
    ("--prune_level", "-1", "give a whole number, 0 or more, not '-1'"),
    ("--prune_percent", "-5", "give a percentage from 0 to 100, not '-5'"),
    ("--percent-cutoff", "150", "give a percentage from 0 to 100, not '150'"),
    ("--percent-cutoff", "nan", "give a percentage from 0 to 100, not 'nan'"),
    ("--indent", "two", "give a whole number, 0 or more, not 'two'"),
])
def test_a_value_out_of_range_is_refused(option, value, says):
    """--indent -3 drew the tree without indentation, --prune_level -1 as 0,
    and a negative percentage showed everything, all without a word."""
    r = vmprofshow(fixture("calc_py311.prof"), option, value, check=False)
    assert r.returncode == 2, r.stdout
    assert r.stderr.splitlines()[-1].endswith(says), r.stderr


def test_help_lists_no_native_where_it_applies(tmp_path):
    """--no-native was listed under "flat:" only, while the tree and flat
    views and every export all leave native frames out with it."""
    text = vmprofshow("--help").stdout
    every = text.split("all views and exports:", 1)[1].split("\n\n", 1)[0]
    assert "--no-native" in every
    native = fixture("calc_native_py311.prof")
    assert "<native>" in vmprofshow(native, "tree").stdout
    assert "<native>" not in vmprofshow(native, "tree", "--no-native").stdout
    out, python_only = tmp_path / "all.txt", tmp_path / "python.txt"
    vmprofshow(native, "--format", "collapsed", "-o", out)
    vmprofshow(native, "--format", "collapsed", "-o", python_only, "--no-native")
    assert "PyObject_Vectorcall" in out.read_text()
    assert python_only.read_text() and "PyObject_Vectorcall" not in python_only.read_text()


@pytest.mark.parametrize("usec, says", [(10, "every 0.01 ms"), (250, "every 0.25 ms"),
                                         (990, "every 0.99 ms"), (1000, "every 1.0 ms"),
                                         (2500, "every 2.5 ms")])
def test_the_header_states_a_short_period(tmp_path, usec, says):
    """A profile taken with -p 0.00001 said "every 0.0 ms" (and the 990 us
    of the fixture "every 1.0 ms")."""
    import struct
    with open(fixture("calc_py311.prof"), "rb") as f:
        data = f.read()
    assert struct.unpack("<5q", data[:40])[3] == 990  # the static header's period
    path = tmp_path / "period.prof"
    path.write_bytes(data[:24] + struct.pack("<q", usec) + data[32:])
    first = vmprofshow(path).stdout.splitlines()[0]
    assert first.endswith("s, %s" % says), first


def test_a_thread_id_in_hex_is_never_taken_for_a_number_of_the_list():
    """--thread 0x2 showed the list's second thread, though the help says
    0x... is an id (and no thread has id 2)."""
    r = vmprofshow(fixture("pool_py311.prof"), "--thread", "0x2", check=False)
    assert r.returncode == 1 and "no thread 0x2 in" in r.stderr, r.stdout[:300]
    assert "Threads" not in vmprofshow(fixture("pool_py311.prof"), "--thread", "2").stdout


def test_a_bad_filter_is_one_line_not_a_traceback():
    r = vmprofshow(fixture("calc_lines_py311.prof"), "lines", "--filter", "merge(", check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "--filter 'merge(' is not a valid regular expression" in r.stderr


@pytest.mark.parametrize("how", [[], ["--format", "collapsed", "-o", "-"],
                                 ["--format", "html", "-o", "-"]])
def test_a_reader_that_left_is_not_an_error(how):
    """`vmprofshow FILE ... | head`: the reader closes the pipe before the end.
    A text view ended quietly; an export said "writing the ... export failed:
    Broken pipe; check the disk space" and exited 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        r = subprocess.run([sys.executable, "-m", "vmprof.show", fixture("calc_py311.prof")]
                           + how, stdout=write_end, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=120, cwd="/")
    finally:
        os.close(write_end)
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize("fmt, refused", [("pprof", True), ("collapsed", False)])
def test_a_binary_export_is_not_written_to_a_terminal(fmt, refused):
    """`--format pprof -o -` on a terminal wrote its gzip bytes there (as
    vmprof-server raw refuses to); text exports still go."""
    import pty
    master, slave = pty.openpty()
    try:
        with tempfile.TemporaryFile("w+") as err:
            child = subprocess.Popen([sys.executable, "-m", "vmprof.show", fixture("calc_py311.prof"),
                                      "--format", fmt, "-o", "-"], stdout=slave, stderr=err, cwd="/")
            os.close(slave)
            slave = None
            got = b""
            while True:  # (read as it comes: a full terminal would stop the writer)
                try:
                    piece = os.read(master, 1 << 16)
                except OSError:  # (EIO: the terminal's last writer is gone)
                    break
                if not piece:
                    break
                got += piece
            status = child.wait(timeout=120)
            err.seek(0)
            stderr = err.read()
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    if refused:
        assert status == 1 and got == b"", (status, got[:40])
        assert stderr.count("\n") == 1 and "the pprof export is binary" in stderr, stderr
    else:
        assert status == 0 and b"calc" in got, (stderr, got[:200])


def test_truncated_profile_shows_what_it_has(tmp_path):
    data = open(fixture("calc_py311.prof"), "rb").read()
    cut = tmp_path / "cut.prof"
    cut.write_bytes(data[: len(data) * 2 // 3])
    text = vmprofshow(cut).stdout
    assert "no trailer" in text and "100.0%" in text


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "vmprofshow")
    r = subprocess.run([script, fixture("calc_py310.prof"), "flat"], stdout=subprocess.PIPE,
                       universal_newlines=True)
    assert r.returncode == 0 and "By self time" in r.stdout


@pytest.mark.cpython_only  # --lines: PyPy's sampler records no lines
def test_views_and_exports_on_a_profile_from_our_sampler(tmp_path):
    import vmprof
    if not hasattr(vmprof, "enable"):
        pytest.skip("the sampler (vmprof.enable) is not in this build yet")
    prog = tmp_path / "work.py"
    prog.write_text(
        "import threading\n"
        "def spin(n):\n"
        "    s = 0\n"
        "    for i in range(n):\n"
        "        s += i * i\n"
        "    return s\n"
        "t = threading.Thread(target=spin, args=(3000000,))\n"
        "t.start()\n"
        "spin(3000000)\n"
        "t.join()\n")
    out = tmp_path / "own.prof"
    r = subprocess.run([sys.executable, "-m", "vmprof", "--lines", "--mem", "-o", str(out),
                        str(prog)], cwd=str(tmp_path), stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for view in ("tree", "flat", "lines"):
        text = vmprofshow(out, view, cwd=str(tmp_path)).stdout
        assert "spin" in text
    for fmt in _core.export_formats():
        vmprofshow(out, "--format", fmt, "-o", tmp_path / ("own." + fmt))
        assert (tmp_path / ("own." + fmt)).stat().st_size > 0


@pytest.mark.parametrize("name", ["calc_py39.prof", "calc_py310.prof", "calc_py311.prof",
                                  "calc_native_py311.prof", "calc_lines_py311.prof",
                                  "pool_py311.prof", "grow_mem_py311.prof"])
def test_tree_agrees_with_the_samples(name):
    """vmprofshow's tree (the read model's query) against a tree worked out
    here from the raw samples (Stats.profiles): Python frames only, the
    runner's leading frames dropped where the program follows, consecutive
    frames of one function folded."""
    import vmprof
    from vmprof.reader import Frame
    stats = vmprof.read_profile(fixture(name))
    names = stats.adr_dict
    theirs = {}
    for stack, count, _thread, _rss in stats.profiles:
        path = []
        for entry in stack:
            n = names.get(entry) if not isinstance(entry, Frame) else None
            if n and n.startswith("py:") and (not path or path[-1] != n):
                path.append(n)
        k = 0
        while k < len(path) and is_runner(path[k]):
            k += 1
        if 0 < k < len(path):
            path = path[k:]
        for i in range(1, len(path) + 1):
            theirs[tuple(path[:i])] = theirs.get(tuple(path[:i]), 0) + count
    ours, path = {}, []
    for line in vmprofshow(fixture(name), "tree", "--no-native").stdout.splitlines():
        m = TREE.match(line)
        if not m:
            continue
        depth = len(m.group(3)) // 2
        where, _, line_no = m.group(5).rpartition(":")
        path[depth:] = [oracle_name(m.group(4), where, line_no)]
        ours[tuple(path)] = int(m.group(2))
    assert ours == theirs
