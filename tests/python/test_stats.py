"""Stats and Node: the original's API over the C tree."""
import json
import os
import struct

import pytest

import vmprof
from vmprof import _core

from data_paths import PROFILES


def words(*ws):
    return struct.pack("<%dq" % len(ws), *ws)


def make(stacks, names, mode=0):
    out = words(0, 3, 0, 990, 0) + bytes([5, 0, 6, mode, 7]) + b"cpython"
    for addr, name in names.items():
        out += bytes([2]) + words(addr, len(name)) + name.encode()
    for entries, thread in stacks:
        out += bytes([1]) + words(1, len(entries), *entries) + words(thread)
    return vmprof.Stats(_core.read_bytes(out))


NAMES = {0x10: "py:main:1:m.py", 0x20: "py:f:2:m.py", 0x30: "py:g:3:m.py",
         0x40: "py:h:4:m.py", 0x51: "n:memcpy:0:-"}
# innermost first, as written
STACKS = ([([0x30, 0x20, 0x10], 1)] * 3 + [([0x20, 0x10], 1)]
          + [([0x30, 0x20, 0x20, 0x10], 1)] + [([0x40, 0x10], 2)]
          + [([0x51, 0x30, 0x51, 0x20, 0x10], 1)])


@pytest.fixture
def stats():
    return make(STACKS, NAMES, mode=_core.MODE_NATIVE)


def test_tree_shape_and_counts(stats):
    top = stats.get_tree()
    assert top.name == "py:main:1:m.py" and top.addr == 0x10 and top.count == 7
    f = top[0x20]
    assert f is top.children[0x20] or f == top.children[0x20]
    assert f.count == 6 and f.self_count == 1  # recursion f,f merged once
    g = f["py:g"]
    assert g.count == 4 and g.self_count == 4
    assert top["py:h"].count == 1
    with pytest.raises(KeyError):
        top["nothing"]
    assert [c.name for c in top.child_nodes] == ["py:f:2:m.py", "py:h:4:m.py"]
    assert "(6, py:f:2:m.py)" in repr(top)


def test_walk_and_json(stats):
    top = stats.get_tree()
    nodes = []
    top.walk(nodes.append)
    assert nodes[0] is top and len(nodes) == 7
    for n in nodes:
        assert n.count == n.self_count + sum(c.count for c in n.child_nodes)
    doc = json.loads(top.as_json())
    assert doc[0] == top.name and doc[1] == str(0x10) and doc[2] == 7
    assert len(doc[4]) == 2 and doc[4][0][0] == "py:f:2:m.py"


def test_flatten_folds_native_frames(stats):
    top = stats.get_tree()
    nat = top[0x20][0x51]  # f -> memcpy -> g -> memcpy
    assert nat.name == "n:memcpy:0:-"
    flat = top.flatten()
    names = []
    flat.walk(lambda n: names.append(n.name))
    assert "n:memcpy:0:-" not in names
    g = flat[0x20][0x30]
    assert g.count == 5 and g.self_count == 5  # the g under memcpy joined
    assert g.meta == {"native": 1}
    # flatten() of an inner node lands on its Python image
    assert nat.flatten() == flat[0x20]


def test_thread_trees(stats):
    t2 = stats.get_tree(thread=2)
    assert t2.count == 1 and list(t2.children) == [0x40]
    with pytest.raises(KeyError):
        stats.get_tree(thread=99)


def test_top_and_function_profile(stats):
    top = dict(stats.top_profile())
    assert top["py:main:1:m.py"] == 7 and top["py:f:2:m.py"] == 6 and top["n:memcpy:0:-"] == 1
    result, total = stats.function_profile(0x20)
    assert total == 6
    assert dict(result) == {0x30: 5, 0x51: 1, 0x20: 1}  # f under f: once
    assert [c for _a, c in result] == sorted(c for _a, c in result)
    assert list(stats.find_addrs_containing_name("g")) == [0x30]
    assert list(stats.find_addrs_containing_name("memcpy")) == [0x51]
    assert stats.get_name(0x30) == "g" and stats.get_name(0x99) == "unknown"
    assert stats.get_addr_info(0x51) == ("n", "memcpy", "0", "-")
    assert stats.functions[0x20] == 6


def test_lines_mode_nodes_and_profiles():
    stats = vmprof.read_profile(os.path.join(PROFILES, "calc_lines_py311.prof"))
    trace = stats.profiles[0][0]
    assert all(isinstance(e, int) for e in trace)
    assert all(e <= 0 for e in trace[1::2]) and all(e > 0 for e in trace[0::2])
    flat = stats.get_tree(filter_top=False).flatten()
    checked = 0
    todo = [flat]
    while todo:
        n = todo.pop()
        todo.extend(n.child_nodes)
        if n.lines:
            assert sum(n.lines.values()) == n.count
            checked += 1
    assert checked > 10


