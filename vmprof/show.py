"""vmprofshow: look at a vmprof profile in the terminal, or export it.

    vmprofshow FILE [tree|flat|lines] [options]
    vmprofshow FILE --format {collapsed,speedscope,pprof,firefox,html} -o OUT
    python -m vmprof.show ...

Views:
  tree   the call tree with percentages and sample counts; consecutive calls
         of the same function (recursion) are one node
  flat   functions by self time and by cumulative time (each function counted
         once per sample)
  lines  hits per line of each function, beside its source when the file can
         be read (needs a profile recorded with line numbers)
A profile with several threads gets a per-thread breakdown first; --thread
picks one.  A memory profile gets a summary of its RSS (peak, growth, where
it grew most).  Colours are used on a terminal, never when piped.

The profile is read and every export is written by the C library
(vmprof._core); this module only formats text.
"""
import argparse
import linecache
import os
import re
import sys

KIND_PYTHON, KIND_NATIVE = 0, 1
VIEWS = ("tree", "flat", "lines")

# CPython's own machinery as native frames show it (the evaluation loop, the
# call paths between C and Python, the interpreter's start-up): what
# --hide-interpreter folds away.  Compiler suffixes (.constprop.0, .cold) and
# symbol versions (@@GLIBC_2.34) are ignored.
INTERPRETER_FRAMES = re.compile(
    r"(_?PyEval_\w+|_PyFunction_Vectorcall|function_code_fastcall|call_function|do_call_core"
    r"|_?PyObject_(Vectorcall\w*|Call\w*|FastCall\w*|MakeTpCall)|_?PyVectorcall_Call"
    r"|_PyCFunction_\w+|cfunction_(vectorcall|call)\w*|method_vectorcall\w*|vectorcall_\w+"
    r"|slot_tp_call|gen_send_ex2?|builtin_exec\w*|_?PyRun_\w+|run_(mod|eval_code_obj)"
    r"|pymain_\w+|Py_(RunMain|BytesMain|Main)|main|__libc_start\w*|_start)([.@].*)?$")


class Style:
    """ANSI styling that disappears when colour is off."""

    def __init__(self, enabled):
        self.enabled = enabled

    def _wrap(self, code, text):
        return "\033[%sm%s\033[0m" % (code, text) if self.enabled else text

    def bold(self, text):
        return self._wrap("1", text)

    def dim(self, text):
        return self._wrap("2", text)

    def heat(self, fraction, text):
        """Red for the hot part of a profile, yellow for warm, plain below."""
        if fraction >= 0.5:
            return self._wrap("1;31", text)
        if fraction >= 0.1:
            return self._wrap("33", text)
        return text

    def accent(self, text):
        return self._wrap("36", text)


def _core():
    try:
        from vmprof import _core
    except ImportError:
        raise SystemExit(
            "vmprofshow: the vmprof C extension is not available in this interpreter; "
            "run vmprofshow with CPython (profiles from PyPy read fine there)"
        )
    return _core


# ---- the profile as the views see it -------------------------------------


class Profile:
    """The data of view_data(), with the lookups the views need."""

    def __init__(self, data):
        self.summary = data["summary"]
        self.threads = data["threads"]  # [(id, samples, selected)]
        self.funcs = data["funcs"]  # [(name, file, first_line, kind)]
        self.frames = data["frames"]  # [(func, line)]
        self.stacks = data["stacks"]  # [(thread_index, (frame, ...), count)]
        self.rss_growth = data.get("rss_growth")
        self.rss_series = data.get("rss_series")
        self.total = sum(s[2] for s in self.stacks)

    def func_of(self, frame):
        return self.frames[frame][0]

    def func_label(self, func):
        return self.funcs[func][0]

    def func_where(self, func, line=None):
        name, path, first, kind = self.funcs[func]
        if not path:
            return "<native>" if kind == KIND_NATIVE else ""
        return "%s:%d" % (path, first if line is None else line)

    def hide_interpreter(self):
        """Leave CPython's own native frames (INTERPRETER_FRAMES) out of every
        stack, so C extensions and libraries stand right under their Python
        callers."""
        self.hidden = {i for i, (name, _path, _first, kind) in enumerate(self.funcs)
                       if kind == KIND_NATIVE and INTERPRETER_FRAMES.match(name)}

    def func_stacks(self):
        """Each stack as function indices, recursion folded, with its count."""
        hidden = getattr(self, "hidden", ())
        for thread, frames, count in self.stacks:
            funcs = []
            for fr in frames:
                f = self.frames[fr][0]
                if f in hidden:
                    continue
                if not funcs or funcs[-1] != f:
                    funcs.append(f)
            if funcs:
                yield thread, funcs, count


