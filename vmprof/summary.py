"""The terminal summary `python -m vmprof` prints without -o or --web.

It answers "where did the time go" in a screenful: one header line (samples,
duration, clock, threads) and the functions that the most samples were in,
with their share of all samples:

    self   the sample's innermost Python function was this one (the time spent
           in the function's own code)
    total  the function was anywhere on the sample's stack, counted once per
           sample however deep its recursion (the time until it returned)

A profile made by `python -m vmprof` starts at the program: the read model
leaves the runner's frames (runpy, vmprof's __main__.py) out, as every view
does.  Files under the current directory are shown relative to it.

It reads a Stats from vmprof.read_profile(): the per-function counts come from
the read model's query layer (vmprof._core), its header from the Stats'
facts.
"""

import os

DEFAULT_LIMIT = 20


class FunctionShare(object):
    """One row: a Python function (name, file, first line) and its samples."""

    __slots__ = ("name", "file", "line", "self_count", "total_count")

    def __init__(self, name, file, line, self_count, total_count):
        self.name = name
        self.file = file
        self.line = line
        self.self_count = self_count
        self.total_count = total_count

    def where(self, relative_to=None):
        """"file:line" (file relative to the directory relative_to when under it)."""
        filename = self.file
        if relative_to:
            base = relative_to.rstrip(os.sep) + os.sep
            if filename.startswith(base):
                filename = filename[len(base):]
        return "%s:%d" % (filename, self.line) if self.line else filename


def function_shares(stats):
    """Returns (samples, [FunctionShare]) sorted by self, then total, then name.

    The Python functions of the profile (native and PyPy's machine frames fold
    into their Python caller); a function whose code object was made again (a
    reload, a re-created closure) is one row.
    """
    from vmprof import _core
    profile = stats._profile
    funcs = profile.funcs()  # (name, file, first_line, kind, ...)
    rows = profile.query_functions(frames=_core.Q_PYTHON_ONLY | _core.Q_MERGE_RECURSION)
    shares = []
    for func, _addr, _kind, self_count, total in rows:
        name, filename, line, kind = funcs[func][:4]
        if kind == _core.FRAME_PYTHON and filename:  # a function the file names
            shares.append(FunctionShare(name, filename, line, self_count, total))
    shares.sort(key=lambda s: (-s.self_count, -s.total_count, s.name, s.file, s.line))
    return len(stats), shares


def _header(stats, samples):
    words = ["%d samples" % samples]
    runtime = stats.get_runtime_in_microseconds()
    if runtime:
        words[0] += " over %.2f s" % (runtime / 1e6)
    words.append("wall-clock time" if stats.profile_real_time else "CPU time")
    if len(stats.threads) > 1:
        words.append("%d threads" % len(stats.threads))
    return "vmprof: " + ", ".join(words)


def format_summary(stats, limit=DEFAULT_LIMIT, relative_to=None):
    """The summary as text (lines end with newlines); file names under the
    directory relative_to are shown relative to it."""
    samples, shares = function_shares(stats)
    lines = [_header(stats, samples)]
    if samples == 0:
        lines.append("no samples were taken: the program ended before the first one, "
                     "or spent its time outside Python; try a shorter --period")
        return "\n".join(lines) + "\n"
    if not shares:
        lines.append("no Python function was seen in the %d samples" % samples)
        return "\n".join(lines) + "\n"
    shown = shares[:limit]
    rows = []
    for share in shown:
        rows.append((_percent(share.self_count, samples),
                     _percent(share.total_count, samples), share.name,
                     share.where(relative_to)))
    func_width = min(max(len("function"), max(len(r[2]) for r in rows)), 40)
    lines.append("%6s %7s  %-*s  %s" % ("self", "total", func_width, "function", "location"))
    for self_pct, total_pct, func, where in rows:
        if len(func) > func_width:
            func = func[:func_width - 1] + "~"
        line = "%6s %7s  %-*s  %s" % (self_pct, total_pct, func_width, func, where)
        lines.append(line.rstrip())
    if len(shares) > len(shown):
        lines.append("(%d more functions; -o FILE keeps the profile for "
                     "`vmprofshow FILE`)" % (len(shares) - len(shown)))
    return "\n".join(lines) + "\n"


def _percent(count, total):
    pct = 100.0 * count / total
    if count and pct < 0.1:
        return "<0.1%"
    return "%.1f%%" % pct
