"""Property tests: random profiles written byte by byte here, read by the C
reader, compared with a plain Python model of what the reader must derive."""
import collections
import struct

from hypothesis import given, settings, strategies as st

import vmprof
from vmprof import _core

ADDRS = [0x100 + 16 * i for i in range(6)] + [0x901, 0x911]  # two native (odd)


def encode(samples, word, mode):
    fmt = "<q" if word == 8 else "<i"
    w = lambda *vs: b"".join(struct.pack(fmt, v) for v in vs)
    out = w(0, 3, 0, 990, 0) + bytes([5, 0, 6, mode, 7]) + b"cpython"
    for stack, thread, line in samples:
        entries = []
        for addr in reversed(stack):  # innermost first
            entries += [line, addr] if mode & 2 else [addr]
        out += bytes([1]) + w(1, len(entries), *entries) + w(thread)
        if mode & 1:
            out += w(line * 10)
    for addr in ADDRS:
        name = ("n:nat%x:0:-" if addr & 1 else "py:f%x:1:m.py") % addr
        out += bytes([2 if not addr & 1 else 8]) + w(addr, len(name)) + name.encode()
    return out


def merged(stack):
    out = []
    for a in stack:
        if not out or out[-1] != a:
            out.append(a)
    return out


samples_st = st.lists(
    st.tuples(st.lists(st.sampled_from(ADDRS), min_size=1, max_size=12),
              st.sampled_from([7, 8, 9]), st.integers(1, 50)),
    min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(samples=samples_st, word=st.sampled_from([4, 8]), mode=st.sampled_from([0, 1, 2, 3]))
def test_reader_matches_model(samples, word, mode):
    stats = vmprof.Stats(_core.read_bytes(encode(samples, word, mode)))
    assert len(stats.profiles) == len(samples)
    for (stack, thread, line), got in zip(samples, stats.profiles):
        trace, count, tid, rss = got
        if mode & 2:
            assert trace[0::2] == stack and trace[1::2] == [-line] * len(stack)
        else:
            assert trace == stack
        assert (count, tid, rss) == (1, thread, line * 10 if mode & 1 else 0)
    assert stats.threads == list(dict.fromkeys(t for _s, t, _l in samples))

    # call tree: consecutive duplicates merged, counts through each path
    model = collections.Counter()
    selfc = collections.Counter()
    for stack, _t, _l in samples:
        m = merged(stack)
        for i in range(1, len(m) + 1):
            model[tuple(m[:i])] += 1
        selfc[tuple(m)] += 1
    root = stats.get_tree()
    got, got_self = collections.Counter(), collections.Counter()

    def visit(node, path):
        for c in node.child_nodes:
            p = path + (c.addr,)
            got[p] += c.count
            got_self[p] += c.self_count
            visit(c, p)

    if root.name == "<all stacks>":
        visit(root, ())
    else:
        got[(root.addr,)] = root.count
        got_self[(root.addr,)] = root.self_count
        visit(root, (root.addr,))
    assert got == model
    assert +got_self == +selfc

    # per-function totals: once per sample, and the innermost frame
    inc, slf = collections.Counter(), collections.Counter()
    for stack, _t, _l in samples:
        inc.update(set(stack))
        slf[stack[-1]] += 1
    funcs = {a: (i, s) for _n, a, i, s in stats.get_functions()}
    assert {a: v[0] for a, v in funcs.items()} == dict(inc)
    assert {a: v[1] for a, v in funcs.items() if v[1]} == dict(slf)

    # the Python-only view: native frames folded away
    pinc, pself = collections.Counter(), collections.Counter()
    for stack, _t, _l in samples:
        py = [a for a in stack if not a & 1]
        pinc.update(set(py))
        if py:
            pself[py[-1]] += 1
    pfuncs = {a: (i, s) for _n, a, i, s in stats.get_functions(python_only=True)}
    assert {a: v[0] for a, v in pfuncs.items()} == dict(pinc)
    assert {a: v[1] for a, v in pfuncs.items() if v[1]} == dict(pself)

    # lines mode: each node's line counts add up to its count
    if mode & 2:
        todo = list(root.child_nodes) + ([root] if root.addr else [])
        while todo:
            n = todo.pop()
            todo.extend(n.child_nodes)
            assert sum(n.lines.values()) == n.count
