"""Exports written by the C library, checked by consumers that are not ours:
speedscope's own schema (npm `speedscope`, validated with ajv), `go tool
pprof`, a headless Chromium for the HTML page, and the upstream oracle for
the folded stacks.  Every format is written for every upstream fixture."""
import gzip
import json
import os
import subprocess
import sys
import textwrap

import pytest

from vmprof import _core
from views_support import (FIXTURES, LABEL, ORACLE, facts, fixture, is_runner, need_node_modules,
                           need_tool, node, oracle_name, vmprofshow)

FORMATS = _core.export_formats()


def test_formats_are_the_five_documented():
    assert set(FORMATS) == {"collapsed", "speedscope", "pprof", "firefox", "html"}


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("fmt", ["collapsed", "speedscope", "pprof", "firefox", "html"])
def test_every_format_on_every_fixture(tmp_path, name, fmt):
    out = tmp_path / ("out." + fmt)
    _core.export(fixture(name), fmt, str(out))
    data = out.read_bytes()
    assert data
    if fmt == "pprof":
        assert gzip.decompress(data)
    elif fmt in ("speedscope", "firefox"):
        json.loads(data)
    elif fmt == "html":
        assert data.rstrip().endswith(b"</html>") and b"/*VMPROF_DATA*/" not in data


