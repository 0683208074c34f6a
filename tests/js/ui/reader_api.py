"""The server's JSON API answered from our read model (vmprof.read_profile), for the
browser UI's tests until vmprof-server serves the UI itself.

Not a mock: every number comes from reading real profiles with the C reader; this
file only aggregates them the way /work/notes/h-ui-api-needs.md asks the server to.
Where vmprof-server already answers (runs, a run, me), the shapes are the server's
(src/server/srv_api.c).  It also serves the built UI (web/dist) and npm's speedscope,
as the server will.

    python reader_api.py --web web/dist --speedscope DIR PROFILE...   # prints the URL
Listens on 127.0.0.1, an ephemeral port; stops after --lifetime seconds (default 600).
"""
import argparse
import collections
import datetime
import gzip
import json
import mimetypes
import os
import re
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import vmprof
from vmprof import _core
from vmprof.show import INTERPRETER_FRAMES

KINDS = {_core.FRAME_PYTHON: "python", _core.FRAME_NATIVE: "native", _core.FRAME_JIT: "jit",
         _core.FRAME_GC: "gc", _core.FRAME_BLACKHOLE: "blackhole", _core.FRAME_ASSEMBLER: "asm",
         _core.FRAME_JIT_TRACING: "tracing"}
PAGE = 20


class Run:
    """One profile, read once: per-sample stacks of function ids."""

    def __init__(self, run_id, path):
        s = vmprof.read_profile(path)
        p = s._profile
        self.id, self.path = run_id, path
        self.n = s.n_samples
        self.period_ms = s.period * 1000.0
        self.funcs = []          # [{"name", "file", "line", "kind"}]
        fn_of = {}
        self.stacks = []         # per stack: (thread index, [(fn, line)])
        self.stack_counts = []   # per stack: its samples in the whole run
        self._selections = {}    # memo: selection key -> {path: samples}
        for i in range(p.stack_count()):
            frames, thread, count = p.stack(i)
            self.stack_counts.append(count)
            out = []
            for addr, line, kind in frames:
                name = p.name(addr) or "<%s 0x%x>" % (KINDS.get(kind, "?"), addr)
                parts = name.split(":", 3)
                if len(parts) == 4:
                    fname, first, file = parts[1], int(parts[2] or 0), parts[3]
                else:
                    fname, first, file = name, 0, ""
                key = (kind == _core.FRAME_PYTHON, fname, file)
                fn = fn_of.get(key)
                if fn is None:
                    fn = fn_of[key] = len(self.funcs)
                    k = KINDS.get(kind, "unknown")
                    self.funcs.append({"name": fname, "file": file, "line": first, "kind": k,
                                       "interp": k == "native" and bool(INTERPRETER_FRAMES.match(fname))})
                out.append((fn, line))
            self.stacks.append((thread, out))
        self._profile, self._stats = p, s
        self._sample_stack = self._times = None
        self.duration_ms = self.times[-1] + self.period_ms if self.n else 0.0
        self.rss = list(s.rss_series()) if s.profile_memory else None
        self.threads = list(s.threads)
        modes = []
        if s.profile_lines:
            modes.append("lines")
        if s.profile_memory:
            modes.append("memory")
        if s.profile_native:
            modes.append("native")
        if s.profile_real_time:
            modes.append("real-time")
        start = s.start_time
        self.info = {
            "id": run_id, "argv": s.getargv() or os.path.basename(path),
            "vm": "%s %s" % (s.interp, s.meta.get("python", "").split(" ")[-1]) if s.meta.get("python") else s.interp,
            "owner": None, "name": None, "may_change": False, "interpreter": s.interp,
            "created": (start.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                        if start else None),
            "samples": self.n, "duration": self.duration_ms / 1000.0,
            "period": s.period, "clock": "wall" if s.profile_real_time else "cpu",
            "modes": modes, "max_rss_kib": s.max_rss_kb,
            "exports": list(_core.export_formats()),
        }
        self.info["start"] = self.info["created"]
        counts = collections.Counter()
        for k, (thread_index, _frames) in enumerate(self.stacks):
            counts[thread_index] += self.stack_counts[k]
        self.info["threads"] = [{"index": i, "id": t, "samples": counts[i]}
                                for i, t in enumerate(self.threads)]
        self.info["thread_count"] = len(self.threads)

    @property
    def sample_stack(self):
        """Each sample's stack index (made on first use: a million samples take a while)."""
        if self._sample_stack is None:
            self._sample_stack = [self._profile.sample(i)[0] for i in range(self.n)]
        return self._sample_stack

    @property
    def times(self):
        """Each sample's time in ms from the first."""
        if self._times is None:
            times = self._stats.sample_times()
            if times:
                self._times = [(t - times[0]) / 1e6 for t in times]
            else:
                self._times = [i * self.period_ms for i in range(self.n)]
        return self._times

    def selection(self, q, lines=False):
        """{(fn, ...) root first, recursion folded: samples} of the selected samples
        (with lines=True: {((fn, line), ...) unfolded: samples})."""
        thread = q.get("thread")
        ti = self.threads.index(int(thread)) if thread else None
        native = q.get("native", "1") != "0"
        interp = q.get("interp", "0") == "1"
        lo = float(q["from"]) if q.get("from") else None
        hi = float(q["to"]) if q.get("to") else None
        key = (ti, native, interp, lo, hi, lines)
        if key in self._selections:
            return self._selections[key]
        if lo is None and hi is None:
            per_stack = dict(enumerate(self.stack_counts))
        else:
            per_stack = collections.Counter()
            for i, k in enumerate(self.sample_stack):
                t = self.times[i]
                if (lo is not None and t < lo) or (hi is not None and t >= hi):
                    continue
                per_stack[k] += 1
        out = self._selections[key] = collections.Counter()
        for k, c in per_stack.items():
            thread_index, frames = self.stacks[k]
            if ti is not None and thread_index != ti:
                continue
            path = []
            for fn, line in frames:
                f = self.funcs[fn]
                if f["kind"] != "python" and (not native or (f["interp"] and not interp)):
                    continue
                if lines:
                    path.append((fn, line))
                elif not path or path[-1] != fn:
                    path.append(fn)
            out[tuple(path)] += c
        return out


