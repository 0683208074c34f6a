"""With native frames on, hiding the interpreter's own frames (vmprofshow
--hide-interpreter, VMP_Q_HIDE_INTERPRETER, the server's interp=0) leaves the
program's Python frames and the C functions the program called, in call
order, and nothing of CPython's call machinery.

Real call shapes (plain calls, keywords, methods, a decorator, a callable
object, class instantiation, sorted and list.sort with key=, sum over a
generator, map, with blocks, an exception caught) are profiled with native
frames on; the reader's tree with the interpreter hidden is then checked in
every sample: between two Python frames of this file stand exactly the C
functions the caller called (none for a Python-to-Python call), and no frame
of the call machinery CPython 3.8-3.13 puts between a caller and a callee
(found by profiling these shapes on each version) is left anywhere.
"""
import os
import sys
import time

import pytest

import vmprof

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or sys.implementation.name != "cpython",
    reason="native frames are recorded on Linux; the machinery is CPython's")

THIS_FILE = os.path.basename(__file__)
V = sys.version_info[:2]


def work(n):
    x = 0
    for i in range(n):
        x += i
    return x


class Thing:
    def __init__(self, n):
        self.v = work(n)

    def method(self, n):
        return work(n)

    def __call__(self, n):
        return work(n)

    def __eq__(self, other):
        return work(20) >= 0

    __hash__ = None


class Block:
    def __enter__(self):
        work(30)
        return self

    def __exit__(self, *exc):
        work(30)
        return True


def decorate(f):
    def wrapper(n):
        return f(n)
    return wrapper


@decorate
def decorated(n):
    return work(n)


def key(v):
    return work(5) - v


def generator(n):
    for _ in range(n):
        yield work(10)


DATA = list(range(40))
THING = Thing(1)


def call_plain():
    return work(60)


def call_kwargs():
    return work(n=60)


def call_method():
    return THING.method(60)


def call_object():
    return THING(60)


def call_decorated():
    return decorated(60)


def make_object():
    return Thing(60)


def compare():
    return THING == THING


def sort_with_key():
    return sorted(DATA, key=key)


def sort_in_place():
    DATA.sort(key=key)


def sum_generator():
    return sum(generator(6))


def map_work():
    return list(map(work, DATA[:6]))


def with_block():
    with Block():
        raise ValueError("suppressed by __exit__")


def raise_catch():
    try:
        raise KeyError(1)
    except KeyError:
        return work(60)


SHAPES = [call_plain, call_kwargs, call_method, call_object, call_decorated, make_object,
          compare, sort_with_key, sort_in_place, sum_generator, map_work, with_block,
          raise_catch]


