"""Stats and Node: a read profile and its call tree, with the original vmprof
reader's attributes and methods.

Everything is held in C (vmprof._core.Profile and Tree); Python objects are
made only for what is asked.  `Stats.profiles` is a sequence computed per
item, and tree nodes are wrapped one at a time as they are visited.
"""
import datetime
import json
from collections.abc import Sequence

from vmprof import _core

# Names of the frame kinds in Node.meta, as the original's PyPy views spell them.
META_NAMES = {
    _core.FRAME_NATIVE: "native",
    _core.FRAME_JIT: "jit",
    _core.FRAME_GC: "gc",
    _core.FRAME_BLACKHOLE: "blackhole",
    _core.FRAME_ASSEMBLER: "asm",
    _core.FRAME_JIT_TRACING: "tracing",
}
_KIND_LABEL = dict(META_NAMES)
_KIND_LABEL[_core.FRAME_PYTHON] = "unknown"
_PYTHON_KINDS = (_core.FRAME_PYTHON, _core.FRAME_JIT)
_RUNNER_START_UP = 2  # funcs()' runner of the interpreter's start-up (vmprof.h, vmp_func.runner)


# Stack entries of PyPy profiles, as the original reader tagged them: an int
# subclass per frame kind, so that code that checks isinstance() keeps working.


class Frame(int):
    """A stack entry that is not a plain Python code object."""

    kind = None


def _frame_class(name, kind):
    return type(name, (Frame,), {"kind": kind, "__module__": "vmprof.reader"})


NativeCode = _frame_class("NativeCode", _core.FRAME_NATIVE)
JittedCode = _frame_class("JittedCode", _core.FRAME_JIT)
AssemblerCode = _frame_class("AssemblerCode", _core.FRAME_ASSEMBLER)
GCCode = _frame_class("GCCode", _core.FRAME_GC)
BlackholeCode = _frame_class("BlackholeCode", _core.FRAME_BLACKHOLE)
JitTracingCode = _frame_class("JitTracingCode", _core.FRAME_JIT_TRACING)

FRAME_CLASSES = {
    cls.kind: cls
    for cls in (NativeCode, JittedCode, AssemblerCode, GCCode, BlackholeCode, JitTracingCode)
}


class EmptyProfileFile(Exception):
    """The profile has no samples, so it has no call tree."""


def _zone(name):
    if not name:
        return None
    if name.upper() == "UTC":
        return datetime.timezone.utc
    try:
        import zoneinfo
        return zoneinfo.ZoneInfo(name)
    except Exception:  # unknown zone, or Python 3.8: report local time
        return None


def _datetime(t):
    if t is None:
        return None
    sec, usec, zone = t
    try:
        base = datetime.datetime.fromtimestamp(sec, _zone(zone))
    except (OverflowError, OSError, ValueError):
        return None
    return base + datetime.timedelta(microseconds=usec)