def build_tree(stacks):
    root = [0, 0, {}]  # total, self, children by fn
    for path, c in stacks.items():
        node = root
        node[0] += c
        for fn in path:
            node = node[2].setdefault(fn, [0, 0, {}])
            node[0] += c
        node[1] += c
    return root


def emit(fn, node, depth, min_count, used):
    used.add(fn)
    out = {"fn": fn, "total": node[0], "self": node[1]}
    if depth <= 0:
        out["more"] = bool(node[2])
        return out
    kids = sorted(node[2].items(), key=lambda kv: -kv[1][0])
    out["children"] = [emit(k, v, depth - 1, min_count, used) for k, v in kids if v[0] >= min_count]
    return out


def tree_answer(run, q):
    root = build_tree(run.selection(q))
    path = [int(x) for x in q.get("path", "").split(".") if x != ""]
    depth = int(q.get("depth", 12))
    min_share = float(q.get("min", 0.0005))
    node, chain, used = root, [], set()
    for i, fn in enumerate(path):
        if fn not in node[2]:
            return 404, {"error": "no frame at path %s in this selection" % q.get("path")}
        node = node[2][fn]
        if i < len(path) - 1:
            chain.append({"fn": fn, "total": node[0], "self": node[1]})
            used.add(fn)
    body = emit(path[-1] if path else -1, node, depth, node[0] * min_share, used)
    used.discard(-1)
    return 200, {"total": root[0], "path": path, "chain": chain, "node": body,
                 "functions": {str(f): strip(run.funcs[f]) for f in sorted(used)}}


def strip(f):
    return {k: f[k] for k in ("name", "file", "line", "kind")}


