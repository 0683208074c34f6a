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


class View:
    """One read profile and the options of the views: every count comes from
    the read model's queries (vmprof._core.Profile.query_*), asked with the
    thread and frame options given on the command line."""

    def __init__(self, core, stats, thread=None, no_native=False, hide_interpreter=False):
        self.core = core
        self.stats = stats
        self.profile = stats._profile
        self.facts = self.profile.facts()
        self.funcs = self.profile.funcs()  # (name, file, first_line, kind, ...)
        self.thread_ids = stats.threads
        self.thread_samples = self.profile.thread_samples()
        self.thread = None if thread is None else self.thread_ids.index(thread)
        self.frames = ((core.Q_NO_NATIVE if no_native else 0)
                       | (core.Q_HIDE_INTERPRETER if hide_interpreter else 0))

    def query(self, **more):
        q = {"thread": self.thread, "frames": self.frames | more.pop("frames", 0)}
        q.update(more)
        return q

    def func_label(self, func):
        return self.funcs[func][0]

    def func_where(self, func, line=None):
        name, path, first, kind = self.funcs[func][:4]
        if not path:
            return "<native>" if kind == KIND_NATIVE else ""
        return "%s:%d" % (path, first if line is None else line)


def percent(part, whole):
    return 100.0 * part / whole if whole else 0.0


# ---- tree ----------------------------------------------------------------------


def show_tree(view, args, style, out):
    prune_level = args.prune_level
    tree = view.profile.query_tree(**view.query(
        frames=view.core.Q_MERGE_RECURSION,
        min_fraction=max(args.prune_percent, 0.0) / 100.0,
        max_depth=0 if prune_level is None else max(prune_level + 1, 1)))
    nodes = tree.nodes()
    # (func, addr, kind, total, self, parent, n_children, line, total_b, self_b, cut, depth,
    #  n_cut)
    total = nodes[0][3] - nodes[0][4]  # samples with a frame to show
    if not total:
        out.write("no samples\n")
        return
    indent = " " * max(args.indent, 0)
    hidden = sum(n[12] for n in nodes)
    for func, _a, _k, count, self_count, _p, _n, _l, _tb, _sb, _cut, depth, _nc in nodes[1:]:
        frac = count / total
        pct = style.heat(frac, "%6.1f%%" % (100.0 * frac))
        self_part = ""
        if self_count:
            self_part = "  " + style.dim("self %.1f%%" % percent(self_count, total))
        out.write(
            "%s %8d  %s%s  %s%s\n"
            % (pct, count, indent * (depth - 1), style.bold(view.func_label(func)),
               style.dim(view.func_where(func)), self_part)
        )
    if hidden:
        out.write(style.dim("(%d smaller or deeper subtrees hidden by --prune_percent/--prune_level)\n"
                            % hidden))


# ---- flat ----------------------------------------------------------------------


def show_flat(view, args, style, out):
    counts = view.profile.query_functions(**view.query(frames=view.core.Q_MERGE_RECURSION))
    total = view.profile.query_count(**view.query())
    if not total:
        out.write("no samples\n")
        return
    self_c = {f: s for f, _a, _k, s, _t in counts if s}
    cum_c = {f: t for f, _a, _k, _s, t in counts}
    cutoff = args.percent_cutoff

    def row(func, s, c):
        return "%s %8d  %6.1f%% %8d  %s  %s\n" % (
            style.heat(s / total, "%6.1f%%" % percent(s, total)), s, percent(c, total), c,
            style.bold(view.func_label(func)), style.dim(view.func_where(func)))

    out.write(style.accent("By self time") + "\n")
    out.write("  self%  samples    cum%  samples  function\n")
    for func in sorted(self_c, key=lambda f: (-self_c[f], view.func_label(f))):
        if percent(self_c[func], total) < cutoff:
            continue
        out.write(row(func, self_c[func], cum_c.get(func, 0)))
        if args.include_callees:
            _s, _t, _n, _callers, callees = view.profile.query_neighbours(
                func, **view.query(frames=view.core.Q_MERGE_RECURSION))
            for callee, n in callees:
                out.write("                 %6.1f%% %8d    -> %s  %s\n" % (
                    percent(n, total), n, view.func_label(callee),
                    style.dim(view.func_where(callee))))
    out.write("\n" + style.accent("By cumulative time") + "\n")
    out.write("  self%  samples    cum%  samples  function\n")
    for func in sorted(cum_c, key=lambda f: (-cum_c[f], view.func_label(f))):
        if percent(cum_c[func], total) < cutoff:
            continue
        out.write(row(func, self_c.get(func, 0), cum_c[func]))


