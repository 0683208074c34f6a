"""Everything vmprof._core answers about the fixture files, as JSON: run by
test_pypy_binding.py under CPython (the C extension) and under PyPy (the cffi
binding, src/module/pypy/_core.py) to compare the two.

    python binding_dump.py PROFILES_DIR OUT_DIR     JSON on stdout

Exports are written into OUT_DIR (one file per profile and format), and their
bytes are compared by the test, not dumped.
"""
import json
import os
import sys

from vmprof import _core


def errors(calls):
    """Each call's exception type and message (what the bindings must agree on)."""
    out = []
    for call in calls:
        try:
            call()
            out.append(None)
        except Exception as e:  # noqa: BLE001 (recorded, compared)
            out.append([type(e).__name__, str(e)])
    return out


def dump_profile(path, out_dir):
    p = _core.read_file(path)
    d = {"summary": p.summary(), "meta": p.meta(), "threads": p.threads(),
         "names": sorted(p.names().items()), "n_samples": p.n_samples,
         "stack_count": p.stack_count(), "facts": p.facts(), "funcs": p.funcs(),
         "thread_samples": p.thread_samples()}
    d["stacks"] = [p.stack(i) for i in range(min(p.stack_count(), 40))]
    d["samples"] = [p.sample(i) for i in range(min(p.n_samples, 40))]
    d["sample_ms"] = [p.sample_ms(i) for i in range(min(p.n_samples, 5))]
    d["rss"] = p.rss_series()[:40]
    times = p.time_series()
    d["times"] = times[:40] if times is not None else None
    d["parsed"] = [_core.parse_name(n) for _a, n in d["names"][:40]]
    d["name_of"] = [p.name(a) for a, _n in d["names"][:10]] + [p.name(-1), p.name(1 << 70)]
    if d["stacks"]:
        top = d["stacks"][0][0][0][0]
        prof, total = p.function_profile(top)
        d["function_profile"] = [sorted(prof.items()), total]
    frame_sets = [0, _core.Q_PYTHON_ONLY | _core.Q_MERGE_RECURSION,
                  _core.Q_BY_ADDRESS | _core.Q_KEEP_RUNNER, _core.Q_NO_NATIVE]
    d["trees"] = []
    for frames in frame_sets:
        t = p.query_tree(frames=frames)
        d["trees"].append({"count": t.node_count, "samples": t.samples, "nodes": t.nodes(),
                           "children": [t.children(i) for i in range(t.node_count)],
                           "lines": [sorted(t.lines(i).items()) for i in range(t.node_count)],
                           "meta": [sorted(t.meta(i).items()) for i in range(t.node_count)],
                           "funcs": [t.func(i) for i in range(min(t.node_count, 30))]})
        d["functions_%d" % frames] = p.query_functions(frames=frames)
    t = p.query_tree(max_depth=2, min_fraction=0.05, samples=(0, p.n_samples // 2))
    d["tree_cut"] = t.nodes()
    d["count"] = [p.query_count(), p.query_count(samples=(1, 3)), p.query_count(thread=0),
                  p.query_count(time_ms=(0.0, 5.0))]
    d["neighbours"] = p.query_neighbours(0) if p.funcs() else None
    d["lines"] = errors([lambda: p.query_lines()]) + [
        p.query_lines() if p.summary()["mode"] & _core.MODE_LINES else None]
    d["rss_query"] = p.query_rss(10)
    diff = p.query_diff(p)
    d["diff"] = diff.nodes()[:50] + [diff.samples_b]
    name = os.path.basename(path)
    for fmt in _core.export_formats():
        with open(os.path.join(out_dir, "%s.%s" % (name, fmt)), "wb") as f:
            _core.export(p, fmt, f.fileno(), title="t")
        p.export(fmt, os.path.join(out_dir, "%s.query.%s" % (name, fmt)),
                 frames=_core.Q_PYTHON_ONLY, title="q")
    d["errors"] = errors([
        lambda: p.stack(-1), lambda: p.sample(p.n_samples), lambda: t.node(t.node_count),
        lambda: t.children("x"), lambda: p.query_tree(bogus=1), lambda: p.query_tree(1),
        lambda: p.query_tree(samples=5), lambda: p.query_rss(0),
        lambda: p.query_tree(root_path=[123456]), lambda: _core.export(p, "nope", 1),
        lambda: _core.export(object(), "collapsed", 1), lambda: _core.export(p, "collapsed", -1),
        lambda: p.query_diff(3)])
    return d


def dump_jitlog(path):
    j = _core.jitlog_read_file(path)
    d = {"version": j.version, "word_size": j.word_size, "machine": j.machine,
         "warning": j.warning, "trace_count": j.trace_count,
         "resops": sorted(j.resops().items()), "stitches": j.stitches(),
         "counters": j.counters(), "source_lines": j.source_lines(),
         "merge_point_lines": sorted(j.merge_point_lines())}
    d["traces"] = [j.trace(i) for i in range(j.trace_count)]
    d["stages"] = []
    for i in range(0, j.trace_count, 4):
        for stage in ("noopt", "opt", "asm"):
            ops = [list(op) for op in j.ops(i, stage)]
            for op in ops:
                if op[4] is not None:
                    op[4] = [op[4][0], op[4][1].hex()]
            d["stages"].append([ops, [[k, sorted(v.items())] for k, v in j.merge_points(i, stage)]])
    d["select"] = [j.select(q) for q in ("", "loops", "bridges()", 'func("parse_term") | op("jump")')]
    with open(path, "rb") as f:
        data = f.read()
    cut = _core.jitlog_read_bytes(data[:len(data) // 3])
    d["cut"] = [cut.warning, cut.trace_count]
    d["record"] = _core.jitlog_source_code_record("m.py", [(1, 0, "x = 1"), (2, 4, "y")]).hex()
    d["errors"] = errors([
        lambda: j.select("loops &"), lambda: _core.jitlog_check_query("func(1"),
        lambda: j.trace(j.trace_count), lambda: j.ops(0, "fast"),
        lambda: _core.jitlog_read_bytes(b"not a log"),
        lambda: _core.jitlog_source_code_record("m.py", [(70000, 0, "x")])])
    return d


def main():
    profiles, out_dir = sys.argv[1], sys.argv[2]
    out = {}
    for name in sorted(os.listdir(profiles)):
        path = os.path.join(profiles, name)
        out[name] = dump_jitlog(path) if name.endswith(".jitlog") else dump_profile(path, out_dir)
    out["read_errors"] = errors([lambda: _core.read_bytes(b"\x00" * 9),
                                 lambda: _core.read_file("/nonexistent.prof"),
                                 lambda: _core.read_bytes("text")])
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
