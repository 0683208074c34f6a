"""The views of a run (tree, functions, lines, memory, exports, diff), each
answered by the library's read model: checked against what the workload did
(one function burns the CPU) and against each other."""
import gzip
import json
import os
import subprocess
import sys

import pytest

BURN = "burn_for_server_test"


@pytest.fixture
def run(server, profile_bytes):
    return server.upload(profile_bytes, argv="burn_workload.py")


def get_ok(server, path):
    status, body, _ = server.get(path)
    assert status == 200, body
    return body


def fn_named(answer_functions, name):
    for fn, info in answer_functions.items():
        if info["name"] == name:
            return int(fn)
    raise AssertionError("%s not in %s" % (name, answer_functions))


def walk(node):
    yield node
    for c in node.get("children", []):
        yield from walk(c)


def test_tree_whole(server, run):
    samples = get_ok(server, "/api/runs/%s" % run)["samples"]
    t = get_ok(server, "/api/runs/%s/tree?depth=50&min=0" % run)
    assert t["total"] == samples == t["node"]["total"]
    assert t["path"] == [] and t["chain"] == []
    for node in walk(t["node"]):
        kids = node.get("children", [])
        assert [k["total"] for k in kids] == sorted((k["total"] for k in kids), reverse=True)
        assert sum(k["total"] for k in kids) + node["self"] <= node["total"]
        if "fn" in node:
            assert str(node["fn"]) in t["functions"]
    burn = fn_named(t["functions"], BURN)
    burn_total = sum(n["total"] for n in walk(t["node"]) if n.get("fn") == burn)
    assert burn_total > samples / 2
    # The runner of `python -m vmprof` is not shown above the program: the
    # busiest top node is the workload's own <module> (samples taken before
    # the program started keep the runner's frames, as the read model says).
    top = t["node"]["children"][0]
    assert t["functions"][str(top["fn"])]["name"] == "<module>"
    assert t["functions"][str(top["fn"])]["file"].endswith("burn_workload.py")


def test_the_first_trees_are_ready_when_the_upload_is_answered(start_server, profile_bytes):
    """The two first trees (the API's default, the UI run page's depth 128)
    are computed while the upload is committed: each is given from what the
    server keeps at its first asking, and is the answer the server computes
    for it again after a restart."""
    server = start_server()
    reused = lambda: get_ok(server, "/api/health")["answers"]["reused"]
    rid = server.upload(profile_bytes)
    before = reused()
    first = [get_ok(server, "/api/runs/%s/tree" % rid),
             get_ok(server, "/api/runs/%s/tree?depth=128&min=0.0005" % rid)]
    assert reused() == before + 2
    assert server.stop()[0] == 0
    server.start()
    before = reused()
    again = [get_ok(server, "/api/runs/%s/tree" % rid),
             get_ok(server, "/api/runs/%s/tree?depth=128&min=0.0005" % rid)]
    assert reused() == before
    assert again == first


def test_the_upload_is_answered_before_its_first_trees_and_they_are_computed_once(
        start_server, profile_bytes):
    """The first trees are computed after the upload is answered (the client
    does not wait for views it has not asked for yet); a tree asked for
    meanwhile waits for that computation and is given from it, not computed
    a second time.  (The test holds the computation back for a second.)"""
    env = dict(os.environ, VMPROF_SERVER_TEST_FIRST_VIEWS_MS="1000")
    server = start_server(env=env)
    answers = lambda: get_ok(server, "/api/health")["answers"]
    rid = server.upload(profile_bytes)
    assert answers()["kept"] == 0
    reused = answers()["reused"]
    first = get_ok(server, "/api/runs/%s/tree" % rid)
    # (the first views are computed one after the other: the second may still
    # be under way when the first is answered; asking for it waits for it)
    assert answers()["reused"] == reused + 1
    assert get_ok(server, "/api/runs/%s/tree?depth=128&min=0.0005" % rid)["node"]
    assert answers() == {"kept": 2, "reused": reused + 2}
    # The same answer as computed on asking, after a restart.
    assert server.stop()[0] == 0
    server.start()
    assert get_ok(server, "/api/runs/%s/tree" % rid) == first
    assert answers()["reused"] == 0