# ---- lines ---------------------------------------------------------------------


def show_lines(view, args, style, out):
    if not view.facts["lines"]:
        out.write(
            "this profile has no line numbers (it was not recorded in lines mode); "
            "record with `python -m vmprof --lines ...` for per-line hits\n"
        )
        return 1
    samples, per_func = view.profile.query_lines(**view.query())
    total = samples
    pattern = filter_pattern(args.filter)
    shown = 0
    for func, func_total, line_counts in sorted(per_func,
                                                key=lambda r: (-r[1], view.func_label(r[0]))):
        name, path, first, kind = view.funcs[func][:4]
        if kind != KIND_PYTHON:
            continue
        if pattern and not (pattern.search(name) or pattern.search(path)):
            continue
        shown += 1
        out.write("%s  %s  %s\n" % (
            style.bold(name), style.dim("%s:%d" % (path, first)),
            "%d samples (%.1f%%)" % (func_total, percent(func_total, total))))
        out.write("   line     hits      %  source\n")
        lines = dict(line_counts)
        readable = bool(path) and linecache.getline(path, max(first, 1)) != ""
        if readable:
            last = max(lines)
            numbers = range(max(first, 1), last + 1)
        else:
            numbers = sorted(lines)
        for ln in numbers:
            n = lines.get(ln, 0)
            src = linecache.getline(path, ln).rstrip("\n") if readable else ""
            pct = percent(n, func_total)
            cells = "%7d %8s %6s" % (ln, n if n else "", "%.1f" % pct if n else "")
            out.write("%s  %s\n" % (style.heat(pct / 100.0, cells) if n else cells, src))
        if not readable and path:
            out.write(style.dim("   (source not found: %s)\n" % path))
        out.write("\n")
    if not shown:
        out.write("no function matches --filter %r\n" % args.filter if pattern else "no samples\n")
    return 0


# ---- threads and memory --------------------------------------------------------


def show_threads(view, style, out):
    total = sum(view.thread_samples)
    out.write(style.accent("Threads") + " (select one with --thread ID or --thread N)\n")
    for i, (tid, samples) in enumerate(zip(view.thread_ids, view.thread_samples)):
        counts = view.profile.query_functions(thread=i, frames=view.frames
                                              | view.core.Q_MERGE_RECURSION)
        where = ""
        selfs = [(s, f) for f, _a, _k, s, _t in counts if s]
        if selfs:
            s, f = max(selfs, key=lambda sf: (sf[0], -sf[1]))
            where = "busiest in %s (%.1f%%)" % (view.func_label(f), percent(s, samples))
        out.write("  %2d  0x%-14x %8d samples %6.1f%%  %s\n"
                  % (i + 1, tid, samples, percent(samples, total), where))
    out.write("\n")


SPARK = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


