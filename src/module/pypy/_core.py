"""vmprof._core on PyPy: the reading side of the C extension (src/module/*.c),
the same functions, types and results, over the cffi module
vmprof._vmprof_cffi (src/module/pypy/cffi_build.py).

PyPy runs cffi calls as direct machine code; the extension would run there
through PyPy's C-API emulation, which converts every argument and result and
makes each small call cost microseconds (bench/RESULTS.md, pypy section).
PyPy samples with its own _vmprof, so the sampler's functions here only say
that this build has none, as the extension's sampler-less build does.

Each function below mirrors the one of the same name in src/module: its
arguments, results and errors (messages included) are the extension's.
"""
import os

from vmprof._vmprof_cffi import ffi, lib


class VMProfError(Exception):
    """A vmprof operation failed; the message says why and what to do."""


VMProfError.__module__ = "vmprof"

FRAME_PYTHON = lib.VMP_FRAME_PYTHON
FRAME_NATIVE = lib.VMP_FRAME_NATIVE
FRAME_JIT = lib.VMP_FRAME_JIT
FRAME_GC = lib.VMP_FRAME_GC
FRAME_BLACKHOLE = lib.VMP_FRAME_BLACKHOLE
FRAME_ASSEMBLER = lib.VMP_FRAME_ASSEMBLER
FRAME_JIT_TRACING = lib.VMP_FRAME_JIT_TRACING
MODE_MEMORY = lib.VMP_MODE_MEMORY
MODE_LINES = lib.VMP_MODE_LINES
MODE_NATIVE = lib.VMP_MODE_NATIVE
MODE_RPYTHON = lib.VMP_MODE_RPYTHON
MODE_REAL_TIME = lib.VMP_MODE_REAL_TIME
Q_PYTHON_ONLY = lib.VMP_Q_PYTHON_ONLY
Q_NO_NATIVE = lib.VMP_Q_NO_NATIVE
Q_HIDE_INTERPRETER = lib.VMP_Q_HIDE_INTERPRETER
Q_MERGE_RECURSION = lib.VMP_Q_MERGE_RECURSION
Q_LINES = lib.VMP_Q_LINES
Q_KEEP_RUNNER = lib.VMP_Q_KEEP_RUNNER
Q_BY_ADDRESS = lib.VMP_Q_BY_ADDRESS

_NONE = 0xFFFFFFFF  # VMP_NONE, VJL_NONE
_U64 = (1 << 64) - 1


def _text(ptr, n=None):
    """Text from the C library, invalid UTF-8 as U+FFFD (vmp_module_text)."""
    raw = ffi.string(ptr) if n is None else ffi.unpack(ffi.cast("char *", ptr), n)
    return raw.decode("utf-8", "replace")


def _error(err):
    return VMProfError(_text(err.message))


def _index(i):
    """An index argument: an int (TypeError otherwise, as PyLong_AsSsize_t)."""
    if isinstance(i, bool) or not isinstance(i, int):
        try:
            return i.__index__()
        except AttributeError:
            raise TypeError("an integer is required") from None
    return i


def _read_options(strict):
    return ffi.new("vmp_read_options *", {"strict": 1 if strict else 0})


def _wrap_profile(p, err):
    if p == ffi.NULL:
        raise _error(err)
    return Profile(ffi.gc(p, lib.vmp_profile_free))


# ---- reading ---------------------------------------------------------------------

def read_file(path, strict=False):
    """read_file(path, strict=False) -> Profile"""
    err = ffi.new("vmp_error *")
    return _wrap_profile(lib.vmp_profile_read_file(os.fsencode(path), _read_options(strict), err),
                         err)


def read_fd(fd, strict=False):
    """read_fd(fd, strict=False) -> Profile (reads from the position to the end)"""
    err = ffi.new("vmp_error *")
    return _wrap_profile(lib.vmp_profile_read_fd(_index(fd), _read_options(strict), err), err)


def read_bytes(data, strict=False):
    """read_bytes(data, strict=False) -> Profile"""
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    buf = ffi.from_buffer(data)
    err = ffi.new("vmp_error *")
    return _wrap_profile(lib.vmp_profile_read_memory(buf, len(buf), _read_options(strict), err),
                         err)