def test_tree_at_a_path_with_depth_and_share(server, run):
    whole = get_ok(server, "/api/runs/%s/tree?depth=50&min=0" % run)
    # The path to the burning function, from the whole tree.
    def path_to(node, fn, path):
        if node.get("fn") == fn:
            return path
        for c in node.get("children", []):
            found = path_to(c, fn, path + [c["fn"]])
            if found:
                return found
    burn = fn_named(whole["functions"], BURN)
    path = path_to(whole["node"], burn, [])
    assert path
    t = get_ok(server, "/api/runs/%s/tree?path=%s&depth=1" % (run, ".".join(map(str, path))))
    assert t["path"] == path and t["node"]["fn"] == burn
    assert [c["fn"] for c in t["chain"]] == path[:-1]
    # The breadcrumb's counts are those of the whole tree.
    node = whole["node"]
    for fn, crumb in zip(path[:-1], t["chain"]):
        node = next(c for c in node["children"] if c["fn"] == fn)
        assert crumb["total"] == node["total"]
    # chain=0: the same node without the breadcrumb's counts.
    bare = get_ok(server, "/api/runs/%s/tree?path=%s&depth=1&chain=0" % (run, ".".join(map(str, path))))
    assert bare["chain"] == [] and bare["path"] == path and bare["node"] == t["node"]
    assert server.get("/api/runs/%s/tree?chain=2" % run)[0] == 400
    # depth=1: the node and its children, no deeper.
    for c in t["node"].get("children", []):
        assert "children" not in c
    cut = get_ok(server, "/api/runs/%s/tree?depth=1" % run)
    assert all("children" not in c for c in cut["node"]["children"])
    assert any(c["more"] for c in cut["node"]["children"])
    # min: every node kept is at least that share of the selection.
    pruned = get_ok(server, "/api/runs/%s/tree?depth=50&min=0.2" % run)
    assert all(n["total"] >= 0.2 * pruned["total"] for n in walk(pruned["node"]))


def test_tree_min_of_node(server, run):
    """of=node: min is a share of path's node, so a view of a node can be asked in
    one request before its count is known (a link deep in the tree)."""
    whole = get_ok(server, "/api/runs/%s/tree?depth=50&min=0" % run)
    share = 0.2
    # a node under a third of the run with more than one level under it, and a
    # child that of=node keeps and a cut at share of the run does not (the
    # sampled profile's shape varies with the machine's load: without that
    # child both answers could be the node alone)
    def find(node, path):
        kids = node.get("children", [])
        if path and node["total"] < whole["total"] / 3 and any(k.get("children") for k in kids) \
                and any(share * node["total"] <= k["total"] < share * whole["total"] for k in kids):
            return node, path
        for c in kids:
            found = find(c, path + [c["fn"]])
            if found:
                return found
    node, path = find(whole["node"], [])
    def kept(n, least, here):  # the paths of n's subtree at least `least` samples
        out = {tuple(here): n["total"]}
        for c in n.get("children", []):
            if c["total"] >= least:
                out.update(kept(c, least, here + [c["fn"]]))
        return out
    url = "/api/runs/%s/tree?path=%s&depth=50&min=%s" % (run, ".".join(map(str, path)), share)
    t = get_ok(server, url + "&of=node")
    assert kept(t["node"], 0, path) == kept(node, share * node["total"], path)
    assert t["total"] == whole["total"] and t["node"]["total"] == node["total"]
    # of the selection (the default, also by name): fewer frames, cut at share of the run
    assert get_ok(server, url + "&of=selection") == get_ok(server, url)
    assert kept(get_ok(server, url)["node"], 0, path) == kept(node, share * whole["total"], path)
    assert len(kept(t["node"], 0, path)) > len(kept(get_ok(server, url)["node"], 0, path))
    status, body, _ = server.get(url + "&of=frame")
    assert status == 400 and "of=frame" in body["error"] and "\n" not in body["error"]


def test_tree_errors(server, run):
    assert server.get("/api/runs/%s/tree?path=999999" % run)[0] == 400
    assert server.get("/api/runs/%s/tree?path=abc" % run)[0] == 400
    assert server.get("/api/runs/%s/tree?depth=0" % run)[0] == 400
    assert server.get("/api/runs/%s/tree?thread=1" % run)[0] == 400
    assert server.get("/api/runs/%s/tree?native=2" % run)[0] == 400
    assert server.get("/api/runs/0123456789abcdef/tree")[0] == 404


