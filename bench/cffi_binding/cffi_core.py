"""vmprof._core's reading surface over the cffi module _vmprof_cffi (build.py),
enough for read_profile(), Stats.get_tree() and its nodes, and export():

    read_file, read_fd, read_bytes -> Profile (summary, meta, threads, names,
    name, query_tree -> Tree (node, children, meta, lines, find_child,
    node_count, samples)), export, parse_name (for names only), constants.

install() puts it in sys.modules as vmprof._core before vmprof is imported,
so that the package's own Python layer (vmprof.reader, vmprof.stats) runs
unchanged over it: the benchmark then compares the two bindings and nothing
else.  Every call goes straight to the same C functions the cpyext binding
calls (src/module/module_reader.c, module_export.c).
"""
import os
import sys

_ffi = _lib = None


class VMProfError(Exception):
    """A vmprof operation failed; the message says why and what to do."""


def _load(module_dir):
    global _ffi, _lib
    sys.path.insert(0, module_dir)
    try:
        from _vmprof_cffi import ffi, lib
    finally:
        sys.path.pop(0)
    _ffi, _lib = ffi, lib
    g = globals()
    for name in ("PYTHON", "NATIVE", "JIT", "GC", "BLACKHOLE", "ASSEMBLER", "JIT_TRACING"):
        g["FRAME_" + name] = getattr(lib, "VMP_FRAME_" + name)
    for name in ("MEMORY", "LINES", "NATIVE", "RPYTHON", "REAL_TIME"):
        g["MODE_" + name] = getattr(lib, "VMP_MODE_" + name)
    for name in ("PYTHON_ONLY", "NO_NATIVE", "HIDE_INTERPRETER", "MERGE_RECURSION", "LINES",
                 "KEEP_RUNNER", "BY_ADDRESS"):
        g["Q_" + name] = getattr(lib, "VMP_Q_" + name)


def install(module_dir):
    """Loads _vmprof_cffi from module_dir and stands in for vmprof._core."""
    _load(module_dir)
    sys.modules["vmprof._core"] = sys.modules[__name__]


def _text(ptr, n=None):
    raw = _ffi.string(ptr) if n is None else _ffi.unpack(ptr, n)
    return raw.decode("utf-8", "replace")


def _raise(err):
    raise VMProfError(_ffi.string(err.message).decode("utf-8", "replace"))


def _wrap(p, err):
    if p == _ffi.NULL:
        _raise(err)
    return Profile(_ffi.gc(p, _lib.vmp_profile_free))


def read_file(path, strict=False):
    err = _ffi.new("vmp_error *")
    opts = _ffi.new("vmp_read_options *", {"strict": bool(strict)})
    return _wrap(_lib.vmp_profile_read_file(os.fsencode(path), opts, err), err)


def read_fd(fd, strict=False):
    err = _ffi.new("vmp_error *")
    opts = _ffi.new("vmp_read_options *", {"strict": bool(strict)})
    return _wrap(_lib.vmp_profile_read_fd(fd, opts, err), err)


def read_bytes(data, strict=False):
    err = _ffi.new("vmp_error *")
    opts = _ffi.new("vmp_read_options *", {"strict": bool(strict)})
    buf = _ffi.from_buffer(data)
    return _wrap(_lib.vmp_profile_read_memory(buf, len(buf), opts, err), err)


def parse_name(name):
    """(lang, function, line, file) of "py:f:12:file" names; the benchmark's
    paths never call it, so this is the plain Python split."""
    parts = name.split(":", 3)
    if len(parts) != 4 or parts[0] not in ("py", "n"):
        return "", name, 0, ""
    try:
        line = int(parts[2])
    except ValueError:
        return "", name, 0, ""
    return parts[0], parts[1], line, parts[3]


def export(source, format, output, thread=None, lines=False, no_native=False, title=None,
           html_min_fraction=0.0):
    if isinstance(source, (str, bytes)):
        profile = read_file(source)
    else:
        profile = getattr(source, "_profile", source)
    fmt = _lib.vmp_export_format_from_name(format.encode())
    if fmt < 0:
        raise VMProfError("unknown export format '%s'; choose one of: %s"
                          % (format, _text(_lib.vmp_export_format_list())))
    opts = _ffi.new("vmp_export_options *")
    if thread is not None:
        opts.has_thread = 1
        opts.thread_id = thread
    opts.lines = bool(lines)
    opts.no_native = bool(no_native)
    keep = _ffi.new("char[]", title.encode()) if title is not None else _ffi.NULL
    opts.title = keep
    opts.html_min_fraction = html_min_fraction
    err = _ffi.new("vmp_error *")
    if isinstance(output, int):
        rc = _lib.vmp_export_write_fd(profile._p, fmt, output, opts, err)
    else:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            rc = _lib.vmp_export_write_fd(profile._p, fmt, fd, opts, err)
        finally:
            os.close(fd)
    if rc < 0:
        _raise(err)