def show_memory(view, style, out, width=60):
    rss = view.profile.query_rss(width, **view.query())
    cells = [kib for _ms, kib in rss["points"]]
    if not cells:
        return
    out.write(style.accent("Memory") + "  peak RSS %s at %.2f s; %s at the start, %s at the end\n" % (
        _kib(view.facts["max_rss_kib"] or rss["peak_kib"]), rss["peak_ms"] / 1000.0,
        _kib(rss["first_kib"]), _kib(rss["last_kib"])))
    lo, hi = min(cells), max(cells)
    line = "".join(SPARK[1 + int((c - lo) * 7 / (hi - lo))] if hi > lo else SPARK[4] for c in cells)
    out.write("  RSS  %s\n" % line)
    growth = rss["growth"]
    grown = sum(g for _f, g in growth)
    if grown:
        out.write("  grew most while running (RSS increase between samples, by innermost Python function):\n")
        for f, g in growth[:5]:
            out.write("    %10s  %5.1f%%  %s  %s\n" % (
                _kib(g), percent(g, grown), style.bold(view.func_label(f)),
                style.dim(view.func_where(f))))
    out.write("\n")


def _kib(kib):
    if kib >= 1024 * 1024:
        return "%.2f GiB" % (kib / 1048576.0)
    if kib >= 1024:
        return "%.1f MiB" % (kib / 1024.0)
    return "%d KiB" % kib


def period_text(usec):
    """"every 1.0 ms"; below a millisecond with all its digits (a 10 us
    period read "every 0.0 ms", 990 us "every 1.0 ms")."""
    if usec < 1000:
        return "every %g ms" % (usec / 1000.0)
    return "every %.1f ms" % (usec / 1000.0)


def header(view, path, style, out):
    f = view.facts
    bits = ["%d samples" % f["n_samples"]]
    if len(view.thread_ids) > 1:
        bits.append("%d threads" % len(view.thread_ids))
    if f["duration_ms"]:
        bits.append("%.2f s" % (f["duration_ms"] / 1000.0))
    if f["period_usec"]:
        bits.append(period_text(f["period_usec"]))
    modes = [m for m in ("lines", "memory", "native", "real_time") if f[m]]
    if modes:
        bits.append(", ".join(m.replace("_", " ") for m in modes))
    out.write("%s  %s profile: %s\n" % (style.bold(os.path.basename(path)), f["interp"] or "vmprof",
                                         ", ".join(bits)))
    if f["argv"]:
        out.write(style.dim("command: %s\n" % f["argv"]))
    if not f["complete"]:
        out.write(style.dim("(the profile has no trailer: the program did not stop profiling "
                            "normally; showing every complete sample)\n"))
    out.write("\n")


# ---- command line --------------------------------------------------------------


def _count(text):
    """--indent, --prune_level: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("give a whole number, 0 or more, not %r" % text)
    return value


def _percent(text):
    """--prune_percent, --percent-cutoff: a share of the samples, 0 to 100."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError("give a percentage from 0 to 100, not %r" % text)
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="vmprofshow",
        description="Show a vmprof profile as a call tree, a flat list or per-line hits, "
                    "or export it for other tools.")
    p.add_argument("profile", help="the profile file (plain or gzip)")
    p.add_argument("view", nargs="?", choices=VIEWS, default="tree",
                   help="what to show (default: tree)")
    g = p.add_argument_group("tree")
    g.add_argument("--prune_percent", "--prune-percent", type=_percent, default=0.0, metavar="P",
                   help="hide nodes under P%% of the samples")
    g.add_argument("--prune_level", "--prune-level", type=_count, default=None, metavar="N",
                   help="hide nodes deeper than N levels")
    g.add_argument("--indent", type=_count, default=2, metavar="N", help="spaces per level (default 2)")
    g = p.add_argument_group("flat")
    g.add_argument("--include-callees", action="store_true",
                   help="list the callees of each function under it")
    g.add_argument("--hide-interpreter", action="store_true",
                   help="tree and flat: leave CPython's own native frames out (the evaluation "
                        "loop and call machinery), keeping other C frames")
    g.add_argument("--percent-cutoff", type=_percent, default=0.0, metavar="P",
                   help="hide functions under P%% of the samples")
    g = p.add_argument_group("lines")
    g.add_argument("--filter", metavar="REGEX", help="only functions whose name or file matches")
    g = p.add_argument_group("all views and exports")
    g.add_argument("--no-native", action="store_true", help="leave native (C) frames out")
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