class Stats(object):
    """A profile as read by vmprof.read_profile()."""

    def __init__(self, profile, summary=None):
        self._profile = profile
        s = summary if summary is not None else profile.summary()
        self._summary = s
        mode = s["mode"]
        self.version = s["version"]
        self.interp = s["interp"]
        self.period = s["period_usec"] / 1e6
        self.profile_lines = bool(mode & _core.MODE_LINES)
        self.profile_memory = bool(mode & _core.MODE_MEMORY)
        self.profile_native = bool(mode & _core.MODE_NATIVE)
        self.profile_rpython = bool(mode & _core.MODE_RPYTHON)
        self.profile_real_time = bool(mode & _core.MODE_REAL_TIME)
        self.meta = dict(profile.meta())
        self._start = s["start"]
        self._end = s["end"]
        self.start_time = _datetime(s["start"])
        self.end_time = _datetime(s["end"])
        self.complete = s["complete"]
        self.truncated_at = None if s["truncated_at"] < 0 else s["truncated_at"]
        self.max_rss_kb = s["max_rss_kib"] if self.profile_memory else None
        self.threads = profile.threads()
        self.n_samples = s["n_samples"]
        self._adr_dict = None
        self._functions = None
        self._start_up = None
        self._trees = {}
        self._entries = {}  # stack index -> (trace, thread id), bounded

    # ---- what the file holds ------------------------------------------------

    @property
    def adr_dict(self):
        """{address: name} from the VIRTUAL_IP and NATIVE_SYMBOLS records."""
        if self._adr_dict is None:
            self._adr_dict = self._profile.names()
        return self._adr_dict

    @property
    def profiles(self):
        """One (stack root first, 1, thread id, rss) per sample, built on access."""
        return _Profiles(self)

    def __len__(self):
        return self._summary["n_samples"]

    def getmeta(self, key, default=None):
        return self.meta.get(key, default)

    def getargv(self):
        return self.getmeta("argv", "")

    def get_runtime_in_microseconds(self):
        """Wall-clock time from the start record to the trailer; 0 when the
        file lacks either (an old format, or the program died), as the
        original."""
        if self._start is None or self._end is None:
            return 0
        return (self._end[0] - self._start[0]) * 1000000 + (self._end[1] - self._start[1])

    def rss_series(self):
        """Memory mode: the RSS in KiB of each sample, in order."""
        return self._profile.rss_series()

    def sample_times(self):
        """Format 7 (vmprof 0.6): each sample's timestamp in ns, else None."""
        return self._profile.time_series()

    # ---- names ----------------------------------------------------------------

    def _get_name(self, addr, kind=_core.FRAME_PYTHON):
        name = self._profile.name(addr)
        if name is None:
            return "<%s 0x%x>" % (_KIND_LABEL.get(kind, "unknown"), addr)
        return name

    def find_addrs_containing_name(self, part):
        """Addresses whose function (symbol) name contains part, as a
        generator like the original's."""
        for addr, name in self.adr_dict.items():
            lang, func, _line, _file = _core.parse_name(name)
            if lang and part in func:
                yield addr

    def get_name(self, addr):
        """The function (symbol) part of addr's name, or "unknown"."""
        name = self._profile.name(addr)
        if name is None:
            return "unknown"
        return _core.parse_name(name)[1]

    def get_addr_info(self, addr):
        """(lang, symbol, line, file) from addr's name ("py"/"n"), or None."""
        name = self._profile.name(addr)
        if not name:
            return None
        lang, func, line, path = _core.parse_name(name)
        if not lang:
            return None
        return lang, func, str(line), path or ("-" if lang == "n" else "")

    def display(self, no):
        """The names of sample no's stack, root first."""
        return [self._get_name(a, k) for a, _l, k in self._stack_frames(self._sample_stack(no))]

    # ---- aggregates -------------------------------------------------------------

    def _tree(self, thread=None, python_only=False):
        if thread is None:
            index = -1
        else:
            try:
                index = self.threads.index(thread)
            except ValueError:
                raise KeyError("no thread %r in this profile (threads: %r)"
                               % (thread, self.threads)) from None
        key = (index, python_only)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._trees[key] = self._profile.query_tree(
                thread=index, frames=_frames(python_only))
        return tree

    def _is_start_up(self, func):
        """Whether function index func is PyPy's start-up (app_main.py), which
        the Python-only views leave out (vmprof.h: VMP_Q_PYTHON_ONLY)."""
        if self._start_up is None:
            self._start_up = {i for i, f in enumerate(self._profile.funcs())
                              if f[5] == _RUNNER_START_UP}
        return func in self._start_up

    def _function_counts(self, thread=None, python_only=False):
        """[(addr, kind, inclusive, self)] by address, inclusive descending."""
        index = -1 if thread is None else self.threads.index(thread)
        return [(a, k, total, slf) for _f, a, k, slf, total in
                self._profile.query_functions(thread=index, frames=_frames(python_only))]

    @property
    def functions(self):
        """{address: samples with it anywhere in the stack}, once per sample."""
        if self._functions is None:
            self._functions = {a: inc for a, _k, inc, _s in self._function_counts()}
        return self._functions

    def top_profile(self):
        """[(name, samples)] for every function, each counted once per sample."""
        return [(self._get_name(a, k), inc) for a, k, inc, _s in self._function_counts()]

    def get_functions(self, thread=None, python_only=False):
        """[(name, address, inclusive, self)], by inclusive count descending."""
        if thread is not None and thread not in self.threads:
            raise KeyError("no thread %r in this profile (threads: %r)" % (thread, self.threads))
        return [(self._get_name(a, k), a, inc, slf)
                for a, k, inc, slf in self._function_counts(thread, python_only)]

    def get_stacks(self, thread=None):
        """The unique stacks: [(addresses root first, thread id, samples)],
        optionally of one thread id, in order of first appearance."""
        out = []
        for i in range(self._profile.stack_count()):
            frames, thread_index, count = self._profile.stack(i)
            tid = self.threads[thread_index]
            if thread is None or tid == thread:
                out.append((tuple(a for a, _l, _k in frames), tid, count))
        return out

    def function_profile(self, top_function):
        """What runs under top_function (an address): ([(address, samples)]
        ascending, total samples that had top_function)."""
        result, total = self._profile.function_profile(top_function)
        return sorted(result.items(), key=lambda kv: kv[1]), total

    def get_tree(self, thread=None, filter_top=False):
        """The call tree (optionally of one thread id).

        Its root is the stacks' common first frame, or a synthetic root when
        they do not share one; its count is every sample.  filter_top=True
        returns, as the original vmprof's get_tree() did, the first
        "interesting" node below it instead: the first `py:<module>` that is
        not vmprof's own __main__, following the busiest child."""
        if not len(self):
            raise EmptyProfileFile("the profile has no samples")
        top = _top(self, self._tree(thread), thread, False)
        return _filter_top(top) if filter_top else top

    def get_flat_tree(self, thread=None, filter_top=False):
        """get_tree() with non-Python frames folded into their Python parents."""
        if not len(self):
            raise EmptyProfileFile("the profile has no samples")
        top = _top(self, self._tree(thread, True), thread, True)
        return _filter_top(top) if filter_top else top

    # ---- samples ------------------------------------------------------------

    def _sample_stack(self, i):
        return self._profile.sample(i)[0]

    def _stack_frames(self, index):
        return self._profile.stack(index)[0]

    def _stack_entry(self, index):
        entry = self._entries.get(index)
        if entry is None:
            if len(self._entries) >= 65536:
                self._entries.clear()
            entry = self._entries[index] = self._make_entry(index)
        return entry

    def _make_entry(self, index):
        frames, thread_index, _count = self._profile.stack(index)
        trace = []
        if self.profile_lines:
            # as the original: [code, -line, code, -line, ...]
            for addr, line, kind in frames:
                trace.append(_entry(addr, kind))
                trace.append(-line)
        else:
            trace = [_entry(addr, kind) for addr, _line, kind in frames]
        return tuple(trace), self.threads[thread_index]

    def __repr__(self):
        return "<vmprof.Stats: %s, %d samples, %d threads%s>" % (
            self.interp or "?", len(self), len(self.threads),
            "" if self.complete else ", no trailer")


