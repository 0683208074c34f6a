"""The server's browser UI (web/) in Debian's headless chromium, driven by
playwright-core (tests/js/ui/check_ui.mjs) against real profiles made by
`python -m vmprof`: every page and control is used by clicks and keys, and what
is drawn is checked against the API's own numbers.

Until vmprof-server serves the UI, the API is answered by tests/js/ui/reader_api.py
from our read model (vmprof.read_profile): real numbers, not a mock.  One CPython
drives the browser (the UI does not depend on which), so `make test` pays for one
chromium run, not one per interpreter."""
import os
import subprocess
import sys

import pytest

from views_support import JS, ROOT, need_node_modules, need_tool, node

UI_PYTHON = (3, 11)
WEB = os.path.join(ROOT, "web")
UI = os.path.join(JS, "ui")

pytestmark = pytest.mark.skipif(sys.version_info[:2] != UI_PYTHON,
                                reason="the browser checks run under one CPython only")

# name: options of `python -m vmprof`; every kind of run the UI has controls for
RUNS = {
    "cpu": [],
    "wall": ["--real-time"],
    "memlines": ["--mem", "--lines"],
    "python": ["-n"],
}


def need_built_ui():
    if not os.path.exists(os.path.join(WEB, "dist", "app.js")):
        pytest.skip("web/dist is not built; scripts/setup.sh builds it (npm ci, esbuild)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need_node_modules()
    need_tool(os.environ.get("CHROMIUM", "/usr/bin/chromium"), "the browser the UI is checked in")
    need_built_ui()
    d = tmp_path_factory.mktemp("ui")
    specs = []
    for name, options in RUNS.items():
        out = d / (name + ".prof")
        subprocess.run([sys.executable, "-m", "vmprof"] + options +
                       ["-o", str(out), os.path.join(UI, "workload.py"), "30"],
                       cwd=str(d), check=True, timeout=120, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        specs.append("%s=%s" % (name, out))
    proc = subprocess.Popen([sys.executable, os.path.join(UI, "reader_api.py"),
                             "--web", os.path.join(WEB, "dist"), "--lifetime", "300",
                             "--speedscope", os.path.join(WEB, "node_modules", "speedscope",
                                                          "dist", "release")] + specs,
                            cwd=str(d), stdout=subprocess.PIPE, universal_newlines=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_page_and_control_in_chromium(server):
    shots = os.environ.get("VMPROF_UI_SCREENSHOTS", "")
    rc, report = node("ui/check_ui.mjs", server, *([shots] if shots else []))
    assert report["failures"] == [], report["failures"]
    assert report["errors"] == [] and report["outside"] == []
    assert report["checks"] >= 30 and rc == 0


def test_the_ui_type_checks():
    """tsc over web/src: the TypeScript the bundler strips without checking."""
    tsc = os.path.join(WEB, "node_modules", ".bin", "tsc")
    if not os.path.exists(tsc):
        pytest.skip("web/node_modules is missing; scripts/setup.sh runs `npm ci` there")
    r = subprocess.run([tsc, "--noEmit", "-p", WEB], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stdout
