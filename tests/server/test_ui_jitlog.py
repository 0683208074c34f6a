"""The jit log's trace viewer (web/src/jitlog.ts) in Debian's headless chromium,
driven by tests/js/ui/check_jitlog.mjs against a real vmprof-server holding a log
uploaded by `pypy3 -m jitlog --web` and the upstream calc profile uploaded with its
jit log and source lines by our client: the list (order, query, a query's mistake
and its column, back), a trace (stages, merge points as source lines, the machine
code), guard -> bridge -> guard, and the run page's link.  Fails on any console
error or request outside the server."""
import os
import shutil
import subprocess
import sys

import pytest

from test_jitlog_api import CALC, CALC_SOURCE, PROGRAM, PYPY, UPSTREAM, run_of, run_pypy_jitlog
from test_ui import need_browser, node_report


@pytest.mark.skipif(PYPY is None, reason="pypy3 is not installed (apt install pypy3)")
def test_trace_viewer_in_chromium(server, tmp_path):
    need_browser()
    (tmp_path / "prog.py").write_text(PROGRAM)
    done = run_pypy_jitlog(tmp_path, "--web", "--web-url", server.url, "prog.py")
    assert done.returncode == 0, done.stderr
    pypy_run = run_of(done)
    shutil.copy(CALC_SOURCE, tmp_path / "calc.py")
    done = subprocess.run([sys.executable, "-m", "vmprof.upload",
                           os.path.join(UPSTREAM, "profiles", "calc_pypy.prof"), "--jitlog", CALC,
                           "--web-url", server.url], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    calc_run = run_of(done)
    shots = os.environ.get("VMPROF_UI_SCREENSHOTS", "")
    rc, report = node_report("check_jitlog.mjs", server.url, pypy_run, calc_run,
                             *([shots] if shots else []))
    assert report["failures"] == [], report["failures"]
    assert report["errors"] == [] and report["outside"] == []
    assert report["checks"] >= 25 and rc == 0