def percent(part, whole):
    return 100.0 * part / whole if whole else 0.0


# ---- tree ----------------------------------------------------------------------


class Node:
    __slots__ = ("func", "count", "self_count", "children")

    def __init__(self, func):
        self.func = func
        self.count = 0
        self.self_count = 0
        self.children = {}


def build_tree(profile):
    root = Node(None)
    for _thread, funcs, count in profile.func_stacks():
        node = root
        node.count += count
        for f in funcs:
            child = node.children.get(f)
            if child is None:
                child = node.children[f] = Node(f)
            child.count += count
            node = child
        node.self_count += count
    return root


def show_tree(profile, args, style, out):
    root = build_tree(profile)
    total = root.count
    if not total:
        out.write("no samples\n")
        return
    indent = " " * max(args.indent, 0)
    min_count = total * args.prune_percent / 100.0
    hidden = [0]

    # an explicit stack keeps very deep trees from hitting Python's recursion limit
    stack = [(root, -1, None)]
    while stack:
        node, level, _ = stack.pop()
        if node is not root:
            if node.count < min_count or (args.prune_level is not None and level > args.prune_level):
                hidden[0] += 1
                continue
            frac = node.count / total
            pct = style.heat(frac, "%6.1f%%" % (100.0 * frac))
            self_part = ""
            if node.self_count:
                self_part = "  " + style.dim("self %.1f%%" % percent(node.self_count, total))
            out.write(
                "%s %8d  %s%s  %s%s\n"
                % (pct, node.count, indent * level, style.bold(profile.func_label(node.func)),
                   style.dim(profile.func_where(node.func)), self_part)
            )
        kids = sorted(node.children.values(), key=lambda n: (-n.count, profile.func_label(n.func)))
        for child in reversed(kids):
            stack.append((child, level + 1, None))
    if hidden[0]:
        out.write(style.dim("(%d smaller or deeper subtrees hidden by --prune_percent/--prune_level)\n"
                            % hidden[0]))


# ---- flat ----------------------------------------------------------------------


def flat_counts(profile):
    """self and cumulative samples per function, and callee counts per caller."""
    self_c, cum_c, callees = {}, {}, {}
    for _thread, funcs, count in profile.func_stacks():
        if funcs:
            leaf = funcs[-1]
            self_c[leaf] = self_c.get(leaf, 0) + count
        for f in set(funcs):
            cum_c[f] = cum_c.get(f, 0) + count
        seen = set()
        for caller, callee in zip(funcs, funcs[1:]):
            if (caller, callee) in seen:
                continue
            seen.add((caller, callee))
            d = callees.setdefault(caller, {})
            d[callee] = d.get(callee, 0) + count
    return self_c, cum_c, callees