def parse_name(text):
    """parse_name(text) -> (lang, function, line, file): "py:f:3:m.py" ->
    ("py", "f", 3, "m.py"); lang "" when the text has neither prefix."""
    if not isinstance(text, str):
        raise TypeError("bad argument type for built-in operation")
    raw = text.encode("utf-8", "surrogatepass")
    parts = ffi.new("vmp_name_parts *")
    lib.vmp_name_parse(raw, len(raw), parts)
    lang = "py" if parts.lang == lib.VMP_NAME_PYTHON else "n" if parts.lang == lib.VMP_NAME_NATIVE else ""
    return (lang, _text(parts.func, parts.func_len), parts.line,
            _text(parts.file, parts.file_len))


# ---- queries ---------------------------------------------------------------------

_QUERY_KEYS = ("thread", "samples", "time_ms", "frames", "max_depth", "min_fraction", "root_path")


def _pair(v, what):
    try:
        a, b = v
        return float(a), float(b)
    except (TypeError, ValueError):
        raise TypeError("%s must be a (begin, end) pair" % what) from None


def _query(kw, fn):
    """A vmp_query from the query keywords (and what must stay alive with it);
    any other keyword is a TypeError, as the extension's parse_query."""
    q = ffi.new("vmp_query *")
    keep = None
    v = kw.get("thread")
    if v is not None:
        t = _index(v)
        if t >= 0:
            q.thread_set = 1
            q.thread = t & _NONE
    v = kw.get("samples")
    if v is not None:
        b, e = _pair(v, "samples")
        q.sample_range_set = 1
        q.sample_begin = 0 if b < 0 else int(b)
        q.sample_end = 0 if e < 0 else int(e)
    v = kw.get("time_ms")
    if v is not None:
        q.time_begin_ms, q.time_end_ms = _pair(v, "time_ms")
        q.time_range_set = 1
    v = kw.get("frames")
    if v is not None:
        q.frames = _index(v) & 0xFFFFFFFF
    v = kw.get("max_depth")
    if v is not None:
        d = _index(v)
        q.max_depth = 0 if d < 0 else d & 0xFFFFFFFF
    v = kw.get("min_fraction")
    if v is not None:
        q.min_fraction = float(v)
    v = kw.get("root_path")
    if v is not None:
        try:
            path = [_index(f) & 0xFFFFFFFF for f in v]
        except TypeError:
            raise TypeError("root_path must be a sequence of function indices") from None
        keep = ffi.new("uint32_t[]", path or [0])
        q.root_path = keep
        q.root_path_len = len(path)
    for k in kw:
        if k not in _QUERY_KEYS:
            raise TypeError("%s() got an unexpected keyword argument %r" % (fn, k))
    return q, keep


def _count_rows(items, n):
    return [(c.func, c.addr, c.kind, c.self, c.total) for c in (items[i] for i in range(n))]


def _pair_rows(items, n):
    return [(items[i].func, items[i].total) for i in range(n)]


def _profile_of(obj):
    """The Profile behind obj: a Profile, or an object whose _profile is one."""
    if isinstance(obj, Profile):
        return obj
    inner = getattr(obj, "_profile", None)
    if isinstance(inner, Profile):
        return inner
    raise TypeError("expected a profile from vmprof.read_profile(), not %.100s"
                    % type(obj).__name__)


def _time(has, sec, usec, zone):
    return (sec, usec, _text(zone)) if has else None


