"""The terminal summary `python -m vmprof` prints without -o or --web.

It answers "where did the time go" in a screenful: one header line (samples,
duration, clock, threads) and the functions that the most samples were in,
with their share of all samples:

    self   the sample's innermost Python function was this one (the time spent
           in the function's own code)
    total  the function was anywhere on the sample's stack, counted once per
           sample however deep its recursion (the time until it returned)

The frames of vmprof's own package (the runner of `python -m vmprof`) and of
runpy are on every stack and are left out; files under the current directory
are shown relative to it.

It is written against the Stats interface of vmprof.read_profile(): its
per-function totals (`get_functions(python_only=True)`, computed in C) when it
has them, else the samples themselves (`profiles`: stack root first, count,
thread id, rss; `adr_dict`: id -> "py:func:line:file"); and `threads`,
`profile_real_time` or `meta`, `get_runtime_in_microseconds()` where present.
"""

import os

DEFAULT_LIMIT = 20


class FunctionShare(object):
    __slots__ = ("name", "self_count", "total_count")

    def __init__(self, name):
        self.name = name
        self.self_count = 0
        self.total_count = 0


def function_shares(stats):
    """Returns (samples, [FunctionShare]) sorted by self, then total, then name.

    Functions are told apart by name: a function whose code object was made
    again (a reload, a re-created closure) has several ids and one row.
    """
    get_functions = getattr(stats, "get_functions", None)
    if get_functions is not None:
        shares = _shares_from_totals(stats, get_functions(python_only=True))
        samples = len(stats)
    else:
        samples, shares = _shares_from_samples(stats)
    ordered = sorted(shares.values(),
                     key=lambda s: (-s.self_count, -s.total_count, s.name))
    return samples, ordered


def _shares_from_totals(stats, totals):
    """From the reader's per-function totals (computed in C, no per-sample work)."""
    samples = len(stats)
    shares = {}
    for name, _addr, inclusive, self_count in totals:
        if not (isinstance(name, str) and name.startswith("py:")):
            continue
        share = shares.get(name)
        if share is None:
            share = shares[name] = FunctionShare(name)
        share.self_count += self_count
        # Two ids of one name in one stack would count that sample twice.
        share.total_count = min(samples, share.total_count + inclusive)
    return shares


def _shares_from_samples(stats):
    """From the samples themselves (any Stats-like object with profiles)."""
    names = stats.adr_dict
    shares = {}
    is_python = {}

    def python_name(addr):
        # Memoised per id: a million samples share a few thousand ids.
        known = is_python.get(addr)
        if known is None:
            name = names.get(addr) if isinstance(addr, int) and addr > 0 else None
            known = name if isinstance(name, str) and name.startswith("py:") else False
            is_python[addr] = known
        return known

    samples = 0
    for entry in stats.profiles:
        stack, count = entry[0], entry[1]
        samples += count
        innermost = None
        seen = set()
        for addr in stack:
            name = python_name(addr)
            if not name:
                continue
            innermost = name
            if name not in seen:
                seen.add(name)
                share = shares.get(name)
                if share is None:
                    share = shares[name] = FunctionShare(name)
                share.total_count += count
        if innermost is not None:
            shares[innermost].self_count += count
    return samples, shares


def split_name(name, relative_to=None):
    """"py:func:line:file" -> (func, "file:line"); anything else as it is.

    With relative_to (a directory), a file under it is shown relative to it.
    """
    if name.startswith("py:"):
        parts = name.split(":", 3)
        if len(parts) == 4:
            _, func, line, filename = parts
            if relative_to and filename.startswith(relative_to.rstrip(os.sep) + os.sep):
                filename = filename[len(relative_to.rstrip(os.sep)) + 1:]
            return func, ("%s:%s" % (filename, line) if line and line != "0" else filename)
    return name, ""


def _header(stats, samples):
    words = ["%d samples" % samples]
    runtime = None
    try:
        runtime = stats.get_runtime_in_microseconds()
    except Exception:
        pass
    if runtime:
        words[0] += " over %.2f s" % (runtime / 1e6)
    meta = getattr(stats, "meta", None) or {}
    clock = "wall-clock time" if _is_real_time(stats, meta) else "CPU time"
    words.append(clock)
    threads = getattr(stats, "threads", None)
    if threads is None:
        threads = {entry[2] for entry in stats.profiles}
    if len(threads) > 1:
        words.append("%d threads" % len(threads))
    return "vmprof: " + ", ".join(words)


def _is_real_time(stats, meta):
    flag = getattr(stats, "profile_real_time", None)
    if flag is not None:
        return bool(flag)
    for key in ("real_time", "clock"):
        value = str(meta.get(key, "")).lower()
        if value in ("1", "true", "wall", "real", "real_time", "real-time"):
            return True
    return False


def _is_runner(name):
    """Frames of vmprof itself (the runner of `python -m vmprof`, disable())
    and of runpy: on every stack or at its very end, they are no news."""
    _func, where = split_name(name)
    filename = where.rsplit(":", 1)[0] if ":" in where else where
    if filename in ("<frozen runpy>",) or os.path.basename(filename) == "runpy.py":
        return True
    return os.path.dirname(filename) == _PACKAGE_DIR


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def format_summary(stats, limit=DEFAULT_LIMIT, relative_to=None):
    """The summary as text (lines end with newlines); file names under the
    directory relative_to are shown relative to it."""
    samples, shares = function_shares(stats)
    shares = [share for share in shares if not _is_runner(share.name)]
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
        func, where = split_name(share.name, relative_to)
        rows.append((_percent(share.self_count, samples),
                     _percent(share.total_count, samples), func, where))
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