def show_flat(profile, args, style, out):
    total = profile.total
    if not total:
        out.write("no samples\n")
        return
    self_c, cum_c, callees = flat_counts(profile)
    cutoff = args.percent_cutoff

    def row(func, s, c):
        return "%s %8d  %6.1f%% %8d  %s  %s\n" % (
            style.heat(s / total, "%6.1f%%" % percent(s, total)), s, percent(c, total), c,
            style.bold(profile.func_label(func)), style.dim(profile.func_where(func)))

    out.write(style.accent("By self time") + "\n")
    out.write("  self%  samples    cum%  samples  function\n")
    for func in sorted(self_c, key=lambda f: (-self_c[f], profile.func_label(f))):
        if percent(self_c[func], total) < cutoff:
            continue
        out.write(row(func, self_c[func], cum_c.get(func, 0)))
        if args.include_callees:
            for callee, n in sorted(callees.get(func, {}).items(), key=lambda kv: -kv[1]):
                out.write("                 %6.1f%% %8d    -> %s  %s\n" % (
                    percent(n, total), n, profile.func_label(callee),
                    style.dim(profile.func_where(callee))))
    out.write("\n" + style.accent("By cumulative time") + "\n")
    out.write("  self%  samples    cum%  samples  function\n")
    for func in sorted(cum_c, key=lambda f: (-cum_c[f], profile.func_label(f))):
        if percent(cum_c[func], total) < cutoff:
            continue
        out.write(row(func, self_c.get(func, 0), cum_c[func]))


# ---- lines ---------------------------------------------------------------------


def show_lines(profile, args, style, out):
    if not profile.summary["lines"]:
        out.write(
            "this profile has no line numbers (it was not recorded in lines mode); "
            "record with `python -m vmprof --lines ...` for per-line hits\n"
        )
        return 1
    total = profile.total
    pattern = re.compile(args.filter) if args.filter else None
    # per function: samples at each line, each (function, line) once per sample
    hits, func_total = {}, {}
    for _thread, frames, count in profile.stacks:
        seen_lines, seen_funcs = set(), set()
        for fr in frames:
            func, line = profile.frames[fr]
            if (func, line) not in seen_lines:
                seen_lines.add((func, line))
                d = hits.setdefault(func, {})
                d[line] = d.get(line, 0) + count
            if func not in seen_funcs:
                seen_funcs.add(func)
                func_total[func] = func_total.get(func, 0) + count
    shown = 0
    for func in sorted(func_total, key=lambda f: (-func_total[f], profile.func_label(f))):
        name, path, first, kind = profile.funcs[func]
        if kind != KIND_PYTHON:
            continue
        if pattern and not (pattern.search(name) or pattern.search(path)):
            continue
        shown += 1
        out.write("%s  %s  %s\n" % (
            style.bold(name), style.dim("%s:%d" % (path, first)),
            "%d samples (%.1f%%)" % (func_total[func], percent(func_total[func], total))))
        out.write("   line     hits      %  source\n")
        lines = hits[func]
        readable = bool(path) and linecache.getline(path, max(first, 1)) != ""
        if readable:
            last = max(lines)
            numbers = range(max(first, 1), last + 1)
        else:
            numbers = sorted(lines)
        for ln in numbers:
            n = lines.get(ln, 0)
            src = linecache.getline(path, ln).rstrip("\n") if readable else ""
            pct = percent(n, func_total[func])
            cells = "%7d %8s %6s" % (ln, n if n else "", "%.1f" % pct if n else "")
            out.write("%s  %s\n" % (style.heat(pct / 100.0, cells) if n else cells, src))
        if not readable and path:
            out.write(style.dim("   (source not found: %s)\n" % path))
        out.write("\n")
    if not shown:
        out.write("no function matches --filter %r\n" % args.filter if pattern else "no samples\n")
    return 0


# ---- threads and memory --------------------------------------------------------