def _time(has, sec, usec, zone):
    return (sec, usec, _text(zone)) if has else None


class Profile(object):
    __slots__ = ("_p",)

    def __init__(self, p):
        self._p = p

    def summary(self):
        s = _lib.vmp_profile_get_summary(self._p)
        return {"version": s.version, "word_size": s.word_size, "addr_size": s.addr_size,
                "mode": s.mode, "interp": _text(s.interp), "period_usec": s.period_usec,
                "start": _time(s.has_start_time, s.start_sec, s.start_usec, s.start_zone),
                "end": _time(s.has_end_time, s.end_sec, s.end_usec, s.end_zone),
                "complete": bool(s.complete), "truncated_at": s.truncated_at,
                "n_samples": s.n_samples, "max_rss_kib": s.max_rss_kib}

    def meta(self):
        k = _ffi.new("const char **")
        v = _ffi.new("const char **")
        kl = _ffi.new("size_t *")
        vl = _ffi.new("size_t *")
        out = []
        for i in range(_lib.vmp_profile_meta_count(self._p)):
            _lib.vmp_profile_meta_at(self._p, i, k, kl, v, vl)
            out.append((_text(k[0], kl[0]), _text(v[0], vl[0])))
        return out

    def threads(self):
        return [_lib.vmp_profile_thread_id(self._p, i)
                for i in range(_lib.vmp_profile_thread_count(self._p))]

    def name(self, addr):
        if not 0 <= addr < 1 << 64:
            return None
        n = _ffi.new("size_t *")
        s = _lib.vmp_profile_name(self._p, addr, n)
        if s == _ffi.NULL:
            return None
        return _text(s, n[0])

    def query_tree(self, thread=-1, frames=0, max_depth=0, min_fraction=0.0):
        q = _ffi.new("vmp_query *")
        if thread is not None and thread >= 0:
            q.thread_set = 1
            q.thread = thread
        q.frames = frames
        q.max_depth = max_depth
        q.min_fraction = min_fraction
        err = _ffi.new("vmp_error *")
        t = _lib.vmp_query_tree(self._p, q, err)
        if t == _ffi.NULL:
            _raise(err)
        return Tree(_ffi.gc(t, _lib.vmp_result_free), self)


_NONE = 0xFFFFFFFF


class Tree(object):
    __slots__ = ("_t", "_nodes", "_n", "_profile")

    def __init__(self, t, profile):
        self._t = t
        self._nodes = t.nodes
        self._n = t.n_nodes
        self._profile = profile  # the tree's functions live in it

    @property
    def node_count(self):
        return self._n

    @property
    def samples(self):
        return self._t.samples

    def _node(self, i):
        if not 0 <= i < self._n:
            raise IndexError("node index out of range")
        return self._nodes[i]

    def node(self, i):
        n = self._node(i)
        return (-1 if n.func == _NONE else n.func, n.addr, n.kind, n.total, n.self,
                -1 if n.parent == _NONE else n.parent, n.n_children, n.line, n.total_b,
                n.self_b, n.cut, n.depth, n.n_cut)

    def children(self, i):
        nodes = self._nodes
        out = []
        c = self._node(i).first_child
        while c != _NONE:
            out.append(c)
            c = nodes[c].next_sibling
        return out

    def lines(self, i):
        n = self._node(i)
        lines = self._t.lines
        return {lines[k].line: lines[k].count
                for k in range(n.lines_off, n.lines_off + n.n_lines)}

    def meta(self, i):
        m = self._node(i).meta
        if m == _NONE:
            return {}
        row = self._t.meta[m]
        return {k: row[k] for k in range(len(row)) if row[k]}

    def find_child(self, node, addr, kind):
        nodes = self._nodes
        c = self._node(node).first_child
        while c != _NONE:
            if nodes[c].addr == addr and nodes[c].kind == kind:
                return c
            c = nodes[c].next_sibling
        return -1