def filter_pattern(text):
    """--filter's regular expression, or None; a bad one ends vmprofshow in one line."""
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as e:
        raise SystemExit("vmprofshow: --filter %r is not a valid regular expression (%s); "
                         "put a backslash before ( ) [ ] . * + ? to match them as they are"
                         % (text, e))


# Exports that are bytes, not text: never written to a terminal.
BINARY_FORMATS = {"pprof": "gzipped protobuf"}


def _reader_left(fd):
    """Whether fd is a pipe whose reading end was closed (`| head`)."""
    import select
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def resolve_thread(stats, path, spec):
    """--thread accepts a thread id, or the 1-based number from the thread list."""
    if spec is None:
        return None
    try:
        value = int(spec, 0)
    except ValueError:
        raise SystemExit("vmprofshow: --thread %r is not a number; give a thread id or its "
                         "number in the thread list" % spec)
    ids = stats.threads
    if value in ids:
        return value
    # A number from the list, never one written in hex: 0x2 means the id 0x2
    if 1 <= value <= len(ids) and not spec.strip().lower().startswith(("0x", "-0x", "+0x")):
        return ids[value - 1]
    raise SystemExit("vmprofshow: no thread %s in %s; its threads are: %s" % (
        spec, path, ", ".join("%d (0x%x)" % (i + 1, t) for i, t in enumerate(ids))))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    core = _core()
    out = sys.stdout
    try:
        if args.format and not args.output:
            raise SystemExit("vmprofshow: --format needs -o OUT (the file to write, or '-')")
        if args.format in BINARY_FORMATS and args.output == "-" and out.isatty():
            raise SystemExit("vmprofshow: the %s export is binary (%s): give -o FILE, or send "
                             "standard output to a file or a pipe" % (args.format, BINARY_FORMATS[args.format]))
        filter_pattern(args.filter)  # a bad one is said before reading the file
        stats = _read(core, args.profile)
        thread = resolve_thread(stats, args.profile, args.thread)
        if args.format:
            from vmprof.reader import export
            if args.output == "-":
                out.flush()
                target = sys.stdout.fileno()
            else:
                target = args.output
            try:
                export(stats, args.format, target, thread=thread, lines=args.lines,
                       no_native=args.no_native, title=args.title)
            except core.VMProfError:
                if args.output == "-" and _reader_left(target):
                    raise BrokenPipeError  # as a text view's `| head`: not an error
                raise
            return 0
        colour = args.color == "always" or (
            args.color == "auto" and out.isatty() and not os.environ.get("NO_COLOR"))
        style = Style(colour)
        view = View(core, stats, thread=thread, no_native=args.no_native,
                    hide_interpreter=args.hide_interpreter)
        header(view, args.profile, style, out)
        if len(view.thread_ids) > 1 and thread is None:
            show_threads(view, style, out)
        if view.facts["memory"]:
            show_memory(view, style, out)
        if args.view == "tree":
            show_tree(view, args, style, out)
        elif args.view == "flat":
            show_flat(view, args, style, out)
        else:
            return show_lines(view, args, style, out)
        return 0
    except core.VMProfError as e:
        sys.stderr.write("vmprofshow: %s\n" % e)
        return 1
    except BrokenPipeError:
        # `vmprofshow ... | head`: the reader left, which is not an error;
        # point stdout at /dev/null so the interpreter's final flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _read(core, path):
    """The profile, read once for every view and export; a cut file is shown
    as far as it goes (the header says so), without a warning."""
    from vmprof.stats import Stats
    return Stats(core.read_file(path))


if __name__ == "__main__":
    sys.exit(main())