def show_threads(profile, style, out):
    total = sum(t[1] for t in profile.threads)
    leaf_by_thread = {}
    for thread, funcs, count in profile.func_stacks():
        if funcs:
            d = leaf_by_thread.setdefault(thread, {})
            d[funcs[-1]] = d.get(funcs[-1], 0) + count
    out.write(style.accent("Threads") + " (select one with --thread ID or --thread N)\n")
    for i, (tid, samples, _on) in enumerate(profile.threads):
        top = leaf_by_thread.get(i)
        where = ""
        if top:
            f = max(top, key=lambda k: top[k])
            where = "busiest in %s (%.1f%%)" % (profile.func_label(f), percent(top[f], samples))
        out.write("  %2d  0x%-14x %8d samples %6.1f%%  %s\n"
                  % (i + 1, tid, samples, percent(samples, total), where))
    out.write("\n")


SPARK = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


def show_memory(profile, style, out, width=60):
    s = profile.summary
    series = profile.rss_series or []
    if not series:
        return
    peak_ms, peak = max(series, key=lambda p: p[1])
    start, end = series[0][1], series[-1][1]
    out.write(style.accent("Memory") + "  peak RSS %s at %.2f s; %s at the start, %s at the end\n" % (
        _kib(s["max_rss_kib"] or peak), peak_ms / 1000.0, _kib(start), _kib(end)))
    step = max(1, len(series) // width)
    cells = [max(p[1] for p in series[i:i + step]) for i in range(0, len(series), step)]
    lo, hi = min(cells), max(cells)
    line = "".join(SPARK[1 + int((c - lo) * 7 / (hi - lo))] if hi > lo else SPARK[4] for c in cells)
    out.write("  RSS  %s\n" % line)
    growth = profile.rss_growth or []
    by_func = {}
    for (thread, funcs, count), g in zip(profile.func_stacks(), growth):
        if g and funcs:
            py = [f for f in funcs if profile.funcs[f][3] == KIND_PYTHON] or funcs
            by_func[py[-1]] = by_func.get(py[-1], 0) + g
    grown = sum(by_func.values())
    if grown:
        out.write("  grew most while running (RSS increase between samples, by innermost Python function):\n")
        for f in sorted(by_func, key=lambda k: -by_func[k])[:5]:
            out.write("    %10s  %5.1f%%  %s  %s\n" % (
                _kib(by_func[f]), percent(by_func[f], grown), style.bold(profile.func_label(f)),
                style.dim(profile.func_where(f))))
    out.write("\n")


def _kib(kib):
    if kib >= 1024 * 1024:
        return "%.2f GiB" % (kib / 1048576.0)
    if kib >= 1024:
        return "%.1f MiB" % (kib / 1024.0)
    return "%d KiB" % kib


def header(profile, path, style, out):
    s = profile.summary
    bits = ["%d samples" % s["samples"]]
    if len(profile.threads) > 1:
        bits.append("%d threads" % len(profile.threads))
    if s["duration_ms"]:
        bits.append("%.2f s" % (s["duration_ms"] / 1000.0))
    if s["period_usec"]:
        bits.append("every %.1f ms" % (s["period_usec"] / 1000.0))
    modes = [m for m in ("lines", "memory", "native", "real_time") if s[m]]
    if modes:
        bits.append(", ".join(m.replace("_", " ") for m in modes))
    out.write("%s  %s profile: %s\n" % (style.bold(os.path.basename(path)), s["interp"] or "vmprof",
                                         ", ".join(bits)))
    argv = s["meta"].get("argv")
    if argv:
        out.write(style.dim("command: %s\n" % argv))
    if not s["complete"]:
        out.write(style.dim("(the profile has no trailer: the program did not stop profiling "
                            "normally; showing every complete sample)\n"))
    out.write("\n")


# ---- command line --------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="vmprofshow",
        description="Show a vmprof profile as a call tree, a flat list or per-line hits, "
                    "or export it for other tools.")
    p.add_argument("profile", help="the profile file (plain or gzip)")
    p.add_argument("view", nargs="?", choices=VIEWS, default="tree",
                   help="what to show (default: tree)")
    g = p.add_argument_group("tree")
    g.add_argument("--prune_percent", "--prune-percent", type=float, default=0.0, metavar="P",
                   help="hide nodes under P%% of the samples")
    g.add_argument("--prune_level", "--prune-level", type=int, default=None, metavar="N",
                   help="hide nodes deeper than N levels")
    g.add_argument("--indent", type=int, default=2, metavar="N", help="spaces per level (default 2)")
    g = p.add_argument_group("flat")
    g.add_argument("--include-callees", action="store_true",
                   help="list the callees of each function under it")
    g.add_argument("--no-native", action="store_true", help="leave native (C) frames out")
    g.add_argument("--hide-interpreter", action="store_true",
                   help="tree and flat: leave CPython's own native frames out (the evaluation "
                        "loop and call machinery), keeping other C frames")
    g.add_argument("--percent-cutoff", type=float, default=0.0, metavar="P",
                   help="hide functions under P%% of the samples")
    g = p.add_argument_group("lines")
    g.add_argument("--filter", metavar="REGEX", help="only functions whose name or file matches")
    g = p.add_argument_group("all views and exports")
    g.add_argument("--thread", metavar="ID",
                   help="only this thread: its id (decimal or 0x...) or its number in the "
                        "thread list")
    g.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the output (default: on a terminal only)")
    g = p.add_argument_group("export")
    g.add_argument("--format", metavar="FORMAT",
                   help="write the profile in FORMAT instead of showing it: collapsed, "
                        "speedscope, pprof, firefox or html")
    g.add_argument("-o", "--output", metavar="OUT", help="export file ('-' for standard output)")
    g.add_argument("--lines", action="store_true",
                   help="export: one frame per sampled line (profiles recorded with lines)")
    g.add_argument("--title", help="export: title shown by the viewer")
    return p.parse_intermixed_args(argv)