class Profile(object):
    """A profile read by read_file/read_fd/read_bytes (held in C)."""

    __slots__ = ("_p", "__weakref__")

    def __init__(self, p):
        self._p = p

    @property
    def n_samples(self):
        return lib.vmp_profile_get_summary(self._p).n_samples

    def summary(self):
        s = lib.vmp_profile_get_summary(self._p)
        return {"version": s.version, "word_size": s.word_size, "addr_size": s.addr_size,
                "mode": s.mode, "interp": _text(s.interp), "period_usec": s.period_usec,
                "start": _time(s.has_start_time, s.start_sec, s.start_usec, s.start_zone),
                "end": _time(s.has_end_time, s.end_sec, s.end_usec, s.end_zone),
                "complete": bool(s.complete), "truncated_at": s.truncated_at,
                "n_samples": s.n_samples, "max_rss_kib": s.max_rss_kib}

    def meta(self):
        k, v = ffi.new("const char **"), ffi.new("const char **")
        kl, vl = ffi.new("size_t *"), ffi.new("size_t *")
        out = []
        for i in range(lib.vmp_profile_meta_count(self._p)):
            lib.vmp_profile_meta_at(self._p, i, k, kl, v, vl)
            out.append((_text(k[0], kl[0]), _text(v[0], vl[0])))
        return out

    def names(self):
        ident, s, n = ffi.new("uint64_t *"), ffi.new("const char **"), ffi.new("size_t *")
        out = {}
        for i in range(lib.vmp_profile_name_count(self._p)):
            lib.vmp_profile_name_at(self._p, i, ident, s, n)
            out[ident[0]] = _text(s[0], n[0])
        return out

    def name(self, addr):
        if not isinstance(addr, int) or not 0 <= addr <= _U64:
            return None  # negative, huge or no number: no such id
        n = ffi.new("size_t *")
        s = lib.vmp_profile_name(self._p, addr, n)
        return None if s == ffi.NULL else _text(s, n[0])

    def threads(self):
        return [lib.vmp_profile_thread_id(self._p, i)
                for i in range(lib.vmp_profile_thread_count(self._p))]

    def stack_count(self):
        return lib.vmp_profile_stack_count(self._p)

    def _stack(self, i):
        i = _index(i)
        if not 0 <= i < lib.vmp_profile_stack_count(self._p):
            raise IndexError("stack index out of range")
        st = ffi.new("vmp_stack *")
        lib.vmp_profile_stack_at(self._p, i, st)
        return st

    def stack(self, i):
        """stack(i) -> (frames root first, each (addr, line, kind), thread index, count)"""
        st = self._stack(i)
        fr = st.frames
        return (tuple((fr[j].addr, fr[j].line, fr[j].kind) for j in range(st.depth)),
                st.thread_index, st.count)

    def sample(self, i):
        """sample(i) -> (stack_index, rss_kib)"""
        i = _index(i)
        if not 0 <= i < lib.vmp_profile_get_summary(self._p).n_samples:
            raise IndexError("sample index out of range")
        return lib.vmp_profile_sample_stack(self._p, i), lib.vmp_profile_sample_rss(self._p, i)

    def rss_series(self):
        p = self._p
        return [lib.vmp_profile_sample_rss(p, i)
                for i in range(lib.vmp_profile_get_summary(p).n_samples)]

    def time_series(self):
        p = self._p
        if not lib.vmp_profile_has_sample_times(p):
            return None
        return [lib.vmp_profile_sample_time(p, i)
                for i in range(lib.vmp_profile_get_summary(p).n_samples)]

    def function_profile(self, top):
        """function_profile(addr) -> ({addr: samples}, total): the query layer's
        vmp_query_under on the original reader's frames (by address, runner
        kept): below the outermost frame of addr's function, every address once
        per sample (its codes of several kinds summed)."""
        top = _index(top)
        if not 0 <= top <= _U64:
            raise OverflowError("can't convert negative int to unsigned")
        func = lib.vmp_profile_func_of_addr(self._p, top)
        if func == _NONE:
            return {}, 0
        q = ffi.new("vmp_query *")
        q.frames = lib.VMP_Q_BY_ADDRESS | lib.VMP_Q_KEEP_RUNNER
        err = ffi.new("vmp_error *")
        fc = lib.vmp_query_under(self._p, q, func, err)
        if fc == ffi.NULL:
            raise MemoryError(_text(err.message))
        try:
            result = {}
            for i in range(fc.n):
                c = fc.items[i]
                result[c.addr] = result.get(c.addr, 0) + c.total
            return result, fc.samples
        finally:
            lib.vmp_result_free(fc)

    def facts(self):
        f = ffi.new("vmp_facts *")
        lib.vmp_profile_facts(self._p, f)
        return {"interp": _text(f.interp), "argv": _text(f.argv), "version": f.version,
                "period_usec": f.period_usec, "n_samples": f.n_samples,
                "n_threads": f.n_threads, "n_functions": f.n_functions,
                "lines": bool(f.lines), "memory": bool(f.memory), "native": bool(f.native),
                "real_time": bool(f.real_time), "rpython": bool(f.rpython),
                "duration_ms": f.duration_ms, "complete": bool(f.complete),
                "truncated_at": f.truncated_at, "max_rss_kib": f.max_rss_kib}

    def funcs(self):
        n = ffi.new("size_t *")
        fs = lib.vmp_profile_funcs(self._p, n)
        return [_func_row(fs[i]) for i in range(n[0])]

    def thread_samples(self):
        return [lib.vmp_profile_thread_samples(self._p, i)
                for i in range(lib.vmp_profile_thread_count(self._p))]

    def sample_ms(self, i):
        i = _index(i)
        if not 0 <= i <= _U64:
            raise OverflowError("can't convert negative int to unsigned")
        return lib.vmp_profile_sample_ms(self._p, i)

    def query_count(self, *args, **kw):
        if args:
            raise TypeError("query_count() takes keyword arguments only")
        q, _keep = _query(kw, "query_count")
        err = ffi.new("vmp_error *")
        n = lib.vmp_query_count(self._p, q, err)
        if err.message[0] != b"\0":
            raise _error(err)
        return n

    def query_tree(self, *args, **kw):
        if args:
            raise TypeError("query_tree() takes keyword arguments only")
        q, _keep = _query(kw, "query_tree")
        err = ffi.new("vmp_error *")
        t = lib.vmp_query_tree(self._p, q, err)
        if t == ffi.NULL:
            raise _error(err)
        return Tree(t, self, None)

    def query_diff(self, other, **kw):
        if not isinstance(other, Profile):
            raise TypeError("query_diff() argument 1 must be vmprof._core.Profile, not %s"
                            % type(other).__name__)
        q, _keep = _query(kw, "query_diff")
        qb = ffi.new("vmp_query *", q[0])
        qb.thread_set = 0  # a thread index names a's thread
        err = ffi.new("vmp_error *")
        t = lib.vmp_query_diff(self._p, q, other._p, qb, err)
        if t == ffi.NULL:
            raise _error(err)
        return Tree(t, self, other)

    def query_functions(self, *args, **kw):
        if args:
            raise TypeError("query_functions() takes keyword arguments only")
        q, _keep = _query(kw, "query_functions")
        err = ffi.new("vmp_error *")
        fc = lib.vmp_query_functions(self._p, q, err)
        if fc == ffi.NULL:
            raise _error(err)
        try:
            return _count_rows(fc.items, fc.n)
        finally:
            lib.vmp_result_free(fc)

    def query_neighbours(self, func, **kw):
        func = _index(func) & 0xFFFFFFFF
        q, _keep = _query(kw, "query_neighbours")
        err = ffi.new("vmp_error *")
        nb = lib.vmp_query_neighbours(self._p, q, func, err)
        if nb == ffi.NULL:
            raise _error(err)
        try:
            return (nb.self, nb.total, nb.samples, _pair_rows(nb.callers, nb.n_callers),
                    _pair_rows(nb.callees, nb.n_callees))
        finally:
            lib.vmp_result_free(nb)

    def query_lines(self, func=None, **kw):
        if "func" in kw:
            func = kw.pop("func")
        f = _NONE if func is None else _index(func) & 0xFFFFFFFF
        q, _keep = _query(kw, "query_lines")
        err = ffi.new("vmp_error *")
        lc = lib.vmp_query_lines(self._p, q, f, err)
        if lc == ffi.NULL:
            raise _error(err)
        try:
            out = []
            for i in range(lc.n_funcs):
                fl = lc.funcs[i]
                out.append((fl.func, fl.total,
                            [(fl.lines[k].line, fl.lines[k].count) for k in range(fl.n_lines)]))
            return lc.samples, out
        finally:
            lib.vmp_result_free(lc)

    def query_rss(self, points, **kw):
        points = _index(points)
        q, _keep = _query(kw, "query_rss")
        if points < 1:
            raise ValueError("query_rss needs at least 1 point")
        err = ffi.new("vmp_error *")
        rs = lib.vmp_query_rss(self._p, q, points, err)
        if rs == ffi.NULL:
            raise _error(err)
        try:
            return {"points": [(rs.points[i].ms, rs.points[i].rss_kib) for i in range(rs.n)],
                    "peak_kib": rs.peak_kib, "peak_ms": rs.peak_ms, "first_kib": rs.first_kib,
                    "last_kib": rs.last_kib, "growth": _pair_rows(rs.growth, rs.n_growth)}
        finally:
            lib.vmp_result_free(rs)

    def export(self, format, output, **kw):
        """export(format, output, title=None, html_min_fraction=0, query keywords):
        output is a path or a file descriptor (left open)."""
        title = kw.pop("title", None)
        min_fraction = float(kw.pop("html_min_fraction", 0.0))
        if not isinstance(format, str):
            raise TypeError("export() argument 1 must be str, not %s" % type(format).__name__)
        title_c = ffi.NULL
        if title is not None:
            if not isinstance(title, str):
                raise TypeError("bad argument type for built-in operation")
            title_c = ffi.new("char[]", title.encode("utf-8", "surrogatepass"))
        q, _keep = _query(kw, "export")
        if isinstance(output, int):
            if not 0 <= output <= 0x7FFFFFFF:
                raise ValueError("output file descriptor must be >= 0")
            fd, close = output, False
        else:
            path = os.fsencode(output)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as e:
                raise VMProfError("cannot create %s: %s; check that its folder exists and is "
                                  "writable" % (os.fsdecode(path), e.strerror)) from None
            close = True
        settings = ffi.new("vmp_export_settings *", {"title": title_c,
                                                      "html_min_fraction": min_fraction})
        err = ffi.new("vmp_error *")
        data, length = ffi.new("char **"), ffi.new("size_t *")
        try:
            rc = lib.vmp_query_export_buffer(self._p, q, format.encode(), settings, data,
                                             length, err)
            if rc < 0:
                raise _error(err)
            try:
                _write_all(fd, ffi.buffer(data[0], length[0]))
            finally:
                lib.vmp_result_free(data[0])
        finally:
            if close:
                os.close(fd)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as e:
            raise VMProfError("writing the export failed: %s" % e.strerror) from None
        view = view[n:]