def _frames(python_only):
    """The frames of the original reader's trees: a node per code address,
    recursion merged, the runner of `python -m vmprof` kept (get_tree's
    filter_top skips it, as the original's did)."""
    return (_core.Q_BY_ADDRESS | _core.Q_MERGE_RECURSION | _core.Q_KEEP_RUNNER
            | (_core.Q_PYTHON_ONLY if python_only else 0))


def _entry(addr, kind):
    if kind == _core.FRAME_PYTHON:
        return addr
    return FRAME_CLASSES[kind](addr)


class _Profiles(Sequence):
    """Stats.profiles: computed per item from the C sample sequence."""

    def __init__(self, stats):
        self._stats = stats
        self._n = len(stats)

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("sample index out of range")
        st = self._stats
        stack_index, rss = st._profile.sample(i)
        trace, thread = st._stack_entry(stack_index)
        return (list(trace), 1, thread, rss)


def _top(stats, tree, thread, flat):
    root = Node(stats, tree, 0, thread, flat)
    kids = root.child_nodes
    if len(kids) == 1 and kids[0].count == root.count:
        return kids[0]
    return root


def _filter_top(top):
    node = top
    while True:
        if node.name.startswith("py:<module>") and "vmprof/__main__.py" not in node.name:
            return node
        kids = node.child_nodes
        if not kids:
            return top
        node = kids[0]  # children come busiest first