def resolve_thread(core, path, spec):
    """--thread accepts a thread id, or the 1-based number from the thread list."""
    if spec is None:
        return None
    try:
        value = int(spec, 0)
    except ValueError:
        raise SystemExit("vmprofshow: --thread %r is not a number; give a thread id or its "
                         "number in the thread list" % spec)
    threads = core.view_data(path)["threads"]
    ids = [t[0] for t in threads]
    if value in ids:
        return value
    if 1 <= value <= len(ids):
        return ids[value - 1]
    raise SystemExit("vmprofshow: no thread %s in %s; its threads are: %s" % (
        spec, path, ", ".join("%d (0x%x)" % (i + 1, t) for i, t in enumerate(ids))))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    core = _core()
    out = sys.stdout
    try:
        thread = resolve_thread(core, args.profile, args.thread)
        if args.format:
            if not args.output:
                raise SystemExit("vmprofshow: --format needs -o OUT (the file to write, or '-')")
            if args.output == "-":
                out.flush()
                target = sys.stdout.fileno()
            else:
                target = args.output
            core.export(args.profile, args.format, target, thread=thread, lines=args.lines,
                        no_native=args.no_native, title=args.title)
            return 0
        colour = args.color == "always" or (
            args.color == "auto" and out.isatty() and not os.environ.get("NO_COLOR"))
        style = Style(colour)
        data = core.view_data(args.profile, thread=thread, lines=args.view == "lines",
                              no_native=args.no_native)
        profile = Profile(data)
        if args.hide_interpreter:
            profile.hide_interpreter()
        header(profile, args.profile, style, out)
        if len(profile.threads) > 1 and thread is None:
            show_threads(profile, style, out)
        if profile.summary["memory"]:
            show_memory(profile, style, out)
        if args.view == "tree":
            show_tree(profile, args, style, out)
        elif args.view == "flat":
            show_flat(profile, args, style, out)
        else:
            return show_lines(profile, args, style, out)
        return 0
    except core.VMProfError as e:
        sys.stderr.write("vmprofshow: %s\n" % e)
        return 1
    except BrokenPipeError:
        # `vmprofshow ... | head`: the reader left, which is not an error;
        # point stdout at /dev/null so the interpreter's final flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