def _func_row(f):
    return (_text(f.name), _text(f.file), f.first_line, f.kind, bool(f.interpreter),
            int(f.runner), f.addr)


class Tree(object):
    """A call tree of a Profile (held in C); see Profile.query_tree()."""

    __slots__ = ("_t", "_nodes", "_n", "_profile", "_profile_b")

    def __init__(self, t, profile, profile_b):
        self._t = ffi.gc(t, lib.vmp_result_free)
        self._nodes = t.nodes
        self._n = t.n_nodes
        self._profile = profile  # the tree's functions live in the profiles
        self._profile_b = profile_b

    @property
    def node_count(self):
        return self._n

    @property
    def samples(self):
        return self._t.samples

    @property
    def samples_b(self):
        return self._t.samples_b

    def _node(self, i):
        i = _index(i)
        if not 0 <= i < self._n:
            raise IndexError("node index out of range")
        return self._nodes[i]

    def node(self, i):
        """node(i) -> (func or -1, addr, kind, total, self, parent or -1,
        n_children, line, total_b, self_b, cut, depth, n_cut)"""
        n = self._node(i)
        return _node_row(self._t, n, _index(i))

    def nodes(self):
        nodes = self._nodes
        return [_node_row(self._t, nodes[i], i) for i in range(self._n)]

    def children(self, i):
        nodes = self._nodes
        out = []
        c = self._node(i).first_child
        while c != _NONE:
            out.append(c)
            c = nodes[c].next_sibling
        return out

    def lines(self, i):
        self._node(i)
        n = ffi.new("size_t *")
        lines = lib.vmp_tree_lines(self._t, _index(i), n)
        return {lines[k].line: lines[k].count for k in range(n[0])}

    def meta(self, i):
        m = self._node(i).meta
        if m == _NONE:
            return {}
        row = self._t.meta[m]
        return {k: row[k] for k in range(lib.VMP_FRAME_KIND_COUNT) if row[k]}

    def find_child(self, node, addr, kind):
        nodes = self._nodes
        c = self._node(node).first_child
        while c != _NONE:
            if nodes[c].addr == addr and nodes[c].kind == kind:
                return c
            c = nodes[c].next_sibling
        return -1

    def func(self, i):
        """func(i) -> the node's function row, or None"""
        self._node(i)
        f = lib.vmp_tree_func(self._t, i)
        return None if f == ffi.NULL else _func_row(f)