def test_tree_of_one_thread_and_native_off(server, run):
    info = get_ok(server, "/api/runs/%s" % run)
    tid = info["threads"][0]["id"]
    t = get_ok(server, "/api/runs/%s/tree?thread=%d" % (run, tid))
    assert t["total"] == info["threads"][0]["samples"]
    py = get_ok(server, "/api/runs/%s/tree?native=0&depth=50&min=0" % run)
    assert all(info["kind"] != "native" for info in py["functions"].values())


def test_functions_and_neighbours(server, run):
    f = get_ok(server, "/api/runs/%s/functions?sort=total" % run)
    totals = [r["total"] for r in f["functions"]]
    assert totals == sorted(totals, reverse=True)
    burn = next(r for r in f["functions"] if r["name"] == BURN)
    assert burn["total"] > f["total"] / 2 and burn["self"] <= burn["total"]
    by_self = get_ok(server, "/api/runs/%s/functions" % run)["functions"]
    assert [r["self"] for r in by_self] == sorted((r["self"] for r in by_self), reverse=True)
    one = get_ok(server, "/api/runs/%s/functions?function=%d" % (run, burn["fn"]))
    assert one["function"]["fn"] == burn["fn"]
    assert "<module>" in [c["name"] for c in one["callers"]]
    assert sum(c["total"] for c in one["callers"]) <= burn["total"]
    found = get_ok(server, "/api/runs/%s/functions?q=BURN_FOR" % run)
    assert [r["name"] for r in found["functions"]] == [BURN]
    assert found["matched"] == burn["total"]
    assert server.get("/api/runs/%s/functions?sort=size" % run)[0] == 400


def matched_in_tree(node, hit):
    """Samples under a node whose function matches, each counted once (a
    matching node's own matching descendants are not counted again)."""
    if "fn" in node and hit(node["fn"]):
        return node["total"]
    return sum(matched_in_tree(c, hit) for c in node.get("children", []))


def test_functions_search_by_regex(server, run):
    from urllib.parse import quote
    whole = get_ok(server, "/api/runs/%s/tree?depth=1000&min=0" % run)
    names = {int(k): v["name"] for k, v in whole["functions"].items()}
    burn = fn_named(whole["functions"], BURN)
    one = get_ok(server, "/api/runs/%s/functions?re=%s" % (run, quote("^burn_for_server_t.*t$")))
    assert [r["name"] for r in one["functions"]] == [BURN]
    assert one["matching_fns"] == [burn]
    assert one["matched"] == matched_in_tree(whole["node"], lambda fn: fn == burn) > 0
    # Two functions, one of which calls the other: each sample counted once.
    pattern = "^(%s|<module>)$" % BURN
    both = get_ok(server, "/api/runs/%s/functions?re=%s&limit=1000" % (run, quote(pattern)))
    assert sorted({names.get(fn, "?") for fn in both["matching_fns"] if fn in names}) == \
        sorted(["<module>", BURN])
    hit = set(both["matching_fns"])
    assert both["matched"] == matched_in_tree(whole["node"], hit.__contains__)
    assert one["matched"] <= both["matched"] <= both["total"]
    # POSIX classes (which a browser's RegExp does not know) and case folding.
    posix = get_ok(server, "/api/runs/%s/functions?re=%s" % (run, quote("[[:upper:]]+_FOR_server")))
    assert posix["matched"] == one["matched"]
    # Plain text keeps matching plain text: a dot is a dot there.
    dot = get_ok(server, "/api/runs/%s/functions?q=burn.for" % run)
    assert dot["matched"] == 0 and dot["matching_fns"] == [] and dot["functions"] == []


def test_function_searches_are_kept_and_asked_again(server, run):
    """A search's answer (the table, matched, matching_fns) is computed once
    and given again from what the server keeps, as trees are; another
    question (other text, other kind, other order or length) is computed."""
    from urllib.parse import quote
    reused = lambda: get_ok(server, "/api/health")["answers"]["reused"]
    path = "/api/runs/%s/functions?re=%s" % (run, quote("^burn_for_server_t.*t$"))
    first = get_ok(server, path)
    before = reused()
    assert get_ok(server, path) == first
    assert reused() == before + 1
    # the same text as plain text, another order, another length: computed
    for other in ("q=burn_for_server_t", "re=burn_for_server_t&sort=total",
                  "re=burn_for_server_t&limit=3", "re=burn_for_server_tes"):
        answer = get_ok(server, "/api/runs/%s/functions?%s" % (run, other))
        assert reused() == before + 1, other
        assert answer["functions"][0]["name"] == first["functions"][0]["name"]
    assert get_ok(server, "/api/runs/%s/functions?q=burn_for_server_t" % run) == \
        get_ok(server, "/api/runs/%s/functions?q=burn_for_server_t" % run)
    assert reused() == before + 3
    # a table without a search is kept the same way
    plain = "/api/runs/%s/functions?sort=total&limit=5" % run
    assert get_ok(server, plain) == get_ok(server, plain)
    assert reused() == before + 4