class Node(object):
    """A call-tree node: addr, name, count (samples through it), self_count,
    children ({addr: Node}), lines ({line: samples}, lines mode) and meta
    ({kind: samples} of non-Python frames below it: jit, gc, blackhole, asm,
    tracing, native)."""

    __slots__ = ("_stats", "_tree", "_i", "_thread", "_flat", "_kids", "addr", "kind",
                 "count", "self_count", "parent_index")

    def __init__(self, stats, tree, index, thread=None, flat=False):
        self._stats = stats
        self._tree = tree
        self._i = index
        self._thread = thread
        self._flat = flat
        self._kids = None
        (_func, self.addr, self.kind, self.count, self.self_count, self.parent_index,
         *_rest) = tree.node(index)

    @property
    def name(self):
        if self._i == 0:
            return "<all stacks>"
        return self._stats._get_name(self.addr, self.kind)

    @property
    def is_python(self):
        return self.kind in _PYTHON_KINDS and self._i != 0

    @property
    def child_nodes(self):
        """The children as a list, highest count first."""
        if self._kids is None:
            self._kids = [Node(self._stats, self._tree, c, self._thread, self._flat)
                          for c in self._tree.children(self._i)]
        return self._kids

    @property
    def children(self):
        """{addr: Node}; when two children share an address (PyPy: the same
        function interpreted and jitted), the busier one."""
        d = {}
        for c in self.child_nodes:
            d.setdefault(c.addr, c)
        return d

    @property
    def lines(self):
        return self._tree.lines(self._i)

    @property
    def meta(self):
        return {META_NAMES.get(k, str(k)): v for k, v in self._tree.meta(self._i).items()}

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.children[key]
        for c in self.child_nodes:
            if key in c.name:
                return c
        raise KeyError(key)

    def walk(self, callback):
        """Calls callback(node) for this node and every descendant, parents
        before children (iteratively: deep trees do not hit the recursion limit)."""
        todo = [self]
        while todo:
            node = todo.pop()
            callback(node)
            todo.extend(reversed(node.child_nodes))

    def _serialize(self):
        out = [self.name, str(self.addr), self.count, self.meta, []]
        todo = [(self, out)]
        while todo:
            node, ser = todo.pop()
            for c in node.child_nodes:
                cs = [c.name, str(c.addr), c.count, c.meta, []]
                ser[4].append(cs)
                todo.append((c, cs))
        return out

    def as_json(self):
        """[name, "addr", count, meta, [children...]] as JSON (addresses as
        strings, which JavaScript cannot hold exactly as numbers)."""
        return json.dumps(self._serialize())

    def flatten(self):
        """The same place in a tree where non-Python entries (native, jit, gc,
        blackhole, assembler) are folded into their Python parents: their
        samples count in the parent's self_count and meta."""
        if self._flat:
            return self
        stats = self._stats
        path = []
        tree = self._tree
        i = self._i
        while i > 0:
            func, addr, kind, _c, _s, parent, *_rest = tree.node(i)
            path.append((func, addr, kind))
            i = parent
        path.reverse()
        flat = stats._tree(self._thread, True)
        node = 0
        last = None
        for func, addr, kind in path:
            if kind not in _PYTHON_KINDS or addr == last or stats._is_start_up(func):
                continue
            last = addr
            node = flat.find_child(node, addr, _core.FRAME_PYTHON)
            if node < 0:  # cannot happen: every path has a flat image
                raise KeyError(addr)
        if node == 0:
            return _top(stats, flat, self._thread, True)
        return Node(stats, flat, node, self._thread, True)

    def __eq__(self, other):
        return (isinstance(other, Node) and self._tree is other._tree
                and self._i == other._i)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((id(self._tree), self._i))

    def __repr__(self):
        kids = ", ".join("(%d, %s)" % (c.count, c.name) for c in self.child_nodes[:8])
        more = ", ..." if len(self.child_nodes) > 8 else ""
        return "<Node: %s (%d, self %d) [%s%s]>" % (self.name, self.count, self.self_count,
                                                    kids, more)