def _node_row(t, n, i):
    b = t.b[i] if t.b != ffi.NULL else None
    return (-1 if n.func == _NONE else n.func, n.addr, n.kind, n.total, n.self,
            -1 if n.parent == _NONE else n.parent, n.n_children, n.line,
            b.total if b is not None else 0, b.self if b is not None else 0,
            n.cut, n.depth, n.n_cut)


# ---- exports ----------------------------------------------------------------------

def export_formats():
    """The names of the export formats."""
    return tuple(_text(lib.vmp_export_format_name(i)) for i in range(lib.VMP_EXPORT_FORMAT_COUNT))


def export(source, format, output, thread=None, lines=False, no_native=False, title=None,
           html_min_fraction=0.0):
    """Writes the profile `source` (a read Profile or Stats, or a path to read)
    in `format` to `output` (a path, or an int file descriptor left open)."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        path = os.fsencode(source)
        profile = None
    else:
        profile = _profile_of(source)
    if not isinstance(format, str):
        raise TypeError("export() argument 2 must be str, not %s" % type(format).__name__)
    fmt = lib.vmp_export_format_from_name(format.encode("utf-8", "surrogatepass"))
    if fmt < 0:
        raise VMProfError("unknown export format '%s'; choose one of: %s"
                          % (format, _text(lib.vmp_export_format_list())))
    if isinstance(output, int):
        if output < 0 or output > 0x7FFFFFFF:
            raise ValueError("output file descriptor must be >= 0")
        out_path = None
    else:
        out_path = os.fsencode(output)
    opts = ffi.new("vmp_export_options *")
    if thread is not None:
        opts.has_thread = 1
        opts.thread_id = _index(thread) & _U64
    opts.lines = 1 if lines else 0
    opts.no_native = 1 if no_native else 0
    keep = ffi.NULL
    if title is not None:
        if not isinstance(title, str):
            raise TypeError("export() argument 7 must be str or None, not %s"
                            % type(title).__name__)
        keep = ffi.new("char[]", title.encode("utf-8", "surrogatepass"))
    opts.title = keep
    opts.html_min_fraction = float(html_min_fraction)
    err = ffi.new("vmp_error *")
    if profile is None:
        p = lib.vmp_profile_read_file(path, ffi.NULL, err)
        if p == ffi.NULL:
            raise VMProfError("%s: %s" % (os.fsdecode(path), _text(err.message)))
        p = ffi.gc(p, lib.vmp_profile_free)
    else:
        p = profile._p
    if out_path is None:
        rc = lib.vmp_export_write_fd(p, fmt, output, opts, err)
    else:
        rc = lib.vmp_export_write_path(p, fmt, out_path, opts, err)
    if rc < 0:
        raise _error(err)


# ---- the JIT log -------------------------------------------------------------------

_STAGES = {"noopt": 0, "opt": 1, "asm": 2}


def _wrap_forest(f, err):
    if f == ffi.NULL:
        raise _error(err)
    return JitLog(ffi.gc(f, lib.vjl_forest_free))


def jitlog_read_file(path):
    """jitlog_read_file(path) -> JitLog (plain or gzip); VMProfError if it is no JIT log"""
    err = ffi.new("vmp_error *")
    return _wrap_forest(lib.vjl_forest_read_file(os.fsencode(path), err), err)


def jitlog_read_bytes(data):
    """jitlog_read_bytes(data) -> JitLog"""
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    buf = ffi.from_buffer(data)
    err = ffi.new("vmp_error *")
    return _wrap_forest(lib.vjl_forest_read_memory(buf, len(buf), err), err)


def _parse_query(text):
    if not isinstance(text, str):
        raise TypeError("bad argument type for built-in operation")
    raw = text.encode("utf-8", "surrogatepass")
    err = ffi.new("vmp_error *")
    q = lib.vjl_query_parse(raw, len(raw), err)
    if q == ffi.NULL:
        raise ValueError(_text(err.message))
    return ffi.gc(q, lib.vjl_query_free)


def jitlog_check_query(text):
    """jitlog_check_query(text): ValueError naming the column if it does not parse"""
    _parse_query(text)


def jitlog_source_code_record(file, lines):
    """jitlog_source_code_record(file, [(line, indent, text)]) -> bytes of a
    SOURCE_CODE record"""
    raw_file = file.encode("utf-8", "surrogatepass") if isinstance(file, str) else bytes(file)
    try:
        lines = list(lines)
    except TypeError:
        raise TypeError("source_code_record: lines must be a sequence") from None
    if len(lines) > 65535:
        raise ValueError("a SOURCE_CODE record holds at most 65535 lines")
    c_lines = ffi.new("vjl_line_in[]", len(lines) or 1)
    keep = []
    for i, item in enumerate(lines):
        line, indent, text = item
        line, indent = _index(line) & 0xFFFFFFFF, _index(indent) & 0xFFFFFFFF
        if line > 65535 or indent > 255:
            raise ValueError("line %u or indent %u out of range (u16, u8)" % (line, indent))
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
        c_text = ffi.new("char[]", raw)
        keep.append(c_text)
        c_lines[i].line = line
        c_lines[i].indent = indent
        c_lines[i].text = c_text
        c_lines[i].len = len(raw)
    w = ffi.new("vjl_writer *")
    lib.vjl_writer_init(w, 8)
    try:
        lib.vjl_put_source_code(w, raw_file, len(raw_file), c_lines, len(lines))
        if w.failed:
            raise MemoryError()
        return ffi.unpack(ffi.cast("char *", w.buf), w.len)
    finally:
        lib.vjl_writer_free(w)


class JitLog(object):
    """A PyPy JIT log read into a trace forest (jitlog_read_file / jitlog_read_bytes)."""

    __slots__ = ("_f", "_bytes")

    def __init__(self, f):
        self._f = f
        self._bytes = lib.vjl_forest_bytes(f)

    def _str(self, s):
        return ffi.unpack(ffi.cast("char *", self._bytes + s.off), s.len).decode("utf-8",
                                                                                  "replace")

    @property
    def version(self):
        return lib.vjl_forest_version(self._f)

    @property
    def word_size(self):
        return lib.vjl_forest_word_size(self._f)

    @property
    def machine(self):
        return self._str(lib.vjl_forest_machine(self._f))

    @property
    def warning(self):
        w = lib.vjl_forest_warning(self._f)
        return None if w == ffi.NULL else (_text(w.message), w.offset)

    @property
    def trace_count(self):
        return lib.vjl_forest_trace_count(self._f)

    def _trace(self, i):
        i = _index(i)
        if not 0 <= i < lib.vjl_forest_trace_count(self._f):
            raise IndexError("trace index %d out of range" % i)
        return lib.vjl_forest_trace(self._f, i)

    def _stage(self, i, stage):
        t = self._trace(i)
        if not isinstance(stage, str):
            raise TypeError("ops() argument 2 must be str, not %s" % type(stage).__name__)
        s = _STAGES.get(stage)
        if s is None:
            raise ValueError("no stage '%.50s' (the stages are noopt, opt and asm)" % stage)
        return t.stage[s]

    def trace(self, i):
        """trace(i) -> dict: id, type, jd_name, start_number, addrs, entry_count,
        parent, parent_op, stitched_descr, inputargs, aborted, stages (noopt, opt,
        asm present), op_counts, merge_point_counts (per stage)"""
        t = self._trace(i)
        st = t.stage
        return {"id": t.id, "type": "bridge" if t.is_bridge else "loop",
                "jd_name": self._str(t.jd_name) if self.version >= 2 else None,
                "start_number": t.start_number,
                "addrs": (t.addr_start, t.addr_end) if t.has_addr else (-1, -1),
                "entry_count": t.entry_count,
                "parent": None if t.parent == _NONE else t.parent,
                "parent_op": None if t.parent_op == _NONE else t.parent_op,
                "stitched_descr": t.stitched_descr, "inputargs": self._str(t.inputargs),
                "aborted": bool(t.aborted),
                "stages": (bool(st[0].present), bool(st[1].present), bool(st[2].present)),
                "op_counts": (st[0].n_ops, st[1].n_ops, st[2].n_ops),
                "merge_point_counts": (st[0].n_mps, st[1].n_mps, st[2].n_mps)}

    def ops(self, i, stage):
        """ops(i, stage) -> [(opnum, args text, failargs text or None, descr
        number or None, (code offset, code bytes) or None, bridge trace index
        or None, counter)]"""
        st = self._stage(i, stage)
        f = self._f
        with_failargs = lib.vjl_forest_version(f) >= 2
        parts = ffi.new("vjl_op_parts *")
        out = []
        ops = st.ops
        for k in range(st.n_ops):
            op = ops[k]
            lib.vjl_op_get(f, ffi.addressof(ops, k), parts)
            code = None
            if op.asm_record:
                code = (parts.code_offset,
                        ffi.unpack(ffi.cast("char *", self._bytes + parts.code.off),
                                   parts.code.len))
            bridge = lib.vjl_forest_bridge_of(f, parts.descr)
            out.append((op.opnum, self._str(parts.args),
                        self._str(parts.failargs) if with_failargs else None,
                        parts.descr if op.has_descr else None, code,
                        None if bridge == _NONE else bridge,
                        lib.vjl_forest_descr_count(f, parts.descr)))
        return out

    def _mp_value(self, mp, slot):
        if mp.kind[slot] == ord("i"):
            return mp.value[slot].u.num
        s = mp.value[slot].u.s
        if not s.prefix.len:
            return self._str(s.str)
        raw = (ffi.unpack(ffi.cast("char *", self._bytes + s.prefix.off), s.prefix.len)
               + ffi.unpack(ffi.cast("char *", self._bytes + s.str.off), s.str.len))
        return raw.decode("utf-8", "replace")

    def merge_points(self, i, stage):
        """merge_points(i, stage) -> [(ops before it, {semantic type: value})]"""
        st = self._stage(i, stage)
        out = []
        for k in range(st.n_mps):
            mp = st.mps[k]
            out.append((mp.op_index, {1 << s: self._mp_value(mp, s)
                                      for s in range(5) if mp.kind[s]}))
        return out

    def merge_point_lines(self):
        """merge_point_lines() -> {(file, line)} of every merge point"""
        out = set()
        file_slot, line_slot = 0, 1  # slots of VJL_MP_FILENAME, VJL_MP_LINENO
        for i in range(lib.vjl_forest_trace_count(self._f)):
            t = lib.vjl_forest_trace(self._f, i)
            for s in range(3):
                st = t.stage[s]
                for k in range(st.n_mps):
                    mp = st.mps[k]
                    if mp.kind[file_slot] == ord("s") and mp.kind[line_slot] == ord("i"):
                        out.add((self._mp_value(mp, file_slot), mp.value[line_slot].u.num))
        return out

    def resops(self):
        """resops() -> {opnum: name}"""
        opnum, name = ffi.new("unsigned *"), ffi.new("vjl_str *")
        out = {}
        for i in range(lib.vjl_forest_resop_count(self._f)):
            lib.vjl_forest_resop_at(self._f, i, opnum, name)
            out[opnum[0]] = self._str(name[0])
        return out

    def stitches(self):
        """stitches() -> [(guard descr, bridge address, bridge trace index or None)]"""
        n = ffi.new("size_t *")
        s = lib.vjl_forest_stitches(self._f, n)
        return [(s[i].descr, s[i].addr, None if s[i].bridge == _NONE else s[i].bridge)
                for i in range(n[0])]

    def counters(self):
        """counters() -> [(address, type 'e'/'b'/'l', count, trace index or None)]"""
        n = ffi.new("size_t *")
        c = lib.vjl_forest_counters(self._f, n)
        return [(c[i].addr, chr(c[i].type), c[i].count,
                 None if c[i].trace == _NONE else c[i].trace) for i in range(n[0])]

    def source_lines(self):
        """source_lines() -> [(file, line, indent, text)] of the SOURCE_CODE records"""
        n = ffi.new("size_t *")
        ls = lib.vjl_forest_source_lines(self._f, n)
        return [(self._str(ls[i].file), ls[i].line, ls[i].indent, self._str(ls[i].text))
                for i in range(n[0])]

    def select(self, query):
        """select(query) -> indices of the selected traces; ValueError naming the
        column on a syntax error"""
        q = _parse_query(query)
        total = lib.vjl_forest_trace_count(self._f)
        out = ffi.new("uint32_t[]", total or 1)
        n = lib.vjl_query_select(q, self._f, out)
        return [out[i] for i in range(n)]


# ---- the sampler: PyPy has its own (_vmprof) ------------------------------------------

_NO_SAMPLER = ("vmprof cannot sample here: this build has no sampler, which needs Linux "
               "with libdw and libelf (Debian: apt install libdw-dev, then reinstall "
               "vmprof; read_profile, vmprofshow and the exports work)")


def _unavailable(*args, **kw):
    raise VMProfError(_NO_SAMPLER)


enable = disable = start_sampling = sample_stack_now = resolve_addr = _unavailable
_guard_selftest = _handler_hold = _handler_hold_busy = _writer_hold_at_empty = _writer_stall_next_name = _writer_stalls = _writer_lost_room = _writer_give_ups = _fork_waits_in_vain = _unavailable


def is_enabled():
    return False


def profile_fileno():
    return -1


def stop_sampling():
    return -1