def functions_answer(run, q):
    stacks = run.selection(q)
    total = sum(stacks.values())
    self_c, total_c = collections.Counter(), collections.Counter()
    for path, c in stacks.items():
        if path:
            self_c[path[-1]] += c
        for fn in set(path):
            total_c[fn] += c
    text = q.get("q", "")
    rx = re.compile(re.escape(text), re.I) if text else None
    key = "total" if q.get("sort") == "total" else "self"
    rows = [dict(strip(run.funcs[f]), fn=f, self=self_c[f], total=total_c[f]) for f in total_c]
    if rx:
        rows = [r for r in rows if rx.search(r["name"]) or rx.search(r["file"])]
    rows.sort(key=lambda r: (-r[key], -r["total"], r["name"]))
    out = {"total": total, "functions": rows[:int(q.get("limit", 200))]}
    if rx:
        out["matched"] = sum(c for path, c in stacks.items()
                             if any(rx.search(run.funcs[f]["name"]) or rx.search(run.funcs[f]["file"])
                                    for f in path))
    if q.get("function"):
        F = int(q["function"])
        callers, callees = collections.Counter(), collections.Counter()
        for path, c in stacks.items():
            up, down = set(), set()
            for i, fn in enumerate(path):
                if fn == F:
                    up.add(path[i - 1] if i else -1)
                    if i + 1 < len(path):
                        down.add(path[i + 1])
            for x in up:
                callers[x] += c
            for x in down:
                callees[x] += c

        def rows_of(counter):
            return [dict(strip(run.funcs[f]) if f >= 0 else {"name": "(root)", "file": "", "line": 0,
                                                                "kind": "root"}, fn=f, self=0, total=c)
                    for f, c in counter.most_common()]
        out["function"] = dict(strip(run.funcs[F]), fn=F, self=self_c[F], total=total_c[F])
        out["callers"] = rows_of(callers)
        out["callees"] = rows_of(callees)
    return 200, out


def lines_answer(run, q):
    if "lines" not in run.info["modes"]:
        return 400, {"error": "run %s was not recorded with --lines" % run.id}
    F = int(q["function"])
    stacks = run.selection(q, lines=True)
    tot, slf = collections.Counter(), collections.Counter()
    for path, c in stacks.items():
        seen = {line for fn, line in path if fn == F}
        for line in seen:
            tot[line] += c
        if path and path[-1][0] == F:
            slf[path[-1][1]] += c
    return 200, {"function": dict(strip(run.funcs[F]), fn=F), "total": sum(stacks.values()),
                 "lines": [{"line": l, "total": tot[l], "self": slf[l]} for l in sorted(tot)]}


def memory_answer(run, q):
    if run.rss is None:
        return 400, {"error": "run %s was not recorded with --mem" % run.id}
    width = max(1, min(4000, int(q.get("width", 600))))
    lo = float(q.get("from") or 0)
    hi = float(q.get("to") or run.duration_ms)
    idx = [i for i in range(run.n) if lo <= run.times[i] < hi]
    points = []
    if idx:
        step = (hi - lo) / width
        buckets = collections.OrderedDict()
        for i in idx:
            b = int((run.times[i] - lo) / step) if step > 0 else 0
            buckets.setdefault(b, []).append(run.rss[i])
        for b, v in buckets.items():
            points.append([round(lo + b * step, 3), min(v), max(v)])
    return 200, {"duration_ms": run.duration_ms, "max_kib": max(run.rss) if run.rss else 0,
                 "points": points}


def diff_answer(a, b, q):
    def named(run):
        out = collections.Counter()
        for path, c in run.selection(q).items():
            out[tuple((run.funcs[f]["name"], run.funcs[f]["file"], run.funcs[f]["kind"]) for f in path)] += c
        return out
    sa, sb = named(a), named(b)
    ta, tb = sum(sa.values()), sum(sb.values())
    root = {"name": "all samples", "file": "", "kind": "root", "a": 0, "b": 0, "a_self": 0,
            "b_self": 0, "_kids": {}}
    funcs = {}
    for side, stacks in (("a", sa), ("b", sb)):
        for path, c in stacks.items():
            node = root
            node[side] += c
            for key in path:
                node = node["_kids"].setdefault(key, {"name": key[0], "file": key[1], "kind": key[2],
                                                      "a": 0, "b": 0, "a_self": 0, "b_self": 0,
                                                      "_kids": {}})
                node[side] += c
            node[side + "_self"] += c
            for i, key in enumerate(set(path)):
                r = funcs.setdefault(key, {"name": key[0], "file": key[1], "kind": key[2],
                                           "a_self": 0, "a_total": 0, "b_self": 0, "b_total": 0})
                r[side + "_total"] += c
            if path:
                funcs[path[-1]][side + "_self"] += c
    min_share = float(q.get("min", 0.001))

    def prune(node):
        kids = [k for k in node.pop("_kids").values()
                if (ta and k["a"] / ta >= min_share) or (tb and k["b"] / tb >= min_share)]
        kids.sort(key=lambda k: -(k["a"] / (ta or 1) + k["b"] / (tb or 1)))
        node["children"] = [prune(k) for k in kids]
        return node
    return 200, {"a": {"id": a.id, "total": ta}, "b": {"id": b.id, "total": tb},
                 "root": prune(root), "functions": list(funcs.values())}