@pytest.mark.parametrize("query, says", [
    ("re=%28main", "is not a regular expression"),
    ("re=%28a%29%5C1", "back-references"),
    ("re=a%7B100%7D%7B100%7D", "repetition counts"),
    ("re=" + "a" * 201, "at most 200 characters"),
    ("re=main&q=main", "give one"),
])
def test_functions_search_refuses_bad_patterns(server, run, query, says):
    status, body, _ = server.get("/api/runs/%s/functions?%s" % (run, query))
    assert status == 400 and says in body["error"] and "\n" not in body["error"], body


def test_lines(server, make_profile):
    rid = server.upload(make_profile("--lines"))
    f = get_ok(server, "/api/runs/%s/functions?sort=total" % rid)
    burn = next(r for r in f["functions"] if r["name"] == BURN)
    lines = get_ok(server, "/api/runs/%s/lines?function=%d" % (rid, burn["fn"]))
    assert lines["function"]["name"] == BURN
    got = [l["line"] for l in lines["lines"]]
    assert got == sorted(got) and got
    # The burning function's body is lines 3 to 7 of the workload.
    assert all(burn["line"] <= l <= burn["line"] + 5 for l in got)
    assert sum(l["total"] for l in lines["lines"]) >= lines["total"]
    assert all(l["self"] <= l["total"] for l in lines["lines"])


def test_lines_need_a_lines_run(server, run):
    assert server.get("/api/runs/%s/lines?function=0" % run)[0] == 400
    assert server.get("/api/runs/%s/lines" % run)[0] == 400


def test_memory(server, make_profile, run):
    rid = server.upload(make_profile("--mem"))
    m = get_ok(server, "/api/runs/%s/memory?width=10" % rid)
    assert 0 < len(m["points"]) <= 10 and m["max_kib"] > 0
    assert max(p[1] for p in m["points"]) == m["max_kib"]
    times = [p[0] for p in m["points"]]
    assert times == sorted(times)
    assert server.get("/api/runs/%s/memory" % run)[0] == 400


def test_exports(server, run):
    status, body, resp = server.get("/api/runs/%s/export/collapsed" % run)
    assert status == 200 and BURN.encode() in body
    assert run in resp.getheader("Content-Disposition")
    status, body, _ = server.get("/api/runs/%s/export/speedscope" % run)
    assert "speedscope" in body["$schema"]
    status, body, _ = server.get("/api/runs/%s/export/pprof" % run)
    assert status == 200 and gzip.decompress(body)
    status, body, _ = server.get("/api/runs/%s/export/firefox" % run)
    assert status == 200 and body["threads"]
    status, body, _ = server.get("/api/runs/%s/export/html" % run)
    assert status == 200 and body.lstrip().lower().startswith(b"<!doctype html")
    assert server.get("/api/runs/%s/export/svg" % run)[0] == 404


def test_diff_of_a_run_with_itself(server, run):
    d = get_ok(server, "/api/diff/%s/%s?min=0" % (run, run))
    assert d["a"]["total"] == d["b"]["total"] > 0
    for node in walk(d["root"]):
        assert node["a"] == node["b"] and node["a_self"] == node["b_self"]
    assert any(f["name"] == BURN for f in d["functions"])


def test_diff_of_two_runs(server, make_profile, profile_bytes):
    a = server.upload(profile_bytes)
    b = server.upload(make_profile("--real-time"))
    d = get_ok(server, "/api/diff/%s/%s" % (a, b))
    assert d["a"]["id"] == a and d["b"]["id"] == b
    assert d["root"]["a"] == d["a"]["total"] and d["root"]["b"] == d["b"]["total"]
    burn = next(f for f in d["functions"] if f["name"] == BURN)
    assert burn["a_total"] > 0 and burn["b_total"] > 0