def driver(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        for shape in SHAPES:
            shape()


# list(iterable): the list type called, the iterable drained
LIST = (("type_call", "list___init__", "list_extend") if V < (3, 9)
        else ("list_vectorcall", "list_extend") if V < (3, 13)
        else ("list_vectorcall", "_list_extend"))

# (Python caller, Python callee) -> the C functions that may stand between
# them, outermost first: what the caller's code called.
BETWEEN = {
    ("call_plain", "work"): {()},
    ("call_kwargs", "work"): {()},
    ("call_method", "method"): {()},
    ("call_object", "__call__"): {()},
    ("call_decorated", "wrapper"): {()},
    ("wrapper", "decorated"): {()},
    # 3.13 specialises the instantiation of a class with a Python __init__
    # (CALL_ALLOC_AND_ENTER_INIT): no type_call once warm
    ("make_object", "__init__"): {("type_call",)} | ({()} if V >= (3, 13) else set()),
    ("compare", "__eq__"): {("PyObject_RichCompare",)},
    ("sort_with_key", "key"): {("builtin_sorted", "list_sort", "list_sort_impl")},
    ("sort_in_place", "key"): {("list_sort", "list_sort_impl")},
    ("sum_generator", "generator"): {("builtin_sum", "PyIter_Next", "gen_iternext")},
    ("map_work", "work"): {LIST + ("map_next",)},
    ("with_block", "__enter__"): {()},
    ("with_block", "__exit__"): {()},
    ("raise_catch", "work"): {()},
}
for _callee in ("method", "__call__", "decorated", "__init__", "__eq__", "key", "generator",
                "__enter__", "__exit__"):
    BETWEEN[(_callee, "work")] = {()}
for _shape in SHAPES:
    BETWEEN[("driver", _shape.__name__)] = {()}

# CPython's call machinery seen between a caller and its callee on 3.8-3.13
# with these shapes (frames pushed, popped and cleared, arguments bound,
# results checked, calls dispatched, slots of Python classes): none may be
# left where the interpreter is hidden.
MACHINERY = {
    "_PyEval_EvalFrameDefault", "_PyEval_EvalCode", "_PyEval_EvalCodeWithName", "_PyEval_Vector",
    "_PyEvalFramePushAndInit", "_PyEvalFramePushAndInit_Ex", "_PyEvalFrameClearAndPop",
    "initialize_locals", "_PyThreadState_PushFrame", "_PyThreadState_PopFrame",
    "_Py_CheckFunctionResult", "_PyFrame_New_NoTrack", "frame_dealloc", "_PyFrame_Clear",
    "_PyFrame_ClearExceptCode", "function_code_fastcall", "_PyFunction_Vectorcall",
    "_PyFunction_FastCallDict", "_PyFunction_FastCallKeywords", "_PyObject_VectorcallTstate",
    "PyObject_Vectorcall", "_PyObject_MakeTpCall", "call_function", "do_call_core",
    "method_vectorcall", "object_vacall", "PyObject_CallFunctionObjArgs", "PyObject_CallOneArg",
    "_PyObject_Call_Prepend", "_PyObject_FastCall_Prepend", "_PyStack_AsDict",
    "slot_tp_call", "slot_tp_init", "slot_tp_richcompare", "gen_send_ex", "gen_send_ex2",
    "cfunction_vectorcall_FASTCALL_KEYWORDS", "method_vectorcall_FASTCALL_KEYWORDS",
}


def base(name):
    """A native symbol without its compiler suffix (.isra.0, .cold)."""
    return name.split(".")[0]


def check_path(path):
    """What is wrong with one sample's path (the view's frames, outermost
    first, as (is_python_of_this_file, name)), or None."""
    try:
        top = next(i for i, (ours, f) in enumerate(path) if ours and f == "driver")
    except StopIteration:
        return None
    path = path[top:]
    left = sorted({f for ours, f in path if not ours and base(f) in MACHINERY})
    if left:
        return "machinery left: %s" % ", ".join(left)
    py = [i for i, (ours, _) in enumerate(path) if ours]
    for a, b in zip(py, py[1:]):
        pair = (path[a][1], path[b][1])
        between = tuple(base(f) for _, f in path[a + 1:b])
        if between not in BETWEEN.get(pair, ()):
            return "%s -> %s through %s" % (pair[0], pair[1], " / ".join(between) or "nothing")
    return None


def sample_paths(path, hide):
    """[(path, samples)]: every path of the reader's tree that samples end
    at, with the interpreter's frames hidden or not."""
    from vmprof import _core
    p = _core.read_file(path)
    t = p.query_tree(frames=_core.Q_HIDE_INTERPRETER if hide else 0)
    rows = t.nodes()
    labels = {}
    for i in range(t.node_count):
        f = t.func(i)
        if f is not None:
            name, file, _, kind = f[:4]
            labels[i] = (kind == _core.FRAME_PYTHON and os.path.basename(file) == THIS_FILE, name)
    out = []
    for i, row in enumerate(rows):
        if row[4] <= 0:  # self: no sample ends here
            continue
        frames, n = [], i
        while n != -1:
            if n in labels:
                frames.append(labels[n])
            n = rows[n][5]
        out.append((frames[::-1], row[4]))
    return out


@pytest.fixture(scope="module")
def native_profile(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("interp") / "shapes.prof")
    driver(0.05)  # warm: 3.11+ specialise, the writer learns the unwind rules
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        vmprof.enable(fd, period=0.0005, native=True)
        try:
            driver(2.0)
        finally:
            vmprof.disable()
    finally:
        os.close(fd)
    return path


def test_hidden_interpreter_leaves_the_program_and_the_c_it_called(native_profile):
    paths = sample_paths(native_profile, hide=True)
    checked = 0
    seen = set()
    bad = {}
    for frames, n in paths:
        if not any(ours and f == "driver" for ours, f in frames):
            continue
        checked += n
        why = check_path(frames)
        if why:
            bad[why] = bad.get(why, 0) + n
        py = [f for ours, f in frames if ours]
        seen.update(zip(py, py[1:]))
    assert checked >= 1000, "only %d samples of the driver" % checked
    assert not bad, "%d of %d samples: %s" % (
        sum(bad.values()), checked, sorted(bad.items(), key=lambda kv: -kv[1])[:8])
    # The C functions between a caller and its callee were really seen (else
    # the check proves nothing about them).
    for pair in [("sort_with_key", "key"), ("sort_in_place", "key"),
                 ("sum_generator", "generator"), ("map_work", "work"), ("compare", "__eq__"),
                 ("call_plain", "work"), ("call_method", "method"),
                 ("call_decorated", "wrapper")]:
        assert pair in seen, (pair, sorted(seen))


def test_the_full_view_still_has_the_machinery(native_profile):
    # Hiding is a view: the profile and the unhidden view keep every frame.
    names = {base(f) for frames, _ in sample_paths(native_profile, hide=False)
             for ours, f in frames if not ours}
    assert "_PyEval_EvalFrameDefault" in names
    assert names & (MACHINERY - {"_PyEval_EvalFrameDefault"}), sorted(names)[:50]


def test_exact_paths_of_known_shapes(native_profile):
    # Samples in work() under each shape: the path from the shape down is
    # exactly the program's frames and the C it called.
    expected = {
        "sort_with_key": ["sort_with_key", "builtin_sorted", "list_sort", "list_sort_impl",
                          "key", "work"],
        "sum_generator": ["sum_generator", "builtin_sum", "PyIter_Next", "gen_iternext",
                          "generator", "work"],
        "call_decorated": ["call_decorated", "wrapper", "decorated", "work"],
        "map_work": ["map_work"] + list(LIST) + ["map_next", "work"],
    }
    found = {k: 0 for k in expected}
    for frames, n in sample_paths(native_profile, hide=True):
        names = [base(f) for _, f in frames]
        ours = [o for o, _ in frames]
        if "driver" not in names:
            continue
        d = names.index("driver")
        for shape, want in expected.items():
            if names[d + 1:d + 2] != [shape] or "work" not in names[d + 1:]:
                continue
            w = d + 1 + names[d + 1:].index("work")
            if ours[w]:
                assert names[d + 1:w + 1] == want, (shape, names[d:])
                found[shape] += n
    assert all(found.values()), found