class Handler(BaseHTTPRequestHandler):
    server_version = "reader-api"
    runs = {}
    web = speedscope = None

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", extra=()):
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        if "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024:
            body = gzip.compress(body, 5)
            extra = list(extra) + [("Content-Encoding", "gzip")]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        parts = [urllib.parse.unquote(x) for x in u.path.split("/") if x]
        try:
            if parts[:1] == ["api"]:
                return self.api(parts[1:], q)
            if parts[:1] == ["speedscope"]:
                return self.file(self.speedscope, parts[1:] or ["index.html"])
            return self.file(self.web, parts, fallback="index.html")
        except (KeyError, ValueError, IndexError) as e:
            return self.send(400, {"error": "bad request: %s" % e})

    do_HEAD = do_GET

    def file(self, root, parts, fallback=None):
        path = os.path.realpath(os.path.join(root, *parts)) if parts else ""
        if not parts or not path.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(path):
            if fallback is None:
                return self.send(404, {"error": "no such file"})
            path = os.path.join(root, fallback)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith(".js"):
            ctype = "text/javascript"
        with open(path, "rb") as f:
            self.send(200, f.read(), ctype)

    def api(self, parts, q):
        R = self.runs
        if parts == ["health"]:
            return self.send(200, {"ok": True})
        if parts == ["me"]:
            return self.send(200, {"user": None})
        if parts == ["runs"]:
            runs = sorted(R.values(), key=lambda r: r.info["created"] or "", reverse=True)
            if q.get("q"):
                runs = [r for r in runs if q["q"].lower() in r.info["argv"].lower()]
            if q.get("vm"):
                runs = [r for r in runs if r.info["vm"] == q["vm"]]
            page = int(q.get("page") or 1)
            chunk = runs[(page - 1) * PAGE:page * PAGE]
            keys = ("id", "argv", "name", "vm", "owner", "created", "samples", "duration")
            return self.send(200, {"runs": [{k: r.info[k] for k in keys} for r in chunk],
                                   "next": page + 1 if page * PAGE < len(runs) else None})
        if parts[0] == "runs" and len(parts) >= 2:
            run = R.get(parts[1])
            if run is None:
                return self.send(404, {"error": "no run %s" % parts[1]})
            what = parts[2] if len(parts) > 2 else ""
            if what == "":
                return self.send(200, run.info)
            if what == "tree":
                return self.send(*tree_answer(run, q))
            if what == "functions":
                return self.send(*functions_answer(run, q))
            if what == "lines":
                return self.send(*lines_answer(run, q))
            if what == "memory":
                return self.send(*memory_answer(run, q))
            if what == "raw":
                with open(run.path, "rb") as f:
                    return self.send(200, f.read(), "application/octet-stream")
            if what == "export" and len(parts) == 4:
                with tempfile.NamedTemporaryFile() as out:
                    _core.export(run.path, parts[3], out.name)
                    return self.send(200, open(out.name, "rb").read(),
                                     "text/html" if parts[3] == "html" else "application/octet-stream")
        if parts[0] == "diff" and len(parts) == 3:
            return self.send(*diff_answer(R[parts[1]], R[parts[2]], q))
        return self.send(404, {"error": "no such endpoint"})

    def do_POST(self):
        self.send(404, {"error": "this stand-in has no accounts"})

    do_DELETE = do_PATCH = do_POST


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--web", required=True)
    ap.add_argument("--speedscope", required=True)
    ap.add_argument("--lifetime", type=float, default=600)
    ap.add_argument("profiles", nargs="+", help="ID=FILE")
    args = ap.parse_args()
    Handler.web, Handler.speedscope = args.web, args.speedscope
    for item in args.profiles:
        run_id, path = item.split("=", 1)
        Handler.runs[run_id] = Run(run_id, path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("http://127.0.0.1:%d" % httpd.server_address[1], flush=True)
    timer = threading.Timer(args.lifetime, httpd.shutdown)
    timer.daemon = True
    timer.start()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
