"""The browser UI (web/, built into web/dist by scripts/setup.sh) served by a real
vmprof-server that holds uploads made by `python -m vmprof --web`: the runs list
(paging included) and the account pages driven in headless chromium (tests/js/ui/check_accounts.mjs).
The run pages are checked by tests/python/test_ui.py until the server answers the
view endpoints (tree, functions, lines, memory, diff)."""
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
                       + list(options) + [WORKLOAD, "15"],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "profile uploaded" in r.stderr, r.stderr


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
    for i in range(50):
        server.upload(prof.read_bytes(), argv="again.py %d" % i)
    web_upload(server, tmp_path, "--web-auth", token)
    web_upload(server, tmp_path, "--web-auth", token, "--mem", "--lines")
    web_upload(server, tmp_path)  # anonymous
    out = subprocess.run(["node", os.path.join(JS, "ui", "check_accounts.mjs"), server.url,
                          "alice", PASSWORD], cwd=JS, capture_output=True, text=True,
                         timeout=180)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], report
    assert report["checks"] >= 13 and out.returncode == 0