def test_pypy_meta_and_frame_classes():
    from vmprof.reader import Frame
    stats = vmprof.read_profile(os.path.join(PROFILES, "calc_pypy.prof"))
    kinds = {type(e).__name__ for p in stats.profiles for e in p[0] if isinstance(e, Frame)}
    assert "JittedCode" in kinds and "NativeCode" in kinds
    flat = stats.get_flat_tree()
    total = {}
    flat.walk(lambda n: [total.__setitem__(k, total.get(k, 0) + v) for k, v in n.meta.items()])
    assert total.get("jit", 0) > 0 and total.get("native", 0) > 0
    assert flat.count == len(stats.profiles)


def test_memory_series():
    stats = vmprof.read_profile(os.path.join(PROFILES, "grow_mem_py311.prof"))
    series = stats.rss_series()
    assert len(series) == len(stats.profiles) and max(series) == stats.max_rss_kb
    assert series == [p[3] for p in stats.profiles]


def test_empty_profile_has_no_tree():
    stats = make([], {})
    assert len(stats.profiles) == 0 and stats.top_profile() == []
    with pytest.raises(vmprof.stats.EmptyProfileFile):
        stats.get_tree()


def test_unique_stacks(stats):
    stacks = stats.get_stacks()
    assert sum(c for _s, _t, c in stacks) == len(stats.profiles)
    assert ((0x10, 0x20, 0x30), 1, 3) in stacks
    assert ((0x10, 0x20, 0x20, 0x30), 1, 1) in stacks  # recursion kept as written
    assert stats.get_stacks(thread=2) == [((0x10, 0x40), 2, 1)]


@pytest.mark.cpython_only  # sys.getallocatedblocks is CPython's
def test_reading_many_samples_makes_few_python_objects():
    """200,000 samples: read_profile and get_tree allocate a bounded number of
    Python objects (the samples stay in C), and profiles[i] works on demand."""
    import sys
    record = {}
    for k in range(50):
        entries = [0x1000 + 16 * (k % 7), 0x2000 + 16 * k] + [0x3000 + 16 * i for i in range(20)]
        record[k] = bytes([1]) + words(1, len(entries), *entries) + words(1 + k % 3)
    body = b"".join(record[(i * 7919) % 50] for i in range(200000))
    data = words(0, 3, 0, 990, 0) + bytes([5, 0, 6, 0, 7]) + b"cpython" + body
    before = sys.getallocatedblocks()
    stats = vmprof.Stats(_core.read_bytes(data))
    tree = stats.get_tree()
    after = sys.getallocatedblocks()
    assert after - before < 5000
    assert len(stats.profiles) == 200000 and tree.count == 200000
    assert stats.profiles[199999][2] == 1 + ((199999 * 7919) % 50) % 3


def test_get_tree_filters_to_the_program_module():
    """filter_top, as the original: the tree starts at the first py:<module>
    that is not vmprof's own __main__."""
    names = {0x10: "py:_run_module_as_main:1:<frozen runpy>",
             0x20: "py:<module>:1:/x/vmprof/__main__.py",
             0x30: "py:<module>:1:prog.py", 0x40: "py:work:3:prog.py"}
    stats = make([([0x40, 0x30, 0x20, 0x10], 1)] * 3 + [([0x20, 0x10], 1)], names)
    top = stats.get_tree(filter_top=True)
    assert top.name == "py:<module>:1:prog.py" and top.count == 3
    root = stats.get_tree()
    assert root.addr == 0x10 and root.count == 4
    assert stats.get_flat_tree(filter_top=True).name == "py:<module>:1:prog.py"
    # no such module: the root
    assert make([([0x40], 1)], names).get_tree(filter_top=True).name == "py:work:3:prog.py"


def test_python_only_lists_the_program_not_pypys_start_up():
    """A measure() block on PyPy: its stacks start in PyPy's start-up
    (app_main.py, Python code of the interpreter's), which get_functions
    (python_only=True) listed before the program's <module>, where CPython
    (whose start-up is native) lists the program's first.  Python only, it
    is left out on both; every function, it stays (as the original's).
    Functions of the same count came in address order, which on PyPy is
    the order the code was made in (fib before <module>): a caller now
    comes before its callee."""
    names = {0x10: "py:entry_point:1126:<builtin>/app_main.py",
             0x20: "py:run_toplevel:131:<builtin>/app_main.py",
             0x30: "py:fib:2:api.py", 0x40: "py:<module>:1:api.py"}
    stats = make([([0x30, 0x30, 0x40, 0x20, 0x10], 1)] * 3, names)
    listed = [name for name, _a, _i, _s in stats.get_functions(python_only=True)]
    assert listed == ["py:<module>:1:api.py", "py:fib:2:api.py"], listed
    assert stats.get_flat_tree().name == "py:<module>:1:api.py"
    every = [name for name, _a, _i, _s in stats.get_functions()]
    assert "py:entry_point:1126:<builtin>/app_main.py" in every, every
    assert stats.get_tree().name == "py:entry_point:1126:<builtin>/app_main.py"
