"""`pypy3 -m vmprof`: the package's Python layer on PyPy's built-in _vmprof and
_jitlog (no C extension of ours), checked from CPython: the profile it writes is
read here, and --jitlog --web uploads both files."""
import gzip
import json
import os
import shutil
import subprocess

import pytest

import vmprof
from upload_server import UploadServer

PYPY = shutil.which("pypy3")
pytestmark = [
    pytest.mark.skipif(PYPY is None, reason="pypy3 is not installed (apt install pypy3)"),
]

PROGRAM = '''
import time
def pypy_burn_for_vmprof(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
pypy_burn_for_vmprof(0.3)
'''


@pytest.fixture
def pypy_run(tmp_path):
    # The Python files of the installed package, without the CPython extension.
    package = tmp_path / "pkg" / "vmprof"
    shutil.copytree(os.path.dirname(vmprof.__file__), package,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tmp_path / "prog.py").write_text(PROGRAM)

    def run(*args, env_tmpdir=None):
        env = dict(os.environ, PYTHONPATH=str(package.parent))
        if env_tmpdir is not None:
            env["TMPDIR"] = str(env_tmpdir)
        return subprocess.run([PYPY, "-m", "vmprof"] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=env)
    return run


def test_pypy_writes_a_profile_cpython_reads(pypy_run, tmp_path):
    done = pypy_run("-o", "out.prof", "prog.py")
    assert done.returncode == 0, done.stderr
    stats = vmprof.read_profile(str(tmp_path / "out.prof"))
    assert stats.interp == "pypy"
    assert any("pypy_burn_for_vmprof" in name for name in stats.adr_dict.values())


def test_pypy_jitlog_and_web(pypy_run):
    with UploadServer() as server:
        done = pypy_run("--jitlog", "--web", "--web-url", server.url, "prog.py")
    assert done.returncode == 0, done.stderr
    assert server.paths() == ["/api/runtime/new", "/api/runtime/upload/cpu/rt42/add",
                              "/api/runtime/upload/jit/rt42/add", "/api/runtime/rt42/freeze/"]
    assert json.loads(server.requests[0].body)["VM"] == "PyPy"
    assert len(gzip.decompress(server.requests[2].body)) > 0
    assert "jit traces: %s/#/jit7/traces" % server.url in done.stderr


def test_pypy_without_output_keeps_the_profile_and_says_how_to_read_it(pypy_run, tmp_path):
    done = pypy_run("prog.py", env_tmpdir=tmp_path)
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "needs vmprof's C extension" in last
    kept = last.split("the profile is in ")[1].split(";")[0]
    assert kept.startswith(str(tmp_path))
    assert vmprof.read_profile(kept).interp == "pypy"
