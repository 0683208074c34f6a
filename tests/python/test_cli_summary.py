"""The terminal summary (vmprof.summary) of a read profile.

The numbers are checked against counts worked out by hand for a small set of
samples, written as a real profile; the same code runs on real profiles in
test_cli_run.py.
"""
import json
import os
import struct

import pytest

import vmprof
from vmprof import _core, summary

from views_support import is_runner


def words(*ws):
    return struct.pack("<%dq" % len(ws), *ws)


def FakeStats(profiles, names, runtime_us=2000000, meta=None):
    """A profile of these samples ((stack root first, count, thread, rss)) and
    names, read back: the summary reads what read_profile() gives."""
    mode = _core.MODE_REAL_TIME if (meta or {}).get("real_time") else 0
    out = words(0, 3, 0, 1000, 0) + bytes([5, 0, 6, mode, 7]) + b"cpython"
    out += bytes([6]) + words(1700000000, 0) + b"UTC\0\0\0\0\0"
    # ids as code addresses: even (an odd entry is a native frame)
    for addr, name in names.items():
        out += bytes([2]) + words(addr * 16, len(name)) + name.encode()
    for stack, count, thread, _rss in profiles:
        entries = [a * 16 for a in reversed(stack)]
        out += (bytes([1]) + words(1, len(entries), *entries) + words(thread)) * count
    end = 1700000000 * 1000000 + runtime_us
    out += bytes([3]) + words(end // 1000000, end % 1000000) + b"UTC\0\0\0\0\0"
    return vmprof.Stats(_core.read_bytes(out))


NAMES = {
    1: "py:main:1:/src/app.py",
    2: "py:parse:10:/src/app.py",
    3: "py:walk:20:/src/tree.py",
    4: "n:memcpy:0:libc.so.6",
}

# (stack root first, count, thread, rss)
PROFILES = [
    ([1, 2], 1, 1, 0),            # self parse
    ([1, 2], 1, 1, 0),            # self parse
    ([1, 3, 3, 3], 1, 1, 0),      # recursion: walk counted once in total
    ([1, 3, 4], 1, 2, 0),         # a native leaf: self goes to walk
    ([1], 3, 2, 0),               # a unique stack seen 3 times
    ([4], 1, 2, 0),               # no Python frame at all
    ([99, 1], 1, 1, 0),           # an id without a name is skipped
]


def test_function_shares_counts_self_and_total():
    samples, shares = summary.function_shares(FakeStats(PROFILES, NAMES))
    assert samples == 9
    by_name = {(s.name, s.where()): (s.self_count, s.total_count) for s in shares}
    assert by_name == {
        ("main", "/src/app.py:1"): (4, 8),
        ("parse", "/src/app.py:10"): (2, 2),
        ("walk", "/src/tree.py:20"): (2, 2),
    }
    # ordered by self, then total, then name
    assert [s.name for s in shares] == ["main", "parse", "walk"]


def test_format_summary_shows_shares_of_all_samples():
    text = summary.format_summary(FakeStats(PROFILES, NAMES))
    lines = text.splitlines()
    assert lines[0] == "vmprof: 9 samples over 2.00 s, CPU time, 2 threads"
    assert lines[1].split() == ["self", "total", "function", "location"]
    assert lines[2].split() == ["44.4%", "88.9%", "main", "/src/app.py:1"]
    assert lines[3].split() == ["22.2%", "22.2%", "parse", "/src/app.py:10"]
    assert lines[4].split() == ["22.2%", "22.2%", "walk", "/src/tree.py:20"]
    assert len(lines) == 5


def test_limit_and_tiny_shares():
    names = {i: "py:f%d:%d:/m.py" % (i, i) for i in range(1, 31)}
    profiles = [([i], 1, 1, 0) for i in range(1, 31)] + [([1], 2000, 1, 0)]
    text = summary.format_summary(FakeStats(profiles, names), limit=5)
    lines = text.splitlines()
    assert len(lines) == 2 + 5 + 1
    assert "<0.1%" in lines[3]
    assert lines[-1].startswith("(25 more functions")


def test_real_time_and_empty_profiles():
    stats = FakeStats([], NAMES, runtime_us=0, meta={"real_time": "1"})
    text = summary.format_summary(stats)
    assert text.splitlines()[0] == "vmprof: 0 samples, wall-clock time"
    assert "no samples were taken" in text
    only_native = FakeStats([([4], 5, 1, 0)], NAMES)
    assert "no Python function" in summary.format_summary(only_native)


def test_the_runner_frames_are_left_out():
    runner = os.path.join(os.path.dirname(summary.__file__), "__main__.py")
    assert runner.endswith("/vmprof/__main__.py")
    names = {1: "py:_run_code:65:<frozen runpy>", 2: "py:run_program:10:" + runner,
             3: "py:work:3:/src/app.py", 4: "py:_run_code:86:/usr/lib/python3.9/runpy.py",
             5: "py:main:1:/src/__main__.py"}
    text = summary.format_summary(FakeStats([([1, 2, 4, 5, 3], 4, 1, 0)], names))
    rows = [line.split()[2] for line in text.splitlines()[2:]]
    assert rows == ["work", "main"]


def test_files_under_a_directory_are_shown_relative_to_it():
    stats = FakeStats([([1, 2], 1, 1, 0)], NAMES)
    text = summary.format_summary(stats, relative_to="/src/")
    assert text.splitlines()[2].split()[3] == "app.py:10"
    share = summary.FunctionShare("f", "/srcx/a.py", 3, 0, 0)
    assert share.where("/src") == "/srcx/a.py:3"
    assert summary.FunctionShare("f", "<string>", 0, 0, 0).where() == "<string>"


# ---- on real profiles: both ways of counting agree with the oracle ---------

from data_paths import UPSTREAM  # noqa: E402
FIXTURES = ["calc_py39.prof", "calc_py310.prof", "calc_py311.prof", "calc_lines_py311.prof",
            "calc_native_py311.prof", "pool_py311.prof", "pool_realtime_py311.prof",
            "grow_mem_py311.prof", "calc_pypy.prof"]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_shares_match_the_oracle_on_upstream_profiles(fixture):
    with open(os.path.join(UPSTREAM, "oracle_profiles.json")) as f:
        oracle = json.load(f)[fixture]
    stats = vmprof.read_profile(os.path.join(UPSTREAM, "profiles", fixture))
    samples, shares = summary.function_shares(stats)
    assert samples == oracle["samples"]
    rows = {"py:%s:%d:%s" % (s.name, s.line, s.file): (s.self_count, s.total_count)
            for s in shares}
    for name, count in oracle["self_top"]:
        assert rows[name][0] == count, name
    for name, count in oracle["inclusive_top"]:
        if is_runner(name):  # left out where they led the program's stacks
            assert rows.get(name, (0, count))[1] == count, name
        else:
            assert rows[name][1] == count, name


@pytest.mark.parametrize("fixture, clock", [("pool_py311.prof", "CPU time"),
                                            ("pool_realtime_py311.prof", "wall-clock time")])
def test_summary_of_a_multithreaded_profile(fixture, clock):
    stats = vmprof.read_profile(os.path.join(UPSTREAM, "profiles", fixture))
    first = summary.format_summary(stats).splitlines()[0]
    assert first.startswith("vmprof: %d samples" % len(stats))
    assert clock in first and "%d threads" % len(stats.threads) in first