def test_kept_answers_follow_the_run(server, profile_bytes, make_profile):
    # A profile replaced before the freeze: the answers are the new one's.
    other = make_profile("--real-time")
    status, reply, _ = server.request("POST", "/api/runtime/new", {"argv": "a", "VM": "CPython"})
    rid = reply["runtime_id"]
    for data in (profile_bytes, other):
        assert server.request("POST", "/api/runtime/upload/cpu/%s/add" % rid, data)[0] == 200
    assert server.request("POST", "/api/runtime/%s/freeze/" % rid, b"")[0] == 200
    samples = get_ok(server, "/api/runs/%s" % rid)["samples"]
    assert get_ok(server, "/api/runs/%s/tree" % rid)["total"] == samples
    # The same question in other words: the same answer.
    a = get_ok(server, "/api/runs/%s/tree?native=1&interp=0&depth=12&min=0.0005" % rid)
    b = get_ok(server, "/api/runs/%s/tree?min=5e-4&depth=12" % rid)
    assert a == b
    # Deleted: no answer is served from memory.
    assert server.request("DELETE", "/api/runs/%s" % rid)[0] == 401
    token = server.add_user("admin", admin=True)
    assert server.request("DELETE", "/api/runs/%s" % rid, token=token)[0] == 200
    assert server.get("/api/runs/%s/tree" % rid)[0] == 404


def test_a_time_range_selects_the_samples_in_it(server, make_profile):
    """from=&to= (milliseconds from the run's start, [from, to)): two halves
    of the run hold every sample once, in every view; the memory view's
    points lie in the range asked; a range the wrong way round is 400."""
    rid = server.upload(make_profile("--mem"))
    whole = get_ok(server, "/api/runs/%s/tree" % rid)["total"]
    memory = get_ok(server, "/api/runs/%s/memory" % rid)
    mid = memory["duration_ms"] / 2
    halves = [get_ok(server, "/api/runs/%s/tree?%s" % (rid, q))["total"]
              for q in ("from=0&to=%r" % mid, "from=%r" % mid)]
    assert all(h > 0 for h in halves) and sum(halves) == whole, (halves, whole)
    counted = [get_ok(server, "/api/runs/%s/functions?%s" % (rid, q))["total"]
               for q in ("to=%r" % mid, "from=%r" % mid)]
    assert counted == halves
    lo, hi = memory["duration_ms"] / 4, memory["duration_ms"] * 3 / 4
    part = get_ok(server, "/api/runs/%s/memory?width=50&from=%r&to=%r" % (rid, lo, hi))
    assert part["points"] and all(lo <= ms < hi for ms, _ in part["points"]), part["points"]
    assert len(part["points"]) <= 50
    status, reply, _ = server.get("/api/runs/%s/tree?from=%r&to=%r" % (rid, hi, lo))
    assert status == 400 and "is after" in reply["error"], reply


CALLED_FROM_C = """
def burn_called_from_c(i):
    total = 0
    for k in range(200):
        total += k * i
    return total
sum(map(burn_called_from_c, range(30000)))
"""


def test_the_interpreters_own_frames_on_and_off(server, tmp_path):
    """interp=1 keeps the interpreter's own native frames that the default
    (interp=0, vmprofshow --hide-interpreter) folds (here between map(), a C
    function, and the Python function it calls): more functions, every one
    added native, the same samples."""
    workload = tmp_path / "called_from_c.py"
    workload.write_text(CALLED_FROM_C)
    out = tmp_path / "called_from_c.prof"
    subprocess.run([sys.executable, "-m", "vmprof", "-o", str(out), str(workload)], check=True,
                   capture_output=True, timeout=120, cwd=str(tmp_path),
                   env=dict(os.environ, VMPROF_CACHE_DIR=str(tmp_path / "cache")))
    run = server.upload(out.read_bytes())
    off = get_ok(server, "/api/runs/%s/tree?depth=200&min=0" % run)
    on = get_ok(server, "/api/runs/%s/tree?depth=200&min=0&interp=1" % run)
    assert on["total"] == off["total"]
    added = set(on["functions"]) - set(off["functions"])
    assert added, (len(on["functions"]), len(off["functions"]))
    assert all(on["functions"][fn]["kind"] == "native" for fn in added), \
        [on["functions"][fn] for fn in added]