@pytest.mark.parametrize("fmt", ["collapsed", "speedscope", "pprof", "firefox", "html"])
def test_every_format_on_a_cut_profile(tmp_path, fmt):
    """A profile cut mid-record (the program was killed) exports what it has."""
    data = open(fixture("pool_py311.prof"), "rb").read()
    cut = tmp_path / "cut.prof"
    cut.write_bytes(data[: len(data) // 2 + 3])
    out = tmp_path / ("out." + fmt)
    _core.export(str(cut), fmt, str(out))
    assert out.stat().st_size > 0
    samples = facts(str(cut))["n_samples"]
    assert 0 < samples < ORACLE["pool_py311.prof"]["samples"]


def read_folded(path):
    stacks = {}
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            stacks[stack] = stacks.get(stack, 0) + int(count)
    return stacks


@pytest.mark.parametrize("name", FIXTURES)
def test_collapsed_round_trip_matches_the_oracle(tmp_path, name):
    """Folded stacks read back give the oracle's self and inclusive counts."""
    out = tmp_path / "folded.txt"
    _core.export(fixture(name), "collapsed", str(out), no_native=True)
    stacks = read_folded(out)
    oracle = ORACLE[name]
    assert sum(stacks.values()) <= oracle["samples"]
    self_c, incl_c = {}, {}
    for stack, count in stacks.items():
        names = []
        for label in stack.split(";"):
            m = LABEL.match(label)
            if m:  # a Python frame: "name (file:line)"
                names.append(oracle_name(*m.groups()))
        if names:
            self_c[names[-1]] = self_c.get(names[-1], 0) + count
        for n in set(names):
            incl_c[n] = incl_c.get(n, 0) + count
    for n, count in oracle["self_top"]:
        assert self_c.get(n) == count, n
        # a stack starts at the program: the runner's frames lead only a
        # stack that has nothing else (the runner before the program started)
        if names and is_runner(names[0]):
            assert all(is_runner(n) for n in names), stack
    for n, count in oracle["inclusive_top"]:
        if is_runner(n):  # gone where they led a program's stack
            assert incl_c.get(n) in (None, count), n
        else:
            assert incl_c.get(n) == count, n


def test_collapsed_thread_roots_and_selection(tmp_path):
    out = tmp_path / "all.txt"
    _core.export(fixture("pool_py311.prof"), "collapsed", str(out))
    roots = {s.split(";")[0] for s in read_folded(out)}
    assert len(roots) == ORACLE["pool_py311.prof"]["threads"]
    profile = _core.read_file(fixture("pool_py311.prof"))
    tid = profile.threads()[1]
    one = tmp_path / "one.txt"
    vmprofshow(fixture("pool_py311.prof"), "--thread", hex(tid), "--format", "collapsed",
               "-o", one)
    stacks = read_folded(one)
    assert stacks and not any(s.startswith("Thread ") for s in stacks)
    assert sum(stacks.values()) == profile.thread_samples()[1]


def test_export_to_stdout_and_errors(tmp_path):
    r = vmprofshow(fixture("calc_py311.prof"), "--format", "collapsed", "-o", "-")
    assert sum(int(l.rpartition(" ")[2]) for l in r.stdout.splitlines()) == 724
    r = vmprofshow(fixture("calc_py311.prof"), "--format", "svg", "-o", tmp_path / "x", check=False)
    assert r.returncode == 1 and "collapsed, speedscope" in r.stderr and len(r.stderr.splitlines()) == 1
    r = vmprofshow(fixture("calc_py311.prof"), "--format", "html", "-o", "/nonexistent/x.html",
                   check=False)
    assert r.returncode == 1 and "/nonexistent/x.html" in r.stderr
    with pytest.raises(_core.VMProfError, match="thread"):
        _core.export(fixture("calc_py311.prof"), "pprof", str(tmp_path / "p"), thread=1234)


def test_export_to_a_file_descriptor(tmp_path):
    path = tmp_path / "fd.json"
    with open(path, "wb") as f:
        _core.export(fixture("calc_py39.prof"), "speedscope", f.fileno())
    assert json.loads(path.read_text())["profiles"]


def test_vmprof_export_to_every_kind_of_output_it_names(tmp_path):
    """vmprof.export's docstring names "a binary file object": io.BytesIO
    raised io.UnsupportedOperation (fileno), and None or a text buffer gave
    AttributeError/UnsupportedOperation instead of saying what to give."""
    import io
    import vmprof
    stats = vmprof.read_profile(fixture("calc_py39.prof"))
    by_path = tmp_path / "path.folded"
    vmprof.export(stats, "collapsed", str(by_path))
    expected = by_path.read_bytes()
    assert expected
    buffer = io.BytesIO()
    buffer.write(b"kept:")
    vmprof.export(stats, "collapsed", buffer)
    assert buffer.getvalue() == b"kept:" + expected
    with open(tmp_path / "file.folded", "wb") as f:
        f.write(b"kept:")
        vmprof.export(stats, "collapsed", f)
    assert (tmp_path / "file.folded").read_bytes() == b"kept:" + expected
    with pytest.raises(TypeError, match="not NoneType"):
        vmprof.export(stats, "collapsed", None)
    with pytest.raises(TypeError, match="give a binary file"):
        vmprof.export(stats, "collapsed", io.StringIO())


def test_export_keeps_the_profile_it_was_given_alive(tmp_path):
    """export(stats) writes without the GIL, so it must hold the Profile it took
    from stats._profile: another thread may replace that attribute meanwhile, or
    (here, deterministically) a property hands out a Profile nobody else keeps.
    Before the fix export() dropped its reference first and wrote from freed
    memory (MALLOC_PERTURB_ makes that visible: garbage or a crash)."""
    program = textwrap.dedent("""
        import sys
        import vmprof
        from vmprof import _core

        class Holder(object):
            @property
            def _profile(self):
                return vmprof.read_profile(sys.argv[1])._profile  # the only reference

        _core.export(sys.argv[1], "collapsed", sys.argv[2])
        _core.export(Holder(), "collapsed", sys.argv[3])
        with open(sys.argv[2]) as a, open(sys.argv[3]) as b:
            print("same" if a.read() == b.read() else "different")
    """)
    env = dict(os.environ, MALLOC_PERTURB_="165")
    done = subprocess.run([sys.executable, "-c", program, fixture("pool_py311.prof"),
                           str(tmp_path / "path.txt"), str(tmp_path / "held.txt")],
                          capture_output=True, text=True, env=env, timeout=120,
                          cwd=str(tmp_path))
    assert (done.returncode, done.stdout.strip()) == (0, "same"), done.stderr[-2000:]


# ---- speedscope: the schema from the npm package ------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_speedscope_valid_against_its_schema(tmp_path, name):
    need_node_modules()
    out = tmp_path / "s.json"
    _core.export(fixture(name), "speedscope", str(out))
    rc, report = node("validate_speedscope.mjs", out)
    assert rc == 0 and report["valid"], report["errors"]
    assert report["profiles"] == ORACLE[name]["threads"]
    period_ms = facts(fixture(name))["period_usec"] / 1000.0
    assert abs(report["total_weight"] - ORACLE[name]["samples"] * period_ms) < 1e-6 * report["total_weight"] + 1e-6


def test_speedscope_schema_rejects_a_broken_file(tmp_path):
    """The validator is not a rubber stamp."""
    need_node_modules()
    out = tmp_path / "s.json"
    _core.export(fixture("calc_py311.prof"), "speedscope", str(out))
    doc = json.loads(out.read_text())
    doc["profiles"][0]["unit"] = "parsecs"
    out.write_text(json.dumps(doc))
    rc, report = node("validate_speedscope.mjs", out)
    assert rc == 1 and not report["valid"]


SPEEDSCOPE_APP_CASES = ["pool_py311.prof", "calc_pypy.prof", "grow_mem_py311.prof"]


@pytest.fixture(scope="module")
def speedscope_app(tmp_path_factory):
    """Our speedscope and collapsed files opened in the speedscope app itself
    (the npm package's offline build, in one headless Chromium), plus a file
    it must refuse."""
    need_node_modules()
    need_tool("/usr/bin/chromium", "the speedscope app runs in a headless browser")
    d = tmp_path_factory.mktemp("speedscope-app")
    files = []
    for name in SPEEDSCOPE_APP_CASES:
        for fmt in ("speedscope", "collapsed"):
            files.append(d / ("%s.%s" % (name, fmt)))
            _core.export(fixture(name), fmt, str(files[-1]))
    files.append(d / "junk.txt")
    files[-1].write_text("this is not a profile\n")
    rc, reports = node("speedscope_import.mjs", *files)
    return {os.path.basename(r["file"]): r for r in reports}


@pytest.mark.parametrize("name", SPEEDSCOPE_APP_CASES)
def test_speedscope_app_opens_our_exports(speedscope_app, name):
    js, folded = speedscope_app[name + ".speedscope"], speedscope_app[name + ".collapsed"]
    assert not js["errors"] and not folded["errors"], (js["errors"], folded["errors"])
    assert js["profiles"] == ORACLE[name]["threads"]  # one profile per thread
    assert js["requests"] == [] and folded["requests"] == []
    assert speedscope_app["junk.txt"]["errors"]  # the app does refuse what it cannot read


# ---- pprof: go tool pprof --------------------------------------------------------


def go_pprof(*args):
    need_tool("go", "go tool pprof reads the pprof export")
    r = subprocess.run(["go", "tool", "pprof"] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("name", FIXTURES)
def test_pprof_read_by_go_tool_pprof(tmp_path, name):
    out = tmp_path / "p.pb.gz"
    _core.export(fixture(name), "pprof", str(out), no_native=True)
    text = go_pprof("-top", "-nodecount=100000", "-nodefraction=0", "-sample_index=samples", out)
    oracle = ORACLE[name]
    assert "Total samples = %d" % oracle["samples"] in text or "of %d total" % oracle["samples"] in text
    # pprof groups by function name: compare names the oracle has once
    flat, cum = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0].isdigit():
            flat[" ".join(parts[5:])] = int(parts[0])
            cum[" ".join(parts[5:])] = int(parts[3])
    def unique(pairs):
        shorts = [n.split(":")[1] for n, _ in pairs]
        return {n.split(":")[1]: c for n, c in pairs if shorts.count(n.split(":")[1]) == 1}
    runners = {n.split(":")[1] for n, _ in oracle["inclusive_top"] if is_runner(n)}
    for short, count in unique(oracle["inclusive_top"]).items():
        if short in runners:  # the runner's frames are left out; the program's stay
            continue
        assert cum.get(short) == count, (short, cum)
    if oracle["interp"] != "pypy":  # PyPy's innermost frames are JIT/assembler, not Python
        for short, count in unique(oracle["self_top"]).items():
            assert flat.get(short) == count, (short, flat)


def test_pprof_lines_mode_has_a_location_per_line(tmp_path):
    out = tmp_path / "p.pb.gz"
    _core.export(fixture("calc_lines_py311.prof"), "pprof", str(out))  # lines by default
    raw = go_pprof("-raw", out)
    section = raw.split("Locations", 1)[1].split("Mappings", 1)[0]
    merge_lines = {l.split("calc.py:")[1].split(":")[0] for l in section.splitlines()
                   if " merge_sort " in l}
    assert len(merge_lines) > 3  # lines 33..41 of merge_sort were sampled
    assert go_pprof("-top", "-lines", out).count("calc.py:3") >= 2


def test_pprof_thread_is_a_label(tmp_path):
    out = tmp_path / "p.pb.gz"
    _core.export(fixture("pool_py311.prof"), "pprof", str(out))
    tags = go_pprof("-tags", out)
    ids = {"0x%x" % t for t in _core.read_file(fixture("pool_py311.prof")).threads()}
    assert "thread:" in tags and all(i in tags for i in ids)


# ---- firefox: the processed format's tables ------------------------------------


def firefox_stacks(thread):
    """Rebuilds each sample's stack (function names, root first) from the tables."""
    st, fr, fn, strings = (thread["stackTable"], thread["frameTable"], thread["funcTable"],
                           thread["stringArray"])
    for table in (st, fr, fn, thread["samples"]):
        lengths = {len(v) for k, v in table.items() if isinstance(v, list)}
        assert lengths <= {table["length"]}, table.keys()
    out = []
    for s in thread["samples"]["stack"]:
        names = []
        while s is not None:
            assert 0 <= s < st["length"]
            f = st["frame"][s]
            names.append(strings[fn["name"][fr["func"][f]]])
            prefix = st["prefix"][s]
            assert prefix is None or prefix < s
            s = prefix
        out.append(tuple(reversed(names)))
    return out


@pytest.mark.parametrize("name", FIXTURES)
def test_firefox_tables_rebuild_the_folded_stacks(tmp_path, name):
    ff, folded = tmp_path / "f.json", tmp_path / "c.txt"
    _core.export(fixture(name), "firefox", str(ff))
    _core.export(fixture(name), "collapsed", str(folded))
    doc = json.loads(ff.read_text())
    assert doc["meta"]["preprocessedProfileVersion"] == 48
    # the columns the profiler's upgraders from version 48 on read
    for t in doc["threads"]:
        assert {"category", "subcategory", "func", "line", "column", "implementation",
                "innerWindowID", "nativeSymbol", "address", "inlineDepth"} <= set(t["frameTable"])
        assert {"name", "fileName", "lineNumber", "resource", "isJS"} <= set(t["funcTable"])
        assert {"category", "subcategory", "prefix", "frame"} <= set(t["stackTable"])
        assert isinstance(t["pid"], str) and t["samples"]["weightType"] == "samples"
    for c in doc["counters"]:
        assert "sampleGroups" not in c and c["samples"]["length"] == len(c["samples"]["time"])
    assert len(doc["threads"]) == ORACLE[name]["threads"]
    got = {}
    for t in doc["threads"]:
        times = t["samples"]["time"]
        assert times == sorted(times)
        for names in firefox_stacks(t):
            key = ((t["name"],) if len(doc["threads"]) > 1 else ()) + names
            got[key] = got.get(key, 0) + 1
    want = {}
    for stack, count in read_folded(folded).items():
        parts = stack.split(";")
        key = tuple(p if p.startswith("Thread ") else (LABEL.match(p).group(1) if LABEL.match(p) else p)
                    for p in parts)
        want[key] = want.get(key, 0) + count
    for key in list(got):
        if len(key) == (1 if len(doc["threads"]) > 1 else 0):
            del got[key]  # empty stacks have no folded line
    assert got == want
    if ORACLE[name]["profile_memory"]:
        counter = doc["counters"][0]
        assert sum(counter["samples"]["count"]) // 1024 == _core.read_file(fixture(name)).rss_series()[-1]


# ---- html: a real browser ----------------------------------------------------------


HTML_CASES = [("calc_py311.prof", 1), ("pool_py311.prof", 4), ("grow_mem_py311.prof", 1),
              ("calc_pypy.prof", 1)]


@pytest.fixture(scope="module")
def html_reports(tmp_path_factory):
    """Every page of HTML_CASES checked in one headless Chromium session."""
    need_node_modules()
    need_tool("/usr/bin/chromium", "the HTML export is checked in a headless browser")
    d = tmp_path_factory.mktemp("html")
    pages = []
    for name, _ in HTML_CASES:
        pages.append(d / (name + ".html"))
        vmprofshow(fixture(name), "--format", "html", "-o", pages[-1])
    rc, reports = node("check_html.mjs", *pages)
    return {name: r for (name, _), r in zip(HTML_CASES, reports)}


@pytest.mark.parametrize("name,threads", HTML_CASES)
def test_html_flame_graph_draws_and_zooms_in_chromium(html_reports, name, threads):
    r = html_reports[name]
    assert not r["errors"], r["errors"]
    assert r["requests"] == []          # works offline: asks for nothing
    assert r["drawn"] > 5 and r["painted"] > 10000
    assert r["zoom_before"] == 0 and r["zoom_after"] == r["clicked_node"] != 0
    assert r["zoom_label"] and r["zoom_label"] in r["trail"]
    assert r["tooltip"] and "samples" in r["tooltip"]
    assert r["search_matched"] > 0 and r["zoom_after_escape"] == 0
    assert r["threads"] == (threads + 1 if threads > 1 else 1)
    # the hottest function's row highlights it: at least its self samples match
    assert r["hot_rows"] > 0
    assert r["hot_click"]["search"].startswith("^") and r["hot_click"]["matched"] >= r["hot_click"]["self"] > 0
    if threads > 1:  # picking a thread shows that thread's tree alone
        sel = r["thread_selected"]
        assert sel["thread"] == 1 and sel["drawn"] > 0 and 0 < sel["samples"] < sel["all"]
    assert (r["rss_points"] > 0) == ORACLE[name]["profile_memory"]
    assert os.path.getsize(r["file"] + ".png") > 5000


def test_html_stays_small(tmp_path):
    for name in FIXTURES:
        page = tmp_path / (name + ".html")
        _core.export(fixture(name), "html", str(page))
        assert page.stat().st_size < 200 * 1024, name
