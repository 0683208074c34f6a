"""Lines mode, memory mode, and names that stay right when code objects die
and their memory is reused."""
import collections

import pytest

from sampler_util import burn_cpu, profile


def lined_work():
    burn_cpu(0.1)  # LINE_A
    return burn_cpu(0.1)  # LINE_B


def _line_of(marker):
    import inspect
    src, first = inspect.getsourcelines(lined_work)
    for k, text in enumerate(src):
        if marker in text:
            return first + k
    raise AssertionError(marker)


def test_lines_mode_records_the_line_of_every_frame():
    p, _, stats = profile(lined_work, period=0.001, lines=True)
    assert p.mode & 0x02
    lines_seen = collections.Counter()
    burn_first = burn_cpu.__code__.co_firstlineno
    burn_last = burn_first + 8
    for entries, _, _ in p.stacks:
        assert len(entries) % 2 == 0
        frames = p.frames(entries)
        for code_id, line in frames:
            assert 0 <= line < 1 << 31
        funcs = [p.func(c) for c, _ in frames]
        if funcs[0] == "burn_cpu":
            assert burn_first <= frames[0][1] <= burn_last
        if "lined_work" in funcs:
            lines_seen[frames[funcs.index("lined_work")][1]] += 1
    a, b = _line_of("LINE_A"), _line_of("LINE_B")
    assert set(lines_seen) <= {a, b}
    # both calls took ~0.1 s: both lines are seen, in similar shares
    assert lines_seen[a] > 10 and lines_seen[b] > 10, (lines_seen, stats)


def grow_memory():
    keep = []
    for _ in range(25):
        keep.append(bytearray(4 << 20))  # touched: zero-filled
        burn_cpu(0.006)
    return len(keep)


def test_memory_mode_records_rss_that_rises_with_allocation():
    p, _, _ = profile(grow_memory, period=0.001, memory=True)
    assert p.mode & 0x01
    assert all(r > 0 for _, _, r in p.stacks)
    rss = [r for e, _, r in p.stacks if "grow_memory" in [p.func(c) for c in e]]
    assert len(rss) > 20
    # 100 MB were allocated in steps while sampling: the RSS rose by most of it
    assert rss[-1] - rss[0] > 50 * 1024, rss
    assert max(rss[:5]) < min(rss[-5:]), rss
    assert max(rss) < 4 * 1024 * 1024  # KiB, not bytes or pages


def test_plain_mode_has_neither_lines_nor_rss():
    p, _, _ = profile(burn_cpu, 0.05, period=0.001)
    assert p.mode == 0
    assert all(r is None for _, _, r in p.stacks)


def _make_function(i):
    ns = {}
    exec("def made_%d(burn):\n    return burn(0.004)\n" % i, {}, ns)
    return ns["made_%d" % i]


def _make_and_run_many():
    order, addresses = [], collections.Counter()
    for i in range(120):
        f = _make_function(i)
        addresses[id(f.__code__)] += 1
        order.append(i)
        f(burn_cpu)
        del f  # the code object dies here; the next one may take its address
    return addresses


def _make_many_and_keep_them():
    kept = [_make_function(i) for i in range(200)]
    for f in kept:
        f(burn_cpu)
    return kept  # alive at disable(): named by the end-of-run pass


def test_functions_still_alive_at_the_end_are_all_named():
    # 200 code objects alive at disable(), spread over the sampled-code set:
    # the end-of-run pass must find every one that was sampled
    p, kept, stats = profile(_make_many_and_keep_them, period=0.001)
    sampled = set()
    for entries, _, _ in p.stacks:
        for e in entries:
            assert e in p.names, "an id without a name"
            f = p.func(e)
            if f.startswith("made_"):
                sampled.add(f)
    assert len(sampled) > 150, len(sampled)
    assert stats["untracked_codes"] == 0


def test_names_stay_right_when_code_objects_die_and_addresses_are_reused():
    p, addresses, stats = profile(_make_and_run_many, period=0.0005)
    # the test means something only if addresses were in fact reused
    assert addresses.most_common(1)[0][1] > 5, addresses
    assert stats["untracked_codes"] == 0
    # one id, one function
    for code_id, names in p.names.items():
        assert len(set(names)) == 1, (hex(code_id), names)
    # samples inside made_<i> name made_<i>: the functions ran in order, so
    # the indexes along the samples never go down
    made = []
    for entries, _, _ in p.stacks:
        for e in entries:
            assert e in p.names, "an id without a name"
            f = p.func(e)
            if f.startswith("made_"):
                made.append(int(f.split("_")[1]))
    assert len(set(made)) > 60
    assert made == sorted(made)


def test_lambdas_and_exec_in_a_loop_keep_distinct_names():
    def run():
        total = 0
        for i in range(60):
            fn = eval("lambda b: b(0.003) + %d" % i)
            total += fn(burn_cpu)
            code = compile("burn(0.003)", "<exec-%d>" % i, "exec")
            exec(code, {"burn": burn_cpu})
        return total

    p, _, _ = profile(run, period=0.0005)
    files = collections.Counter()
    for code_id, names in p.names.items():
        assert len(set(names)) == 1
        files[names[-1].rsplit(":", 1)[1]] += 1
    exec_files = [f for f in files if f.startswith("<exec-")]
    assert len(exec_files) > 20


@pytest.mark.parametrize("lines", [False, True])
def test_every_sampled_id_is_named_in_each_mode(lines):
    p, _, _ = profile(_make_and_run_many, period=0.001, lines=lines)
    for entries, _, _ in p.stacks:
        for code_id, _ in p.frames(entries):
            assert code_id in p.names
