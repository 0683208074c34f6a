"""The terminal summary `python -m vmprof` prints without -o or --web.

It answers "where did the time go" in a screenful: one header line (samples,
duration, clock, threads) and the functions that the most samples were in,
with their share of all samples:

    self   the sample's innermost Python function was this one (the time spent
           in the function's own code)
    total  the function was anywhere on the sample's stack, counted once per
           sample however deep its recursion (the time until it returned)

It is written against the Stats interface of vmprof.read_profile():
`profiles` (stack root first, count, thread id, rss), `adr_dict` (id -> name,
"py:func:line:file" for Python code) and, where present, `meta`,
`profile_memory`, `get_runtime_in_microseconds()`.
"""

DEFAULT_LIMIT = 20


class FunctionShare(object):
    __slots__ = ("name", "self_count", "total_count")

    def __init__(self, name):
        self.name = name
        self.self_count = 0
        self.total_count = 0


def function_shares(stats):
    """Returns (samples, [FunctionShare]) sorted by self, then total, then name."""
    names = stats.adr_dict
    shares = {}
    is_python = {}

    def python_name(addr):
        # Memoised per id: a million samples share a few thousand ids.
        known = is_python.get(addr)
        if known is None:
            name = names.get(addr) if isinstance(addr, int) else None
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
    ordered = sorted(shares.values(),
                     key=lambda s: (-s.self_count, -s.total_count, s.name))
    return samples, ordered


def split_name(name):
    """"py:func:line:file" -> (func, "file:line"); anything else as it is."""
    if name.startswith("py:"):
        parts = name.split(":", 3)
        if len(parts) == 4:
            _, func, line, filename = parts
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
    threads = set()
    for entry in stats.profiles:
        threads.add(entry[2])
        if len(threads) > 1000:
            break
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


def format_summary(stats, limit=DEFAULT_LIMIT):
    """The summary as text (lines end with newlines)."""
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
        func, where = split_name(share.name)
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
