"""The browser UI (web/, built into web/dist by scripts/setup.sh) served by a real
vmprof-server that holds uploads made by `python -m vmprof --web`, driven in Debian's
headless chromium through playwright-core:
- tests/js/ui/check_ui.mjs: the run pages (CPU, wall clock with threads, --mem with
  --lines, Python only, and a synthetic run of many samples for the zooms that must
  load finer levels) and the comparison, every control by clicks and keys, what is
  drawn checked against the server's own answers;
- tests/js/ui/check_accounts.mjs: the runs list (paging included) and the account
  pages: log in, my runs, rename, delete, the token, log out.
Both fail on any console error or any request outside the server."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SERVER_BIN

JS = os.path.join(ROOT, "tests", "js")
WORKLOAD = os.path.join(JS, "ui", "workload.py")
PASSWORD = "a long enough password"


def need_browser():
    if not os.path.isdir(os.path.join(JS, "node_modules", "playwright-core")):
        pytest.skip("tests/js/node_modules is missing; scripts/setup.sh runs `npm ci` there")
    if not os.path.exists(os.path.join(ROOT, "web", "dist", "app.js")):
        pytest.skip("web/dist is not built; scripts/setup.sh builds it")
    if not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        pytest.skip("chromium is not installed; scripts/setup.sh installs it")


def web_upload(server, tmp_path, *options):
    r = subprocess.run([sys.executable, "-m", "vmprof", "--web", "--web-url", server.url]
                       + list(options) + [WORKLOAD, "30"],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "profile uploaded" in r.stderr, r.stderr


def node_report(script, *args):
    out = subprocess.run(["node", os.path.join(JS, "ui", script)] + list(args), cwd=JS,
                         capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("%s printed no report: %s %s" % (script, out.stdout, out.stderr))
    return out.returncode, report


def test_run_pages_in_chromium(server, tmp_path):
    need_browser()
    web_upload(server, tmp_path)
    web_upload(server, tmp_path, "--real-time")
    web_upload(server, tmp_path, "--mem", "--lines")
    web_upload(server, tmp_path, "-n")
    # and a run of many samples, for the zooms that need finer levels (dense_profile.py)
    sys.path.insert(0, os.path.join(JS, "ui"))
    from dense_profile import dense_profile
    server.upload(dense_profile(), argv="dense.py")
    shots = os.environ.get("VMPROF_UI_SCREENSHOTS", "")
    rc, report = node_report("check_ui.mjs", server.url, *([shots] if shots else []))
    assert report["failures"] == [], report["failures"]
    assert report["errors"] == [] and report["outside"] == []
    assert report["checks"] >= 38 and rc == 0


def test_runs_list_and_accounts_in_chromium(server, tmp_path):
    need_browser()
    token = server.add_user("alice")
    r = subprocess.run([SERVER_BIN, "--data", server.data, "user", "password", "alice"],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # more than a page of runs (the list pages by 50), older than the rest: the
    # same real profile again, through the upload protocol
    prof = tmp_path / "again.prof"
    subprocess.run([sys.executable, "-m", "vmprof", "-o", str(prof), WORKLOAD, "2"],
                   cwd=str(tmp_path), check=True, capture_output=True, timeout=120)
    # the oldest run, of an interpreter no other run has: only on the second page
    server.upload(prof.read_bytes(), argv="again.py on jython", vm="Jython")
    for i in range(50):
        server.upload(prof.read_bytes(), argv="again.py %d" % i)
    web_upload(server, tmp_path, "--web-auth", token)
    web_upload(server, tmp_path, "--web-auth", token, "--mem", "--lines")
    web_upload(server, tmp_path)  # anonymous
    server.upload(prof.read_bytes(), argv="again.py on pypy", vm="PyPy")  # another interpreter, newest
    rc, report = node_report("check_accounts.mjs", server.url, "alice", PASSWORD)
    assert report["failures"] == [], report
    assert report["checks"] >= 16 and rc == 0


def test_the_ui_type_checks():
    """tsc over web/src: the TypeScript the bundler strips without checking."""
    tsc = os.path.join(ROOT, "web", "node_modules", ".bin", "tsc")
    if not os.path.exists(tsc):
        pytest.skip("web/node_modules is missing; scripts/setup.sh runs `npm ci` there")
    r = subprocess.run([tsc, "--noEmit", "-p", os.path.join(ROOT, "web")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout
