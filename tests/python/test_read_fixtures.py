"""Every upstream fixture reads back exactly what oracle_profiles.json says."""
import collections
import json
import os

import pytest

import vmprof

from data_paths import UPSTREAM, PROFILES, VMPROF06
# Both sets: the upstream fixtures (format 6, incl. PyPy) and files written by
# vmprof 0.6.0 (format 7, a timestamp per sample), each with its oracle.
SETS = [PROFILES, VMPROF06]
ORACLE = {}
PATHS = {}
for folder, oracle in ((SETS[0], os.path.join(UPSTREAM, "oracle_profiles.json")),
                       (SETS[1], os.path.join(SETS[1], "oracle_profiles.json"))):
    with open(oracle) as f:
        for name, expected in json.load(f).items():
            ORACLE[name] = expected
            PATHS[name] = os.path.join(folder, name)


def py_names_per_sample(stats):
    """For each sample: (its py: names, innermost py: name), from the lazy
    profiles sequence and adr_dict, as the oracle README defines them."""
    names = stats.adr_dict
    for trace, _count, _thread, _rss in stats.profiles:
        pys = [names[e] for e in trace if e in names and names[e].startswith("py:")]
        yield pys, (pys[-1] if pys else None)


def assert_top(ours, oracle_list):
    for name, count in oracle_list:
        assert ours.get(name) == count, name
    top = sorted(ours.items(), key=lambda kv: (-kv[1], kv[0]))[:len(oracle_list)]
    assert [c for _n, c in top] == [c for _n, c in oracle_list]


@pytest.fixture(params=sorted(ORACLE), scope="module")
def case(request):
    name = request.param
    return name, vmprof.read_profile(PATHS[name]), ORACLE[name]


def test_summary(case):
    _name, stats, o = case
    assert len(stats.profiles) == o["samples"]
    assert len(stats.threads) == o["threads"]
    assert len({p[2] for p in stats.profiles}) == o["threads"]
    assert stats.interp == o["interp"]
    assert stats.meta == o["meta"]
    assert stats.profile_lines == o["profile_lines"]
    assert stats.profile_memory == o["profile_memory"]
    assert stats.max_rss_kb == o["max_rss_kb"]
    if o["max_rss_kb"] is not None:
        assert max(p[3] for p in stats.profiles) == o["max_rss_kb"]
    assert stats.complete and stats.truncated_at is None


def test_top_lists_from_samples(case):
    _name, stats, o = case
    inclusive, self_ = collections.Counter(), collections.Counter()
    for pys, inner in py_names_per_sample(stats):
        inclusive.update(set(pys))
        if inner:
            self_[inner] += 1
    assert_top(inclusive, o["inclusive_top"])
    assert_top(self_, o["self_top"])


def test_top_lists_from_c_aggregates(case):
    """The C function totals (Python-only view) give the same figures."""
    _name, stats, o = case
    funcs = stats.get_functions(python_only=True)
    self_ = collections.Counter()
    inclusive = collections.Counter()
    addrs_per_name = collections.Counter()
    for name, _addr, inc, slf in funcs:
        if name.startswith("py:"):
            self_[name] += slf
            inclusive[name] += inc
            addrs_per_name[name] += 1
    assert_top(self_, o["self_top"])
    # inclusive per address sums to per name only where a name has one address
    for name, count in o["inclusive_top"]:
        if addrs_per_name[name] == 1:
            assert inclusive[name] == count, name


def test_tree_totals(case):
    _name, stats, o = case
    tree = stats.get_tree(filter_top=False)
    assert tree.count == o["samples"]
    flat = tree.flatten()
    assert flat.count == o["samples"]
    seen = []
    flat.walk(seen.append)
    assert all(n.is_python for n in seen if n.addr)
    # self counts of the flat tree are the innermost Python frames
    per_name = collections.Counter()
    for n in seen:
        if n.self_count:
            per_name[n.name] += n.self_count
    for name, count in o["self_top"]:
        assert per_name[name] == count, name


def test_version_7_sample_times():
    stats = vmprof.read_profile(PATHS["v7_mem.prof"])
    assert stats.version == 7
    times = stats.sample_times()
    assert len(times) == len(stats.profiles) and all(t > 0 for t in times)
    assert times == sorted(times)  # one thread: the clock only moves forward
    assert vmprof.read_profile(PATHS["calc_py311.prof"]).sample_times() is None
