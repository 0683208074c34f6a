"""Native mode puts every frame where it stood (issue 9, "native stacks in the
right order").

Generator-heavy code (sum and join over generator expressions, sorted with a
key) makes the interpreter enter and leave its evaluation loop from C all the
time; each C activation of the loop must get exactly its own Python frames.
The profile is read back with sampler_util's pure-Python decoder, not with
the C reader under test, and every sample of the workload is checked:

- the Python frames inside `workload` follow the program's own call graph,
  and no frame of the test's own callers stands inside `workload`;
- each C function the workload calls stands between its Python caller and
  its Python callee (`builtin_sum` between `gen_sum` and its generator
  expression, and so on).
"""
import sys
import time

import pytest

import sampler_util

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="native frames are recorded on Linux")


def gen_sum(n):
    return sum(x * x for x in range(n))


def gen_join(n):
    return ",".join(str(x) for x in range(n))


def sort_key(data):
    return sorted(data, key=lambda v: -v)


def nested_gen(n):
    # A generator consumed by a generator consumed by sum: C activations of
    # the evaluation loop three deep.
    return sum(y for y in (x + 1 for x in range(n)))


def workload(seconds):
    data = list(range(300))
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        gen_sum(300)
        gen_join(100)
        sort_key(data)
        nested_gen(200)


THIS_FILE = "test_native_order.py"

# Python caller -> Python callees, inside workload.
CALLS = {
    "workload": {"gen_sum", "gen_join", "sort_key", "nested_gen"},
    "gen_sum": {"<genexpr>"},
    "gen_join": {"<genexpr>"},
    "sort_key": {"<lambda>"},
    "nested_gen": {"<genexpr>"},
    "<genexpr>": {"<genexpr>"},  # nested_gen's generators
    "<lambda>": set(),
}

# C functions the workload's Python code calls: name -> (its Python caller,
# the Python callees it may call back).
C_CALLS = {
    "builtin_sum": ({"gen_sum", "nested_gen"}, {"<genexpr>"}),
    "builtin_sorted": ({"sort_key"}, {"<lambda>"}),
    "unicode_join": ({"gen_join"}, {"<genexpr>"}),
    "PyUnicode_Join": ({"gen_join"}, {"<genexpr>"}),
}


def c_role(name):
    """The C_CALLS key a native symbol stands for, or None (clinic and
    compilers add suffixes: builtin_sum_impl, unicode_join.isra.0)."""
    for base in C_CALLS:
        if name == base or name.startswith(base + "_impl") or name.startswith(base + "."):
            return base
    return None


def misplaced(names):
    """Why the sample (names outermost first, 'py:' and 'n:' kinds) is
    wrong, or None."""
    # Python functions of this file count by name; others (pytest's own
    # lambdas and generator expressions) stand for themselves.
    funcs = []
    for n in names:
        kind, func = n.split(":")[:2]
        if kind == "py" and not n.endswith(THIS_FILE):
            func = "(%s)" % func
        funcs.append((kind, func))
    try:
        top = next(i for i, (k, f) in enumerate(funcs) if k == "py" and f == "workload")
    except StopIteration:
        return None  # not a sample of the workload
    py = [(i, f) for i, (k, f) in enumerate(funcs) if k == "py"]
    # Every Python frame outside workload is one of its callers; every one
    # inside follows the call graph.
    prev = None
    for i, f in py:
        if i < top:
            if f in CALLS and f != "workload":
                return "%s outside workload" % f
            continue
        if prev is not None and f not in CALLS.get(prev, ()):
            return "%s called by %s" % (f, prev)
        prev = f
    # Every C function of the workload between its caller and its callee.
    for i, (k, f) in enumerate(funcs):
        role = c_role(f) if k == "n" else None
        if not role:
            continue
        callers, callees = C_CALLS[role]
        outer = next((g for j, g in reversed(py) if j < i), None)
        inner = next((g for j, g in py if j > i), None)
        if outer not in callers:
            return "%s called by %s" % (f, outer)
        if inner is not None and inner not in callees:
            return "%s calls %s" % (f, inner)
    return None


def test_every_sample_of_generator_heavy_code_is_in_call_order():
    p, _, _ = sampler_util.profile(workload, 1.2, period=0.0002, native=True)
    assert p.mode & 0x04, "not a native profile"
    checked = with_c = 0
    bad = []
    for entries, _, _ in p.stacks:
        names = [p.name(e) for e, _ in p.frames(entries)][::-1]
        if not any(n.startswith("py:workload:") for n in names):
            continue
        checked += 1
        with_c += any(n.startswith("n:") and c_role(n.split(":")[1]) for n in names)
        why = misplaced(names)
        if why:
            bad.append((why, [n.split(":")[1] for n in names]))
    assert checked >= 1000, "only %d samples of the workload" % checked
    # The C functions are really seen (else the check proves nothing).
    assert with_c >= checked // 4, (with_c, checked)
    assert not bad, "%d of %d samples misplaced; first: %s" % (len(bad), checked, bad[:3])
